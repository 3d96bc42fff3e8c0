"""Fixed vs optimizable presets on the default features, subject-independent, same outer folds.

    python bench/optimizable.py [--data-root ../shared/datasets] [--cache-dir cache] [--budget 30]
                                [--inner-folds 5] [--datasets jaffe,ckplus48] [--out bench/results/optimizable.md]

JAFFE leave-one-subject-out and CK+48 subject-grouped 10-fold (seed 0), every fixed preset and the four
optimizable ones (``fer_features.optimizable``: a nested Optuna search in each outer training part only, inner
folds grouped by subject). Reports pooled accuracy with its 95 % cluster-bootstrap interval, the paired test of
each optimizable preset against the best fixed preset (same test images), search time, the accuracy a smaller
budget would have reached (a search of budget b is the first b trials of the full one: its choice per fold is
refitted on the outer training part and tested) and the hyper-parameters chosen in every outer fold.
Writes the markdown report and a JSON of every result (inner splits left out) beside it.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from _common import acc_ci, diff_ci, machine_info, md_row, md_table, p_value, pct, run_seconds, save_report, start_run

DATASETS = {"jaffe": ("JAFFE", "loso"), "ckplus48": ("CK+48", "group-kfold")}
GOALS = {"jaffe": 0.78, "ckplus48": 0.97}


def budget_curve(cache, r: dict, splits, checkpoints: list[int], engine: str) -> dict[int, tuple[float, list]]:
    """Outer pooled accuracy (and the per-fold predictions) had the search stopped after b trials."""
    import numpy as np

    from fer_features.classify.search import best_at, fit_config

    X, y = np.asarray(cache.features, dtype=np.float32), cache.labels
    s = r["search"]
    out = {}
    for b in checkpoints:
        if b > s["budget"]:
            continue
        correct = total = 0
        for (tr, te), f in zip(splits, s["folds"]):
            params = {**s["fixed"], **best_at(f["trials"], b)}
            from fer_features.classify.search import _Replay, suggest

            params = suggest(s["space"], _Replay(params, s["fixed"]), 1 << 30)  # the full configuration
            pipe = fit_config(s["space"], params, X[tr], y[tr], engine=engine, seed=s["seed"])
            correct += int(np.sum(pipe.predict(X[te]) == y[te]))
            total += len(te)
        out[b] = correct / total
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-root", default="../shared/datasets")
    ap.add_argument("--cache-dir", default=None, help="default: ./cache (extraction is a cache hit when present)")
    ap.add_argument("--datasets", default="jaffe,ckplus48")
    ap.add_argument("--fixed", default="all", help="fixed presets (comma list) or all")
    ap.add_argument("--optimizable", default="optimizable_svm,optimizable_knn",
                    help="optimizable presets; optimizable_nn and optimizable_ensemble are left out by default: their "
                    "L-BFGS / tree fits make the searches take hours on 2 shared cores")
    ap.add_argument("--budget", type=int, default=20)
    ap.add_argument("--inner-folds", type=int, default=5)
    ap.add_argument("--checkpoints", default="1,5,10,15,20", help="budgets of the accuracy-vs-budget table")
    ap.add_argument("--engine", default="sklearnex")
    ap.add_argument("--out", default="bench/results/optimizable.md")
    a = ap.parse_args(argv)

    from fer_features.classify import presets as C
    from fer_features import evaluation as ev
    from fer_features.evaluation import stats
    from fer_features.features.cache import load_cache
    from fer_features.features.extract import extract_dataset
    from fer_features.classify.search import search_table
    from fer_features.reporting.tables import markdown_table

    t_all = start_run()
    fixed = list(C.PRESETS) if a.fixed == "all" else a.fixed.split(",")
    opt = [n for n in a.optimizable.split(",") if n]
    checkpoints = [int(x) for x in a.checkpoints.split(",")]
    cmd = "python bench/optimizable.py " + " ".join(sys.argv[1:] if argv is None else argv)
    md = ["# Fixed vs optimizable presets (nested hyper-parameter search)", "",
          f"Command: `{cmd.strip()}`  ", f"Machine: {machine_info([('sklearn', 'scikit-learn'), ('optuna', 'optuna')])}; "
          f"the 2 cores were shared with other jobs (times are indicative; ratios within one run).", ""]
    dump = []
    summary = []
    for name in a.datasets.split(","):
        shown, protocol = DATASETS[name]
        path = extract_dataset(str(Path(a.data_root) / name), cache_dir=a.cache_dir, progress=False)
        cache = load_cache(path)
        splits, info, _ = ev.protocol_for_cache(cache, protocol)

        def done(r, t0=time.perf_counter()):
            print(f"[{shown}] {r['classifier']}: {100 * r['accuracy']:.1f} % ({time.perf_counter() - t0:.0f} s "
                  "since the dataset started)", file=sys.stderr, flush=True)

        t = time.perf_counter()
        rf, _ = ev.run(cache, fixed, protocol, engine=a.engine, progress=False, on_result=done)
        fixed_s = time.perf_counter() - t
        t = time.perf_counter()
        ro, _ = ev.run(cache, opt, protocol, engine=a.engine, progress=False, on_result=done,
                       search={"budget": a.budget, "inner_folds": a.inner_folds})
        opt_s = time.perf_counter() - t
        results = rf + ro
        stats.mark_vs_best(results)
        best_fixed = max(rf, key=lambda r: r["accuracy"])
        md += [f"## {shown}: {info['description']}", "",
               f"{len(cache)} images, {len(set(cache.subjects))} subjects; cache `{Path(path).name}`; "
               f"fixed presets {fixed_s:.0f} s, optimizable presets {opt_s:.0f} s in all (budget {a.budget}, "
               f"{a.inner_folds} inner folds).", "", markdown_table(results), ""]
        md += [f"Against the best fixed preset ({best_fixed['classifier']}, {acc_ci(best_fixed)}), same test images:",
               "", *md_table(["optimizable preset", "protocol", "accuracy % [95 % CI]",
                              "minus best fixed, points [95 % CI]", "paired p", "search s (all folds)", "goal"],
                             "llrrrrl")]
        goal = GOALS.get(name)
        for r in ro:
            t = stats.paired_test(r, best_fixed)
            met = "" if goal is None else ("met" if r["accuracy"] >= goal else f"not met (< {100 * goal:.0f} %)")
            md.append(md_row([r["classifier"], r["protocol"], acc_ci(r), diff_ci(t), p_value(t["p"]),
                              f"{r['search']['search_seconds']:.0f}", met]))
            summary.append((shown, r, best_fixed, t))
        md += ["", f"paired test: {t['test']}" if ro else "", ""]
        md += ["Accuracy had the search stopped after b trials (outer pooled accuracy %; b = 1 is the fixed "
               "preset's configuration, the search's first trial):", "",
               *md_table(["optimizable preset", "protocol", *(f"b = {b}" for b in checkpoints if b <= a.budget)],
                         "ll" + "r" * len([b for b in checkpoints if b <= a.budget]))]
        for r in ro:
            print(f"[{shown}] budget curve of {r['classifier']}", file=sys.stderr, flush=True)
            curve = budget_curve(cache, r, splits, checkpoints, a.engine)
            r["search"]["accuracy_by_budget"] = {str(b): v for b, v in curve.items()}
            md.append(md_row([r["classifier"], r["protocol"], *(pct(v) for v in curve.values())]))
        md += ["", "### Chosen hyper-parameters per outer fold", ""]
        md += [search_table(r, markdown=True) + "\n" for r in ro]
        for r in results:
            r = dict(r)
            if r.get("search"):
                r["search"] = {**r["search"], "folds": [{k: v for k, v in f.items() if k != "inner_splits"}
                                                        for f in r["search"]["folds"]]}
            r.pop("predictions", None)
            dump.append({"dataset": name, **r})
    total = run_seconds(t_all)
    md += ["## Summary", ""]
    for shown, r, bf, t in summary:
        md.append(f"- {shown}: {r['classifier']} {acc_ci(r)} vs best fixed {bf['classifier']} {acc_ci(bf)}: "
                  f"{diff_ci(t, 'points')}, p {p_value(t['p'])}")
    md += ["", f"Total run time {total:.0f} s."]
    out = save_report(a.out, md, dump)
    print(f"written: {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
