"""finetune: per-epoch checkpoints and resumption, finished folds kept, and FER2013's PublicTest as validation."""
from __future__ import annotations

import json
import re
import zipfile

import numpy as np
import pytest

from fer_features import finetune as F
from fer_features.finetune import training as T  # the module whose functions the tests replace
from helpers import make_folder_dataset

TINY = dict(image_size=32, batch_size=8, augment=None, dropout=0.0, lr=1e-2, fine_lr=1e-4, face_crop="none",
            patience=10)


@pytest.fixture(autouse=True)
def _small(small_network):
    """Every test here trains the small network (conftest.small_network)."""


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_folder_dataset(tmp_path_factory.mktemp("ftr") / "data", per_class=12, size=32)


@pytest.fixture(scope="module")
def images(data):
    ds, x = F.load_images(data, F.FinetuneConfig(**TINY), progress=False)
    return x, np.array([ds.label_names.index(r.label) for r in ds.records])


def test_more_epochs_resume_after_the_last_one(images, tmp_path):
    """2 epochs, then the same training asked for 4: it resumes at epoch 3 with the optimizer's state, and
    its history has all 4 epochs; asked again, nothing is trained."""
    x, y = images
    ck = tmp_path / "ck"
    logs: list[str] = []
    cfg2 = F.FinetuneConfig(mode="head", epochs=2, val_fraction=0.25, **TINY)
    _, h2 = F.train(cfg2, x, y, 2, log=logs.append, checkpoint=ck, checkpoint_key="k")
    state = json.loads((ck / "state.json").read_text())
    assert state["phases"][0]["epochs_done"] == 2 and len(h2["phases"][0]["loss"]) == 2
    assert (ck / state["phases"][0]["model_file"]).is_file() and (ck / state["phases"][0]["end_file"]).is_file()

    logs.clear()
    cfg4 = F.FinetuneConfig(mode="head", epochs=4, val_fraction=0.25, **TINY)
    m4, h4 = F.train(cfg4, x, y, 2, log=logs.append, checkpoint=ck, checkpoint_key="k")
    assert any("resuming at epoch 3 of 4" in m for m in logs)
    assert not any("epoch 1:" in m or "epoch 2:" in m for m in logs)  # epochs 1-2 not trained again
    assert any("head epoch 3:" in m for m in logs) and any("head epoch 4:" in m for m in logs)
    p = h4["phases"][0]
    assert p["epochs_run"] == 4 and len(p["loss"]) == len(p["val_accuracy"]) == len(p["seconds"]) == 4
    assert p["loss"][:2] == h2["phases"][0]["loss"]  # the first run's epochs, kept
    import keras

    from fer_features.backbones.layers import custom_objects

    steps = int(np.ceil(int(0.75 * len(y)) / 8))
    last = json.loads((ck / "state.json").read_text())["phases"][0]["model_file"]
    saved = keras.models.load_model(ck / last, custom_objects=custom_objects())
    assert int(saved.optimizer.iterations.numpy()) == 4 * steps  # Adam's step count carried over, not restarted
    assert h4["earlier_seconds"] > 0
    assert p["val_accuracy"][p["best_epoch"] - 1] == max(p["val_accuracy"])  # model choice: the best epoch

    logs.clear()
    m5, h5 = F.train(cfg4, x, y, 2, log=logs.append, checkpoint=ck, checkpoint_key="k")
    assert any("done in an earlier run" in m for m in logs) and not any(re.search(r"epoch \d+:", m) for m in logs)
    np.testing.assert_allclose(F.predict_proba(m5, x), F.predict_proba(m4, x), atol=1e-6)
    with pytest.raises(ValueError, match="another training"):
        F.train(cfg4, x, y, 2, log=logs.append, checkpoint=ck, checkpoint_key="other")


def test_an_interrupted_phase_resumes_and_the_next_phase_follows(images, tmp_path, monkeypatch):
    """Killed during epoch 2 of the fine phase (after the head phase): the re-run keeps the head phase, resumes
    the top phase at epoch 2 and ends with every epoch in the history."""
    x, y = images
    ck = tmp_path / "ck"
    cfg = F.FinetuneConfig(mode="top", epochs=2, val_fraction=0.25, **TINY)
    real = T._epoch_logger

    def dying(phase, log):
        cb = real(phase, log)
        end = cb.on_epoch_end

        def on_epoch_end(epoch, logs=None):
            if phase == "top" and epoch == 1:
                raise KeyboardInterrupt  # before that epoch's checkpoint (the logger runs first)
            end(epoch, logs)

        cb.on_epoch_end = on_epoch_end
        return cb

    monkeypatch.setattr(T, "_epoch_logger", dying)
    with pytest.raises(KeyboardInterrupt):
        F.train(cfg, x, y, 2, log=lambda m: None, checkpoint=ck, checkpoint_key="k")
    state = json.loads((ck / "state.json").read_text())
    assert [(r["phase"], r["epochs_done"], r["finished"]) for r in state["phases"]] == [("head", 2, True),
                                                                                       ("top", 1, False)]
    monkeypatch.setattr(T, "_epoch_logger", real)
    logs: list[str] = []
    _, h = F.train(cfg, x, y, 2, log=logs.append, checkpoint=ck, checkpoint_key="k")
    assert any("head phase: done in an earlier run" in m for m in logs)
    assert any("top phase: resuming at epoch 2 of 2" in m for m in logs)
    assert [(p["phase"], p["epochs_run"], len(p["loss"])) for p in h["phases"]] == [("head", 2, 2), ("top", 2, 2)]
    assert sorted(f.name for f in ck.iterdir() if f.suffix in (".keras", ".h5")) == sorted(
        {r[k] for r in json.loads((ck / "state.json").read_text())["phases"]
         for k in ("model_file", "best_file", "end_file") if r.get(k)})  # superseded epochs deleted


def test_head_epochs_sets_the_head_phase_only_and_a_resumed_run_extends_the_fine_phase(images, tmp_path):
    """--head-epochs 1 --epochs 3 (full): one head epoch, then three fine ones; the same run asked for 4 fine
    epochs keeps its head phase and trains one more fine epoch (head_epochs is not part of the checkpoint key)."""
    x, y = images
    ck = tmp_path / "ck"
    cfg = F.FinetuneConfig(mode="full", epochs=3, head_epochs=1, val_fraction=0.25, **TINY)
    _, h = F.train(cfg, x, y, 2, log=lambda m: None, checkpoint=ck, checkpoint_key="k")
    assert [(p["phase"], p["epochs_run"]) for p in h["phases"]] == [("head", 1), ("full", 3)]
    logs: list[str] = []
    more = F.FinetuneConfig(mode="full", epochs=4, head_epochs=1, val_fraction=0.25, **TINY)
    _, h = F.train(more, x, y, 2, log=logs.append, checkpoint=ck, checkpoint_key="k")
    assert any("head phase: done in an earlier run (1 epochs)" in m for m in logs)
    assert any("full phase: resuming at epoch 4 of 4" in m for m in logs)
    assert [(p["phase"], p["epochs_run"]) for p in h["phases"]] == [("head", 1), ("full", 4)]
    assert F.checkpoint_key(cfg, "d") == F.checkpoint_key(more, "d")
    assert F.checkpoint_key(cfg, "d") != F.checkpoint_key(F.FinetuneConfig(mode="top", epochs=3, **TINY), "d")
    with pytest.raises(ValueError, match="epochs"):
        F.FinetuneConfig(mode="full", head_epochs=0, **TINY)


def test_finished_folds_are_not_redone(data, tmp_path):
    cfg = F.FinetuneConfig(mode="head", epochs=1, val_fraction=0.0, **TINY)
    r1 = F.run(data, cfg, "kfold", folds=2, progress=False, log=lambda m: None, checkpoint_dir=tmp_path)
    logs: list[str] = []
    r2 = F.run(data, cfg, "kfold", folds=2, progress=False, log=logs.append, checkpoint_dir=tmp_path)
    assert sum("done in an earlier run" in m for m in logs) == 2
    assert r2["predictions"] == r1["predictions"] and r2["fit_seconds"] == r1["fit_seconds"]
    run_dirs = [d for d in tmp_path.iterdir() if d.is_dir()]
    assert len(run_dirs) == 1 and run_dirs[0].name.startswith("finetune_efficientnet_lite0_head-run-")
    assert json.loads((run_dirs[0] / "run.json").read_text())["protocol"] == "kfold"


def _fer_csv(path, n_train=16, n_public=8, n_private=8, seed=0):
    """A FER2013-format CSV (emotion,pixels,Usage) of 48x48 faces: happy (3) bright, sad (4) dark."""
    rng = np.random.default_rng(seed)
    lines = ["emotion,pixels,Usage"]
    for usage, n in (("Training", n_train), ("PublicTest", n_public), ("PrivateTest", n_private)):
        for i in range(n):
            label = 3 if i % 2 == 0 else 4
            px = np.clip(rng.normal(170 if label == 3 else 80, 30, 48 * 48), 0, 255).astype(int)
            lines.append(f"{label},{' '.join(map(str, px))},{usage}")
    path.write_text("\n".join(lines) + "\n")
    return path


def test_official_protocol_validates_on_publictest_and_never_trains_on_it(tmp_path, monkeypatch):
    csv = _fer_csv(tmp_path / "fer2013.csv")
    seen = []
    real = F.train

    def spy(cfg, images, y, n_classes, groups=None, log=None, **kw):
        seen.append((len(y), None if kw.get("validation") is None else len(kw["validation"][1])))
        return real(cfg, images, y, n_classes, groups, log, **kw)

    monkeypatch.setattr(T, "train", spy)
    cfg = F.FinetuneConfig(mode="head", epochs=2, val_fraction=0.15, **{**TINY, "image_size": 32})
    tested = tmp_path / "tested.keras"
    r = F.run(csv, cfg, "official", progress=False, log=lambda m: None, save_model=tested)
    assert seen == [(16, 8)]  # trained on Training only; PublicTest is the validation set, not 15 % of Training
    assert r["n_test"] == 8 and r["test_split"] == "PrivateTest" and r["train_splits"] == ["Training"]
    assert r["validation_split"] == ["PublicTest"] and r["n_validation"] == 8
    assert "validation PublicTest (8 images)" in r["protocol_description"]
    assert r["training_history"][0]["n_train"] == 16 and r["training_history"][0]["n_val"] == 8
    meta = json.loads(zipfile.ZipFile(tested).read(F.KERAS_META))  # the tested model, kept for reuse
    assert meta["n_train"] == 16 and meta["n_validation"] == 8 and r["saved_model"] == str(tested)
    with pytest.raises(ValueError, match="one split"):
        F.run(csv, cfg, "kfold", folds=2, progress=False, log=lambda m: None, save_model=tested)

    seen.clear()
    path = F.save(tmp_path / "m.keras", csv, cfg, progress=False, log=lambda m: None)
    assert seen == [(16, 8)]
    meta = json.loads(zipfile.ZipFile(path).read(F.KERAS_META))
    assert meta["n_train"] == 16 and meta["validation_split"] == ["PublicTest"] and meta["dataset"] == "fer2013"


def test_cli_passes_the_checkpoint_dir_and_head_epochs(monkeypatch):
    from fer_features import cli

    seen = {}
    monkeypatch.setattr(T, "save", lambda path, data, cfg, **kw: seen.update(cfg=cfg, **kw) or path)
    assert cli.main(["finetune", "--data", "x", "--mode", "full", "--epochs", "5", "--head-epochs", "2",
                     "--checkpoint-dir", "ck", "--save", "m.keras"]) == 0
    assert seen["checkpoint_dir"] == "ck" and (seen["cfg"].epochs, seen["cfg"].head_epochs) == (5, 2)
