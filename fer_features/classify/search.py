"""The optimizable presets' search: the spaces (MATLAB's hyper-parameters mapped to scikit-learn), Optuna
suggestions, inner subject-grouped folds, fitting a configuration, and the search record and its table."""
from __future__ import annotations

import warnings
from collections import Counter
from typing import TYPE_CHECKING, Any

import numpy as np
from sklearn.calibration import CalibratedClassifierCV
from sklearn.decomposition import PCA
from sklearn.ensemble import (
    AdaBoostClassifier,
    BaggingClassifier,
    RandomForestClassifier,
)
from sklearn.model_selection import (
    LeaveOneGroupOut,
    StratifiedGroupKFold,
    StratifiedKFold,
)
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.tree import DecisionTreeClassifier

from fer_features.classify import presets as clfs
from fer_features.data.splits import VALIDATION_SPLITS

if TYPE_CHECKING:  # an annotation only: optimizable imports this module
    from fer_features.classify.optimizable import OptimizableClassifier

DEFAULT_INNER_FOLDS = 5
PCA_VARIANCE = 0.95  # PCA "on": keep 95 % of the variance (MATLAB's default explained variance)
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
KNN_METRICS = {"euclidean": {"metric": "euclidean"}, "manhattan": {"metric": "manhattan"},
               "chebyshev": {"metric": "chebyshev"}, "minkowski3": {"metric": "minkowski", "p": 3},
               "cosine": {"metric": "cosine"}, "correlation": {"metric": "correlation"}}


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
    steps = prep_steps(params, seed)
    Z = X
    for _, step in steps:
        Z = step.fit_transform(Z)
    clf = make_final(space, params, Z, engine=engine, seed=seed)
    if probability and not hasattr(clf, "predict_proba"):
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
    import optuna  # heavy (about 0.5 s): only for the optimizable presets

    return optuna.__version__
