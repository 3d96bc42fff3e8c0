"""What a result says about itself: the pooled headline accuracy, every feature setting, the protocol and
features of each row of a mixed table (LEAKY on the row), and progress while classifiers fit."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from fer_features import evaluation as ev
from fer_features.reporting import tables as R
from helpers import SETTINGS, cache_with, run_cli


# -- item 9: which accuracy ---------------------------------------------------------------------------------
def test_headline_accuracy_is_pooled_over_folds_and_labelled():
    y = np.array([0, 1] * 5)
    splits = [(np.arange(2, 10), np.arange(0, 2)), (np.arange(0, 2), np.arange(2, 10))]
    preds = [y[:2].copy(), np.where(np.arange(8) < 4, y[2:], 1 - y[2:])]  # 2/2 right, then 4/8 right
    info = {"protocol": "kfold", "description": "d", "subject_independent": False}
    r = ev.score_folds("lda", ["a", "b"], y, splits, preds, [1.0, 2.0], [0.1, 0.2], 3.0, info)
    assert r["accuracy"] == r["accuracy_pooled"] == pytest.approx(0.6)  # 6 of 10 test images
    assert r["accuracy_fold_mean"] == pytest.approx(0.75) and r["fold_accuracies"] == [1.0, 0.5]
    assert r["accuracy_std"] == pytest.approx(0.25) and "pooled" in r["accuracy_definition"]
    head, _, row, note = R.text_table([r]).splitlines()  # the note: the 95 % interval's method
    assert "accuracy % (pooled)" in head and "fit s (total)" in head and "predict s (total)" in head
    assert "60.0" in row and "25.0" in row
    one = ev.score_folds("lda", ["a", "b"], y, splits[1:], preds[1:], [1.0], [0.1], 1.0, info)
    cells = R.text_table([one]).splitlines()[2].split()
    assert cells[cells.index("50.0") + 3] == "-"  # no fold std with one split (was "0.0"); after "[lo, hi]"
    assert "pooled" in R.protocol_header([r])


def test_old_included_results_get_the_pooled_headline(tmp_path):
    old = {"classifier": "lda", "protocol": "loso", "accuracy": 0.75, "accuracy_pooled": 0.6, "accuracy_std": 0.25,
           "labels": ["a"], "confusion_matrix": [[1]], "fit_seconds": 1.0, "predict_seconds": 0.1, "n_folds": 2,
           "n_test": 10}
    (tmp_path / "old.json").write_text(json.dumps([old]))
    r, = R.load_results(tmp_path / "old.json")
    assert r["accuracy"] == 0.6 and r["accuracy_fold_mean"] == 0.75 and "pooled" in r["accuracy_definition"]


# -- item 8: every feature setting in the result -----------------------------------------------------------
def test_cache_summary_names_every_setting_that_changes_features(tmp_path):
    f = ev.cache_summary(cache_with(tmp_path / "a.h5", SETTINGS))["features"]
    assert f["face_margin"] == 0.0 and f["align"] is False and f["face_crop"] == "haar"
    assert f["precision"] == "float32"  # older caches (and float32 ones) do not store it
    assert {"image_size", "pooling", "layer", "preprocess", "flip_average", "weights"} <= set(f)
    f = ev.cache_summary(cache_with(tmp_path / "b.h5", {**SETTINGS, "precision": "bfloat16", "face_margin": 0.2}))
    assert f["features"]["precision"] == "bfloat16" and f["features"]["face_margin"] == 0.2
    r = R.protocol_header([{"protocol": "loso", "protocol_description": "x", "cache": "c.h5", "backbone": "test",
                            **f, "n_folds": 2, "n_test": 3}])
    assert '"face_margin": 0.2' in r and '"precision": "bfloat16"' in r


# -- item 7: every row carries its own protocol and features -----------------------------------------------
def mixed_results(tmp_path):
    honest, _ = ev.run(cache_with(tmp_path / "a.h5", SETTINGS), ["linear_svm"], "loso", progress=False)
    leaky = {**honest[0], "protocol": ev.LEAKY_PROTOCOL, "leaky": True, "subject_independent": False,
             "protocol_description": "LEAKY augment-then-split: every image augmented", "n_folds": 1,
             "features": {**honest[0]["features"], "image_size": 96}}
    ft = {k: v for k, v in honest[0].items() if k not in ("features", "cache", "warnings")}
    ft.update(classifier="finetune_x_top", source="finetune", cache="", engine="keras",
              protocol="group-kfold", protocol_description="subject-grouped 5-fold: subject-independent",
              features={"fine_tuned": True, "mode": "top", "image_size": 64})
    return [honest[0], leaky, ft]


def test_mixed_setups_are_marked_in_every_output(tmp_path, monkeypatch):
    import matplotlib.figure

    results = mixed_results(tmp_path)
    head = R.protocol_header(results)
    blocks = head.split("\n[")
    assert head.startswith("[A]") and len(blocks) == 3 and "[B]" in head and "[C]" in head
    assert "leave-one-subject-out" in blocks[0] and "LEAKY" not in blocks[0]
    assert "LEAKY" in blocks[1] and '"image_size": 96' in blocks[1] and "fine_tuned" in blocks[2]
    for table in (R.text_table(results), R.markdown_table(results)):
        rows = [line for line in table.splitlines() if "linear_svm" in line or "finetune" in line]
        assert "setup" in table.splitlines()[0] and "protocol" in table.splitlines()[0]
        assert "A" in rows[0] and "loso" in rows[0] and "LEAKY" not in rows[0]
        assert "B" in rows[1] and "LEAKY" in rows[1] and ev.LEAKY_PROTOCOL in rows[1]
        assert "C" in rows[2] and "group-kfold" in rows[2]
    texts: dict[str, list[str]] = {}
    save = matplotlib.figure.Figure.savefig

    def spy(fig, path, *a, **k):
        texts[Path(path).name] = [t.get_text() for t in fig.findobj(matplotlib.text.Text)]
        return save(fig, path, *a, **k)

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", spy)
    md = R.write_report(results, tmp_path / "rep")
    assert len([n for n in texts if n.startswith("confusion_")]) == 3  # same classifier, two setups: two files
    leaky_png = next(t for n, t in texts.items() if n.startswith("confusion_") and any("[B]" in x for x in t))
    assert any("LEAKY" in x for x in leaky_png)
    bars = " ".join(texts["accuracy_time.png"])
    assert "[B] linear_svm LEAKY" in bars and "[A] linear_svm" in bars and "pooled" in bars
    assert "[A]" in md.read_text() and "[C]" in md.read_text()
    with open(tmp_path / "rep" / "results.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["setup"] for r in rows] == ["A", "B", "C"] and rows[1]["leaky"] == "True"
    assert rows[1]["protocol_description"].startswith("LEAKY") and json.loads(rows[1]["features"])["image_size"] == 96


def test_one_setup_keeps_the_plain_table(tmp_path):
    results, _ = ev.run(cache_with(tmp_path / "a.h5", SETTINGS), ["linear_svm", "lda"], "loso", progress=False)
    table = R.text_table(results)
    assert "setup" not in table and "[A]" not in R.protocol_header(results) and "LEAKY" not in table


def test_compare_include_marks_rows_and_refuses_bad_files(tmp_path):
    results = mixed_results(tmp_path)
    (tmp_path / "ft.json").write_text(json.dumps(results[1:]))
    c = tmp_path / "a.h5"
    p = run_cli("compare", "--cache", c, "--clf", "linear_svm", "--protocol", "loso", "--no-progress",
                "--include", tmp_path / "ft.json")
    assert p.returncode == 0, p.stderr[-2000:]
    row = next(line for line in p.stdout.splitlines() if "LEAKY" in line and "linear_svm" in line)
    assert row.split()[0] == "B"
    assert "[C]" in p.stdout and "(fine-tuned)" in p.stdout and "fold/s" not in p.stderr
    (tmp_path / "bad.json").write_text("{not json")
    (tmp_path / "keys.json").write_text(json.dumps({"classifier": "x"}))
    for bad in ("bad.json", "keys.json"):
        p = run_cli("compare", "--cache", c, "--clf", "lda", "--protocol", "loso", "--include", tmp_path / bad)
        err = [line for line in p.stderr.strip().splitlines() if "error" in line]
        assert p.returncode == 2 and len(err) == 1 and bad in err[0], p.stderr[-2000:]


# -- item 13: progress while classifiers fit ---------------------------------------------------------------
def test_progress_bar_over_classifiers_and_folds(tmp_path, capsys):
    cache = cache_with(tmp_path / "a.h5", SETTINGS)
    quiet, _ = ev.run(cache, ["linear_svm", "lda"], "group-kfold", folds=3, n_jobs=1, progress=False)
    assert capsys.readouterr().err == ""
    loud, _ = ev.run(cache, ["linear_svm", "lda"], "group-kfold", folds=3, n_jobs=2, progress=True)
    err = capsys.readouterr().err
    assert "6/6" in err and "fold" in err
    assert [r["fold_accuracies"] for r in loud] == [r["fold_accuracies"] for r in quiet]  # fold order kept
    ev.run(cache, ["linear_svm", "lda"], "holdout", test_size=0.25, progress=True)
    err = capsys.readouterr().err
    assert "fitting linear_svm" in err and "27 training rows" in err and "2/2" in err


def test_classify_shows_progress_unless_told_not_to(tmp_path):
    c = cache_with(tmp_path / "a.h5", SETTINGS).path
    p = run_cli("classify", "--cache", c, "--clf", "lda", "--protocol", "group-kfold", "--folds", "3")
    assert p.returncode == 0 and "3/3" in p.stderr, p.stderr[-2000:]
    p = run_cli("classify", "--cache", c, "--clf", "lda", "--protocol", "group-kfold", "--folds", "3", "--no-progress")
    assert p.returncode == 0 and "3/3" not in p.stderr, p.stderr[-2000:]


# -- issue 28: every protocol option in every output ---------------------------------------------------------
def option_results(tmp_path):
    """Results that differ in one protocol option each: subject-norm, PCA, augmentation, holdout test size,
    the official test split, the cross-dataset pairing."""
    a, b = cache_with(tmp_path / "a.h5", SETTINGS), cache_with(tmp_path / "b.h5", SETTINGS, n_subjects=4)
    run = lambda **kw: ev.run(a, ["lda"], kw.pop("protocol", "loso"), progress=False, **kw)[0][0]  # noqa: E731
    plain, norm, pca = run(), run(subject_norm="center"), run(pca=0.9)
    holdout, cross = run(protocol="holdout", test_size=0.25), run(protocol="auto", test_cache=b)
    aug = {**plain, "augmentation": {"augmentation": {"rotation": 10, "seed": 0}, "copies": 3, "balance": "max",
                                     "applied_to": "training images of each fold", "augmented_train_rows": 40}}
    official = {**plain, "protocol": "official", "test_split": "PrivateTest", "train_splits": ["Training"],
                "protocol_description": "official split: train ['Training'] / test PrivateTest", "n_folds": 1}
    return [plain, norm, pca, aug, holdout, official, cross]


OPTION_TEXTS = ["subject-norm none", "subject-norm center", "PCA 0.9", "augmentation 3 copies, balance max",
                "test size 0.25", "test split PrivateTest", "cross-dataset a.h5 -> b.h5"]


def test_every_protocol_option_is_in_the_csv_the_tables_and_the_plot_titles(tmp_path, monkeypatch):
    import matplotlib.figure

    results = option_results(tmp_path)
    assert len(set(R.setup_letters(results))) == len(results)  # every option makes a setup of its own
    head = R.protocol_header(results)
    for text in OPTION_TEXTS:
        assert text in head, text
    assert all(("setup" in t.splitlines()[0]) for t in (R.text_table(results), R.markdown_table(results)))
    titles: dict[str, str] = {}
    save = matplotlib.figure.Figure.savefig

    def spy(fig, path, *a, **k):
        titles[Path(path).name] = "\n".join(t.get_text() for t in fig.findobj(matplotlib.text.Text))
        return save(fig, path, *a, **k)

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", spy)
    md = R.write_report(results, tmp_path / "rep")
    confusions = [t for n, t in sorted(titles.items()) if n.startswith("confusion_")]
    for text in OPTION_TEXTS:
        assert text in md.read_text() and text in titles["accuracy_time.png"], text
        assert sum(text in t for t in confusions) == (6 if text == "subject-norm none" else 1), text
    with open(tmp_path / "rep" / "results.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["subject_norm"] for r in rows] == ["none", "center", "none", "none", "none", "none", "none"]
    assert [r["pca"] for r in rows] == ["none", "none", "0.9", "none", "none", "none", "none"]
    assert rows[3]["augment_copies"] == "3" and rows[3]["augment_balance"] == "max"
    assert rows[0]["augment_copies"] == "0" and rows[0]["augment_balance"] == "none"
    assert rows[4]["test_size"] == "0.25" and rows[5]["test_split"] == "PrivateTest"
    assert (rows[6]["train_dataset"], rows[6]["test_dataset"]) == ("a.h5", "b.h5") and rows[0]["test_dataset"] == ""
