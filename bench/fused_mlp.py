"""The neural-network presets' L-BFGS loss/gradient: scikit-learn's two passes vs the fused one-pass kernel.

    python bench/fused_mlp.py [--cache FER2013_CACHE] [--rows 15000] [--fits narrow_nn,bilayered_nn,trilayered_nn]
                              [--orders 1]

On a stratified sample of FER2013 training features (efficientnet_lite0, 112 px, last layer, global average;
extracted first if absent), standardised as the presets do: per preset, the milliseconds of one loss+gradient
evaluation (best of 10, one BLAS thread) by ``MLPClassifier._backprop`` and by ``fer_features._fused_mlp``,
their largest gradient difference; then whole fits (``--fits``) with both engines: seconds, L-BFGS iterations,
seconds per iteration and PrivateTest accuracy. With ``--orders K`` each fit repeats on K orderings of the same
training rows: same net, same initialisation, only the floating-point summation order differs, which shows how
far rounding alone moves an L-BFGS fit's accuracy, within each engine and between them. Writes bench/results/fused_mlp.md (+ .json).
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

# bench/ (this file's folder) is on sys.path when run as a script
from _common import best_of, machine_info, md_row, md_table, pct, quiet_timed, run_seconds, save_report, start_run
from classifier_scaling import fer2013_args, fer2013_features


def best_ms(f, k=10) -> float:
    """Milliseconds of the fastest of ``k`` calls of ``f``, after one warm-up call."""
    return 1000 * best_of(f, k)


def started_net(name, X, y):
    """(net, standardised X, one-hot Y) for preset ``name`` after 2 L-BFGS steps on (X, y): the preset's
    initialisation, with weights in X's dtype as scikit-learn holds them during a fit (float64 after it)."""
    from fer_features.classify import presets as C

    pipe = C.make_classifier(name, {"max_iter": 2})
    quiet_timed(pipe.fit, X, y)  # (its convergence warnings silenced)
    m, Xs = pipe[-1], pipe[:-1].transform(X)
    m.coefs_ = [w.astype(Xs.dtype) for w in m.coefs_]
    m.intercepts_ = [b.astype(Xs.dtype) for b in m.intercepts_]
    return m, Xs, m._label_binarizer.transform(y).astype(bool)


def stock_loss_grad(m, X, Y):
    """scikit-learn's own ``_backprop`` (loss, coef grads, intercept grads) for net ``m``."""
    from sklearn.neural_network import MLPClassifier

    n = len(m.coefs_)
    return MLPClassifier._backprop(m, X, Y, None, [X] + [None] * n, [None] * n, [None] * n, [None] * n)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    fer2013_args(ap)
    ap.add_argument("--rows", type=int, default=15000)
    ap.add_argument("--fits", default="narrow_nn,bilayered_nn,trilayered_nn")
    ap.add_argument("--orders", type=int, default=1, help="repeat each fit on this many row orders (rounding noise)")
    ap.add_argument("--out", default="bench/results/fused_mlp")
    a = ap.parse_args()

    from sklearn.model_selection import train_test_split
    from threadpoolctl import threadpool_limits

    from fer_features.classify import _fused_mlp as F
    from fer_features.classify import presets as C

    t_all = start_run()
    cache_path, X, y, train_all, te = fer2013_features(a.data, a.cache)
    tr = np.sort(train_test_split(train_all, train_size=a.rows, stratify=y[train_all], random_state=0)[0])
    nets = [n for n, p in C.PRESETS.items() if p.kind == "mlp"]

    evals = []
    for name in nets:
        m, Xs, Y = started_net(name, X[tr], y[tr])

        def stock():
            return stock_loss_grad(m, Xs, Y)

        def fused():
            return F.loss_grad(m, Xs, Y)

        row = {"classifier": name, "hidden": list(m.hidden_layer_sizes)}
        with threadpool_limits(1, "blas"):
            for label, f in (("stock", stock), ("fused", fused)):
                row[f"{label}_out"] = f()
                row[f"{label}_ms"] = best_ms(f)
        s, fz = row.pop("stock_out"), row.pop("fused_out")
        row["max_grad_diff"] = float(max(np.abs(a - b).max() for a, b in zip(s[1] + s[2], fz[1] + fz[2])))
        row["max_grad"] = float(max(np.abs(a).max() for a in s[1] + s[2]))
        row["loss_diff"] = float(abs(s[0] - fz[0]))
        row["fused_by_default"] = C.engine_used(name, C.DEFAULT_ENGINE) == "numba"
        evals.append(row)
        print(f"{name:<14} stock {row['stock_ms']:6.1f} ms  fused {row['fused_ms']:6.1f} ms  "
              f"max grad diff {row['max_grad_diff']:.1e}", flush=True)

    fits = []
    orders = [tr] + [np.random.default_rng(k).permutation(tr) for k in range(1, a.orders)]
    for name in [n for n in a.fits.split(",") if n]:
        for engine, (k, rows) in ((e, o) for e in ("sklearn", "sklearnex") for o in enumerate(orders)):
            pipe = C.make_classifier(name, engine=engine)
            _, fit_s = quiet_timed(pipe.fit, X[rows], y[rows])
            acc = float((pipe.predict(X[te]) == y[te]).mean())
            it = int(pipe[-1].n_iter_)
            fits.append({"classifier": name, "engine": C.engine_used(name, engine), "row_order": k, "fit_s": fit_s,
                         "iterations": it, "ms_per_iteration": 1000 * fit_s / it, "accuracy": acc})
            print(f"{name:<14} {engine:<9} order {k} fit {fit_s:6.1f} s  {it} iterations  acc {100 * acc:.2f} %", flush=True)
    total = run_seconds(t_all)

    machine = machine_info([("sklearn", "scikit-learn"), ("numpy", "numpy"), ("scipy", "SciPy"), ("numba", "numba")])
    cmd = ("python bench/fused_mlp.py" + (f" --rows {a.rows}" if a.rows != 15000 else "")
           + (f" --orders {a.orders}" if a.orders != 1 else ""))
    md = ["# The neural networks' L-BFGS loss and gradient: scikit-learn vs the fused one-pass kernel", "",
          f"Command: `{cmd}` ({total / 60:.1f} min, extraction excluded when cached)", f"Machine: {machine}.",
          f"Data: {a.rows:,} stratified FER2013 training rows of `{Path(cache_path).name}` ({X.shape[1]}-d), "
          "standardised; accuracy on all PrivateTest images. One BLAS thread (the presets' setting).", "",
          "## One loss + gradient evaluation (best of 10)", "",
          *md_table(["preset", "hidden", "stock ms", "fused ms", "speed-up",
                     "max gradient difference (largest gradient)", "default engine"], "llrrrll",
                    ([r["classifier"], "x".join(map(str, r["hidden"])), f"{r['stock_ms']:.1f}", f"{r['fused_ms']:.1f}",
                      f"{r['stock_ms'] / r['fused_ms']:.2f}x", f"{r['max_grad_diff']:.1e} ({r['max_grad']:.1e})",
                      "fused" if r["fused_by_default"] else "stock"] for r in evals))]
    if fits:
        md += ["", "## Whole fits (L-BFGS, at most 1,000 iterations)", "",
               "Rounding differences move the L-BFGS path, so the two engines stop after different numbers of "
               "iterations; milliseconds per iteration compare the engines, fit seconds what a user waits.", "",
               *md_table(["preset", "engine", "row order", "fit s", "iterations", "ms per iteration", "accuracy %"],
                         "llrrrrr", ([r["classifier"], r["engine"], r["row_order"], f"{r['fit_s']:.1f}",
                                      r["iterations"], f"{r['ms_per_iteration']:.1f}", pct(r["accuracy"], 2)]
                                     for r in fits))]
        if a.orders > 1:
            md += ["", f"## Rounding noise: accuracy over {a.orders} orders of the same rows", "",
                   "Order 0 is the sample's own order; the others permute it. Nothing else changes.", "",
                   *md_table(["preset", "engine", "mean fit s", "accuracy % mean", "min", "max"], "llrrrr")]
            for name in dict.fromkeys(r["classifier"] for r in fits):
                for eng in dict.fromkeys(r["engine"] for r in fits if r["classifier"] == name):
                    rs = [r for r in fits if r["classifier"] == name and r["engine"] == eng]
                    accs = [100 * r["accuracy"] for r in rs]
                    md.append(md_row([name, eng, f"{np.mean([r['fit_s'] for r in rs]):.1f}", f"{np.mean(accs):.2f}",
                                      f"{min(accs):.2f}", f"{max(accs):.2f}"]))
    save_report(Path(a.out).with_suffix(".md"), md, {"machine": machine, "rows": a.rows, "orders": a.orders,
                                                     "evaluations": evals, "fits": fits, "total_seconds": total})


if __name__ == "__main__":
    main()
