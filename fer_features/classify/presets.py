"""Classifier presets named after MATLAB's Classification Learner, as scikit-learn Pipelines.

Every preset standardises first (MATLAB's ``'Standardize', true``). Definitions follow the code the
Classification Learner exports:

* SVMs (``fitcecoc`` over ``templateSVM``, one-vs-one, box constraint 1, kernel scale 'auto' for all three).
  MATLAB's polynomial kernel is ``(1 + x'y / s^2)^q``: sklearn's ``SVC(kernel='poly', degree=q, coef0=1,
  gamma=1/s^2)``; its linear kernel is ``x'y / s^2``: ``SVC(kernel='poly', degree=1, coef0=0, gamma=1/s^2)``.
  MATLAB's 'auto' kernel scale is a random-subsample heuristic; we use the deterministic ``s = sqrt(D)``
  (``gamma = 1 / n_features``, which is sklearn's ``gamma='scale'`` on standardised features), so the
  kernel's diagonal stays near ``2^q`` (1 for linear) whatever the feature size. For the linear SVM this is
  the same as ``SVC(kernel='linear', C=1/D)``; the unscaled ``C=1`` version (this package before 0.2) took
  minutes on 15,000 FER2013 rows instead of 11 s (``bench/results/classifier_scaling.md``).
* Neural networks (``fitcnet``): ReLU hidden layers of 10 / 25 / 100 units (narrow / medium / wide),
  (10, 10) bilayered, (10, 10, 10) trilayered; lambda 0, iteration limit 1000, L-BFGS. They fit with one
  BLAS thread (``SingleThreadMLP``): L-BFGS makes many tiny BLAS calls on thin matrices, and a threaded BLAS
  spends longer waking its threads than computing (measured 1.8-2x slower fits with 2 threads). With the
  default engine, presets with a thin first layer (narrow, bilayered, trilayered) compute L-BFGS's loss and
  gradient in one cache-blocked pass over the data (``FusedMLP``, numba): same optimiser, same result up to
  rounding, about 2x faster per evaluation on 15,000 FER2013 rows.
* KNN (``fitcknn``): fine 1, medium 10, coarse 100 neighbours (Euclidean), cosine 10, cubic 10 (Minkowski
  p=3), weighted 10 with squared-inverse distance weights. With the default engine, cubic_knn's neighbours come
  from blocked numba code (``CubicKNN``): scikit-learn's neighbours and votes, at about the Euclidean presets'
  cost instead of 200-300x it.
"""
from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
from scipy.sparse import issparse
from sklearn.calibration import CalibratedClassifierCV
from sklearn.decomposition import PCA
from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsClassifier
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC
from sklearn.utils.validation import check_array, check_is_fitted
from threadpoolctl import threadpool_limits

from fer_features.errors import ClassifierError

ENGINES = ("sklearn", "sklearnex")
# Estimator kinds that --engine sklearnex routes to the Intel extension. Measured here on CK+48 (981 x 1280,
# subject-grouped 10-fold, same folds): SVMs faster at identical accuracy; KNN and logistic regression were
# slower with sklearnex (logreg fit 4.8 s vs 0.7 s), so they stay on stock scikit-learn.
SKLEARNEX_KINDS = frozenset({"svc"})
DEFAULT_ENGINE = "sklearnex"  # measured faster at equal accuracy: see README / bench


@dataclass(frozen=True)
class ClassifierPreset:
    """One preset: a name, the estimator family and its parameters."""

    name: str
    kind: str  # svc | mlp | knn | lda | logreg
    params: dict[str, Any] = field(default_factory=dict)
    description: str = ""
    seed_study: bool = False  # one of the seven classifiers the seed study compared


class SingleThreadMLP(MLPClassifier):
    """``MLPClassifier`` whose ``fit`` runs with one BLAS thread (faster for L-BFGS on small layers)."""

    def fit(self, X, y):
        with threadpool_limits(limits=1, user_api="blas"):
            return super().fit(X, y)


class FusedMLP(SingleThreadMLP):
    """``SingleThreadMLP`` whose loss and gradient, for ReLU nets with a thin first layer, come from one
    cache-blocked pass over X (``fer_features.classify._fused_mlp``); any other case runs scikit-learn's code."""

    def _backprop(self, X, y, *args):
        # scikit-learn >= 1.7: (sample_weight, activations, deltas, coef_grads, intercept_grads); before: no weight
        from fer_features.classify import _fused_mlp  # numba JIT (about 0.3 s to import): only for the MLP presets

        self.fused_ = _fused_mlp.applies(self, X, args[0] if len(args) == 5 else None)  # what the fit ran
        if not self.fused_:
            return super()._backprop(X, y, *args)
        loss, cg, ig = _fused_mlp.loss_grad(self, X, y)
        coef_grads, intercept_grads = args[-2], args[-1]
        coef_grads[:], intercept_grads[:] = cg, ig
        return loss, coef_grads, intercept_grads


class CubicKNN(KNeighborsClassifier):
    """``KNeighborsClassifier`` whose brute-force Minkowski p=3 neighbours come from blocked numba code
    (``fer_features.classify._minkowski``): the same neighbours, votes and predictions as scikit-learn's, at
    about the cost of the Euclidean KNNs (scikit-learn's took 200-300x theirs). Any other metric, p, algorithm,
    sparse data or ``kneighbors()`` without X runs scikit-learn's own search."""

    def _numba(self):
        """The blocked p=3 module where this fitted estimator uses it, else None."""
        if (self.metric != "minkowski" or self.p != 3 or self.metric_params
                or getattr(self, "_fit_method", None) != "brute" or issparse(self._fit_X)):
            return None
        from fer_features.classify import _minkowski  # numba JIT (about 0.3 s to import): only for cubic_knn

        return _minkowski if _minkowski.njit is not None else None

    def fit(self, X, y):
        super().fit(X, y)
        mod = self._numba()
        if mod is not None:  # numba and the compiled kernels loaded now, not in the first prediction
            mod.kneighbors(self._fit_X[:1], self._fit_X[:1], 1)
        return self

    @property
    def engine_(self) -> str:
        """What computes this fitted estimator's neighbours: numba or sklearn."""
        return "numba" if self._numba() is not None else "sklearn"

    def kneighbors(self, X=None, n_neighbors=None, return_distance=True):
        check_is_fitted(self, "_fit_method")
        k = self.n_neighbors if n_neighbors is None else n_neighbors
        mod = None if X is None or issparse(X) else self._numba()
        if mod is None or not isinstance(k, (int, np.integer)) or not 0 < k <= self.n_samples_fit_:
            return super().kneighbors(X, n_neighbors, return_distance)  # scikit-learn's search (and its errors)
        X = check_array(X, dtype=[np.float64, np.float32], order="C")
        if X.shape[1] != self.n_features_in_:
            raise ValueError(f"X has {X.shape[1]} features, but {type(self).__name__} is expecting "
                             f"{self.n_features_in_} features as input")
        dist, ind = mod.kneighbors(X, self._fit_X, int(k))
        return (dist, ind) if return_distance else ind

    def _votes(self, X) -> bool:
        """Uniform votes on one output over the blocked neighbours (scikit-learn would bypass ``kneighbors``)."""
        return self.weights == "uniform" and not self.outputs_2d_ and X is not None and not issparse(X) \
            and self._numba() is not None

    def predict_proba(self, X):
        check_is_fitted(self, "_fit_method")
        if not self._votes(X):
            return super().predict_proba(X)  # weighted votes: scikit-learn's, over this kneighbors
        ind = self.kneighbors(X, return_distance=False)
        proba = np.zeros((len(ind), len(self.classes_)))
        np.add.at(proba, (np.arange(len(ind))[:, None], self._y[ind]), 1.0)
        return proba / ind.shape[1]

    def predict(self, X):
        check_is_fitted(self, "_fit_method")
        if not self._votes(X):
            return super().predict(X)
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]  # a tie: the first class, as scikit-learn


def _cubic(params: dict[str, Any]) -> bool:
    """KNN parameters whose metric is Minkowski p=3 (cubic_knn, unless overridden)."""
    return params.get("metric", "minkowski") == "minkowski" and params.get("p", 2) == 3


def _squared_inverse(distances):
    return 1.0 / np.maximum(distances, 1e-12) ** 2


PRESETS: dict[str, ClassifierPreset] = {
    p.name: p
    for p in [
        ClassifierPreset("linear_svm", "svc", dict(kernel="poly", degree=1, coef0=0.0, gamma="scale", C=1.0),
                         "SVM, linear kernel x'y/s^2, s=sqrt(D), C=1", True),
        ClassifierPreset("quadratic_svm", "svc", dict(kernel="poly", degree=2, coef0=1.0, gamma="scale", C=1.0),
                         "SVM, (1 + x'y/s^2)^2, s=sqrt(D), C=1"),
        ClassifierPreset("cubic_svm", "svc", dict(kernel="poly", degree=3, coef0=1.0, gamma="scale", C=1.0),
                         "SVM, (1 + x'y/s^2)^3, s=sqrt(D), C=1", True),
        *(ClassifierPreset(f"{n}_nn", "mlp", dict(hidden_layer_sizes=h, activation="relu", alpha=0.0,
                                                   solver="lbfgs", max_iter=1000, random_state=0),
                           f"neural network {'x'.join(map(str, h))} ReLU, lambda 0, L-BFGS, 1000 iterations", True)
          for n, h in [("narrow", (10,)), ("medium", (25,)), ("wide", (100,)), ("bilayered", (10, 10)),
                       ("trilayered", (10, 10, 10))]),
        ClassifierPreset("fine_knn", "knn", dict(n_neighbors=1), "KNN, 1 neighbour, Euclidean"),
        ClassifierPreset("medium_knn", "knn", dict(n_neighbors=10), "KNN, 10 neighbours, Euclidean"),
        ClassifierPreset("coarse_knn", "knn", dict(n_neighbors=100), "KNN, 100 neighbours, Euclidean"),
        ClassifierPreset("cosine_knn", "knn", dict(n_neighbors=10, metric="cosine"), "KNN, 10 neighbours, cosine"),
        ClassifierPreset("cubic_knn", "knn", dict(n_neighbors=10, metric="minkowski", p=3, algorithm="brute"),
                         "KNN, 10 neighbours, Minkowski p=3"),
        ClassifierPreset("weighted_knn", "knn", dict(n_neighbors=10, weights="squared_inverse"),
                         "KNN, 10 neighbours, squared-inverse distance weights"),
        ClassifierPreset("lda", "lda", dict(solver="svd"), "linear discriminant analysis"),
        ClassifierPreset("logreg", "logreg", dict(C=1.0, max_iter=1000), "multinomial logistic regression, L2, C=1"),
    ]
}
SEED_CLASSIFIERS = [n for n, p in PRESETS.items() if p.seed_study]


def get_preset(name: str) -> ClassifierPreset:
    try:
        return PRESETS[name]
    except KeyError:
        raise ClassifierError(f"unknown classifier {name!r}; known: {', '.join(PRESETS)}") from None


def parse_overrides(items: list[str] | None) -> dict[str, Any]:
    """``['C=10', 'gamma=0.001', 'hidden_layer_sizes=(50,)']`` -> dict with Python literals parsed."""
    out: dict[str, Any] = {}
    for item in items or []:
        if "=" not in item:
            raise ClassifierError(f"--set expects NAME=VALUE, got {item!r}")
        k, v = item.split("=", 1)
        k = k.strip()
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", k):
            raise ClassifierError(f"bad parameter name {k!r}")
        try:
            out[k] = ast.literal_eval(v.strip())
        except (ValueError, SyntaxError):
            out[k] = v.strip()
    return out


def _estimator_class(kind: str, engine: str) -> Callable:
    if engine not in ENGINES:
        raise ClassifierError(f"unknown engine {engine!r}; use one of {', '.join(ENGINES)}")
    if engine == "sklearnex" and kind in SKLEARNEX_KINDS:
        try:
            if kind == "svc":
                from sklearnex.svm import SVC as cls  # patches scikit-learn: sklearnex engine only
            elif kind == "knn":
                from sklearnex.neighbors import KNeighborsClassifier as cls  # patches scikit-learn: sklearnex engine only
            else:
                from sklearnex.linear_model import LogisticRegression as cls  # patches scikit-learn: sklearnex engine only
            return cls
        except ImportError:  # pragma: no cover - sklearnex is a dependency on x86-64
            pass
    if kind == "svc":
        return SVC
    if kind == "knn":
        return KNeighborsClassifier
    if kind == "logreg":
        return LogisticRegression
    if kind == "mlp":
        return FusedMLP if engine == "sklearnex" else SingleThreadMLP
    if kind == "lda":
        return LinearDiscriminantAnalysis
    raise ClassifierError(f"unknown estimator kind {kind!r}")


def engine_used(name: str, engine: str) -> str:
    """What actually runs preset ``name``: with the default engine, sklearnex for the SVMs and the fused
    numba loss for the thin neural networks; stock scikit-learn for the rest."""
    preset = get_preset(name)
    if engine == "sklearnex" and preset.kind in SKLEARNEX_KINDS:
        return "sklearnex"
    if engine == "sklearnex" and preset.kind == "knn" and _cubic(preset.params):
        from fer_features.classify import _minkowski  # numba JIT (about 0.3 s to import): only for cubic_knn

        return "numba" if _minkowski.njit is not None else "sklearn"
    if engine == "sklearnex" and preset.kind == "mlp":
        from fer_features.classify import _fused_mlp  # numba JIT (about 0.3 s to import): only for the MLP presets

        if _fused_mlp.njit is not None and preset.params["hidden_layer_sizes"][0] <= _fused_mlp.MAX_FIRST_WIDTH:
            return "numba"
    return "sklearn"


def fitted_engine(pipe, name: str, engine: str) -> str:
    """``engine_used`` as a fitted pipeline actually ran it: a ``FusedMLP`` runs scikit-learn's own code for
    two classes or overridden layers, and may fuse an overridden wide preset."""
    est = pipe[-1] if hasattr(pipe, "steps") else pipe
    if hasattr(est, "fitted_engine_"):  # an optimizable preset (optimizable.py) knows what its refit ran
        return est.fitted_engine_
    if isinstance(est, FusedMLP) and hasattr(est, "fused_"):
        return "numba" if est.fused_ else "sklearn"
    if isinstance(est, KNeighborsClassifier):  # CubicKNN or scikit-learn's own
        return est.engine_ if isinstance(est, CubicKNN) else "sklearn"
    return engine_used(name, engine)


def make_classifier(name: str, overrides: dict[str, Any] | None = None, *, engine: str = DEFAULT_ENGINE,
                    probability: bool = False, pca: float | int | None = None) -> Pipeline:
    """Pipeline(StandardScaler, [PCA], classifier) for preset ``name``; ``overrides`` set any parameter."""
    preset = get_preset(name)
    if pca is not None and pca <= 0:
        raise ClassifierError(f"pca must be > 0 (a variance fraction below 1 or a number of components), got {pca}")
    params = {**preset.params, **(overrides or {})}
    if preset.kind == "knn" and params.get("weights") == "squared_inverse":
        params["weights"] = _squared_inverse
    if preset.kind == "mlp" and "hidden_layer_sizes" in params:
        h = params["hidden_layer_sizes"]
        params["hidden_layer_sizes"] = tuple(h) if isinstance(h, (list, tuple)) else (int(h),)
    cls = _estimator_class(preset.kind, engine)
    if cls is KNeighborsClassifier and engine == "sklearnex" and _cubic(params):
        cls = CubicKNN
    try:
        clf = cls(**params)
    except TypeError as exc:
        raise ClassifierError(f"{name}: bad parameter override: {exc}") from None
    if probability and not hasattr(clf, "predict_proba"):
        # Platt scaling on internal folds; scikit-learn's replacement for SVC(probability=True)

        clf = CalibratedClassifierCV(clf, method="sigmoid", cv=5, ensemble=False)
    steps: list[tuple[str, Any]] = [("scale", StandardScaler())]
    if pca:
        steps.append(("pca", PCA(n_components=pca, svd_solver="full", random_state=0)))
    steps.append(("clf", clf))
    return Pipeline(steps)


def describe(name: str) -> dict[str, Any]:
    p = get_preset(name)
    return {"name": p.name, "kind": p.kind, "params": {k: (list(v) if isinstance(v, tuple) else v)
                                                       for k, v in p.params.items()},
            "description": p.description}
