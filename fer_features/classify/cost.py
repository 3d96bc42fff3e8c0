"""How long a comparison will take, roughly: a per-preset cost model, for ``compare``'s estimate before it starts.

Each fixed preset's seconds per fold were measured once (``python bench/compare_cost.py``: the CK+ cache of the
default features, 882 training / 99 test rows of 3,920 features, two subject-grouped folds, one at a time with one
BLAS thread as in compare's fold workers, default engine, on a 2-core AMD EPYC at a load average of 1.0). Checked
against a whole default compare on that cache (10 folds): estimated 17 s, the command took 23 s with its start.
Another fold scales by how the preset's work grows: the SVMs with the square of the training rows, the KNNs with
training x test rows, LDA with the training rows x min(rows, features), the others with the training rows; every
preset with the features. An optimizable preset
costs its search: budget x inner folds fits of its baseline configuration on an inner training part, and the refit.
Folds (or, with one split, presets) run ``slots`` at a time. An estimate, not a promise: another machine or load,
harder data (an MLP's L-BFGS iterations, an SVM's support vectors) and augmentation change it.
"""
from __future__ import annotations

from typing import Sequence

from fer_features.classify import optimizable, presets, search

REFERENCE = {"n_train": 882, "n_test": 99, "n_features": 3920}
MACHINE = "a 2-core AMD EPYC"
# seconds per fold at REFERENCE (bench/compare_cost.py); bagged_trees: the ensemble search's baseline (100 trees)
SECONDS = {"linear_svm": 0.283, "quadratic_svm": 0.268, "cubic_svm": 0.254, "narrow_nn": 0.317, "medium_nn": 0.215,
           "wide_nn": 0.599, "bilayered_nn": 0.139, "trilayered_nn": 0.221, "fine_knn": 0.0467, "medium_knn": 0.043,
           "coarse_knn": 0.0454, "cosine_knn": 0.0378, "cubic_knn": 0.0454, "weighted_knn": 0.0434, "lda": 0.627,
           "logreg": 0.114, "bagged_trees": 2.02}


def _kind(name: str) -> str:
    return presets.PRESETS[name].kind if name in presets.PRESETS else "tree"


def fold_seconds(name: str, n_train: int, n_test: int, n_features: int, *, budget: int = optimizable.DEFAULT_BUDGET,
                 inner_folds: int = search.DEFAULT_INNER_FOLDS) -> float:
    """Estimated fit + predict seconds of preset ``name`` (fixed or optimizable) on one fold of these sizes."""
    if optimizable.is_optimizable(name):
        base = optimizable.PRESETS[name].baseline
        base = base if base in SECONDS else "bagged_trees"
        inner = n_train * (inner_folds - 1) / inner_folds
        trial = fold_seconds(base, int(inner), int(n_train - inner), n_features)
        return budget * inner_folds * trial + fold_seconds(base, n_train, n_test, n_features)
    r = max(n_train, 1) / REFERENCE["n_train"]
    d = n_features / REFERENCE["n_features"]
    kind = _kind(name)
    if kind == "svc":
        scale = r * r
    elif kind == "knn":
        scale = r * max(n_test, 1) / REFERENCE["n_test"]
    elif kind == "lda":
        scale = r * min(n_train, n_features) / min(REFERENCE["n_train"], REFERENCE["n_features"])
    else:
        scale = r
    return SECONDS[name] * scale * d


def estimate(names: Sequence[str], folds: Sequence[tuple[int, int]], n_features: int, *, slots: int = 1,
             budget: int = optimizable.DEFAULT_BUDGET,
             inner_folds: int = search.DEFAULT_INNER_FOLDS) -> dict[str, float]:
    """{preset: estimated seconds over ``folds`` ((training rows, test rows) per fold)}, and "total": their sum
    divided by the ``slots`` that run at once."""
    per = {n: sum(fold_seconds(n, tr, te, n_features, budget=budget, inner_folds=inner_folds) for tr, te in folds)
           for n in names}
    return {**per, "total": sum(per.values()) / max(1, slots)}


def duration(seconds: float) -> str:
    """'40 s', '3 min', '1 h 5 min'."""
    if seconds < 60:
        return f"{max(1, round(seconds))} s"
    minutes = round(seconds / 60)
    return f"{minutes} min" if minutes < 60 else f"{minutes // 60} h {minutes % 60} min"


def estimate_line(names: Sequence[str], folds: Sequence[tuple[int, int]], n_features: int, *, slots: int = 1,
                  **search_kw) -> str:
    """One line for the terminal: the estimated wall time, what it covers and the slowest presets, said to be an
    estimate."""
    est = estimate(names, folds, n_features, slots=slots, **search_kw)
    slow = sorted(names, key=lambda n: -est[n])[:3]
    tr = round(sum(f[0] for f in folds) / max(1, len(folds)))
    te = round(sum(f[1] for f in folds) / max(1, len(folds)))
    return (f"estimate: about {duration(est['total'])} for {len(names)} preset(s) x {len(folds)} fold(s) of ~{tr:,} "
            f"training / {te:,} test rows, {n_features:,} features, {slots} at a time (slowest: "
            + ", ".join(f"{n} {duration(est[n])}" for n in slow)
            + f"); a rough cost model measured on {MACHINE} (fer_features/classify/cost.py), not a promise")
