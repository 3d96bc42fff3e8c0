"""Optimizable presets: a nested, seeded hyper-parameter search, as MATLAB's "Optimizable" models offer.

``OptimizableClassifier`` is a scikit-learn meta-estimator. ``fit(X, y, groups=...)`` searches one space
(``svm``, ``knn``, ``nn``, ``ensemble``; each with PCA on/off) on the rows it is given ONLY: inner folds grouped
by subject where ``groups`` are given, else by the dataset's split (its validation split, else one split left
out at a time), else stratified by image. The score of a configuration is its pooled inner accuracy (correct /
all inner validation images). The best one is refitted on all rows given to ``fit``. Under
``evaluation.evaluate`` it is fitted on each outer training part, so no outer test image or test subject
guides a choice (``tests/test_optimizable.py`` checks every inner split the search used).

The optimiser is Optuna's TPE sampler (Bayesian optimisation with tree-structured Parzen estimators, seeded:
the same seed gives the same trials), chosen over scikit-optimize (little maintained, GP-based: slower per
trial on conditional spaces). The first trial is the fixed preset's configuration (e.g. ``linear_svm``), so
the search starts from the known baseline; trials that are clearly worse than the median after two inner
folds are stopped early (Optuna's median pruner). The first 10 trials (the baseline included) are random,
whatever the budget, so a search of budget b is exactly the first b trials of a longer search with the same
seed (``best_at``: what a smaller budget would have chosen).

Searched hyper-parameters (MATLAB's names mapped to scikit-learn; ``SPACES`` says each range):

* svm: kernel linear / poly2 / poly3 / rbf (MATLAB's polynomial kernel ``(1 + x'y/s^2)^q``), box constraint C,
  kernel scale s as a multiple of the fixed presets' ``sqrt(D)`` (``gamma = 1 / (s^2 D var)``, sklearn's 'scale'
  divided by s^2), standardise on/off;
* knn: neighbours k, distance metric, distance weights (equal / inverse / squared inverse), standardise on/off;
* nn: 1-3 layers, their sizes (5-100 units: the fixed presets' range; MATLAB searches up to 300, which on
  3,920-d features costs minutes per L-BFGS fit), activation (relu, tanh, sigmoid, none), lambda (sklearn's
  ``alpha``), standardise on/off; L-BFGS, 1000 iterations as the fixed presets;
* ensemble: method (bagged trees = random forest, boosted trees = SAMME AdaBoost over trees with sqrt(D)
  candidate features per split, random subspace over 1-NN learners with half of the features), learners,
  learning rate (boosting), minimum leaf size (trees).
"""
from __future__ import annotations

import sys
import time
import warnings
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.metaestimators import available_if
from tqdm import tqdm

from fer_features.classify import presets as clfs
from fer_features.classify.search import (
    DEFAULT_INNER_FOLDS,
    SPACES,
    _plain,
    _Replay,
    _Suggest,
    fit_config,
    inner_splits,
    make_final,
    prep_steps,
    suggest,
)

DEFAULT_BUDGET = 20  # configurations per search (bench/results/optimizable.md: accuracy by budget)
PRUNE_AFTER = 2  # inner folds a trial runs before the median pruner may stop it
STARTUP_TRIALS = 10  # TPE's random trials (the baseline included) before it models the scores


@dataclass(frozen=True)
class OptimizablePreset:
    """One optimizable preset: its name, search space and the fixed preset the search starts from."""

    name: str
    space: str
    baseline: str
    description: str


# the first trial of each search: the fixed preset's configuration (``baseline``)
BASELINES: dict[str, dict[str, Any]] = {
    "svm": {"kernel": "linear", "C": 1.0, "kernel_scale": 1.0, "standardize": True, "pca": False},
    "knn": {"n_neighbors": 10, "metric": "euclidean", "weights": "uniform", "standardize": True, "pca": False},
    "nn": {"n_layers": 1, "size_1": 10, "activation": "relu", "alpha": 1e-5, "standardize": True, "pca": False},
    "ensemble": {"method": "bag", "n_learners": 100, "min_samples_leaf": 1, "pca": False},
}
PRESETS: dict[str, OptimizablePreset] = {p.name: p for p in [
    OptimizablePreset("optimizable_svm", "svm", "linear_svm",
                      "SVM, kernel / C / kernel scale / standardise / PCA searched (nested)"),
    OptimizablePreset("optimizable_knn", "knn", "medium_knn",
                      "KNN, neighbours / metric / weights / standardise / PCA searched (nested)"),
    OptimizablePreset("optimizable_nn", "nn", "narrow_nn",
                      "neural network, layers / sizes / activation / lambda / standardise / PCA searched (nested)"),
    OptimizablePreset("optimizable_ensemble", "ensemble", "bagged trees",
                      "tree / subspace ensemble, method / learners / rate / leaf size / PCA searched (nested)"),
]}
def is_optimizable(name: str) -> bool:
    return name in PRESETS


def describe(name: str) -> dict[str, Any]:
    """Like ``classifiers.describe``: the preset's kind, its search space as params, and a description."""
    p = PRESETS[name]
    return {"name": name, "kind": "optimizable", "params": {"space": p.space, **SPACES[p.space]},
            "description": p.description}


class OptimizableClassifier(ClassifierMixin, BaseEstimator):
    """A nested hyper-parameter search over ``space``, refitted on all rows it is given.

    Parameters: ``space`` (svm | knn | nn | ensemble), ``budget`` (configurations tried), ``inner_folds``,
    ``seed`` (inner folds, TPE sampler, estimators), ``engine`` (the search's engine, as for the fixed presets),
    ``refit_engine`` (the final refit's; None: ``engine``; saved models use 'sklearn'), ``fixed`` (parameters
    not searched, e.g. ``{"kernel": "rbf"}``), ``probability`` (calibrated probabilities for SVMs in the refit),
    ``prune`` (median pruner), ``progress`` (a bar over trials on stderr) and ``progress_label``.

    ``fit(X, y, groups=None, split=None, row_ids=None)``: ``groups`` = subject ids of the rows, ``split`` = their
    dataset split; ``row_ids`` name the rows (default ``arange(len(X))``): ``inner_splits_`` are in those ids.

    Learned: ``best_params_``, ``best_score_`` (pooled inner accuracy), ``trials_`` (every trial: number, state,
    value, params, seconds), ``inner_splits_`` [(train ids, validation ids)], ``inner_cv_`` (in words),
    ``best_estimator_`` (the refitted Pipeline), ``search_seconds_``, ``refit_seconds_``, ``classes_``.
    """

    accepts_groups = True  # evaluation passes the outer training rows' subjects, split and row ids to fit

    def __init__(self, space: str = "svm", budget: int = DEFAULT_BUDGET, inner_folds: int = DEFAULT_INNER_FOLDS,
                 seed: int = 0, engine: str = clfs.DEFAULT_ENGINE, refit_engine: str | None = None,
                 fixed: dict | None = None, probability: bool = False, prune: bool = True, progress: bool = False,
                 progress_label: str = ""):
        self.space = space
        self.budget = budget
        self.inner_folds = inner_folds
        self.seed = seed
        self.engine = engine
        self.refit_engine = refit_engine
        self.fixed = fixed
        self.probability = probability
        self.prune = prune
        self.progress = progress
        self.progress_label = progress_label

    def _check(self) -> dict[str, Any]:
        if self.space not in SPACES:
            raise clfs.ClassifierError(f"unknown search space {self.space!r}; use one of {', '.join(SPACES)}")
        if int(self.budget) < 1:
            raise clfs.ClassifierError(f"budget must be at least 1 configuration, got {self.budget}")
        if int(self.inner_folds) < 2:
            raise clfs.ClassifierError(f"inner folds must be at least 2, got {self.inner_folds}")
        fixed = dict(self.fixed or {})
        unknown = sorted(set(fixed) - set(SPACES[self.space]))
        if unknown:
            raise clfs.ClassifierError(f"optimizable {self.space}: cannot fix {', '.join(unknown)}; its "
                                       f"hyper-parameters are {', '.join(SPACES[self.space])}")
        return fixed

    def fit(self, X, y, groups=None, split=None, row_ids=None):
        import optuna  # heavy (about 0.5 s): only for the optimizable presets

        fixed = self._check()
        X, y = np.asarray(X), np.asarray(y)
        ids = np.arange(len(y)) if row_ids is None else np.asarray(row_ids)
        if len(ids) != len(y):
            raise ValueError(f"row_ids has {len(ids)} entries for {len(y)} rows")
        splits, self.inner_cv_ = inner_splits(y, groups, split, folds=int(self.inner_folds), seed=self.seed)
        self.inner_splits_ = [(ids[tr], ids[va]) for tr, va in splits]
        n_train = min(len(tr) for tr, _ in splits)
        memo: dict[tuple, tuple[np.ndarray, np.ndarray]] = {}

        def features(k: int, params: dict) -> tuple[np.ndarray, np.ndarray]:
            """Fold k's (train, validation) features standardised / PCA'd as asked, computed once per fold."""
            key = (k, bool(params.get("standardize")), bool(params.get("pca")))
            if key not in memo:
                tr, va = splits[k]
                A, B = X[tr], X[va]
                for _, step in prep_steps(params, self.seed):
                    A = step.fit_transform(A)
                    B = step.transform(B)
                memo[key] = (np.ascontiguousarray(A), np.ascontiguousarray(B))
            return memo[key]

        def objective(trial) -> float:
            params = suggest(self.space, _Suggest(trial, fixed), n_train)
            t0, correct, total = time.perf_counter(), 0, 0
            for k, (tr, va) in enumerate(splits):
                A, B = features(k, params)
                clf = make_final(self.space, params, A, engine=self.engine, seed=self.seed)
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    clf.fit(A, y[tr])
                correct += int(np.sum(clf.predict(B) == y[va]))
                total += len(va)
                trial.set_user_attr("seconds", time.perf_counter() - t0)
                trial.report(correct / total, k)
                if self.prune and k + 1 < len(splits) and trial.should_prune():
                    raise optuna.TrialPruned()
            return correct / total

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        budget = int(self.budget)
        # fixed start-up count: a search of budget b is the first b trials of a longer one with the same seed
        sampler = optuna.samplers.TPESampler(seed=self.seed, n_startup_trials=STARTUP_TRIALS)
        pruner = optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=PRUNE_AFTER - 1)
        study = optuna.create_study(direction="maximize", sampler=sampler, pruner=pruner)
        start = {k: v for k, v in BASELINES[self.space].items() if k not in fixed}
        if "n_neighbors" in start:  # within the k range of these data
            start["n_neighbors"] = min(start["n_neighbors"], max(1, min(n_train // 2, 200)))
        if start:
            study.enqueue_trial(start, skip_if_exists=True)
        bar = None
        if self.progress:
            bar = tqdm(total=budget, desc=f"search {self.space}{' ' + self.progress_label if self.progress_label else ''}",
                       unit="trial", file=sys.stderr, leave=False, dynamic_ncols=True, mininterval=0.5)
        callbacks: list[Callable] = [lambda st, tr: bar.update()] if bar is not None else []
        t0 = time.perf_counter()
        try:
            study.optimize(objective, n_trials=budget, callbacks=callbacks)
        finally:
            if bar is not None:
                bar.close()
        self.search_seconds_ = time.perf_counter() - t0
        self.trials_ = [{"number": t.number, "state": t.state.name.lower(),
                         "value": None if t.value is None else float(t.value),
                         "params": _plain(t.params), "seconds": float(t.user_attrs.get("seconds", 0.0))}
                        for t in study.trials]
        complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
        best = max(complete, key=lambda t: (t.value, -t.number))  # first of the best on ties
        self.best_params_ = _plain({**fixed, **suggest(self.space, _Replay(best.params, fixed), n_train)})
        self.best_score_ = float(best.value)
        t0 = time.perf_counter()
        self.best_estimator_ = fit_config(self.space, self.best_params_, X, y, seed=self.seed,
                                          engine=self.refit_engine or self.engine, probability=self.probability)
        self.refit_seconds_ = time.perf_counter() - t0
        self.classes_ = self.best_estimator_.classes_
        return self

    def predict(self, X):
        return self.best_estimator_.predict(X)

    @available_if(lambda self: hasattr(self.best_estimator_, "predict_proba"))
    def predict_proba(self, X):
        return self.best_estimator_.predict_proba(X)

    @property
    def fitted_engine_(self) -> str:
        """What ran the refitted model (for results' ``engine``)."""
        clf = self.best_estimator_[-1]
        mod = type(getattr(clf, "estimator", clf)).__module__
        if mod.startswith(("sklearnex", "daal4py", "onedal")):
            return "sklearnex"
        if isinstance(clf, clfs.FusedMLP) and getattr(clf, "fused_", False):
            return "numba"
        return "sklearn"

    def search_record(self, inner_splits: bool = True) -> dict[str, Any]:
        """The fitted search as JSON-ready data: chosen parameters, inner accuracy, trials, time, inner splits."""
        states = [t["state"] for t in self.trials_]
        rec = {"best_params": self.best_params_, "best_inner_accuracy": self.best_score_,
               "n_trials": len(states), "n_pruned": states.count("pruned"), "inner_cv": self.inner_cv_,
               "search_seconds": float(self.search_seconds_), "refit_seconds": float(self.refit_seconds_)}
        rec["trials"] = self.trials_
        if inner_splits:
            rec["inner_splits"] = [{"train": tr.tolist(), "validation": va.tolist()} for tr, va in self.inner_splits_]
        return rec


def make_optimizable(name: str, overrides: dict | None = None, *, engine: str = clfs.DEFAULT_ENGINE,
                     pca: float | int | None = None, budget: int = DEFAULT_BUDGET,
                     inner_folds: int = DEFAULT_INNER_FOLDS, seed: int = 0, **kw) -> OptimizableClassifier:
    """The estimator of preset ``name``; ``overrides`` (``--set``) and ``pca`` (``--pca``) fix parameters."""
    try:
        preset = PRESETS[name]
    except KeyError:
        raise clfs.ClassifierError(f"unknown optimizable preset {name!r}; known: {', '.join(PRESETS)}") from None
    fixed = dict(overrides or {})
    if pca is not None:
        if pca <= 0:
            raise clfs.ClassifierError(f"pca must be > 0 (a variance fraction below 1 or a number of components), "
                                       f"got {pca}")
        fixed["pca"] = pca
    est = OptimizableClassifier(preset.space, budget=budget, inner_folds=inner_folds, seed=seed, engine=engine,
                                fixed=fixed or None, **kw)
    est._check()
    return est


