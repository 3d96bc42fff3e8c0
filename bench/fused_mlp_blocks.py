"""Rows per cache block of the fused MLP loss (``fer_features/_fused_mlp.py``) against feature width.

    python bench/fused_mlp_blocks.py

Synthetic float32 data (standard normal, 7 classes) of the product's feature widths (512; 1,280 = lite0 last
layer; 3,920 = the default block4c_add on a 7x7 grid; 5,880 = two layers); narrow preset (10 units) started by
2 L-BFGS steps on the standardised data, as in bench/fused_mlp.py. Per width: stock ``_backprop`` ms per evaluation and the fused speed-up at 8-64 rows per block
(best of 10, one BLAS thread), and the block size ``chunk_rows`` picks. Writes bench/results/fused_mlp_blocks.md.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from _common import machine_info, md_row, md_table, run_seconds, save_report, start_run

SHAPES = [(883, 3920), (5000, 3920), (3000, 5880), (5000, 1280), (15000, 1280), (5000, 512)]
ROWS = (8, 16, 24, 32, 48, 64)


def main(argv=None) -> None:
    argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter).parse_args(argv)
    from threadpoolctl import threadpool_limits

    from fused_mlp import best_ms, started_net, stock_loss_grad  # bench/ is on sys.path when run as a script

    from fer_features.classify import _fused_mlp as F

    t_all = start_run()
    rng = np.random.default_rng(0)
    md_rows = []
    for n, d in SHAPES:
        m, X, Y = started_net("narrow_nn", rng.standard_normal((n, d)).astype(np.float32), rng.integers(0, 7, n))
        with threadpool_limits(1, "blas"):
            stock = best_ms(lambda: stock_loss_grad(m, X, Y))
            ups = [stock / best_ms(lambda: F.loss_grad(m, X, Y, chunk=rows)) for rows in ROWS]
        pick = F.chunk_rows(d, 4)
        md_rows.append(md_row([f"{n:,} x {d:,}", f"{stock:.2f}",
                               *(f"**{u:.2f}x**" if r == pick else f"{u:.2f}x" for r, u in zip(ROWS, ups)), pick]))
        print(md_rows[-1], flush=True)
    minutes = run_seconds(t_all) / 60
    machine = machine_info([("sklearn", "scikit-learn"), ("numpy", "numpy"), ("numba", "numba")])
    md = ["# Fused MLP loss: rows per cache block against feature width", "",
          f"Command: `python bench/fused_mlp_blocks.py` ({minutes:.1f} min)",
          f"Machine: {machine}.",
          "Synthetic float32 data, narrow preset (10 units), one BLAS thread; speed-up = stock scikit-learn "
          "`_backprop` ms / fused ms per loss+gradient evaluation (best of 10). Bold: the block `chunk_rows` picks "
          f"(about {F.BLOCK_BYTES // 1024} KiB of rows, multiples of 8, 8 to 64).", "",
          *md_table(["rows x features", "stock ms", *(f"{r} rows" for r in ROWS), "picked"],
                    "l" + "r" * (len(ROWS) + 2)),
          *md_rows]
    out = save_report(Path("bench/results/fused_mlp_blocks.md"), md, echo=False)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
