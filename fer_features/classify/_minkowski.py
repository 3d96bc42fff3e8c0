"""cubic_knn's neighbours: Minkowski p=3 distances computed for a block of query rows at a time (numba).

scikit-learn's brute-force Minkowski distance for p other than 2 calls ``pow`` for every feature of every pair:
on 1,000 x 3,920 random features, 10 folds, its prediction took 44 s where the Euclidean KNNs' (a matrix product)
took 0.15 s, and 52 % of a default ``compare`` in issue 28. Here compiled loops sum ``t * t * t`` with
``t = |a - b|``, the difference taken in the data's precision as scikit-learn's float32 metric takes it, for as many
query rows as fill ``BLOCK_BYTES`` of distances. Float32 data (the caches' features) is summed in float32
arithmetic first (8 lanes a vector, 4 query x 2 training rows at a time): within ``(d + 2) u`` (``u = 2^-24``) of
the float64 sum, so every training row within twice that of the k-th smallest is a candidate, and the candidates
are summed again in float64, as scikit-learn sums them (a float32 sum that overflows is inf: every row is then a
candidate). Float64 data is summed in float64 throughout. The k smallest of each row are taken nearest first,
ties broken towards the lower training row (scikit-learn's heap keeps the first of equal distances): the same
neighbours as scikit-learn's up to the summation order of the float64 sum (``tests/classify/test_presets.py``).
Measured (``python bench/cubic_knn.py``): 0.26 s against medium_knn's 0.24 s with one BLAS thread, as in compare's
fold workers (0.23 s against 0.15 s where BLAS has both cores); same predictions as scikit-learn's.
"""
from __future__ import annotations

import numpy as np

try:
    from numba import njit
except ImportError:  # pragma: no cover - numba is a dependency; without it scikit-learn's search runs
    njit = None

BLOCK_BYTES = 64 * 2**20  # float64 distances of one block of query rows against every training row
U32 = 2.0 ** -24  # float32's unit roundoff

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

    @njit(cache=True, fastmath={"reassoc", "contract"}, inline="always")
    def _one32(A, i, B, j):
        s = np.float32(0.0)
        for f in range(A.shape[1]):
            t = abs(A[i, f] - B[j, f])
            s += t * t * t
        return s

    @njit(cache=True, fastmath={"reassoc", "contract"})
    def _cubed_distances32(A, B, out):
        """``_cubed_distances`` in float32 arithmetic (float32 ``A`` and ``B``), within ``(d + 2) u`` of it; 4 query
        rows x 2 training rows at a time, each value loaded once for the 8 sums (1.7x faster than one pair at a
        time: 14 vs 24 ms for 100 x 900 rows of 3,920 features)."""
        n, m = A.shape[0], B.shape[0]
        n4, m2 = n - n % 4, m - m % 2
        for i in range(0, n4, 4):
            for j in range(0, m2, 2):
                s00 = s01 = s10 = s11 = s20 = s21 = s30 = s31 = np.float32(0.0)
                for f in range(A.shape[1]):
                    b0, b1 = B[j, f], B[j + 1, f]
                    a = A[i, f]
                    t0, t1 = abs(a - b0), abs(a - b1)
                    s00 += t0 * t0 * t0
                    s01 += t1 * t1 * t1
                    a = A[i + 1, f]
                    t0, t1 = abs(a - b0), abs(a - b1)
                    s10 += t0 * t0 * t0
                    s11 += t1 * t1 * t1
                    a = A[i + 2, f]
                    t0, t1 = abs(a - b0), abs(a - b1)
                    s20 += t0 * t0 * t0
                    s21 += t1 * t1 * t1
                    a = A[i + 3, f]
                    t0, t1 = abs(a - b0), abs(a - b1)
                    s30 += t0 * t0 * t0
                    s31 += t1 * t1 * t1
                out[i, j], out[i, j + 1], out[i + 1, j], out[i + 1, j + 1] = s00, s01, s10, s11
                out[i + 2, j], out[i + 2, j + 1], out[i + 3, j], out[i + 3, j + 1] = s20, s21, s30, s31
            for j in range(m2, m):
                for ii in range(i, i + 4):
                    out[ii, j] = _one32(A, ii, B, j)
        for i in range(n4, n):
            for j in range(m):
                out[i, j] = _one32(A, i, B, j)

    @njit(cache=True, fastmath={"reassoc", "contract"})
    def _cubed_pairs(A, B, ii, jj, out):
        """``_cubed_distances`` of the pairs ``(A[ii[p]], B[jj[p]])`` only."""
        for p in range(len(ii)):
            s = 0.0
            for f in range(A.shape[1]):
                t = abs(np.float64(A[ii[p], f] - B[jj[p], f]))
                s += t * t * t
            out[p] = s


def _block(X: np.ndarray, fit_X: np.ndarray, k: int, out: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(indices, float64 sums) of the k nearest rows of ``fit_X`` for each row of ``X``, ``out`` the scratch space
    for their float64 (or, for float32 data, float32) sums. A float32 sum is within ``(d + 2) u`` of the float64
    one, or inf where it overflowed (then every row is a candidate)."""
    if X.dtype != np.float32:
        _cubed_distances(X, fit_X, out)
        return _smallest(out, k)
    _cubed_distances32(X, fit_X, out)
    d = X.shape[1]
    eps, tiny = 2 * (d + 2) * U32, d * 2.0 ** -126  # the relative error bound (x2), and underflow per term
    kth = np.partition(out, k - 1, axis=1)[:, k - 1] if k < out.shape[1] else out.max(axis=1)
    ii, jj = np.nonzero(out <= ((1 + eps) * (kth + tiny) / (1 - eps) + tiny)[:, None])  # >= k per row
    exact = np.empty(len(ii))
    _cubed_pairs(X, fit_X, ii, jj, exact)
    order = np.lexsort((jj, exact, ii))  # by row, then distance, then training row
    first = np.concatenate([[0], np.cumsum(np.bincount(ii, minlength=len(out)))[:-1]])
    take = order[first[:, None] + np.arange(k)]
    return jj[take], exact[take]


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
        ind[a:a + len(D)], dist[a:a + len(D)] = _block(X[a:a + rows], fit_X, k, D)
    return np.cbrt(dist), ind
