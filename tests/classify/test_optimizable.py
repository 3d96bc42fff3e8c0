"""Optimizable presets: the nested search never sees an outer test image or subject; seeded; saved models."""
from __future__ import annotations

import json

import numpy as np
import pytest

from fer_features.classify import presets as C
from fer_features import evaluation as ev
from fer_features.classify import optimizable as O
from fer_features.classify import search as S
from helpers import LABELS, SETTINGS, blobs, cache_with


def leaks(inner_splits, train_rows, test_rows, groups) -> list[str]:
    """What is wrong with a search's inner splits for one outer fold (empty: nothing)."""
    bad = []
    test_rows, test_subjects = set(np.asarray(test_rows).tolist()), set(groups[test_rows].tolist())
    for k, (tr, va) in enumerate(inner_splits):
        tr, va = np.asarray(tr), np.asarray(va)
        for part, rows in (("train", tr), ("validation", va)):
            if test_rows & set(rows.tolist()):
                bad.append(f"inner split {k} {part} holds outer test rows")
            if test_subjects & set(groups[rows].tolist()):
                bad.append(f"inner split {k} {part} holds outer test subjects")
        if set(groups[tr].tolist()) & set(groups[va].tolist()):
            bad.append(f"inner split {k}: a subject on both sides")
        if set(tr.tolist()) | set(va.tolist()) != set(np.asarray(train_rows).tolist()):
            bad.append(f"inner split {k} does not cover the outer training rows")
    return bad


def test_nested_search_never_sees_outer_test_rows_or_subjects():
    X, y, g = blobs(n_subjects=8, per=6)
    splits, info = ev.make_splits("group-kfold", y, g, folds=4)
    r = ev.evaluate(X, y, LABELS, "optimizable_knn", splits, info, groups=g, n_jobs=1,
                    search={"budget": 3, "inner_folds": 3})
    folds = r["search"]["folds"]
    assert len(folds) == len(splits) == 4
    for (tr, te), f in zip(splits, folds):
        inner = [(s["train"], s["validation"]) for s in f["inner_splits"]]
        assert len(inner) == 3 and f["inner_cv"].startswith("subject-grouped 3-fold")
        assert leaks(inner, tr, te, g) == []
        assert len(f["trials"]) == 3 and set(f["best_params"]) >= {"n_neighbors", "metric", "pca"}
    # the check is not vacuous: a search run on all rows puts test rows and subjects in its inner splits
    everything = O.make_optimizable("optimizable_knn", budget=1, inner_folds=3).fit(X, y, groups=g)
    tr, te = splits[0]
    assert leaks(everything.inner_splits_, tr, te, g)


def test_same_seed_same_search_and_smaller_budget_is_a_prefix():
    X, y, g = blobs(n_subjects=6, per=6)
    fit = lambda budget, seed=0: O.OptimizableClassifier("svm", budget=budget, inner_folds=3, seed=seed).fit(  # noqa: E731
        X, y, groups=g)
    a, b, short = fit(6), fit(6), fit(3)
    assert a.best_params_ == b.best_params_ and a.best_score_ == b.best_score_
    assert [t["params"] for t in a.trials_] == [t["params"] for t in b.trials_]
    assert [t["params"] for t in short.trials_] == [t["params"] for t in a.trials_[:3]]
    assert S.best_at(a.trials_, 3) == S.best_at(short.trials_, 3)
    assert a.trials_[0]["params"] == O.BASELINES["svm"]  # the search starts from the fixed preset
    assert [t["params"] for t in fit(6, seed=1).trials_][1:] != [t["params"] for t in a.trials_][1:]


def test_baseline_configuration_is_the_fixed_preset():
    X, y, _ = blobs(n_subjects=4, per=9)
    base = S.fit_config("svm", O.BASELINES["svm"], X, y, engine="sklearn")
    fixed = C.make_classifier("linear_svm", engine="sklearn").fit(X, y)
    Xt = blobs(n_subjects=2, per=9, seed=5)[0]
    assert np.allclose(base[-1].gamma, 1.0 / (X.shape[1] * _standard_var(X)), rtol=1e-4)
    assert (base.predict(Xt) == fixed.predict(Xt)).all()


def _standard_var(X):
    from sklearn.preprocessing import StandardScaler

    return float(StandardScaler().fit_transform(X).var())


def test_inner_folds_without_subjects_use_the_split_else_stratified():
    y = np.array([0, 1, 2] * 10)
    split = np.array(["Training"] * 21 + ["PublicTest"] * 9)
    s, how = S.inner_splits(y, None, split)
    assert len(s) == 1 and set(split[s[0][1]]) == {"PublicTest"} and "PublicTest" in how
    s, how = S.inner_splits(y, None, None, folds=5)
    assert len(s) == 5 and how == "stratified 5-fold by image"
    s, how = S.inner_splits(y, np.array(["a", "b", "c"] * 10), None, folds=5)
    assert len(s) == 3 and how.startswith("leave-one-subject-out")


def test_fixed_parameters_and_bad_input():
    X, y, g = blobs(n_subjects=6, per=6)
    est = O.make_optimizable("optimizable_svm", {"kernel": "rbf"}, pca=0.9, budget=4, inner_folds=3).fit(
        X, y, groups=g)
    assert est.best_params_["kernel"] == "rbf" and est.best_params_["pca"] == 0.9
    assert all("kernel" not in t["params"] for t in est.trials_)
    with pytest.raises(C.ClassifierError, match="cannot fix gamma"):
        O.make_optimizable("optimizable_svm", {"gamma": 1.0})
    with pytest.raises(C.ClassifierError, match="budget"):
        O.make_optimizable("optimizable_svm", budget=0)
    with pytest.raises(C.ClassifierError, match="unknown classifier"):
        ev.check_classifier("optimizable_tree")


@pytest.mark.parametrize("space", ["nn", "ensemble"])
def test_other_spaces_fit_and_predict(space):
    X, y, g = blobs(n_subjects=6, per=6)
    est = O.OptimizableClassifier(space, budget=2, inner_folds=3).fit(X, y, groups=g)
    assert est.predict(X).shape == y.shape and est.score(X, y) > 0.5
    assert set(S.summarize([est.search_record(), est.search_record()])) == set(est.best_params_)


def test_cli_classify_save_compare(tmp_path, capsys):
    from fer_features.cli import main
    from fer_features.apply.models import load_model

    X, y, g = blobs(n_subjects=6)
    cache = str(cache_with(tmp_path / "c.h5", {**SETTINGS, "backbone": "hog"}).path)  # a real backbone, for --save
    assert main(["classify", "--cache", cache, "--clf", "optimizable_svm", "--budget", "3", "--inner-folds", "3",
                 "--folds", "3", "--json", "--save", str(tmp_path / "m.skops"), "--no-progress"]) == 0
    out = capsys.readouterr().out
    r = json.loads(out.strip().splitlines()[-1])
    assert len(r["search"]["folds"]) == 3 and r["search"]["budget"] == 3 and "kernel" in r["search"]["variation"]
    assert "hyper-parameters chosen in each outer fold" in out
    bundle = load_model(tmp_path / "m.skops")
    model = bundle["pipeline"]
    assert bundle["info"]["search"]["n_trials"] == 3 and model.best_params_ == bundle["info"]["search"]["best_params"]
    assert (model.predict(X) == y).mean() > 0.8 and np.allclose(model.predict_proba(X[:3]).sum(1), 1)
    assert main(["compare", "--cache", cache, "--clf", "linear_svm,optimizable_knn", "--budget", "2",
                 "--inner-folds", "3", "--folds", "3", "--report-dir", str(tmp_path / "rep"), "--no-progress"]) == 0
    assert "Chosen hyper-parameters" in (tmp_path / "rep" / "report.md").read_text()
    assert main(["classifiers"]) == 0 and "optimizable_ensemble" in capsys.readouterr().out
    assert main(["classify", "--cache", cache, "--clf", "optimizable_svm", "--budget", "0"]) == 2
    assert "--budget" in capsys.readouterr().err
