"""The seconds per fold of every fixed preset: the constants of ``compare``'s estimate (fer_features/classify/cost.py).

    python bench/compare_cost.py --cache CKPLUS48.h5 [--folds 2]

The cache: CK+ (981 images) with the default features (3,920-d). Its subject-grouped 10-fold protocol (seed 0),
the first ``--folds`` folds, one fold at a time (n_jobs 1) with one BLAS / OpenMP thread (as each of compare's two
fold workers has) and the default engine: each preset's fit + predict seconds per fold, and a 100-tree random
forest's (the ensemble search's baseline). Prints the load average before and after, the fold sizes and the dict
to paste into cost.py's ``SECONDS``.
"""
from __future__ import annotations

import argparse
import time

import numpy as np
from sklearn.ensemble import RandomForestClassifier
from threadpoolctl import threadpool_limits

from _common import machine_info, run_seconds, start_run
from fer_features import evaluation as ev
from fer_features.classify import registry
from fer_features.evaluation.engine import evaluate
from fer_features.features.cache import load_cache


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cache", required=True)
    ap.add_argument("--folds", type=int, default=2)
    a = ap.parse_args()
    threadpool_limits(1)  # for the rest of the run
    cache = load_cache(a.cache)
    X, y = np.asarray(cache.features, np.float32), np.asarray(cache.labels)
    splits, info = ev.make_splits("group-kfold", y, cache.subjects, folds=10, seed=0)
    splits = splits[:a.folds]
    start = start_run()
    seconds = {}
    for name in registry.GROUPS["all"]:
        r = evaluate(X, y, cache.label_names, name, splits, info, n_jobs=1)
        seconds[name] = (r["fit_seconds"] + r["predict_seconds"]) / len(splits)
        print(f"{name}: {seconds[name]:.2f} s per fold", flush=True)
    t = time.perf_counter()
    for tr, te in splits:
        RandomForestClassifier(100, n_jobs=1, random_state=0).fit(X[tr], y[tr]).predict(X[te])
    seconds["bagged_trees"] = (time.perf_counter() - t) / len(splits)
    total = run_seconds(start)
    n_train = int(np.mean([len(tr) for tr, _ in splits]))
    n_test = int(np.mean([len(te) for _, te in splits]))
    print(f"{machine_info()}; run {total:.0f} s")
    print(f'REFERENCE = {{"n_train": {n_train}, "n_test": {n_test}, "n_features": {X.shape[1]}}}')
    print("SECONDS = {" + ", ".join(f'"{k}": {v:.3g}' for k, v in seconds.items()) + "}")


if __name__ == "__main__":
    main()
