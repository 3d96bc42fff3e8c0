"""cubic_knn's prediction against the other KNN presets' (issue 28: 52 % of a default compare).

    python bench/cubic_knn.py [--rows 1000] [--features 3920] [--folds 10] [--repeats 3] [--cache C.h5] [--threads 1]

Random standard-normal features (or a cache's, ``--cache``), stratified ``--folds``-fold: every preset's
prediction seconds summed over the folds, the best of ``--repeats`` runs (presets interleaved, so a change of
the machine's load hits them alike), and the stock scikit-learn cubic_knn (``--engine sklearn``) once. The
default engine's cubic_knn must find the same neighbours: its predictions are checked against the stock one's.
``--threads 1``: BLAS and OpenMP limited to one thread, as in compare's fold workers (joblib gives each of its
2 workers one). Prints the load average before and after (the cores are shared) and a markdown table.
"""
from __future__ import annotations

import argparse
import time

import numpy as np
from sklearn.model_selection import StratifiedKFold
from threadpoolctl import threadpool_limits

from _common import machine_info, run_seconds, start_run
from fer_features.classify.presets import DEFAULT_ENGINE, engine_used, make_classifier

PRESETS = ("fine_knn", "medium_knn", "weighted_knn", "cubic_knn")


def predict_seconds(name: str, engine: str, X, y, folds) -> tuple[float, np.ndarray]:
    """Prediction seconds summed over the folds, and every fold's predictions (concatenated)."""
    total, preds = 0.0, []
    for tr, te in folds:
        pipe = make_classifier(name, engine=engine).fit(X[tr], y[tr])
        t = time.perf_counter()
        preds.append(pipe.predict(X[te]))
        total += time.perf_counter() - t
    return total, np.concatenate(preds)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=1000)
    ap.add_argument("--features", type=int, default=3920)
    ap.add_argument("--folds", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--cache", default=None, help="a feature cache instead of random features")
    ap.add_argument("--threads", type=int, default=None, help="BLAS / OpenMP threads (default: unlimited)")
    a = ap.parse_args()
    if a.cache:
        from fer_features.features.cache import load_cache  # only with --cache

        c = load_cache(a.cache)
        X, y, what = np.asarray(c.features, np.float32), np.asarray(c.labels), c.path.name
    else:
        rng = np.random.default_rng(0)
        X, y = rng.normal(size=(a.rows, a.features)).astype(np.float32), np.arange(a.rows) % 7
        what = "random normal"
    folds = list(StratifiedKFold(a.folds, shuffle=True, random_state=0).split(X, y))
    make_classifier("cubic_knn").fit(X[:20], y[:20]).predict(X[:2])  # numba's compile (or cache load) once
    start = start_run()
    best = {n: float("inf") for n in PRESETS}
    preds = {}
    with threadpool_limits(limits=a.threads):
        for _ in range(a.repeats):
            for n in PRESETS:
                s, preds[n] = predict_seconds(n, DEFAULT_ENGINE, X, y, folds)
                best[n] = min(best[n], s)
        stock, stock_pred = predict_seconds("cubic_knn", "sklearn", X, y, folds)
    seconds = run_seconds(start)
    threads = "unlimited" if a.threads is None else a.threads
    print(f"{machine_info()}\n\n{what}: {X.shape[0]} x {X.shape[1]} features, {a.folds} folds, threads {threads}; "
          f"prediction seconds summed over folds, best of {a.repeats} (stock once); run {seconds:.0f} s\n")
    print("| preset | engine | predict s | vs medium_knn |\n|---|---|---:|---:|")
    for n in PRESETS:
        print(f"| {n} | {engine_used(n, DEFAULT_ENGINE)} | {best[n]:.3f} | {best[n] / best['medium_knn']:.2f}x |")
    print(f"| cubic_knn | sklearn (stock) | {stock:.3f} | {stock / best['medium_knn']:.2f}x |")
    same = np.array_equal(preds["cubic_knn"], stock_pred)
    print(f"\ncubic_knn: stock / default engine {stock / best['cubic_knn']:.0f}x; same predictions: {same}")


if __name__ == "__main__":
    main()
