"""FeatureExtractor as a scikit-learn transformer, and whole-dataset extraction to the cache."""
from __future__ import annotations

import pickle

import numpy as np
import pytest
from PIL import Image
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline

from fer_features import backbones as bb
from fer_features.features.cache import load_cache
from fer_features.errors import ExtractionError
from fer_features.features.extractor import FeatureExtractor
from fer_features.features.extract import extract_dataset

SMALL = dict(image_size=48, progress=False)

DEFAULT_DIM = 80 * 9  # efficientnet_lite0 default, block4c_add (80 channels) on a 7x7 grid: at 48 px a 3x3 map, grid3


def _images(n=6, size=40, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (size + i, size)).astype(np.uint8) for i in range(n)]


def test_transformer_is_a_scikit_learn_estimator():
    fx = FeatureExtractor(image_size=48)
    assert "model_" not in vars(fx)  # constructor stores arguments only
    assert clone(fx).get_params() == fx.get_params()
    assert fx.fit() is fx
    imgs = _images()
    f1 = fx.transform(imgs)
    assert f1.shape == (6, DEFAULT_DIM) and f1.dtype == np.float32
    np.testing.assert_allclose(fx.transform(imgs[::-1])[::-1], f1, atol=1e-4)  # per-image, order-independent
    # images of different sizes, grey, RGB or RGBA are all accepted
    rgba = np.dstack([imgs[0][:40]] * 3 + [np.full((40, 40), 255, np.uint8)])
    assert fx.transform([rgba, imgs[0][:40]]).shape == (2, DEFAULT_DIM)
    np.testing.assert_allclose(fx.transform([rgba])[0], fx.transform([imgs[0][:40]])[0], atol=1e-4)
    # pickles without the Keras model, rebuilds it on load
    fx2 = pickle.loads(pickle.dumps(fx))
    np.testing.assert_allclose(fx2.transform(imgs[:2]), f1[:2], atol=1e-5)
    assert fx.get_feature_names_out().shape == (DEFAULT_DIM,)


def test_transformer_in_a_pipeline_learns():
    """Two visibly different classes (bright disc vs dark bar) are separated by frozen features."""
    rng = np.random.default_rng(0)
    X, y = [], []
    for i in range(16):
        img = rng.integers(0, 60, (48, 48)).astype(np.uint8)
        if i % 2:
            yy, xx = np.mgrid[:48, :48]
            img[(yy - 24) ** 2 + (xx - 24) ** 2 < 150] = 230
        else:
            img[20:28, 4:44] = 230
        X.append(img)
        y.append(i % 2)
    pipe = make_pipeline(FeatureExtractor(image_size=64), LogisticRegression(max_iter=2000))
    pipe.fit(X[:12], y[:12])
    assert (pipe.predict(X[12:]) == np.array(y[12:])).all()


def test_invalid_options_are_rejected():
    with pytest.raises(ValueError, match="preprocess"):
        FeatureExtractor(preprocess="sharpen").fit()
    with pytest.raises(ValueError, match="face_crop"):
        FeatureExtractor(face_crop="dlib").fit()
    with pytest.raises(bb.BackboneError):
        FeatureExtractor(backbone="nope").fit()


def test_extract_folder_dataset_hit_and_skipped(tiny_folder, tmp_path, monkeypatch):
    (tiny_folder / "sad" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 30)
    cache_dir = tmp_path / "cache"
    path = extract_dataset(tiny_folder, cache_dir=cache_dir, **SMALL)
    c = load_cache(path)
    assert c.features.shape == (10, DEFAULT_DIM)
    assert sorted(c.label_names) == ["happy", "sad"]
    assert c.attrs["n_skipped"] == 1 and c.skipped[0].endswith("broken.png")
    assert c.settings["backbone"] == "efficientnet_lite0" and c.settings["image_size"] == 48
    assert c.attrs["input_preprocessing"] == "lite"
    # identical re-run: cache hit, no model built
    monkeypatch.setattr(bb, "create", lambda *a, **k: pytest.fail("model loaded on a cache hit"))
    assert extract_dataset(tiny_folder, cache_dir=cache_dir, **SMALL) == path
    # a changed setting is a different cache
    monkeypatch.undo()
    other = extract_dataset(tiny_folder, cache_dir=cache_dir, preprocess="bbhe", **SMALL)
    assert other != path
    assert not np.allclose(load_cache(other).features, c.features)


def test_changed_data_is_a_cache_miss(tiny_folder, tmp_path):
    cache_dir = tmp_path / "cache"
    p1 = extract_dataset(tiny_folder, cache_dir=cache_dir, **SMALL)
    Image.fromarray(np.zeros((40, 40), np.uint8)).save(tiny_folder / "happy" / "new.png")
    p2 = extract_dataset(tiny_folder, cache_dir=cache_dir, **SMALL)
    assert p1 != p2 and len(load_cache(p2)) == len(load_cache(p1)) + 1


def test_strict_stops_and_leaves_nothing(tiny_folder, tmp_path):
    (tiny_folder / "happy" / "zz_bad.png").write_text("not an image")
    cache_dir = tmp_path / "cache"
    with pytest.raises(ExtractionError, match="zz_bad.png"):
        extract_dataset(tiny_folder, cache_dir=cache_dir, strict=True, batch_size=4, **SMALL)
    assert not any(cache_dir.glob("*.h5*"))


def test_interrupted_extraction_resumes(tiny_folder, tmp_path, monkeypatch):
    cache_dir = tmp_path / "cache"
    clean = load_cache(extract_dataset(tiny_folder, cache_dir=tmp_path / "clean", batch_size=4, **SMALL))

    calls = {"n": 0}
    real_embed = FeatureExtractor.embed

    def flaky(self, batch):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real_embed(self, batch)

    monkeypatch.setattr(FeatureExtractor, "embed", flaky)
    with pytest.raises(KeyboardInterrupt):
        extract_dataset(tiny_folder, cache_dir=cache_dir, batch_size=4, **SMALL)
    parts = list(cache_dir.glob("*.part"))
    assert len(parts) == 1 and not list(cache_dir.glob("*.h5"))
    monkeypatch.undo()
    path = extract_dataset(tiny_folder, cache_dir=cache_dir, batch_size=4, **SMALL)
    c = load_cache(path)
    assert list(c.paths) == list(clean.paths)
    np.testing.assert_allclose(c.features, clean.features, atol=1e-5)
    assert not list(cache_dir.glob("*.part"))
    # the resumed run's time and rate cover its own records only, and the cache says where it began
    assert int(c.attrs["resumed_at_record"]) == 4 and int(clean.attrs["resumed_at_record"]) == 0


def test_default_features_are_the_registry_choice_and_classical_descriptors_extract(tiny_folder, tmp_path):
    """Settings record the resolved layer/pooling; hog and lbp go through the same extractor and cache."""
    s = FeatureExtractor(image_size=112).settings()
    assert (s["layer"], s["pooling"]) == ("block4c_add", "grid7")
    with pytest.warns(UserWarning, match="grid4"):  # 4x4 at 64 px: the recorded pooling is the one used
        s = FeatureExtractor(image_size=64).settings()
    assert (s["layer"], s["pooling"]) == ("block4c_add", "grid4")
    assert FeatureExtractor(image_size=64, layer="last", pooling="avg").settings()["layer"] == "last"
    for name, dim in (("hog", 4356), ("lbp", 8 * 8 * 59)):
        path = extract_dataset(tiny_folder, cache_dir=tmp_path, backbone=name, progress=False)
        c = load_cache(path)
        assert c.features.shape == (10, dim) and np.isfinite(c.features).all()
        assert c.settings["backbone"] == name and c.settings["weights"] == "none"
    with pytest.raises(bb.BackboneError, match="no layers"):
        FeatureExtractor(backbone="hog", layer="block4c_add").settings()


def test_defaults_are_the_measured_best_face_crop_and_flip():
    s = FeatureExtractor().settings()
    assert (s["face_crop"], s["face_margin"], s["flip_average"]) == ("haar", 0.0, True)
    assert (s["layer"], s["pooling"]) == ("block4c_add", "grid7")


def test_flip_average_is_mirror_invariant_and_keyed():
    rng = np.random.default_rng(4)
    imgs = [rng.integers(0, 256, (40, 40)).astype(np.uint8) for _ in range(3)]
    fx = FeatureExtractor(image_size=48, layer="block3b_add", pooling="grid2", flip_average=True)
    f = fx.fit().transform(imgs)
    np.testing.assert_allclose(fx.transform([im[:, ::-1] for im in imgs]), f, atol=1e-4)
    plain = FeatureExtractor(image_size=48, layer="block3b_add", pooling="grid2", flip_average=False)
    assert not np.allclose(plain.fit().transform(imgs), f, atol=1e-4)
    assert fx.settings()["flip_average"] and not plain.settings()["flip_average"]


def test_bfloat16_precision_is_close_keyed_and_restores_the_policy(tiny_folder, tmp_path):
    import keras

    imgs = _images(4, seed=5)
    f32 = FeatureExtractor(image_size=48).fit().transform(imgs)
    bf = FeatureExtractor(image_size=48, precision="bfloat16").fit()
    f16 = bf.transform(imgs)
    assert f16.dtype == np.float32 and f16.shape == f32.shape
    rel = np.linalg.norm(f16 - f32) / np.linalg.norm(f32)
    assert 0 < rel < 0.15  # bf16 arithmetic: close, not identical
    assert keras.mixed_precision.global_policy().name == "float32"  # the global policy is restored
    assert "precision" not in FeatureExtractor().settings()  # float32 caches keep their old keys
    assert bf.settings()["precision"] == "bfloat16"
    a = extract_dataset(tiny_folder, cache_dir=tmp_path, **SMALL)
    b = extract_dataset(tiny_folder, cache_dir=tmp_path, precision="bfloat16", **SMALL)
    assert a != b and "bfloat16" in b.name and load_cache(b).settings["precision"] == "bfloat16"
    with pytest.raises(ValueError, match="not a network"):
        FeatureExtractor(backbone="hog", precision="bfloat16").settings()
    with pytest.raises(ValueError, match="unknown precision"):
        FeatureExtractor(precision="int4").settings()
