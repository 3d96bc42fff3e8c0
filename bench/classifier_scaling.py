"""Classifier fit/predict time against training rows: every preset, stock scikit-learn vs the default engine.

    python bench/classifier_scaling.py [--data ../shared/datasets/fer2013/fer2013.csv.gz] [--rows 1000,2000,5000,10000,15000]

Features: the FER2013 cache (efficientnet_lite0, 112 px, last layer, global average: 1280-d; extracted first if
absent). For each size, a stratified sample of the official Training split trains every preset, which is then
tested on the whole PrivateTest split (3,588 images), so accuracies are comparable across sizes. Presets that
the default engine accelerates (the SVMs: sklearnex; the thin neural networks: the fused numba loss) run twice,
stock and accelerated; the others run stock in both engines, once.
A cell whose time, extrapolated from the previous size, would exceed ``--budget`` seconds is skipped and marked,
except for the presets in ``--always`` (the cubic SVM, whose stock-vs-default ratio is issue 5's target).
Then the seven seed classifiers train together on the largest size, two at a time (one BLAS thread each).

Writes bench/results/classifier_scaling.md (+ .json, + classifier_scaling.png: log-log time against rows).
"""
from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import numpy as np

from _common import machine_info, md_row, md_table, pct, quiet_timed, run_seconds, save_report, start_run

SEED_TABLE4 = {"medium_nn": 37.1, "cubic_svm": 116.8}  # seed study, MATLAB, 15,000 images (training seconds)


def _fit_predict(name, engine, X, y, tr, te):
    from fer_features.classify.presets import make_classifier

    pipe = make_classifier(name, engine=engine)
    _, fit_s = quiet_timed(pipe.fit, X[tr], y[tr])
    pred, pred_s = quiet_timed(pipe.predict, X[te])
    return fit_s, pred_s, float((pred == y[te]).mean())


def _seven_together(names, X, y, tr, te, engine):
    """All seed classifiers on one training set, two workers with one BLAS thread each; wall seconds."""
    from joblib import Parallel, delayed

    order = sorted(names, key=lambda n: -1 if n.endswith("_nn") else 0)  # longest first: better packing
    t = time.perf_counter()
    outs = Parallel(n_jobs=2, inner_max_num_threads=1)(
        delayed(_fit_predict)(n, engine, X, y, tr, te) for n in order)
    return time.perf_counter() - t, dict(zip(order, outs))


def fer2013_args(ap: argparse.ArgumentParser) -> None:
    """``--data`` and ``--cache``: where :func:`fer2013_features` finds FER2013 (the benches that use it)."""
    ap.add_argument("--data", default="../shared/datasets/fer2013/fer2013.csv.gz")
    ap.add_argument("--cache", help="use this FER2013 feature cache instead of extracting one")


def fer2013_features(data, cache_path=None):
    """(cache path, float32 features, labels, official Training rows, PrivateTest rows) of the FER2013 cache
    these benches use (efficientnet_lite0, 112 px, last layer, global average; extracted first if absent)."""
    from fer_features import evaluation as ev
    from fer_features.features.cache import load_cache
    from fer_features.features.extractor import WHOLE_IMAGE
    from fer_features.features.extract import extract_dataset

    cache_path = cache_path or extract_dataset(data, image_size=112, layer="last", pooling="avg", **WHOLE_IMAGE)
    cache = load_cache(cache_path)
    X, y = np.asarray(cache.features, dtype=np.float32), cache.labels
    (train_all, te), = ev.make_splits("official", y, None, cache.split)[0]
    return cache_path, X, y, train_all, te


def _estimate(prev, rows):
    """Seconds at ``rows`` from the last two measured (rows, seconds) points (power law, exponent >= 1)."""
    if not prev:
        return 0.0
    if len(prev) == 1:
        (r0, s0), = prev
        return s0 * (rows / r0) ** 2
    (r0, s0), (r1, s1) = prev[-2:]
    k = max(1.0, math.log(max(s1, 1e-3) / max(s0, 1e-3)) / math.log(r1 / r0))
    return s1 * (rows / r1) ** k


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    fer2013_args(ap)
    ap.add_argument("--rows", default="1000,2000,5000,10000,15000")
    ap.add_argument("--clf", default="all", help="comma-separated presets (default: all)")
    ap.add_argument("--budget", type=float, default=150.0,
                    help="skip a cell whose fit+predict is expected to take longer (seconds)")
    ap.add_argument("--always", default="cubic_svm",
                    help="comma-separated presets measured at every size whatever --budget says")
    ap.add_argument("--out", default="bench/results/classifier_scaling")
    a = ap.parse_args()
    always = set(filter(None, a.always.split(",")))

    from sklearn.model_selection import train_test_split

    from fer_features.classify import presets as C

    t_all = start_run()
    cache_path, X, y, train_all, te = fer2013_features(a.data, a.cache)
    sizes = [int(r) for r in a.rows.split(",")]
    names = list(C.PRESETS) if a.clf == "all" else a.clf.split(",")
    samples = {r: np.sort(train_test_split(train_all, train_size=r, stratify=y[train_all], random_state=0)[0])
               if r < len(train_all) else train_all for r in sizes}

    runs = []  # (name, engine) pairs: stock for all, the default engine where it changes the estimator
    for n in names:
        runs.append((n, "sklearn"))
        if C.engine_used(n, "sklearnex") != "sklearn":
            runs.append((n, "sklearnex"))
    cells: dict[tuple[str, str], dict[int, dict]] = {r: {} for r in runs}
    for rows in sizes:
        for name, engine in runs:
            done = [(r, c["fit_s"] + c["predict_s"]) for r, c in cells[(name, engine)].items() if "fit_s" in c]
            skipped_before = any("skipped" in c for c in cells[(name, engine)].values())
            est = _estimate(done, rows)
            if name not in always and (skipped_before or est > a.budget):
                cells[(name, engine)][rows] = {"skipped": f"est. {est:,.0f} s" if not skipped_before else "skipped"}
                print(f"{rows:>6} {name:<14} {engine:<9} skipped (estimated {est:.0f} s)", flush=True)
                continue
            fit_s, pred_s, acc = _fit_predict(name, engine, X, y, samples[rows], te)
            cells[(name, engine)][rows] = {"fit_s": fit_s, "predict_s": pred_s, "accuracy": acc}
            print(f"{rows:>6} {name:<14} {engine:<9} fit {fit_s:8.2f} s  predict {pred_s:7.2f} s  "
                  f"acc {100 * acc:.2f} %", flush=True)

    big = max(sizes)
    seven = [n for n in C.SEED_CLASSIFIERS if n in names]
    together = None
    if seven:
        wall, outs = _seven_together(seven, X, y, samples[big], te, C.DEFAULT_ENGINE)
        together = {"rows": big, "wall_s": wall, "classifiers": seven,
                    "per_classifier": {n: {"fit_s": o[0], "predict_s": o[1], "accuracy": o[2]} for n, o in outs.items()}}
        print(f"seven seed classifiers together on {big} rows: {wall:.1f} s wall (2 workers)", flush=True)
    total = run_seconds(t_all)

    machine = machine_info([("sklearn", "scikit-learn"), ("sklearnex", "scikit-learn-intelex"), ("numpy", "numpy"),
                            ("scipy", "SciPy"), ("numba", "numba")])
    out = Path(a.out)
    payload = {"machine": machine, "cache": Path(cache_path).name, "n_features": int(X.shape[1]),
               "n_test": int(len(te)), "sizes": sizes, "budget_s": a.budget, "total_seconds": total,
               "cells": [{"classifier": n, "engine": e, "rows": r, **c} for (n, e), d in cells.items()
                         for r, c in d.items()], "seven_together": together}
    save_report(out.with_suffix(".md"), _markdown(payload, cells, sizes, seven, together, a, machine, total), payload,
                end="")
    _plot(cells, out.with_suffix(".png"), X.shape[1])


def _plot(cells, path, dim):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(13, 5.5))
    cmap = plt.get_cmap("tab20")
    names = sorted({n for n, _ in cells})
    for (name, engine), d in cells.items():
        pts = sorted((r, c) for r, c in d.items() if "fit_s" in c)
        if not pts:
            continue
        rows = [r for r, _ in pts]
        style = dict(color=cmap(names.index(name) % 20), marker="o", ms=3,
                     ls="--" if (engine == "sklearn" and any(e == "sklearnex" for n, e in cells if n == name)) else "-")
        label = name + (" (stock)" if style["ls"] == "--" else "")
        axes[0].plot(rows, [max(c["fit_s"], 1e-3) for _, c in pts], label=label, **style)
        axes[1].plot(rows, [max(c["predict_s"], 1e-3) for _, c in pts], label=label, **style)
    for ax, what in zip(axes, ("fit", "predict (3,588 test rows)")):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("training rows")
        ax.set_ylabel(f"{what} seconds")
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_title(f"fit time, FER2013 features ({dim}-d)")
    axes[1].set_title("predict time")
    axes[1].legend(fontsize=7, ncol=2, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _fmt(c, key):
    if c is None:
        return "-"
    if "skipped" in c:
        return f"skip ({c['skipped']})" if key == "fit_s" else "-"
    return pct(c[key]) if key == "accuracy" else f"{c[key]:.2f}"


def _markdown(payload, cells, sizes, seven, together, a, machine, total) -> str:
    from fer_features.classify import presets as C

    big = max(sizes)
    cmd = "python bench/classifier_scaling.py" + (f" --rows {a.rows}" if a.rows != "1000,2000,5000,10000,15000" else "")
    md = ["# Classifier speed and scaling: every preset, stock scikit-learn vs the default engine", "",
          f"Command: `{cmd}` ({total / 60:.1f} min in all, extraction excluded when cached)",
          f"Machine: {machine}.",
          f"Data: FER2013 features `{payload['cache']}` ({payload['n_features']}-d: efficientnet_lite0, 112 px, "
          "last layer, global average). Training rows: stratified samples of the official Training split; "
          f"test: all {payload['n_test']:,} PrivateTest images (official protocol, not subject-independent: FER2013 "
          "has no subject ids). Fit and predict run in the main process with every core; the MLPs fit with one "
          "BLAS thread (the preset's own setting, faster here).",
          f"Cells estimated above {a.budget:.0f} s from the previous sizes are skipped (`--budget`), except for "
          f"{a.always or 'none'} (`--always`).", "",
          "Engines: `stock` = scikit-learn; `default` = the package's default engine: scikit-learn-intelex for the "
          "SVMs; for the neural networks with a 10-unit first layer, scikit-learn's MLP and L-BFGS with the loss "
          "and gradient computed in one cache-blocked pass (numba, `fer_features/_fused_mlp.py`); the other "
          "presets run stock scikit-learn in both, so they have one row. The fused loss equals scikit-learn's up to "
          "rounding, but over hundreds of L-BFGS iterations rounding moves the path, so the two MLP rows' "
          "iteration counts and accuracies differ a little."]
    engines = {(name, engine): f"default ({C.engine_used(name, engine)})" if engine == "sklearnex" else (
        "stock" if (name, "sklearnex") in cells else "stock = default") for name, engine in cells}
    for key, title in (("fit_s", "Fit seconds"), ("predict_s", "Predict seconds (3,588 test rows)"),
                       ("accuracy", "PrivateTest accuracy %")):
        md += ["", f"## {title}", "", *md_table(["classifier", "engine", *(f"{r:,}" for r in sizes)],
                                               "ll" + "r" * len(sizes),
                                               ([n, engines[(n, e)], *(_fmt(d.get(r), key) for r in sizes)]
                                                for (n, e), d in cells.items()))]

    both = [(name, r, cells[(name, "sklearn")].get(r), d.get(r)) for (name, engine), d in cells.items()
            if engine == "sklearnex" for r in sizes]
    md += ["", "## Stock vs default engine (SVMs, thin neural networks)", "", *md_table(
        ["classifier", "rows", "stock fit s", "default fit s", "fit speed-up", "stock predict s", "default predict s",
         "predict speed-up", "stock acc %", "default acc %"], "l" + "r" * 9,
        ([name, f"{r:,}", f"{s['fit_s']:.2f}", f"{x['fit_s']:.2f}", f"{s['fit_s'] / x['fit_s']:.1f}x",
          f"{s['predict_s']:.2f}", f"{x['predict_s']:.2f}", f"{s['predict_s'] / x['predict_s']:.1f}x",
          pct(s["accuracy"], 2), pct(x["accuracy"], 2)]
         for name, r, s, x in both if s and x and "fit_s" in s and "fit_s" in x))]

    md += ["", f"## The seed study's Table 4 layout, {big:,} training rows (default engine)", "",
           *md_table(["classifier", "seed: MATLAB training s (15,000 images)", "here: training s", "here: predict s",
                      "here: accuracy %"], "lrrrr")]
    tot_fit = 0.0
    for n in seven:
        c = cells.get((n, C.DEFAULT_ENGINE if (n, C.DEFAULT_ENGINE) in cells else "sklearn"), {}).get(big)
        seed = SEED_TABLE4.get(n)
        if c and "fit_s" in c:
            tot_fit += c["fit_s"]
        md.append(md_row([n, seed if seed else "not given", _fmt(c, "fit_s"), _fmt(c, "predict_s"),
                          _fmt(c, "accuracy")]))
    md.append(f"| **all seven, one after another** | | **{tot_fit:.1f}** | | |")
    if together:
        md += ["", f"All seven together, two at a time on the two cores (one BLAS thread each, joblib): "
                   f"**{together['wall_s']:.1f} s wall** for fit + predict of all seven on {together['rows']:,} rows "
                   f"(target: under 60 s)."]
    return "\n".join(md) + "\n"


if __name__ == "__main__":
    main()
