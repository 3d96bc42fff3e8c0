"""One fold: what a fold task lets through to the user."""
from __future__ import annotations

import warnings

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin

from fer_features.evaluation.folds import run_fold

DAAL = ("'Threading' parallel backend is not supported by Extension for scikit-learn*. Falling back to usage of all "
        "available threads.")


class _Noisy(ClassifierMixin, BaseEstimator):
    """Warns as sklearnex does when a Dask worker thread predicts."""

    def fit(self, X, y):
        self.classes_ = np.unique(y)
        return self

    def predict(self, X):
        warnings.warn(DAAL, UserWarning)
        return np.full(len(X), self.classes_[0])


def test_the_sklearnex_threading_warning_of_a_dask_worker_is_not_shown():
    X, y = np.zeros((6, 2)), np.array([0, 1, 0, 1, 0, 1])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = run_fold(_Noisy(), X, y, np.arange(4), np.arange(4, 6), None, "logreg", "sklearn")
        warnings.warn("another warning", UserWarning)  # others still pass
    assert len(out.pred) == 2
    assert [str(w.message) for w in caught] == ["another warning"]
