"""Stock scikit-learn vs scikit-learn-intelex on the SVM presets, same rows, same folds, one run.

    python bench/engine_svm.py --cache cache/fer2013__...h5 --rows 5000 [--out bench/results/engine_svm.md]

Takes a stratified sample of the official training split (``--rows``) and tests on PrivateTest (or, for a
cache without a split, uses subject-grouped 5-fold). Writes a markdown table with the machine it ran on.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from _common import load_average, machine_info, md_table, pct, save_report


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cache", required=True)
    ap.add_argument("--rows", type=int, default=5000, help="training rows sampled from the training split")
    ap.add_argument("--test-rows", type=int, default=2000)
    ap.add_argument("--clf", default="linear_svm,cubic_svm")
    ap.add_argument("--out", default="bench/results/engine_svm.md")
    a = ap.parse_args()

    from sklearn.model_selection import train_test_split

    from fer_features import evaluation as ev
    from fer_features.features.cache import load_cache

    cache = load_cache(a.cache)
    y = cache.labels
    if cache.has_split:
        (tr, te), = ev.make_splits("official", y, None, cache.split)[0]
        if len(tr) > a.rows:
            tr, _ = train_test_split(tr, train_size=a.rows, stratify=y[tr], random_state=0)
        if len(te) > a.test_rows:
            te, _ = train_test_split(te, train_size=a.test_rows, stratify=y[te], random_state=0)
        splits, info = [(np.sort(tr), np.sort(te))], {"protocol": "official", "description":
                                                     f"official split, {len(tr)} train / {len(te)} test rows",
                                                     "subject_independent": False}
    else:
        splits, info = ev.make_splits("group-kfold", y, cache.subjects, folds=5)
    X = cache.features.astype(np.float32)
    load_average("before")
    rows = []
    for name in a.clf.split(","):
        res = {}
        for engine in ("sklearn", "sklearnex"):
            t = time.perf_counter()
            r = ev.evaluate(X, y, cache.label_names, name, splits, info, engine=engine, n_jobs=1)
            res[engine] = r
            print(f"{name:<12} {engine:<10} acc {100 * r['accuracy']:.2f} %  fit {r['fit_seconds']:.2f} s  "
                  f"predict {r['predict_seconds']:.2f} s  (wall {time.perf_counter() - t:.1f} s)", flush=True)
        s, x = res["sklearn"], res["sklearnex"]
        rows.append((name, s, x))
    load_average("after")

    md = ["# SVM engines: stock scikit-learn vs scikit-learn-intelex", "",
          f"Command: `python bench/engine_svm.py --cache {Path(a.cache).name} --rows {a.rows} --test-rows {a.test_rows}`",
          f"Machine: {machine_info([('sklearn', 'scikit-learn'), ('sklearnex', 'scikit-learn-intelex')])}; "
          "one process, folds sequential.",
          f"Protocol: {info['description']}; features {X.shape[1]}-d from {cache.settings.get('backbone')}.", "",
          *md_table(["classifier", "stock acc %", "sklearnex acc %", "stock fit s", "sklearnex fit s", "fit speed-up",
                     "stock predict s", "sklearnex predict s", "predict speed-up"], "l" + "r" * 8,
                    ([name, pct(s["accuracy"], 2), pct(x["accuracy"], 2), f"{s['fit_seconds']:.2f}",
                      f"{x['fit_seconds']:.2f}", f"{s['fit_seconds'] / max(x['fit_seconds'], 1e-9):.1f}x",
                      f"{s['predict_seconds']:.2f}", f"{x['predict_seconds']:.2f}",
                      f"{s['predict_seconds'] / max(x['predict_seconds'], 1e-9):.1f}x"] for name, s, x in rows))]
    save_report(a.out, md)


if __name__ == "__main__":
    main()
