"""Evaluation protocols (no subject leaks), the result's keys, subject normalisation, and classify / compare /
predict through the command line (JAFFE end to end)."""
from __future__ import annotations

import json

import numpy as np
import pytest

from fer_features import evaluation as ev
from fer_features.features.cache import load_cache
from helpers import LABELS, blobs, run_cli, write_cache


def test_subject_independent_protocols_never_share_a_subject():
    X, y, g = blobs(n_subjects=12)
    for proto in ("group-kfold", "loso"):
        splits, info = ev.make_splits(proto, y, g, folds=5)
        assert info["subject_independent"]
        tested = np.concatenate([te for _, te in splits])
        assert sorted(tested) == list(range(len(y)))  # every image tested exactly once
        for tr, te in splits:
            assert not set(g[tr]) & set(g[te])
    splits, _ = ev.make_splits("loso", y, g)
    assert len(splits) == 12 and all(len(set(g[te])) == 1 for _, te in splits)
    _, info = ev.make_splits("kfold", y, g, folds=3)
    assert info["subjects_in_train_and_test"] > 0  # the leak is measured and reported
    with pytest.raises(ev.ProtocolError):
        ev.make_splits("loso", y, None)


def test_official_split_and_default_protocol():
    y = np.array([0, 1, 2] * 10)
    split = np.array(["Training"] * 18 + ["PublicTest"] * 6 + ["PrivateTest"] * 6, dtype=object)
    (tr, te), = ev.make_splits("official", y, None, split)[0]
    assert set(split[tr]) == {"Training"} and set(split[te]) == {"PrivateTest"}
    (tr, te), = ev.make_splits("official", y, None, split, test_split="PublicTest")[0]
    assert set(split[te]) == {"PublicTest"}
    assert ev.default_protocol(True, True) == "group-kfold"
    assert ev.default_protocol(False, True) == "official"
    assert ev.default_protocol(False, False) == "kfold"


def test_evaluate_result_and_duplicates(tmp_path):
    X, y, g = blobs()
    X[1] = X[0]  # an exact duplicate image: reported, not hidden
    cache = load_cache(write_cache(tmp_path / "c.h5", X, y, g))
    results, notes = ev.run(cache, ["linear_svm", "fine_knn"], "kfold", folds=3)
    r = results[0]
    for key in ("protocol", "classifier", "accuracy", "accuracy_std", "macro_f1", "per_class_accuracy", "labels",
                "confusion_matrix", "fit_seconds", "predict_seconds", "n_train", "n_test", "n_folds", "engine"):
        assert key in r
    assert np.sum(r["confusion_matrix"]) == len(y) == r["n_test"]
    assert r["duplicate_rows"] == 1
    assert any("kfold splits by image" in n for n in notes)  # random protocol on subject data: warned
    assert results[1]["classifier"] == "fine_knn"



def test_cli_classify_json_compare_report_and_predict(tmp_path, jaffe_dir):
    """On JAFFE: LOSO classify with JSON, compare with a report folder, save + predict on real images."""
    from fer_features.features.extract import extract_dataset

    cache = extract_dataset(jaffe_dir, cache_dir=tmp_path / "cache", image_size=96, progress=False)
    p = run_cli("classify", "--cache", cache, "--clf", "cubic_svm", "--protocol", "loso", "--json",
                "--save", tmp_path / "m.skops")
    assert p.returncode == 0, p.stderr[-3000:]
    r = json.loads(p.stdout.strip().splitlines()[-1])
    assert r["protocol"] == "loso" and r["n_folds"] == 10 and r["subject_independent"]
    assert np.sum(r["confusion_matrix"]) == 213 and r["n_test"] == 213
    assert 0.14 < r["accuracy"] <= 1.0  # above chance (1/7) even with naive whole-image features
    rep = tmp_path / "rep"
    p = run_cli("compare", "--cache", cache, "--clf", "linear_svm,medium_knn,lda", "--protocol", "group-kfold",
                "--folds", "5", "--report-dir", rep)
    assert p.returncode == 0, p.stderr[-3000:]
    for name in ("linear_svm", "medium_knn", "lda"):
        assert any(line.startswith(name) for line in p.stdout.splitlines())
        assert (rep / f"confusion_{name}.png").stat().st_size > 1000
    assert (rep / "report.md").read_text().count("|") > 10 and (rep / "results.csv").exists()
    assert len(json.loads((rep / "results.json").read_text())) == 3
    imgs = sorted(jaffe_dir.glob("*.tiff"))[:3]
    bad = tmp_path / "broken.png"
    bad.write_text("no image")
    p = run_cli("predict", "--model", tmp_path / "m.skops", *imgs, bad, "--json")
    assert p.returncode == 0, p.stderr[-3000:]
    rows = [json.loads(line) for line in p.stdout.strip().splitlines()]
    assert len(rows) == 4 and rows[-1]["error"] and "broken.png" in rows[-1]["error"]
    for row in rows[:3]:
        assert row["label"] in r["labels"] and row["face"] == 0 and row["w"] > 50  # one face per JAFFE image
        assert abs(sum(v for k, v in row.items() if k.startswith("p_")) - 1) < 1e-6


def test_cli_errors_exit_2(tmp_path):
    p = run_cli("classify", "--cache", tmp_path / "none.h5")
    assert p.returncode == 2 and "none.h5" in p.stderr
    X, y, g = blobs()
    c = write_cache(tmp_path / "c.h5", X, y, [""] * len(y))
    p = run_cli("classify", "--cache", c, "--protocol", "loso")
    assert p.returncode == 2 and "subject" in p.stderr
    p = run_cli("classify", "--cache", c, "--clf", "nope")
    assert p.returncode == 2 and "unknown classifier" in p.stderr
    (tmp_path / "x.skops").write_text("nope")
    p = run_cli("predict", "--model", tmp_path / "x.skops", tmp_path)
    assert p.returncode == 2


def test_subject_normalisation_removes_identity_and_stays_within_each_part():
    # identity offsets dwarf the expression signal: centring each subject recovers it
    X, y, g = blobs(n_subjects=8, per=6, sep=0.6)
    X = X + np.repeat(np.random.default_rng(5).normal(size=(8, X.shape[1])) * 20, 6, axis=0).astype(np.float32)
    Xc, fb = ev.subject_normalize(X, g, "center")
    for s in np.unique(g):
        np.testing.assert_allclose(Xc[g == s].mean(0), 0, atol=1e-4)
    assert fb == 0 and not np.shares_memory(Xc, X)
    splits, info = ev.make_splits("loso", y, g)
    raw = ev.evaluate(X, y, LABELS, "linear_svm", splits, info, n_jobs=1)
    cen = ev.evaluate(X, y, LABELS, "linear_svm", splits, info, n_jobs=1, subject_norm="center", groups=g)
    assert cen["accuracy"] > raw["accuracy"] + 0.2 and cen["subject_norm"] == "center"
    assert "unlabelled test images" in cen["subject_norm_note"] and raw["subject_norm"] == "none"
    # a fold's training part is normalised with training rows only: a test row changed at will leaves
    # the training features (hence the fitted model) untouched
    tr, te = splits[0]
    X2 = X.copy()
    X2[te] += 1000
    a, _ = ev.subject_normalize(X[tr], g[tr], "center")
    b, _ = ev.subject_normalize(X2[tr], g[tr], "center")
    np.testing.assert_array_equal(a, b)
    # neutral: the subject's neutral rows are the reference; no neutral row -> the subject's mean
    names = ["neutral", "happy", "sad"]
    Xn, fb = ev.subject_normalize(X, g, "neutral", neutral=(y == 0) & (g != "S00"))
    assert fb == 1
    np.testing.assert_allclose(Xn[(g == "S01") & (y == 0)].mean(0), 0, atol=1e-4)
    np.testing.assert_allclose(Xn[g == "S00"].mean(0), 0, atol=1e-4)
    r = ev.evaluate(X, y, names, "lda", splits, info, n_jobs=1, subject_norm="neutral", groups=g)
    assert r["subject_norm"] == "neutral" and r["subject_norm_fallbacks"] == 0
    with pytest.raises(ev.ProtocolError, match="neutral"):
        ev.evaluate(X, y, LABELS, "lda", splits, info, subject_norm="neutral", groups=g)
    with pytest.raises(ev.ProtocolError, match="subject ids"):
        ev.evaluate(X, y, LABELS, "lda", splits, info, subject_norm="center", groups=None)


def test_cli_subject_norm_is_recorded_and_refused_where_it_cannot_apply(tmp_path):
    X, y, g = blobs()
    c = write_cache(tmp_path / "c.h5", X, y, g)
    p = run_cli("classify", "--cache", c, "--clf", "lda", "--protocol", "loso", "--subject-norm", "center", "--json")
    assert p.returncode == 0, p.stderr[-2000:]
    r = json.loads(p.stdout.strip().splitlines()[-1])
    assert r["subject_norm"] == "center" and "identity normalisation" in p.stdout
    p = run_cli("classify", "--cache", c, "--subject-norm", "center", "--save", tmp_path / "m.skops")
    assert p.returncode == 2 and "--save" in p.stderr and not (tmp_path / "m.skops").exists()
    p = run_cli("classify", "--cache", c, "--subject-norm", "neutral")
    assert p.returncode == 2 and "neutral" in p.stderr
    nosub = write_cache(tmp_path / "n.h5", X, y, [""] * len(y))
    p = run_cli("classify", "--cache", nosub, "--protocol", "kfold", "--subject-norm", "center")
    assert p.returncode == 2 and "subject ids" in p.stderr
