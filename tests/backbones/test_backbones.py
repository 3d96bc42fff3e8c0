"""The backbone registry: every entry builds with the advertised feature size; the offline default
carries real ImageNet weights; preprocessing modes match keras.applications."""
from __future__ import annotations

import numpy as np
import pytest

from fer_features import backbones as bb


@pytest.mark.parametrize("name", list(bb.REGISTRY))
def test_registry_entry_builds_with_its_feature_dim(name):
    """``feature_dim`` is the size of the last layer globally averaged (classical: at the default size)."""
    cfg = bb.get_config(name)
    if cfg.family == "classical":
        d = bb.create(name)
        x = np.random.default_rng(0).integers(0, 256, (2, cfg.default_size, cfg.default_size, 3)).astype(np.uint8)
        out = d.predict_on_batch(x)
        assert d.n_features == cfg.feature_dim and out.shape == (2, cfg.feature_dim) and np.isfinite(out).all()
        return
    size = max(cfg.min_size, 32)
    model = bb.create(name, weights=None, input_size=size, layer="last", pooling="avg")
    assert model.input.shape[1:] == (size, size, 3)
    assert model.output.shape[-1] == cfg.feature_dim
    x = np.random.default_rng(0).integers(0, 256, (2, size, size, 3)).astype(np.float32)
    out = np.asarray(model(x, training=False))  # eager: tracing a graph for one call costs more than it runs
    assert out.shape == (2, cfg.feature_dim) and np.isfinite(out).all()


def _imagenet_top5(model, image):
    import cv2

    x = cv2.resize(image, (224, 224), interpolation=cv2.INTER_AREA).astype(np.float32)[None]
    p = np.asarray(model.predict_on_batch(x))[0]
    assert abs(p.sum() - 1) < 1e-3
    return set(np.argsort(p)[::-1][:5].tolist()), int(np.argmax(p))


@pytest.fixture(scope="module")
def lite0_top():
    """The offline default's ImageNet classifier (with its top), built once for the tests that read it."""
    return bb.create("efficientnet_lite0", include_top=True)


def test_efficientnet_lite0_imagenet_weights_offline(lite0_top):
    import skimage.data

    model = lite0_top
    top5, best = _imagenet_top5(model, skimage.data.chelsea())
    assert top5 & {281, 282, 283, 284, 285}, top5
    assert 281 <= best <= 285  # a cat class first, not just in the top 5
    top5, best = _imagenet_top5(model, skimage.data.coffee())
    assert top5 & {967, 968, 504}, top5
    assert best in (967, 968, 504)


def test_lite0_features_match_top_model_trunk(lite0_top):
    """The feature model (no top, avg pooling) is the trunk of the ImageNet classifier: applying the
    classifier's dense layer to the features reproduces its probabilities."""
    top = lite0_top
    feats = bb.create("efficientnet_lite0", include_top=False, layer="last", pooling="avg")
    x = np.random.default_rng(1).integers(0, 256, (2, 224, 224, 3)).astype(np.float32)
    f = np.asarray(feats.predict_on_batch(x))
    dense = [layer for layer in top.layers[-1].layers if layer.name == "predictions"][0]
    w, b = dense.get_weights()
    logits = f @ w + b
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    np.testing.assert_allclose(p, np.asarray(top.predict_on_batch(x)), atol=1e-4)


@pytest.mark.parametrize("mode", ["caffe", "tf", "torch"])
def test_input_normalization_matches_keras_preprocess_input(mode):
    from keras.applications.imagenet_utils import preprocess_input

    from fer_features.backbones.layers import InputNormalization

    x = np.random.default_rng(2).uniform(0, 255, (2, 5, 5, 3)).astype(np.float32)
    ours = np.asarray(InputNormalization(mode)(x))
    ref = preprocess_input(x.copy(), mode=mode)
    np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-4)


def test_grid_pooling_matches_numpy_adaptive_average():
    from fer_features.backbones.layers import SpatialPooling

    x = np.random.default_rng(3).normal(size=(2, 7, 7, 4)).astype(np.float32)
    out = np.asarray(SpatialPooling("grid", 2)(x))
    # adaptive bounds for 7 -> 2 cells: [0, 4) and [3, 7)
    ref = [x[:, r0:r1, c0:c1].mean((1, 2)) for r0, r1 in ((0, 4), (3, 7)) for c0, c1 in ((0, 4), (3, 7))]
    np.testing.assert_allclose(out, np.concatenate(ref, -1), rtol=1e-5)
    np.testing.assert_allclose(np.asarray(SpatialPooling("max")(x)), x.max((1, 2)))


def test_pooling_and_layer_options():
    m = bb.create("efficientnet_lite0", weights=None, input_size=64, pooling="grid2", layer="block4c_add")
    assert m.output.shape[-1] == 80 * 4
    m = bb.create("efficientnet_lite0", weights=None, input_size=64, pooling="max", layer="last")
    assert m.output.shape[-1] == 1280
    with pytest.warns(UserWarning, match="grid4"):  # the registry's default taps; 4x4 at 64 px: grid7 -> grid4
        m = bb.create("efficientnet_lite0", weights=None, input_size=64)
    assert m.output.shape[-1] == 80 * 16
    with pytest.raises(bb.BackboneError, match="no layer"):
        bb.create("efficientnet_lite0", weights=None, input_size=64, layer="nope")
    with pytest.raises(bb.BackboneError, match="pooling"):
        bb.create("efficientnet_lite0", weights=None, input_size=64, pooling="median")
    with pytest.raises(bb.BackboneError, match="unknown backbone"):
        bb.get_config("resnet9000")
    with pytest.raises(bb.BackboneError, match="not found"):
        bb.create("efficientnet_lite0", weights="/no/such/file.h5")


def test_tappable_layers_lists_mid_level_maps_and_stages():
    rows = bb.tappable_layers("efficientnet_lite0")
    layers = {n: s for n, s, _ in rows}
    assert layers["block4c_add"] == (14, 14, 80)
    assert layers["top_activation"] == (7, 7, 1280)
    stages = {st: n for n, _, st in rows if st}
    # a stage is the last map before the next downsampling
    assert [layers[stages[f"stage-{k}"]][0] for k in range(1, 6)] == [112, 56, 28, 14, 7]
    assert stages["stage-5"] == "top_activation"
    r50 = {st: n for n, _, st in bb.tappable_layers("resnet50") if st}
    assert r50["stage-4"] == "conv4_block6_out" and r50["stage-5"] == "conv5_block3_out"
    assert bb.tappable_layers("hog") == []


def test_several_layers_concatenate_with_their_own_pooling():
    x = np.random.default_rng(2).integers(0, 256, (2, 64, 64, 3)).astype(np.float32)
    both = bb.create("efficientnet_lite0", input_size=64, pooling="avg", layer="block3b_add@grid2,block4c_add")
    assert both.output.shape[-1] == 40 * 4 + 80
    a = bb.create("efficientnet_lite0", input_size=64, pooling="grid2", layer="block3b_add")
    b = bb.create("efficientnet_lite0", input_size=64, pooling="avg", layer="block4c_add")
    np.testing.assert_allclose(np.asarray(both.predict_on_batch(x)),
                               np.hstack([a.predict_on_batch(x), b.predict_on_batch(x)]), atol=1e-4)
    stage = bb.create("efficientnet_lite0", weights=None, input_size=64, pooling="avg", layer="stage-3")
    assert stage.output.shape[-1] == 240  # block4a_expand_activation
    with pytest.raises(bb.BackboneError, match="stages 1..5"):
        bb.create("efficientnet_lite0", weights=None, input_size=64, layer="stage-9")
    with pytest.raises(bb.BackboneError, match="pooling"):
        bb.create("efficientnet_lite0", weights=None, input_size=64, layer="block4c_add@median")


def test_classical_descriptors_match_scikit_image():
    from skimage.feature import hog, local_binary_pattern

    rng = np.random.default_rng(3)
    img = rng.integers(0, 256, (96, 96)).astype(np.uint8)
    rgb = np.dstack([img] * 3)
    h = bb.create("hog").predict_on_batch(rgb[None])[0]
    ref = hog(img.astype(np.float32), orientations=9, pixels_per_cell=(8, 8), cells_per_block=(2, 2),
              block_norm="L2-Hys")
    np.testing.assert_allclose(h, ref, atol=1e-5)
    lbp = bb.create("lbp", pooling="grid4").predict_on_batch(rgb[None])[0]
    assert lbp.shape == (16 * 59,)
    np.testing.assert_allclose(lbp.reshape(16, 59).sum(1), 1.0, atol=1e-6)  # one histogram per cell
    codes = local_binary_pattern(img, 8, 1, "nri_uniform").astype(int)
    np.testing.assert_allclose(lbp[:59], np.bincount(codes[:24, :24].ravel(), minlength=59) / 576, atol=1e-6)
    with pytest.raises(bb.BackboneError, match="gridN"):
        bb.create("lbp", pooling="avg")


def test_failed_imagenet_download_names_the_file(monkeypatch):
    """Offline, Keras' download fails: the error names the file it wanted and how to pass it."""
    from keras.src.utils import file_utils

    def offline(fname, origin=None, **kw):
        raise Exception(f"URL fetch failure on {origin}: None -- [Errno -2] Name or service not known")

    monkeypatch.setattr(file_utils, "get_file", offline)
    with pytest.raises(bb.BackboneError) as err:
        bb.create("vgg16", weights="imagenet", input_size=32)
    msg = str(err.value)
    assert "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5" in msg and "--weights" in msg


def test_keras_weights_from_a_local_file(tmp_path):
    """A weights file given by path is loaded (the way users pass Keras' ImageNet .h5 offline)."""
    import keras

    keras.utils.set_random_seed(5)
    m1 = bb.create("mobilenet_v2", weights=None, input_size=32)
    inner = [layer for layer in m1.layers if isinstance(layer, keras.Model)][0]
    path = tmp_path / "mnv2.weights.h5"
    inner.save_weights(path)
    keras.utils.set_random_seed(6)
    m2 = bb.create("mobilenet_v2", weights=str(path), input_size=32)
    x = np.random.default_rng(4).integers(0, 256, (2, 32, 32, 3)).astype(np.float32)
    np.testing.assert_allclose(np.asarray(m1.predict_on_batch(x)), np.asarray(m2.predict_on_batch(x)), atol=1e-5)


def test_legacy_torch_reader_rejects_foreign_files(tmp_path):
    import pickle

    from fer_features.backbones._torch_legacy import load_legacy_state_dict

    bad = tmp_path / "x.pth"
    bad.write_bytes(pickle.dumps(12345))
    with pytest.raises(ValueError, match="not a legacy torch file"):
        load_legacy_state_dict(bad)
    evil = tmp_path / "evil.pth"
    evil.write_bytes(pickle.dumps(0x1950A86A20F9469CFC6C) + pickle.dumps(1001) + pickle.dumps({})
                     + pickle.dumps(__import__("os").system))  # a global other than tensors: refused
    with pytest.raises(pickle.UnpicklingError):
        load_legacy_state_dict(evil)


def test_classical_grey_is_exact_for_grey_rgb_pixels():
    """A grey image given as RGB (R=G=B, all 256 levels) converts to exactly its grey values, so the
    classical descriptors do not depend on how a numpy build rounds a float32 dot product."""
    from fer_features.backbones.classical import _grey

    levels = np.arange(256, dtype=np.uint8).reshape(16, 16)
    g = _grey(np.dstack([levels] * 3))
    np.testing.assert_array_equal(g, levels)
    np.testing.assert_array_equal(_grey(levels), levels)


def test_lite0_map_sizes_known_without_building_match_the_built_model():
    """``_efficientnet_lite.feature_maps`` (no Keras) lists the same layers and shapes as the built network."""
    from fer_features.backbones import _efficientnet_lite as lite

    for size in (48, 67, 224):
        built = bb.taps._feature_maps(bb.base_network(bb.get_config("efficientnet_lite0"), False, "random", size).layers)
        assert lite.feature_maps(size) == [(n, tuple(int(d) for d in s)) for n, s in built]


def test_default_grid_finer_than_the_map_is_reduced_and_recorded():
    """At 48 px block4c_add is a 3x3 map: the default grid7 becomes grid3 (said in a warning), in the model and
    in the settings the cache key and file name come from; an explicit --pooling grid3 is the same cache."""
    from fer_features.features.extractor import FeatureExtractor

    with pytest.warns(UserWarning, match="block4c_add.*3x3.*grid7.*grid3"):
        s = FeatureExtractor(image_size=48).settings()
    assert (s["layer"], s["pooling"]) == ("block4c_add", "grid3")
    assert FeatureExtractor(image_size=48, pooling="grid3").settings() == s
    assert FeatureExtractor(image_size=224).settings()["pooling"] == "grid7"  # unchanged where the map is 14x14
    with pytest.warns(UserWarning, match="grid3"):
        m = bb.create("efficientnet_lite0", weights=None, input_size=48)
    assert m.output.shape[-1] == 80 * 9
    with pytest.warns(UserWarning):  # several layers: each to its own map (block3b_add: 6x6 at 48 px)
        taps = bb.resolve_taps("efficientnet_lite0", "block3b_add,block4c_add", None, 48)
    assert taps == ("block3b_add@grid6,block4c_add@grid3", "grid7")


def test_explicit_grid_finer_than_the_map_is_an_error():
    from fer_features.features.extractor import FeatureExtractor

    with pytest.raises(bb.BackboneError, match="block4c_add.*3x3.*grid7.*grid3"):
        FeatureExtractor(image_size=48, pooling="grid7").settings()
    with pytest.raises(bb.BackboneError, match="block4c_add.*3x3.*grid4"):
        bb.resolve_taps("efficientnet_lite0", "block3b_add@grid6,block4c_add@grid4", None, 48)
    with pytest.raises(bb.BackboneError, match="out_relu.*1x1.*grid2"):  # a Keras application: checked when built
        bb.create("mobilenet_v2", weights=None, input_size=32, pooling="grid2")


def test_feature_size_is_known_without_building_the_network(monkeypatch):
    """``feature_size``: the default features' length from the spec and the static map sizes (issue 28:
    ``backbones`` said 1280 for efficientnet_lite0, whose default features are 3,920 long)."""
    monkeypatch.setattr(bb.factory, "base_network", lambda *a, **k: pytest.fail("a model was built"))
    monkeypatch.setattr(bb.taps, "_feature_maps", lambda *a, **k: pytest.fail("a model was built"))
    assert bb.feature_size("efficientnet_lite0") == 80 * 7 * 7  # block4c_add: 14x14x80 at 224 px, grid7
    assert bb.feature_size("efficientnet_lite0", "block3b_add@grid2,last", "avg") == 40 * 4 + 1280
    with pytest.warns(UserWarning):  # a default grid7 on a 3x3 map is reduced to grid3, as extraction does
        assert bb.feature_size("efficientnet_lite0", input_size=48) == 80 * 9
    assert bb.feature_size("resnet50") == 2048 and bb.feature_size("resnet50", pooling="grid2") == 2048 * 4
    assert bb.feature_size("resnet50", layer="conv4_block6_out") is None  # only a built model knows its maps
    assert bb.feature_size("hog") == 4356 and bb.feature_size("hog", input_size=48) is None
