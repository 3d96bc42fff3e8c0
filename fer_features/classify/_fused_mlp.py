"""The neural-network presets' L-BFGS loss and gradient in one pass over the data (numba).

scikit-learn's ``MLPClassifier._backprop`` reads the whole training matrix twice per L-BFGS evaluation:
``X @ W1`` forward, ``X.T @ delta1`` backward. With a thin first layer (the narrow, bilayered and trilayered
presets: 10 units) both products are bound by memory bandwidth, not arithmetic: on 15,000 x 1,280 FER2013
features they take about 30 ms per evaluation here. The loss is a sum over rows, so both can run on a block
of rows that still sits in the L2 cache: forward through every layer, softmax, log-loss, backward, and the
first layer's gradient from the same block. Same optimiser (scipy's L-BFGS-B, scikit-learn's settings), same
initialisation, the same loss and gradient up to floating-point summation order (``tests/test_classify.py``).
Measured with ``python bench/classifier_scaling.py``.
"""
from __future__ import annotations

import math

import numpy as np
from scipy.sparse import issparse

try:
    from numba import njit
    from numba.typed import List
except ImportError:  # pragma: no cover - numba is a dependency; without it the stock path runs
    njit = None

# rows per block: as many as fill about 320 KiB (the block must stay in L2 while the whole net runs on it), in
# multiples of 8, from 8 to 64 (``python bench/fused_mlp_blocks.py``: the pick is the fastest block at 512 to
# 5,880 features; 64-row blocks on the default 3,920-d features were slower than stock, 0.75-1.1x).
BLOCK_BYTES = 320 * 1024


def chunk_rows(n_features: int, itemsize: int) -> int:
    """Rows per cache block for ``n_features`` columns of ``itemsize`` bytes."""
    return int(min(64, max(8, 8 * math.ceil(BLOCK_BYTES / (n_features * itemsize) / 8))))


# first hidden layers wider than this are bound by arithmetic, where blocking gains nothing (measured: 25
# units 45 vs 47 ms, 100 units 124 vs 106 ms): they keep the stock path.
MAX_FIRST_WIDTH = 16


if njit is not None:
    @njit(cache=True)
    def _add_bias_relu(A, b):
        for i in range(A.shape[0]):
            for j in range(A.shape[1]):
                v = A[i, j] + b[j]
                A[i, j] = v if v > 0 else 0.0

    @njit(cache=True)
    def _unpack(Wflat, bflat, shapes):
        """Per-layer 2-D weight and 1-D bias views of arrays packed layer after layer (layer ``l``'s weights
        are ``shapes[l, 0] x shapes[l, 1]``, its biases ``shapes[l, 1]``)."""
        Ws, bs = List(), List()
        o = ob = 0
        for l in range(shapes.shape[0]):
            r, c = shapes[l, 0], shapes[l, 1]
            Ws.append(Wflat[o:o + r * c].reshape((r, c)))
            bs.append(bflat[ob:ob + c])
            o += r * c
            ob += c
        return Ws, bs

    @njit(cache=True)
    def _fused_loss_grad(X, Y, Wflat, bflat, shapes, gWflat, gbflat, chunk, eps):
        """Sum of log-losses over rows; adds the weight and bias gradients (summed over rows, not yet divided
        by n) into the zeroed ``gWflat``/``gbflat``. The weights cross the Python boundary packed in flat
        arrays, so one compiled signature per dtype serves every layer count (tuples of arrays compiled once per
        layer count, typed Lists also compiled boxing helpers in every new process, about 1.5 s measured)."""
        Ws, bs = _unpack(Wflat, bflat, shapes)
        gW, gb = _unpack(gWflat, gbflat, shapes)
        L = len(Ws)
        WT = List()
        for l in range(L):
            WT.append(np.ascontiguousarray(Ws[l].T))
        loss = 0.0
        n = X.shape[0]
        k = Ws[L - 1].shape[1]
        W0, b0, gW0, gb0, bL = Ws[0], bs[0], gW[0], gb[0], bs[L - 1]  # typed-List reads cost: hoisted
        for s in range(0, n, chunk):
            e = min(n, s + chunk)
            c = e - s
            Xc = X[s:e]
            acts = List()
            a = np.dot(Xc, W0)
            _add_bias_relu(a, b0)
            acts.append(a)
            for l in range(1, L):
                a = np.dot(acts[l - 1], Ws[l])
                if l < L - 1:
                    _add_bias_relu(a, bs[l])
                acts.append(a)
            out = acts[L - 1]
            for i in range(c):  # softmax, log-loss, and output delta = p - y, in place
                m = -np.inf
                for j in range(k):
                    out[i, j] += bL[j]
                    if out[i, j] > m:
                        m = out[i, j]
                t = 0.0
                for j in range(k):
                    out[i, j] = np.exp(out[i, j] - m)
                    t += out[i, j]
                for j in range(k):
                    p = out[i, j] / t
                    yv = Y[s + i, j]
                    if yv != 0:
                        loss -= yv * np.log(min(max(p, eps), 1.0 - eps))
                    out[i, j] = p - yv
            d = out
            for l in range(L - 1, 0, -1):
                g, h = gW[l], gb[l]
                g += np.dot(acts[l - 1].T, d)
                h += d.sum(axis=0)
                d = np.dot(d, WT[l])
                prev = acts[l - 1]
                for i in range(c):
                    for j in range(d.shape[1]):
                        if prev[i, j] <= 0:
                            d[i, j] = 0.0
            gW0 += np.dot(Xc.T, d)
            gb0 += d.sum(axis=0)
        return loss


def applies(mlp, X, sample_weight=None) -> bool:
    """Whether the fused path computes ``mlp``'s loss on ``X`` (else scikit-learn's own code runs)."""
    return (njit is not None and not issparse(X) and isinstance(X, np.ndarray) and X.ndim == 2
            and X.dtype in (np.float32, np.float64) and X.flags.c_contiguous and sample_weight is None
            and mlp.activation == "relu" and getattr(mlp, "out_activation_", None) == "softmax"
            and mlp.loss == "log_loss" and len(mlp.coefs_) >= 2 and mlp.coefs_[0].shape[1] <= MAX_FIRST_WIDTH)


def loss_grad(mlp, X: np.ndarray, y: np.ndarray,
              chunk: int | None = None) -> tuple[float, list[np.ndarray], list[np.ndarray]]:
    """``MLPClassifier._backprop``'s (loss, coef grads, intercept grads) for one-hot ``y``, in one pass over
    blocks of ``chunk`` rows (default: ``chunk_rows``)."""
    dt = X.dtype
    shapes = np.array([W.shape for W in mlp.coefs_], dtype=np.int64)
    Wflat = np.concatenate([np.ravel(W) for W in mlp.coefs_]).astype(dt, copy=False)
    bflat = np.concatenate([np.ravel(b) for b in mlp.intercepts_]).astype(dt, copy=False)
    gWflat, gbflat = np.zeros_like(Wflat), np.zeros_like(bflat)
    n = X.shape[0]
    loss = _fused_loss_grad(X, np.ascontiguousarray(y, dtype=dt), Wflat, bflat, shapes, gWflat, gbflat,
                            chunk or chunk_rows(X.shape[1], dt.itemsize), float(np.finfo(dt).eps))
    gW = [g.reshape(W.shape) for g, W in zip(np.split(gWflat, np.cumsum(shapes[:, 0] * shapes[:, 1])[:-1]), mlp.coefs_)]
    gb = np.split(gbflat, np.cumsum(shapes[:, 1])[:-1])
    loss = loss / n + 0.5 * mlp.alpha * sum(float(np.dot(W.ravel(), W.ravel())) for W in mlp.coefs_) / n
    coef_grads = [(g + mlp.alpha * W) / n for g, W in zip(gW, mlp.coefs_)]
    intercept_grads = [g / n for g in gb]
    return loss, coef_grads, intercept_grads
