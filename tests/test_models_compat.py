"""Saved models across the restructure: skops files written by release 0.1 load as ``SkopsModel`` and predict
what they predicted then; ``train_model`` (classify --save as a function) saves a model that loads the same way."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import make_folder_dataset

OLD = Path(__file__).resolve().parent / "data" / "models_v0_1"
EXPECTED = json.loads((OLD / "expected.json").read_text())


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    """The images expected.json was made on (its keys are relative to this folder)."""
    root = tmp_path_factory.mktemp("compat")
    return make_folder_dataset(root / "data", classes=("happy", "sad"), per_class=6, size=48)


def _labels(df, data: Path) -> dict[str, str]:
    return {Path(s).relative_to(data).as_posix(): lab for s, lab in zip(df["source"], df["label"])}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_models_of_release_0_1_predict_as_they_did(name, images):
    from fer_features import predict
    from fer_features.apply.models import SkopsModel, load, load_model

    path = OLD / f"old-{name}.skops"
    model = load(path)
    assert isinstance(model, SkopsModel) and model.path == path and model.label_names == ["happy", "sad"]
    assert model.info["classifier"] == name and model.extraction["backbone"] == "lbp"
    bundle = load_model(path)  # the name of 0.1, whose dict keys still read
    assert bundle["label_names"] == model.label_names and "pipeline" in bundle
    df = predict(model, [images], no_face="whole", progress=False)
    assert _labels(df, images) == EXPECTED[name]
    assert _labels(predict(path, [images], no_face="whole", progress=False), images) == EXPECTED[name]
    assert _labels(predict(bundle.bundle(), [images], no_face="whole", progress=False), images) == EXPECTED[name]


def test_a_file_that_is_no_model_is_refused(tmp_path):
    from fer_features.apply.models import load
    from fer_features.errors import ModelError

    with pytest.raises(ModelError, match="no such model file"):
        load(tmp_path / "missing.skops")
    (tmp_path / "x.skops").write_bytes(b"not a zip")
    with pytest.raises(ModelError, match="not a skops model file"):
        load(tmp_path / "x.skops")


def test_train_model_saves_what_classify_save_saves(images, tmp_path):
    import fer_features as ff
    from fer_features.apply.models import SkopsModel, load

    cache = ff.load_cache(ff.extract_dataset(images, backbone="lbp", image_size=48, pooling="grid2", face_crop="none",
                                             cache_dir=tmp_path / "cache", progress=False, log=lambda m: None))
    saved = ff.train_model(cache, "linear_svm", tmp_path / "m.skops", overrides={"C": 10})
    assert saved.path == tmp_path / "m.skops" and saved.trained_on == "all images" and saved.n_train == 12
    model = load(saved)
    assert isinstance(model, SkopsModel) and model.label_names == cache.label_names
    assert model.info == saved.info and model.info["overrides"] == {"C": 10} and model.info["engine"] == "sklearn"
    assert model.extraction["backbone"] == "lbp" and model.extraction["image_size"] == 48
    df = ff.predict(saved, [images], progress=False)  # a TrainedModel is a path
    assert sorted(set(df["label"])) == ["happy", "sad"] and (df["error"] == "").all()


def test_a_model_with_the_fast_cubic_knn_saves_and_loads(tmp_path):
    """The default engine's cubic_knn (``CubicKNN``) is stored by skops like scikit-learn's own estimators and
    loads with only scikit-learn/numpy/fer_features types trusted, predicting as before."""
    import numpy as np

    from fer_features.apply.models import SkopsModel, load
    from fer_features.classify.presets import CubicKNN, make_classifier

    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(60, 8)).astype(np.float32), np.arange(60) % 2
    pipe = make_classifier("cubic_knn").fit(X, y)
    assert isinstance(pipe[-1], CubicKNN)
    SkopsModel(pipe, ["happy", "sad"], {"backbone": "lbp"}, {"classifier": "cubic_knn"}).save(tmp_path / "k.skops")
    model = load(tmp_path / "k.skops")
    assert isinstance(model.pipeline[-1], CubicKNN) and model.pipeline[-1].get_params() == pipe[-1].get_params()
    np.testing.assert_array_equal(model.pipeline.predict(X), pipe.predict(X))
    np.testing.assert_array_equal(model.pipeline.predict_proba(X), pipe.predict_proba(X))
