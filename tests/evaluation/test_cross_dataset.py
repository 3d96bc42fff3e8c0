"""Cross-dataset evaluation: train on all of cache A, test on all of cache B (--test-cache)."""
from __future__ import annotations

import json

import numpy as np
import pytest

from fer_features import evaluation as ev
from fer_features.features.cache import load_cache
from fer_features.cli import main
from fer_features.reporting.tables import protocol_header
from helpers import write_cache

SETTINGS = {"backbone": "hog", "weights": "none", "image_size": 64, "pooling": "avg", "layer": None,
            "input_preprocessing": "none", "preprocess": "none", "face_crop": "haar", "face_margin": 0.0,
            "align": False, "flip_average": True}
DIM = 16
CENTRES = {name: np.random.default_rng(7 + i).normal(size=DIM) * 3
           for i, name in enumerate(("angry", "contempt", "happy", "neutral", "sad"))}


def make_cache(path, classes, per=6, n_subjects=4, subjects=True, shift=0.0, seed=0, dataset="folder",
               **settings):
    """A cache whose rows of class c lie around CENTRES[c] (the same centre in every cache), ``shift`` added
    to every row; label indices follow the cache's own sorted label names, as extract writes them."""
    rng = np.random.default_rng(seed)
    names = sorted(classes)
    X, y, g = [], [], []
    for s in range(n_subjects):
        for c in classes:
            for _ in range(per):
                X.append(CENTRES[c] + shift + rng.normal(size=DIM) * 0.5)
                y.append(names.index(c))
                g.append(f"S{s}" if subjects else "")
    st = {**SETTINGS, **settings, "dataset_format": dataset}
    return load_cache(write_cache(path, np.array(X), y, g, labels=names, settings=st, key="k" + str(seed),
                                  attrs={"dataset_root": str(path.parent / path.stem)}))


@pytest.fixture
def pair(tmp_path):
    a = make_cache(tmp_path / "dsa.h5", ["angry", "contempt", "happy", "sad"], seed=1)
    b = make_cache(tmp_path / "dsb.h5", ["angry", "happy", "neutral", "sad"], per=3, n_subjects=3, seed=2)
    return a, b


def test_labels_aligned_by_name_and_one_sided_classes_dropped(pair):
    a, b = pair  # 'happy' is index 2 in A and 1 in B: aligned by name, not by index
    results, notes = ev.run(a, ["linear_svm"], test_cache=b, progress=False)
    r = results[0]
    assert r["protocol"] == "cross-dataset" and r["n_folds"] == 1
    assert r["labels"] == ["angry", "happy", "sad"]
    assert r["dropped_classes"] == {"contempt": {"train": 24, "test": 0}, "neutral": {"train": 0, "test": 9}}
    assert r["n_train"] == 72 and r["n_test"] == 27 and np.sum(r["confusion_matrix"]) == 27
    assert r["accuracy"] > 0.9  # same centres by name: only right if labels were aligned by name
    line = [n for n in notes if "contempt" in n]
    assert len(line) == 1 and "neutral" in line[0] and "24" in line[0] and "9" in line[0]
    assert line[0] in r["warnings"]


def test_result_names_both_datasets_and_header_says_so(pair):
    a, b = pair
    r = ev.run(a, ["lda"], "cross-dataset", test_cache=b, progress=False)[0][0]
    assert r["train_dataset"] == "dsa" and r["test_dataset"] == "dsb"
    assert r["train_cache"] == str(a.path) and r["test_cache"] == str(b.path)
    assert r["protocol_description"] == "cross-dataset: train on dsa (72 images), test on dsb (27 images)"
    head = protocol_header([r])
    assert "train on dsa (72 images), test on dsb (27 images)" in head
    assert "dsa.h5" in head and "dsb.h5" in head
    # per-image predictions name the TEST cache's rows and paths, with an interval over its subjects or images
    p = r["predictions"]
    kept = [i for i, lab in enumerate(b.labels) if b.label_names[lab] in r["labels"]]
    assert p["row"] == kept and p["path"] == [str(b.paths[i]) for i in kept]
    lo, hi = r["accuracy_ci"]
    assert lo <= r["accuracy"] <= hi


def test_settings_mismatch_names_the_setting(tmp_path):
    a = make_cache(tmp_path / "a.h5", ["angry", "happy"], seed=1)
    b = make_cache(tmp_path / "b.h5", ["angry", "happy"], seed=2, layer="block4c_add")
    with pytest.raises(ev.ProtocolError, match="layer") as e:
        ev.run(a, ["lda"], test_cache=b, progress=False)
    assert "\n" not in str(e.value)
    c = make_cache(tmp_path / "c.h5", ["angry", "happy"], seed=3, flip_average=False)
    with pytest.raises(ev.ProtocolError, match="flip_average"):
        ev.run(a, ["lda"], test_cache=c, progress=False)
    # dataset-specific settings (the format) may differ
    d = make_cache(tmp_path / "d.h5", ["angry", "happy"], seed=4, dataset="jaffe")
    assert ev.run(a, ["lda"], test_cache=d, progress=False)[0][0]["n_test"] == 48


def test_no_common_class_is_an_error(tmp_path):
    a = make_cache(tmp_path / "a.h5", ["angry", "happy"], seed=1)
    b = make_cache(tmp_path / "b.h5", ["neutral", "sad"], seed=2)
    with pytest.raises(ev.ProtocolError, match="no class in common"):
        ev.run(a, ["lda"], test_cache=b, progress=False)


def test_protocols_with_and_without_test_cache(pair, tmp_path):
    a, b = pair
    with pytest.raises(ev.ProtocolError, match="--test-cache"):
        ev.run(a, ["lda"], "loso", test_cache=b, progress=False)
    with pytest.raises(ev.ProtocolError, match="test cache"):
        ev.run(a, ["lda"], "cross-dataset", progress=False)
    assert "cross-dataset" in ev.PROTOCOLS


def test_subject_norm_centres_each_dataset_by_its_own_subjects(tmp_path):
    a = make_cache(tmp_path / "a.h5", ["angry", "happy", "sad"], seed=1)
    b = make_cache(tmp_path / "b.h5", ["angry", "happy", "sad"], seed=2, shift=6.0)  # a dataset-wide shift
    raw = ev.run(a, ["linear_svm"], test_cache=b, progress=False)[0][0]
    cen = ev.run(a, ["linear_svm"], test_cache=b, subject_norm="center", progress=False)[0][0]
    assert cen["subject_norm"] == "center" and cen["accuracy"] > 0.95 > raw["accuracy"]
    nosub = make_cache(tmp_path / "n.h5", ["angry", "happy", "sad"], seed=3, subjects=False)
    with pytest.raises(ev.ProtocolError, match="subject ids.*n.h5"):
        ev.run(a, ["lda"], test_cache=nosub, subject_norm="center", progress=False)
    assert ev.run(a, ["lda"], test_cache=nosub, progress=False)[0][0]["n_test"] == 72  # fine without norm


def test_cli_test_cache_exit_codes(pair, tmp_path, capsys):
    a, b = pair
    assert main(["classify", "--cache", str(a.path), "--test-cache", str(b.path), "--clf", "lda", "--json",
                 "--no-progress"]) == 0
    out = capsys.readouterr().out
    r = json.loads(out.strip().splitlines()[-1])
    assert r["protocol"] == "cross-dataset" and r["test_dataset"] == "dsb" and "dropped_classes" in r
    assert "train on dsa (72 images), test on dsb (27 images)" in out and "contempt" in out
    rep = tmp_path / "rep"
    assert main(["compare", "--cache", str(a.path), "--test-cache", str(b.path), "--clf", "lda,linear_svm",
                 "--no-progress", "--report-dir", str(rep)]) == 0
    assert len(json.loads((rep / "results.json").read_text())) == 2
    capsys.readouterr()
    c = make_cache(tmp_path / "c.h5", ["neutral"], seed=5)
    bad = make_cache(tmp_path / "bad.h5", ["angry", "happy"], seed=6, image_size=96)
    for args, word in [(["--test-cache", str(bad.path)], "image_size"),
                       (["--test-cache", str(c.path), "--report-dir", str(tmp_path / "none")], "no class in common"),
                       (["--test-cache", str(b.path), "--protocol", "loso"], "--test-cache"),
                       (["--test-cache", str(b.path), "--save", str(tmp_path / "m.skops")], "--save"),
                       (["--protocol", "cross-dataset"], "test cache")]:
        assert main(["classify", "--cache", str(a.path), "--clf", "lda", "--no-progress", *args]) == 2, args
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and word in err[0], (args, err)
    assert not (tmp_path / "none").exists() and not (tmp_path / "m.skops").exists()
