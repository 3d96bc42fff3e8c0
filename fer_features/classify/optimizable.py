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

import time
import warnings
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.metaestimators import available_if

from fer_features.classify import presets as clfs

DEFAULT_BUDGET = 20  # configurations per search (bench/results/optimizable.md: accuracy by budget)
DEFAULT_INNER_FOLDS = 5
PCA_VARIANCE = 0.95  # PCA "on": keep 95 % of the variance (MATLAB's default explained variance)
PRUNE_AFTER = 2  # inner folds a trial runs before the median pruner may stop it
STARTUP_TRIALS = 10  # TPE's random trials (the baseline included) before it models the scores


@dataclass(frozen=True)
class OptimizablePreset:
    """One optimizable preset: its name, search space and the fixed preset the search starts from."""

    name: str
    space: str
    baseline: str
    description: str


SPACES: dict[str, dict[str, str]] = {
    "svm": {"kernel": "linear | poly2 | poly3 | rbf", "C": "1e-3 .. 1e3 (log)",
            "kernel_scale": "0.1 .. 10 x sqrt(D) (log)", "standardize": "True | False", "pca": "False | True"},
    "knn": {"n_neighbors": "1 .. min(n/2, 200) (log)",
            "metric": "euclidean | manhattan | chebyshev | minkowski3 | cosine | correlation",
            "weights": "uniform | distance | squared_inverse", "standardize": "True | False", "pca": "False | True"},
    "nn": {"n_layers": "1 .. 3", "size_1": "5 .. 100 (log)", "size_2": "5 .. 100 (log)",
           "size_3": "5 .. 100 (log)", "activation": "relu | tanh | logistic | identity",
           "alpha": "1e-5 .. 1e2 (log)", "standardize": "True | False", "pca": "False | True"},
    "ensemble": {"method": "bag | boost | subspace", "n_learners": "10 .. 300 (log)",
                 "learning_rate": "1e-3 .. 1 (log, boost)", "min_samples_leaf": "1 .. 50 (log, trees)",
                 "pca": "False | True"},
}
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
KNN_METRICS = {"euclidean": {"metric": "euclidean"}, "manhattan": {"metric": "manhattan"},
               "chebyshev": {"metric": "chebyshev"}, "minkowski3": {"metric": "minkowski", "p": 3},
               "cosine": {"metric": "cosine"}, "correlation": {"metric": "correlation"}}


def is_optimizable(name: str) -> bool:
    return name in PRESETS


def describe(name: str) -> dict[str, Any]:
    """Like ``classifiers.describe``: the preset's kind, its search space as params, and a description."""
    p = PRESETS[name]
    return {"name": name, "kind": "optimizable", "params": {"space": p.space, **SPACES[p.space]},
            "description": p.description}


class _Suggest:
    """Optuna's suggest_* that return a fixed value instead where the user fixed the parameter."""

    def __init__(self, trial, fixed: dict[str, Any]):
        self.trial, self.fixed = trial, fixed

    def cat(self, name: str, choices: list) -> Any:
        return self.fixed[name] if name in self.fixed else self.trial.suggest_categorical(name, choices)

    def float(self, name: str, lo: float, hi: float, log: bool = True) -> float:
        return float(self.fixed[name]) if name in self.fixed else self.trial.suggest_float(name, lo, hi, log=log)

    def int(self, name: str, lo: int, hi: int, log: bool = True) -> int:
        return int(self.fixed[name]) if name in self.fixed else self.trial.suggest_int(name, lo, hi, log=log)


def suggest(space: str, s: _Suggest, n_train: int) -> dict[str, Any]:
    """One configuration of ``space`` (``n_train``: the smallest inner training part, bounds k)."""
    if space == "svm":
        p = {"kernel": s.cat("kernel", ["linear", "poly2", "poly3", "rbf"]), "C": s.float("C", 1e-3, 1e3),
             "kernel_scale": s.float("kernel_scale", 0.1, 10.0), "standardize": s.cat("standardize", [True, False])}
    elif space == "knn":
        p = {"n_neighbors": s.int("n_neighbors", 1, max(1, min(n_train // 2, 200))),
             "metric": s.cat("metric", list(KNN_METRICS)),
             "weights": s.cat("weights", ["uniform", "distance", "squared_inverse"]),
             "standardize": s.cat("standardize", [True, False])}
    elif space == "nn":
        n = s.int("n_layers", 1, 3, log=False)
        p = {"n_layers": n, **{f"size_{i}": s.int(f"size_{i}", 5, 100) for i in range(1, n + 1)},
             "activation": s.cat("activation", ["relu", "tanh", "logistic", "identity"]),
             "alpha": s.float("alpha", 1e-5, 1e2), "standardize": s.cat("standardize", [True, False])}
    elif space == "ensemble":
        m = s.cat("method", ["bag", "boost", "subspace"])
        p = {"method": m, "n_learners": s.int("n_learners", 10, 300)}
        if m == "boost":
            p["learning_rate"] = s.float("learning_rate", 1e-3, 1.0)
        if m in ("bag", "boost"):
            p["min_samples_leaf"] = s.int("min_samples_leaf", 1, 50)
    else:
        raise clfs.ClassifierError(f"unknown search space {space!r}; use one of {', '.join(SPACES)}")
    p["pca"] = s.cat("pca", [False, True])
    return p


def prep_steps(params: dict[str, Any], seed: int = 0) -> list[tuple[str, Any]]:
    """The (unfitted) standardise / PCA steps a configuration asks for."""
    from sklearn.decomposition import PCA
    from sklearn.preprocessing import StandardScaler

    steps: list[tuple[str, Any]] = []
    if params.get("standardize", False):
        steps.append(("scale", StandardScaler()))
    pca = params.get("pca")
    if pca:
        steps.append(("pca", PCA(n_components=PCA_VARIANCE if pca is True else pca, svd_solver="full",
                                 random_state=seed)))
    return steps


def make_final(space: str, params: dict[str, Any], Z: np.ndarray, *, engine: str = clfs.DEFAULT_ENGINE,
               seed: int = 0):
    """The unfitted classifier of a configuration for features ``Z`` (already standardised / PCA'd as asked:
    the SVM's kernel scale is relative to their dimension and variance)."""
    if space == "svm":
        kernel = params["kernel"]
        gamma = 1.0 / (params["kernel_scale"] ** 2 * Z.shape[1] * max(float(Z.var()), 1e-12))
        kw = ({"kernel": "rbf"} if kernel == "rbf" else
              {"kernel": "poly", "degree": 1, "coef0": 0.0} if kernel == "linear" else
              {"kernel": "poly", "degree": int(kernel[-1]), "coef0": 1.0})
        return clfs._estimator_class("svc", engine)(C=params["C"], gamma=gamma, **kw)
    if space == "knn":
        from sklearn.neighbors import KNeighborsClassifier

        w = params["weights"]
        return KNeighborsClassifier(n_neighbors=params["n_neighbors"], algorithm="brute",
                                    weights=clfs._squared_inverse if w == "squared_inverse" else w,
                                    **KNN_METRICS[params["metric"]])
    if space == "nn":
        sizes = tuple(int(params[f"size_{i}"]) for i in range(1, params["n_layers"] + 1))
        return clfs._estimator_class("mlp", engine)(
            hidden_layer_sizes=sizes, activation=params["activation"], alpha=params["alpha"], solver="lbfgs",
            max_iter=1000, random_state=seed)
    if space == "ensemble":
        from sklearn.ensemble import AdaBoostClassifier, BaggingClassifier, RandomForestClassifier
        from sklearn.neighbors import KNeighborsClassifier
        from sklearn.tree import DecisionTreeClassifier

        n = params["n_learners"]
        if params["method"] == "bag":
            return RandomForestClassifier(n_estimators=n, min_samples_leaf=params["min_samples_leaf"], n_jobs=1,
                                          random_state=seed)
        if params["method"] == "boost":  # MATLAB's AdaBoostM2 over trees of up to 20 splits
            tree = DecisionTreeClassifier(max_leaf_nodes=21, max_features="sqrt",
                                          min_samples_leaf=params["min_samples_leaf"], random_state=seed)
            return AdaBoostClassifier(tree, n_estimators=n, learning_rate=params["learning_rate"], random_state=seed)
        return BaggingClassifier(KNeighborsClassifier(n_neighbors=1, algorithm="brute"), n_estimators=n,
                                 max_features=0.5, bootstrap=False, n_jobs=1, random_state=seed)
    raise clfs.ClassifierError(f"unknown search space {space!r}")


def fit_config(space: str, params: dict[str, Any], X: np.ndarray, y: np.ndarray, *,
               engine: str = clfs.DEFAULT_ENGINE, seed: int = 0, probability: bool = False):
    """A fitted Pipeline([scale], [pca], classifier) of one configuration on (X, y)."""
    from sklearn.pipeline import Pipeline

    steps = prep_steps(params, seed)
    Z = X
    for _, step in steps:
        Z = step.fit_transform(Z)
    clf = make_final(space, params, Z, engine=engine, seed=seed)
    if probability and not hasattr(clf, "predict_proba"):
        from sklearn.calibration import CalibratedClassifierCV

        clf = CalibratedClassifierCV(clf, method="sigmoid", cv=5, ensemble=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # lbfgs iteration-limit notices: the limit is part of the definition
        clf.fit(Z, y)
    return Pipeline(steps + [("clf", clf)])  # every step fitted above


def inner_splits(y: np.ndarray, groups=None, split=None, *, folds: int = DEFAULT_INNER_FOLDS,
                 seed: int = 0) -> tuple[list[tuple[np.ndarray, np.ndarray]], str]:
    """The inner (train, validation) index pairs into ``y`` and their description.

    By subject where ``groups`` name at least 2 (stratified group k-fold; leave-one-subject-out when there are
    no more subjects than ``folds``); else by ``split``: its validation split (e.g. FER2013's PublicTest) where
    present, else each split left out in turn; else stratified k-fold by image.
    """
    from sklearn.model_selection import LeaveOneGroupOut, StratifiedGroupKFold, StratifiedKFold

    from fer_features.data.splits import VALIDATION_SPLITS

    y = np.asarray(y)
    idx = np.arange(len(y))
    if groups is not None and len(groups) and all(str(g) != "" for g in groups) and len(set(groups)) >= 2:
        groups = np.asarray(groups)
        n = len(set(groups.tolist()))
        if n <= folds:
            return list(LeaveOneGroupOut().split(idx, y, groups)), f"leave-one-subject-out ({n} subjects)"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            cv = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
            return list(cv.split(idx, y, groups)), f"subject-grouped {folds}-fold ({n} subjects)"
    if split is not None and len(split) and len(set(split)) >= 2 and all(str(s) != "" for s in split):
        split = np.asarray(split).astype(str)
        val = np.isin(np.char.lower(split), list(VALIDATION_SPLITS))
        if val.any() and not val.all():
            names = sorted(set(split[val].tolist()))
            return [(idx[~val], idx[val])], f"dataset split: validation on {', '.join(names)}"
        return list(LeaveOneGroupOut().split(idx, y, split)), f"by dataset split ({len(set(split))} splits)"
    smallest = int(np.bincount(np.unique(y, return_inverse=True)[1]).min())
    k = min(folds, smallest)
    if k < 2:
        raise ValueError("the search needs at least 2 training images in every class (or subject ids)")
    cv = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
    return list(cv.split(idx, y)), f"stratified {k}-fold by image"


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
        import optuna

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
            import sys

            from tqdm import tqdm

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


def best_at(trials: list[dict], budget: int) -> dict[str, Any] | None:
    """The parameters a search of ``budget`` trials would have chosen: the best complete trial among the first
    ``budget`` of ``trials`` (``trials_`` / a search record's ``trials``; fixed parameters not included)."""
    done = [t for t in trials[:budget] if t["state"] == "complete"]
    return max(done, key=lambda t: (t["value"], -t["number"]))["params"] if done else None


class _Replay:
    """``_Suggest`` that answers from a finished trial's parameters (rebuilds its full configuration)."""

    def __init__(self, params: dict[str, Any], fixed: dict[str, Any]):
        self.values = {**params, **fixed}

    def cat(self, name, choices):
        return self.values[name]

    def float(self, name, lo, hi, log=True):
        return float(self.values[name])

    def int(self, name, lo, hi, log=True):
        return int(self.values[name])


def _plain(d: dict[str, Any]) -> dict[str, Any]:
    """numpy scalars -> Python (JSON-ready)."""
    return {k: (v.item() if isinstance(v, np.generic) else v) for k, v in d.items()}


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


# -- results ---------------------------------------------------------------------------------------------------
def summarize(records: list[dict]) -> dict[str, str]:
    """How much each chosen hyper-parameter varies over the outer folds, in words per parameter."""
    names = list(dict.fromkeys(k for r in records for k in r["best_params"]))
    out = {}
    for k in names:
        vals = [r["best_params"].get(k) for r in records]
        nums = [v for v in vals if isinstance(v, (int, float)) and not isinstance(v, bool)]
        if nums and len(nums) == len(vals) and len(set(nums)) > 3:
            out[k] = f"median {_num(float(np.median(nums)))}, range {_num(min(nums))} .. {_num(max(nums))}"
        else:
            from collections import Counter

            out[k] = ", ".join(f"{_val(v)} x{c}" for v, c in Counter(map(_val, vals)).most_common())
    return out


def _num(v: float) -> str:
    return f"{v:.3g}"


def _val(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return _num(v)
    return str(v)


def search_table(r: dict, markdown: bool = False) -> str:
    """The chosen hyper-parameters of every outer fold of result ``r`` (a table) and how much they vary."""
    s = r.get("search")
    if not s:
        return ""
    folds = s["folds"]
    names = list(dict.fromkeys(k for f in folds for k in f["best_params"]))
    head = ["fold", "inner acc %", "trials (pruned)", "search s", *names]
    rows = [[str(i), f"{100 * f['best_inner_accuracy']:.1f}", f"{f['n_trials']} ({f['n_pruned']})",
             f"{f['search_seconds']:.1f}", *(_val(f["best_params"].get(k)) for k in names)]
            for i, f in enumerate(folds)]
    title = (f"{r['classifier']}: hyper-parameters chosen in each outer fold ({s['optimiser']}; budget "
             f"{s['budget']}, inner folds: {s['inner_cv']}; test folds never seen by the search)")
    vary = "varies over folds: " + "; ".join(f"{k} {v}" for k, v in s["variation"].items())
    if markdown:
        lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---:" for _ in head) + "|"]
        lines += ["| " + " | ".join(x) + " |" for x in rows]
        return "\n".join([f"**{title}**", "", *lines, "", vary])
    w = [max(len(x) for x in col) for col in zip(head, *rows)]
    fmt = lambda cells: "  ".join(c.rjust(w[i]) for i, c in enumerate(cells))  # noqa: E731
    return "\n".join([title, fmt(head), fmt(["-" * x for x in w]), *map(fmt, rows), vary])


def search_result(records: list[dict], est: OptimizableClassifier) -> dict[str, Any]:
    """The ``search`` entry of a result: settings, per-fold records and the variation summary."""
    inner = list(dict.fromkeys(r["inner_cv"] for r in records))
    return {"space": est.space, "budget": int(est.budget), "inner_folds": int(est.inner_folds), "seed": est.seed,
            "optimiser": f"Optuna {_optuna_version()} TPE, seed {est.seed}" + (", median pruner" if est.prune else ""),
            "inner_cv": "; ".join(inner) if len(inner) <= 2 else f"{inner[0]} (and {len(inner) - 1} others)",
            "fixed": _plain(dict(est.fixed or {})), "folds": records, "variation": summarize(records),
            "search_seconds": float(sum(r["search_seconds"] for r in records))}


def _optuna_version() -> str:
    import optuna

    return optuna.__version__
