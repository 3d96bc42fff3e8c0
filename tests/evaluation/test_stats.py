"""Uncertainty and significance: bootstrap intervals (over subjects where known), paired tests, per-image
predictions in every result, compare's ``vs best`` marks and the ``significance`` command."""
from __future__ import annotations

import csv
import json
import time

import numpy as np
import pytest

from fer_features import evaluation as ev
from fer_features.reporting import tables as R
from fer_features.evaluation import stats as S
from fer_features.cli import main
from helpers import SETTINGS, cache_with


def clustered(n_subjects: int, per: int = 20, seed: int = 0, spread: float = 0.25):
    """Per-image correctness whose rate varies by subject (each subject's own accuracy)."""
    rng = np.random.default_rng(seed)
    rates = np.clip(rng.normal(0.7, spread, n_subjects), 0, 1)
    correct = np.concatenate([rng.random(per) < p for p in rates])
    subjects = np.repeat([f"S{i:02d}" for i in range(n_subjects)], per)
    return correct, subjects


def test_interval_contains_the_accuracy_narrows_with_more_subjects_and_is_seeded():
    c10, s10 = clustered(10)
    c40, s40 = clustered(40)
    lo10, hi10, method = S.accuracy_ci(c10, s10)
    lo40, hi40, _ = S.accuracy_ci(c40, s40)
    assert lo10 <= c10.mean() <= hi10 and lo40 <= c40.mean() <= hi40
    assert hi40 - lo40 < hi10 - lo10
    assert "cluster bootstrap over 10 subjects" in method and "2000 resamples" in method and "95 %" in method
    assert S.accuracy_ci(c10, s10) == (lo10, hi10, method)  # deterministic
    lo, hi, method = S.accuracy_ci(c10)
    assert lo <= c10.mean() <= hi and f"bootstrap over {len(c10)} images" in method


def test_cluster_bootstrap_is_wider_than_image_bootstrap_when_subjects_cluster():
    subjects = np.repeat([f"S{i}" for i in range(12)], 20)
    correct = np.repeat(np.arange(12) % 2 == 0, 20)  # each subject all right or all wrong
    lo_c, hi_c, _ = S.accuracy_ci(correct, subjects)
    lo_i, hi_i, _ = S.accuracy_ci(correct)
    assert hi_c - lo_c > 2 * (hi_i - lo_i)


def test_bootstrap_is_vectorised():
    rng = np.random.default_rng(0)
    a, b = rng.random(3589) < 0.7, rng.random(3589) < 0.65
    for f in (lambda: S.accuracy_ci(a), lambda: S.paired_bootstrap(a, b)):  # 2000 resamples, FER2013's test
        t = time.perf_counter()
        f()
        assert time.perf_counter() - t < 1.0


def test_mcnemar_exact_on_a_hand_made_case():
    a = np.array([True] * 10 + [True] * 15 + [False] * 5)  # 10 discordant, all in favour of a
    b = np.array([False] * 10 + [True] * 15 + [False] * 5)
    assert S.mcnemar_exact(a, b) == pytest.approx(2 * 0.5 ** 10)
    assert S.mcnemar_exact(b, a) == pytest.approx(2 * 0.5 ** 10)
    assert S.mcnemar_exact(a, a) == 1.0


def test_paired_bootstrap_small_p_for_a_clearly_better_model_and_one_for_identical_predictions():
    rng = np.random.default_rng(1)
    subjects = np.repeat([f"S{i}" for i in range(20)], 10)
    good = rng.random(200) < 0.9
    bad = good & (rng.random(200) < 0.55)
    d = S.paired_bootstrap(good, bad, subjects)
    assert d["p"] < 0.01 and d["diff"] > 0 and d["lo"] > 0 and "cluster bootstrap over 20 subjects" in d["test"]
    d = S.paired_bootstrap(good, good.copy(), subjects)
    assert d["p"] == 1.0 and d["diff"] == 0.0


# -- results: intervals and predictions ---------------------------------------------------------------------
def test_every_result_carries_an_interval_and_its_predictions(tmp_path):
    cache = cache_with(tmp_path / "a.h5", SETTINGS)
    (svm, lda), _ = ev.run(cache, ["linear_svm", "lda"], "loso", progress=False)
    for r in (svm, lda):
        lo, hi = r["accuracy_ci"]
        assert lo <= r["accuracy"] <= hi and "cluster bootstrap over 6 subjects" in r["accuracy_ci_method"]
        p = r["predictions"]
        assert len(p["row"]) == r["n_test"] == len(cache)
        assert sorted(p["row"]) == list(range(len(cache))) and p["path"][0] == cache.paths[p["row"][0]]
        assert p["subject"] == [str(cache.subjects[i]) for i in p["row"]]
        assert np.mean(np.array(p["true"]) == np.array(p["pred"])) == pytest.approx(r["accuracy"])
        assert set(p["fold"]) == set(range(6))
    assert svm["predictions"]["proba"] is None  # SVC without probability=True: not refitted for it
    proba = np.array(lda["predictions"]["proba"])
    assert proba.shape == (len(cache), 3) and np.allclose(proba.sum(1), 1, atol=1e-3)
    assert (proba.argmax(1) == np.array(lda["predictions"]["pred"])).mean() > 0.95


def test_predictions_round_trip_through_results_json(tmp_path):
    cache = cache_with(tmp_path / "a.h5", SETTINGS)
    results, _ = ev.run(cache, ["linear_svm", "lda"], "loso", progress=False)
    S.mark_vs_best(results)
    R.write_report(results, tmp_path / "rep")
    back = R.load_results(tmp_path / "rep" / "results.json")
    assert [b["predictions"] for b in back] == [r["predictions"] for r in results]
    with open(tmp_path / "rep" / "predictions_lda.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(cache) and {"row", "path", "subject", "true", "pred", "fold", "p_happy"} <= set(rows[0])
    assert rows[0]["true"] in results[1]["labels"] and rows[0]["p_happy"] != ""
    with open(tmp_path / "rep" / "results.csv") as f:
        table = list(csv.DictReader(f))
    assert {"accuracy_ci_lo", "accuracy_ci_hi", "vs_best_p", "vs_best_mark"} <= set(table[0])
    assert float(table[0]["accuracy_ci_lo"]) <= float(table[0]["accuracy"]) <= float(table[0]["accuracy_ci_hi"])


# -- compare: intervals and marks ---------------------------------------------------------------------------
def test_compare_shows_intervals_and_marks_rows_against_the_best(tmp_path, capsys):
    c = cache_with(tmp_path / "a.h5", SETTINGS).path
    rc = main(["compare", "--cache", str(c), "--clf", "linear_svm,lda,fine_knn", "--protocol", "loso",
               "--no-progress", "--report-dir", str(tmp_path / "rep")])
    out = capsys.readouterr().out
    assert rc == 0
    table = out.split("\n\n")[1]
    lines = table.splitlines()
    assert "vs best" in lines[0] and "95 % CI" in lines[0]
    body = [line for line in lines[2:] if line.split() and line.split()[0] in ("linear_svm", "lda", "fine_knn")]
    assert len(body) == 3 and all("[" in line and "]" in line for line in body)
    assert sum("best" in line for line in body) == 1
    assert "paired cluster bootstrap over 6 subjects" in out
    md = (tmp_path / "rep" / "report.md").read_text()
    assert "vs best" in md and "best" in md and "paired cluster bootstrap" in md
    results = json.loads((tmp_path / "rep" / "results.json").read_text())
    marks = [r["vs_best"]["mark"] for r in results]
    assert marks.count("best") == 1
    for r in results:
        if r["vs_best"]["mark"] != "best":
            assert (r["vs_best"]["mark"] in ("~", "=")) == (r["vs_best"]["p"] >= 0.05)


def test_vs_best_uses_mcnemar_for_one_split_without_subjects():
    y = np.array([0, 1] * 20)
    splits = [(np.arange(0), np.arange(40))]
    info = {"protocol": "official", "description": "d", "subject_independent": False, "n_folds": 1}
    good = ev.score_folds("a", ["x", "y"], y, splits, [y.copy()], [0], [0], 0, info)
    worse = y.copy()
    worse[:10] = 1 - worse[:10]
    bad = ev.score_folds("b", ["x", "y"], y, splits, [worse], [0], [0], 0, info)
    S.mark_vs_best([bad, good])
    assert good["vs_best"]["mark"] == "best"
    assert bad["vs_best"]["p"] == pytest.approx(2 * 0.5 ** 10) and "McNemar" in bad["vs_best"]["test"]


# -- significance ---------------------------------------------------------------------------------------------
def test_significance_compares_two_results_and_refuses_mismatched_ones(tmp_path, capsys):
    c = cache_with(tmp_path / "a.h5", SETTINGS).path
    assert main(["classify", "--cache", str(c), "--clf", "linear_svm", "--protocol", "loso", "--json",
                 "--no-progress"]) == 0
    (tmp_path / "a.json").write_text(capsys.readouterr().out.strip().splitlines()[-1])
    assert main(["compare", "--cache", str(c), "--clf", "lda,fine_knn", "--protocol", "loso", "--no-progress",
                 "--report-dir", str(tmp_path / "rep")]) == 0
    capsys.readouterr()
    res = tmp_path / "rep" / "results.json"
    assert main(["significance", str(tmp_path / "a.json"), f"{res}#lda", "--json"]) == 0
    d = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert 0 <= d["p"] <= 1 and "cluster bootstrap" in d["test"] and len(d["a"]["accuracy_ci"]) == 2
    assert d["diff"] == pytest.approx(d["a"]["accuracy"] - d["b"]["accuracy"])
    assert main(["significance", str(tmp_path / "a.json"), str(res), "--b-classifier", "fine_knn"]) == 0
    out = capsys.readouterr().out
    assert "p =" in out and "difference" in out and "[" in out
    assert main(["significance", str(tmp_path / "a.json"), str(res)]) == 2  # two entries: which one?
    assert "lda" in capsys.readouterr().err
    assert main(["compare", "--cache", str(c), "--clf", "lda", "--protocol", "group-kfold", "--folds", "3",
                 "--no-progress", "--report-dir", str(tmp_path / "gk")]) == 0
    capsys.readouterr()
    assert main(["significance", str(tmp_path / "a.json"), str(tmp_path / "gk" / "results.json")]) == 2
    err = [line for line in capsys.readouterr().err.strip().splitlines() if line]
    assert len(err) == 1 and "same" in err[0]


def test_an_interval_over_fewer_than_5_subjects_carries_a_warning(tmp_path, capsys):
    """Issue 28: a 95 % interval of [19.7, 100.0] from 4 subjects came with no warning."""
    four = tmp_path / "four.h5"
    cache_with(four, n_subjects=4)
    assert main(["classify", "--cache", str(four), "--clf", "lda", "--protocol", "loso", "--json",
                 "--no-progress"]) == 0
    out = capsys.readouterr().out
    r = json.loads(out.strip().splitlines()[-1])
    note = r["accuracy_ci_note"]
    assert "4 subjects" in note and "fewer than 5" in note
    assert note in out.strip().splitlines()[:-1]  # printed as a line of its own, not only in the JSON
    assert main(["compare", "--cache", str(four), "--clf", "lda,linear_svm", "--protocol", "loso",
                 "--no-progress"]) == 0
    assert capsys.readouterr().out.count(note) == 1  # once for the rows it concerns
    six = tmp_path / "six.h5"
    cache_with(six, n_subjects=6)
    assert main(["classify", "--cache", str(six), "--clf", "lda", "--protocol", "loso", "--json",
                 "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "accuracy_ci_note" not in json.loads(out.strip().splitlines()[-1]) and "fewer than" not in out
    assert S.ci_note(80, clustered(4)[1]) and S.ci_note(100, clustered(5)[1]) is None  # 5 subjects: enough
    assert "3 images" in S.ci_note(3, None) and S.ci_note(5, None) is None  # without subjects: images
