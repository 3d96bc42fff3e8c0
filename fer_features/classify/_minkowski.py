"""cubic_knn's neighbours: Minkowski p=3 distances computed for a block of query rows at a time (numba).

scikit-learn's brute-force Minkowski distance for p other than 2 calls ``pow`` for every feature of every pair:
on 1,000 x 3,920 features (900 training, 100 test rows) its prediction took about 100x the Euclidean KNNs'
(a matrix product), 52 % of a default ``compare``. Here one compiled loop sums ``|a - b|^3`` as ``t * t * t``
with ``t = |a - b|``: the difference taken in the data's precision, cubed and summed in float64 (as
scikit-learn's float32 metric does), for as many query rows as fill ``BLOCK_BYTES`` of distances; the k smallest
of each row come from ``argpartition``, ties broken towards the lower training row (scikit-learn's heap keeps the
first of equal distances), nearest first. The same neighbours as scikit-learn's up to the summation order of
the float64 sum (``tests/classify/test_presets.py``).
"""
from __future__ import annotations

import numpy as np

try:
    from numba import njit
except ImportError:  # pragma: no cover - numba is a dependency; without it scikit-learn's search runs
    njit = None

BLOCK_BYTES = 64 * 2**20  # float64 distances of one block of query rows against every training row

if njit is not None:
    @njit(cache=True, fastmath={"reassoc", "contract"})  # reassociation: the sum over features vectorises
    def _cubed_distances(A, B, out):
        """``out[i, j] = sum_f |A[i, f] - B[j, f]|^3`` (Minkowski p=3 to the power 3)."""
        for i in range(A.shape[0]):
            for j in range(B.shape[0]):
                s = 0.0
                for f in range(A.shape[1]):
                    t = abs(np.float64(A[i, f] - B[j, f]))
                    s += t * t * t
                out[i, j] = s


def _smallest(D: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(indices, values) of the k smallest of each row of ``D``, smallest first; equal values: lower index first,
    and a tie at the k-th place keeps the lower indices."""
    idx = np.argpartition(D, k - 1, axis=1)[:, :k] if k < D.shape[1] else np.tile(np.arange(D.shape[1]), (len(D), 1))
    d = np.take_along_axis(D, idx, 1)
    tied = (D <= d.max(axis=1, keepdims=True)).sum(axis=1) > k  # more rows at the k-th distance than places
    if tied.any():
        idx[tied] = np.argsort(D[tied], axis=1, kind="stable")[:, :k]
        d[tied] = np.take_along_axis(D[tied], idx[tied], 1)
    order = np.lexsort((idx, d), axis=-1)
    return np.take_along_axis(idx, order, 1), np.take_along_axis(d, order, 1)


def kneighbors(X: np.ndarray, fit_X: np.ndarray, k: int, block_bytes: int = BLOCK_BYTES):
    """(Minkowski p=3 distances, indices) of the ``k`` nearest rows of ``fit_X`` for every row of ``X``,
    nearest first (``1 <= k <= len(fit_X)``), as ``KNeighborsClassifier.kneighbors`` returns them."""
    dtype = np.result_type(X.dtype, fit_X.dtype)
    X, fit_X = np.ascontiguousarray(X, dtype), np.ascontiguousarray(fit_X, dtype)
    n, m = len(X), len(fit_X)
    rows = int(max(1, min(n, block_bytes // (8 * m))))
    dist, ind = np.empty((n, k)), np.empty((n, k), dtype=np.intp)
    buf = np.empty((rows, m))
    for a in range(0, n, rows):
        D = buf[:min(rows, n - a)]
        _cubed_distances(X[a:a + rows], fit_X, D)
        ind[a:a + len(D)], dist[a:a + len(D)] = _smallest(D, k)
    return np.cbrt(dist), ind
