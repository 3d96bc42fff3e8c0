"""Rows per cache block of the fused MLP loss (``fer_features/_fused_mlp.py``) against feature width.

    python bench/fused_mlp_blocks.py

Synthetic float32 data (standard normal, 7 classes) of the product's feature widths (512; 1,280 = lite0 last
layer; 3,920 = the default block4c_add on a 7x7 grid; 5,880 = two layers); narrow preset (10 units) started by
2 L-BFGS steps. Per width: stock ``_backprop`` ms per evaluation and the fused speed-up at 8-64 rows per block
(best of 10, one BLAS thread), and the block size ``chunk_rows`` picks. Writes bench/results/fused_mlp_blocks.md.
"""
from __future__ import annotations

import time
import warnings
from pathlib import Path

import numpy as np

SHAPES = [(883, 3920), (5000, 3920), (3000, 5880), (5000, 1280), (15000, 1280), (5000, 512)]
ROWS = (8, 16, 24, 32, 48, 64)


def _best(f, k=10):
    f()
    ts = []
    for _ in range(k):
        t = time.perf_counter()
        f()
        ts.append(time.perf_counter() - t)
    return 1000 * min(ts)


def main() -> None:
    from sklearn.neural_network import MLPClassifier
    from threadpoolctl import threadpool_limits

    from fer_features import _fused_mlp as F
    from fer_features import classifiers as C
    from fer_features.reports import machine_info

    t_all = time.perf_counter()
    rng = np.random.default_rng(0)
    md_rows = []
    for n, d in SHAPES:
        X = rng.standard_normal((n, d)).astype(np.float32)
        y = rng.integers(0, 7, n)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            m = C.FusedMLP(hidden_layer_sizes=(10,), max_iter=2, random_state=0).fit(X, y)
        m.coefs_ = [w.astype(np.float32) for w in m.coefs_]
        m.intercepts_ = [b.astype(np.float32) for b in m.intercepts_]
        Y = m._label_binarizer.transform(y).astype(bool)
        L = len(m.coefs_)
        with threadpool_limits(1, "blas"):
            stock = _best(lambda: MLPClassifier._backprop(m, X, Y, None, [X] + [None] * L, [None] * L,
                                                          [None] * L, [None] * L))
            ups = []
            for rows in ROWS:
                Ws, bs = tuple(m.coefs_), tuple(m.intercepts_)
                gW, gb = tuple(np.zeros_like(w) for w in Ws), tuple(np.zeros_like(b) for b in bs)
                ups.append(stock / _best(lambda: F._fused_loss_grad(X, Y.astype(np.float32), Ws, bs, gW, gb, rows,
                                                                    1e-7)))
        pick = F.chunk_rows(d, 4)
        md_rows.append(f"| {n:,} x {d:,} | {stock:.2f} | " + " | ".join(
            (f"**{u:.2f}x**" if r == pick else f"{u:.2f}x") for r, u in zip(ROWS, ups)) + f" | {pick} |")
        print(md_rows[-1], flush=True)
    machine = machine_info([("sklearn", "scikit-learn"), ("numpy", "numpy"), ("numba", "numba")])
    md = ["# Fused MLP loss: rows per cache block against feature width", "",
          f"Command: `python bench/fused_mlp_blocks.py` ({(time.perf_counter() - t_all) / 60:.1f} min)",
          f"Machine: {machine}.",
          "Synthetic float32 data, narrow preset (10 units), one BLAS thread; speed-up = stock scikit-learn "
          "`_backprop` ms / fused ms per loss+gradient evaluation (best of 10). Bold: the block `chunk_rows` picks "
          f"(about {F.BLOCK_BYTES // 1024} KiB of rows, multiples of 8, 8 to 64).", "",
          "| rows x features | stock ms | " + " | ".join(f"{r} rows" for r in ROWS) + " | picked |",
          "|---|---:|" + "---:|" * len(ROWS) + "---:|"] + md_rows
    out = Path("bench/results/fused_mlp_blocks.md")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(md) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
