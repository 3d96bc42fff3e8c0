"""extract --backbone PATH.keras: a saved (fine-tuned) Keras model used as a frozen backbone."""
from __future__ import annotations

import shutil

import numpy as np
import pytest

from fer_features import backbones as bb
from fer_features.errors import CacheError
from fer_features.features.cache import load_cache
from fer_features.cli import main
from fer_features.features.extractor import FeatureExtractor
from fer_features.features.extract import dataset_cache_path, extract_dataset
from helpers import make_folder_dataset

TINY = dict(image_size=32, epochs=1, batch_size=8, augment=None, val_fraction=0.0, dropout=0.0, face_crop="none")


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """(dataset folder, a finetune-saved .keras model of it: efficientnet_lite0 head, 32 px)."""
    from fer_features import finetune as F

    root = tmp_path_factory.mktemp("kb")
    data = make_folder_dataset(root / "data", per_class=6, size=32)
    model = F.save(root / "models" / "tuned.keras", data, F.FinetuneConfig(mode="head", **TINY), progress=False,
                   log=lambda m: None)
    return data, model


def test_config_from_the_file(saved):
    _, model = saved
    cfg = bb.get_config(str(model))
    assert cfg.family == bb.KERAS_FILE and cfg.default_size == 32
    assert cfg.preprocess == "lite"  # the model's own InputNormalization layer (finetune builds it in)
    assert cfg.name.startswith("keras:finetune_efficientnet_lite0_head:") and str(model) not in cfg.name
    assert (cfg.default_layer, cfg.default_pooling) == ("last", "avg")
    with pytest.raises(bb.BackboneError, match="takes 32 px"):
        FeatureExtractor(backbone=str(model), image_size=64).settings()
    with pytest.raises(bb.BackboneError, match="no such Keras model file"):
        bb.get_config(str(model.parent / "missing.keras"))


def test_last_layer_is_what_the_head_was_trained_on(saved):
    import keras

    from fer_features.backbones.keras_file import load

    _, model = saved
    fx = FeatureExtractor(backbone=str(model), face_crop="none", flip_average=False).fit()
    x = np.random.default_rng(0).integers(0, 256, (5, 32, 32, 3)).astype(np.uint8)
    m = load(str(model))
    pooled = keras.Model(m.inputs, m.get_layer("pool").output).predict_on_batch(x.astype(np.float32))
    assert fx.n_features_out_ == 1280
    np.testing.assert_allclose(fx.embed(x), pooled, atol=1e-4)
    inner = FeatureExtractor(backbone=str(model), face_crop="none", flip_average=False, layer="block4c_add",
                             pooling="grid2").fit()
    assert inner.n_features_out_ == 4 * 80  # a nested backbone layer: 2x2 map of 80 channels at 32 px
    with pytest.raises(bb.BackboneError, match="backbones --layers"):
        FeatureExtractor(backbone=str(model), face_crop="none", layer="no_such_layer").fit()


def test_backbones_lists_the_files_layers(saved, capsys):
    _, model = saved
    assert main(["backbones", "--layers", str(model)]) == 0
    out = capsys.readouterr().out
    assert "block4c_add" in out and "top_activation" in out and "stage-" in out
    assert "classes" not in out  # the dense head has no 2-D map


def test_cache_key_is_the_files_content(saved, tmp_path):
    """A copy elsewhere (another name too) is a cache hit; one changed weight is another cache."""

    from fer_features.backbones.keras_file import load

    data, model = saved
    cache = tmp_path / "cache"
    said: list[str] = []
    first = extract_dataset(data, cache_dir=cache, backbone=str(model), face_crop="none", progress=False,
                            log=said.append)
    c = load_cache(first)
    assert c.features.shape == (12, 1280) and c.settings["weights"] == "model-file"
    assert c.attrs["backbone_spec"] == str(model.resolve())
    copy = tmp_path / "elsewhere" / "renamed.keras"
    copy.parent.mkdir()
    shutil.copy2(model, copy)
    said.clear()
    assert extract_dataset(data, cache_dir=cache, backbone=str(copy), face_crop="none", progress=False,
                           log=said.append) == first
    assert any("cache hit" in m for m in said)

    m = load(str(model))
    layer = m.get_layer("classes")  # the head: the features do not even depend on it, the file does
    w = [v.copy() for v in layer.get_weights()]
    w[0][0, 0] += 1.0
    layer.set_weights(w)
    changed = tmp_path / "changed.keras"
    m.save(changed)
    w[0][0, 0] -= 1.0  # restored: the loaded model object is shared with the other tests
    layer.set_weights(w)
    from fer_features.data.formats import load_dataset

    ds = load_dataset(data)
    key = lambda p: dataset_cache_path(ds, FeatureExtractor(backbone=str(p), face_crop="none"))[1]  # noqa: E731
    assert key(copy) == key(model) and key(changed) != key(model)


def test_cli_extract_and_reextraction_settings(saved, tmp_path, capsys):
    from fer_features.features.spec import cache_options

    data, model = saved
    copy = tmp_path / "m.keras"
    shutil.copy2(model, copy)
    assert main(["extract", "--data", str(data), "--backbone", str(copy), "--face-crop", "none",
                 "--layer", "stage-4", "--cache-dir", str(tmp_path / "c"), "--no-progress"]) == 0
    path = capsys.readouterr().out.strip().splitlines()[-1]
    c = load_cache(path)
    s = cache_options(c)  # what augmentation and classify --save rebuild the extractor from
    assert s["backbone"] == str(copy.resolve()) and s["layer"] == "stage-4"
    fx = FeatureExtractor(**{**s, "batch_size": 4}).fit()
    assert fx.n_features_out_ == c.features.shape[1]
    copy.write_bytes(copy.read_bytes() + b"\0")  # the file changed since: refused, not silently different
    with pytest.raises(CacheError, match="changed since extraction"):
        cache_options(c)
    assert main(["extract", "--data", str(data), "--backbone", str(model), "--weights", str(model),
                 "--face-crop", "none", "--cache-dir", str(tmp_path / "c2"), "--no-progress"]) == 2
    assert "carries its own weights" in capsys.readouterr().err


def test_foreign_model_default_preprocessing(tmp_path):
    """A plain Keras model (no fer_features layer or metadata): fed RGB 0-255 as is, layers listed."""
    import keras

    inp = keras.Input((24, 24, 3))
    x = keras.layers.Rescaling(1 / 255.0, name="scale")(inp)
    x = keras.layers.Conv2D(4, 3, strides=2, padding="same", name="c1")(x)
    x = keras.layers.Conv2D(6, 3, strides=2, padding="same", name="c2")(x)
    out = keras.layers.Dense(2)(keras.layers.GlobalAveragePooling2D()(x))
    path = tmp_path / "plain.keras"
    keras.Model(inp, out, name="plain").save(path)
    cfg = bb.get_config(str(path))
    assert cfg.preprocess == "raw" and cfg.default_size == 24
    assert [n for n, _, _ in bb.tappable_layers(str(path))] == ["scale", "c1", "c2"]
    fx = FeatureExtractor(backbone=str(path), face_crop="none", flip_average=False, pooling="grid2").fit()
    assert fx.n_features_out_ == 6 * 4
    assert fx.embed(np.full((2, 24, 24, 3), 255, np.uint8)).shape == (2, 24)
