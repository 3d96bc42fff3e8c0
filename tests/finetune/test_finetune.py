"""Fine-tuning: modes, frozen batch norm, learning on a tiny set, protocols/result keys, save + predict."""
from __future__ import annotations

import json

import numpy as np
import pytest

from fer_features import finetune as F
from helpers import make_folder_dataset, run_cli
TINY = dict(image_size=32, epochs=8, batch_size=8, augment=None, val_fraction=0.0, dropout=0.0, lr=1e-2, fine_lr=1e-4,
            face_crop="none", face_margin=0.2)


@pytest.fixture(scope="module")
def tiny_two_class(tmp_path_factory):
    return make_folder_dataset(tmp_path_factory.mktemp("ft") / "data", per_class=12, size=32)


def test_config_checks():
    with pytest.raises(ValueError, match="mode"):
        F.FinetuneConfig(mode="everything")
    with pytest.raises(ValueError, match="not a network"):
        F.FinetuneConfig(backbone="hog")
    assert F.FinetuneConfig(image_size=96).to_dict()["image_size"] == 96


def test_crop_defaults_and_align_are_extracts():
    """finetune prepares images as extract does unless told otherwise: same face crop, margin and --align."""
    from fer_features.cli import build_parser
    from fer_features.features.extractor import FeatureExtractor

    fx, cfg = FeatureExtractor(), F.FinetuneConfig()
    assert (cfg.face_crop, cfg.face_margin, cfg.align) == (fx.face_crop, fx.face_margin, fx.align)
    a = build_parser().parse_args(["finetune", "--data", "x"])
    e = build_parser().parse_args(["extract", "--data", "x"])
    assert (a.face_crop, a.face_margin, a.align) == (e.face_crop, e.face_margin, e.align)
    ext = F.FinetuneConfig(face_crop="mtcnn", align=True).extraction()
    assert ext["align"] is True and F.preprocessor(ext).config.align
    assert not F.preprocessor({k: v for k, v in ext.items() if k != "align"}).config.align  # older saved models


def test_phases_unfreeze_the_right_layers_and_batch_norm_stays_frozen():
    cfg = F.FinetuneConfig(**TINY)
    model, base = F.build_model(cfg, 3)
    k = F.last_stage_start(base)
    sizes = {tuple(layer.output.shape[1:3]) for layer in base.layers[k:] if len(layer.output.shape) == 4}
    assert len(sizes) == 1 and 0 < k < len(base.layers)  # one resolution: the last stage
    F.set_phase(base, cfg, "head")
    head = len(model.trainable_weights)
    F.set_phase(base, cfg, "top")
    top = len(model.trainable_weights)
    F.set_phase(base, cfg, "full")
    full = len(model.trainable_weights)
    assert head == 2 and head < top < full  # dense kernel + bias; then the last stage; then everything

    import keras

    bn = [layer for layer in base.layers if isinstance(layer, keras.layers.BatchNormalization)]
    before = [layer.moving_mean.numpy() for layer in bn]
    x = np.random.default_rng(0).integers(0, 256, (16, 32, 32, 3)).astype(np.uint8)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy",
                  run_eagerly=True)  # two steps: tracing a graph would cost more than running them
    model.fit(F.make_dataset(x, np.arange(16) % 3, 8, training=True), epochs=1, verbose=0)
    assert all(np.array_equal(b, layer.moving_mean.numpy()) for b, layer in zip(before, bn))

    scratch = F.FinetuneConfig(**{**TINY, "mode": "scratch"})
    model, base = F.build_model(scratch, 3)
    F.set_phase(base, scratch, "scratch")  # random weights: batch norm must learn its statistics
    bn = [layer for layer in base.layers if isinstance(layer, keras.layers.BatchNormalization)]
    before = [layer.moving_mean.numpy() for layer in bn]
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy",
                  run_eagerly=True)  # two steps: tracing a graph would cost more than running them
    model.fit(F.make_dataset(x, np.arange(16) % 3, 8, training=True), epochs=1, verbose=0)
    assert all(layer.trainable for layer in bn)
    assert not any(np.array_equal(b, layer.moving_mean.numpy()) for b, layer in zip(before, bn))


def test_training_accuracy_rises_above_chance(tiny_two_class):
    ds, images = F.load_images(tiny_two_class, F.FinetuneConfig(**TINY), progress=False)
    y = np.array([ds.label_names.index(r.label) for r in ds.records])
    logs = []
    model, hist = F.train(F.FinetuneConfig(mode="top", **TINY), images, y, 2, log=logs.append)
    assert [p["phase"] for p in hist["phases"]] == ["head", "top"]
    acc = hist["phases"][-1]["accuracy"]
    assert max(acc) > 0.75  # two classes: chance is 0.5
    assert any("head epoch 1" in m for m in logs) and any(" s" in m for m in logs)
    assert (F.predict_proba(model, images).argmax(1) == y).mean() > 0.75


def test_run_save_and_predict(tiny_two_class, tmp_path, small_network):
    from fer_features import predict
    from fer_features.apply.models import load_model

    r = F.run(tiny_two_class, F.FinetuneConfig(mode="head", **TINY), "kfold", folds=2, progress=False,
              log=lambda m: None)
    for key in ("classifier", "protocol", "accuracy", "accuracy_std", "macro_f1", "per_class_accuracy",
                "confusion_matrix", "fit_seconds", "predict_seconds", "n_train", "n_test", "n_folds", "engine"):
        assert key in r
    assert r["engine"] == "keras" and r["n_folds"] == 2 and np.sum(r["confusion_matrix"]) == 24
    json.dumps({k: v for k, v in r.items() if k != "training_history"})  # JSON-ready
    p = r["predictions"]  # per image, with paths and probabilities, as classify's (so significance pairs them)
    assert r["accuracy_ci"][0] <= r["accuracy"] <= r["accuracy_ci"][1] and len(p["row"]) == 24
    assert sorted(p["path"]) == sorted(str(x.relative_to(tiny_two_class)) for x in tiny_two_class.rglob("img*"))
    assert np.array(p["proba"]).shape == (24, 2)

    path = F.save(tmp_path / "m.keras", tiny_two_class, F.FinetuneConfig(mode="head", **TINY), progress=False,
                  log=lambda m: None)
    bundle = load_model(path)
    assert bundle["label_names"] == ["happy", "sad"]
    files = sorted((tiny_two_class / "happy").iterdir())[:2] + sorted((tiny_two_class / "sad").iterdir())[:2]
    rows = predict(bundle, files + [tmp_path / "missing.png"], progress=False)
    assert list(rows["label"][:4]) == ["happy", "happy", "sad", "sad"]
    assert rows["error"][4] and abs(rows["p_happy"][0] + rows["p_sad"][0] - 1) < 1e-4
    p = run_cli("predict", "--model", path, *files)
    assert p.returncode == 0, p.stderr[-2000:]
    assert p.stdout.splitlines()[0] == "source,frame,time_s,face,x,y,w,h,score,label,p_happy,p_sad,error"
    assert [line.split(",")[9] for line in p.stdout.splitlines()[1:]] == ["happy", "happy", "sad", "sad"]


def test_same_seed_same_model(tiny_two_class, small_network):
    """Seeded shuffling, augmentation and initialisation: two runs give the same predictions."""
    from fer_features.features.augment import AugmentConfig

    cfg = F.FinetuneConfig(mode="top", **{**TINY, "epochs": 2, "augment": AugmentConfig()})
    ds, images = F.load_images(tiny_two_class, cfg, progress=False)
    y = np.array([ds.label_names.index(r.label) for r in ds.records])
    p = [F.predict_proba(F.train(cfg, images, y, 2, log=lambda m: None)[0], images) for _ in range(2)]
    assert np.array_equal(p[0], p[1])


def test_subject_pattern_reaches_finetune(tiny_two_class):
    """finetune --subject-pattern: the user's own data gets subject ids, so protocol auto groups by subject."""
    ds, _ = F.load_images(tiny_two_class, F.FinetuneConfig(**TINY), progress=False,
                          subject_pattern=r"^img(?P<subject>\d)")
    assert ds.subjects == [str(i) for i in range(10)]  # img0..img11: the first digit
    from fer_features.cli import build_parser

    a = build_parser().parse_args(["finetune", "--data", str(tiny_two_class), "--subject-pattern", "^img(\\d)"])
    assert a.subject_pattern == "^img(\\d)"
