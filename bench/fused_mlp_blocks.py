"""Rows per cache block of the fused MLP loss (``fer_features/_fused_mlp.py``) against feature width.

    python bench/fused_mlp_blocks.py

Synthetic float32 data (standard normal, 7 classes) of the product's feature widths (512; 1,280 = lite0 last
layer; 3,920 = the default block4c_add on a 7x7 grid; 5,880 = two layers); narrow preset (10 units) started by
2 L-BFGS steps on the standardised data, as in bench/fused_mlp.py. Per width: stock ``_backprop`` ms per evaluation and the fused speed-up at 8-64 rows per block
(best of 10, one BLAS thread), and the block size ``chunk_rows`` picks. Writes bench/results/fused_mlp_blocks.md.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

SHAPES = [(883, 3920), (5000, 3920), (3000, 5880), (5000, 1280), (15000, 1280), (5000, 512)]
ROWS = (8, 16, 24, 32, 48, 64)


def main(argv=None) -> None:
    argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter).parse_args(argv)
    from threadpoolctl import threadpool_limits

    from fused_mlp import best_ms, started_net, stock_loss_grad  # bench/ is on sys.path when run as a script

    from fer_features import _fused_mlp as F
    from fer_features.reports import machine_info

    t_all = time.perf_counter()
    rng = np.random.default_rng(0)
    md_rows = []
    for n, d in SHAPES:
        m, X, Y = started_net("narrow_nn", rng.standard_normal((n, d)).astype(np.float32), rng.integers(0, 7, n))
        with threadpool_limits(1, "blas"):
            stock = best_ms(lambda: stock_loss_grad(m, X, Y))
            ups = [stock / best_ms(lambda: F.loss_grad(m, X, Y, chunk=rows)) for rows in ROWS]
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
