"""``compare``: several classifier presets on the same folds, a table and markdown/CSV/JSON/PNG reports."""
from __future__ import annotations

import json
import sys

from tqdm import tqdm

from fer_features import evaluation as ev
from fer_features.classify import cost, registry
from fer_features.classify.presets import parse_overrides
from fer_features.cli import _options as O
from fer_features.cli._print import print_ci_notes, print_searches
from fer_features.evaluation.stats import mark_vs_best
from fer_features.features.cache import load_cache
from fer_features.reporting.feature_map import add_to_report, summary_line
from fer_features.reporting.tables import load_results, protocol_header, text_table, write_report


def register(sub) -> None:
    p = sub.add_parser(
        "compare", formatter_class=O.Fmt, help="run several classifier presets on the same folds",
        description="Run presets on the same folds, print a table, and write markdown/CSV/JSON/PNG reports.")
    O.add_eval_options(p, "all")
    O.REPORT_DIR.add(p, help="folder for report.md, results.csv/json and PNGs")
    p.add_argument("--include", action="append", default=[], metavar="RESULTS.json",
                   help="add results from other runs (e.g. a fine-tuned model) to the table")
    p.set_defaults(func=run)


def run(a) -> int:
    included = [r for inc in a.include for r in load_results(inc)]  # a bad file fails before the long run
    names = registry.expand(a.clf)
    cache = load_cache(a.cache)
    test_cache = O.load_test_cache(a)
    done = []

    def started(X, splits, slots):
        folds = [(len(tr), len(te)) for tr, te in splits]
        tqdm.write(cost.estimate_line(names, folds, X.shape[1], slots=slots, **O.search_kwargs(a)), file=sys.stderr)

    def finished(r):
        done.append(r)
        tqdm.write(f"[{len(done)}/{len(names)}] {r['classifier']}: {100 * r['accuracy']:.1f} % pooled "
                   f"(fit {r['fit_seconds']:.2f} s in all)", file=sys.stderr)

    with O.cluster(a) as cl:
        results, notes = ev.run(cache, names, a.protocol, folds=a.folds, test_size=a.test_size,
                                test_split=a.test_split, seed=a.seed, engine=a.engine,
                                overrides=parse_overrides(a.set), pca=O.pca_arg(a.pca), n_jobs=a.n_jobs,
                                subject_norm=a.subject_norm, progress=not a.no_progress, on_result=finished,
                                test_cache=test_cache, search=O.search_kwargs(a), cluster=cl, on_start=started,
                                **O.augment_kwargs(a))
    results += included
    mark_vs_best(results)  # every row against the best on the same test images
    print(protocol_header(results))
    for w in notes:
        print(w)
    print_ci_notes(results)
    print()
    print(text_table(results))
    print_searches(results)
    if a.report_dir:
        md = write_report(results, a.report_dir, title=f"Classifier comparison on {O.on(cache, test_cache)}")
        print(summary_line(add_to_report(cache, a.report_dir, test_cache=test_cache)))
        print(f"\nreport: {md}")  # only now: every file of the report is written
    if a.json:
        print(json.dumps(results))
    return 0
