"""``significance``: a paired test of two results made on the same test images."""
from __future__ import annotations

import json

from fer_features.cli import _options as O
from fer_features.reporting import significance as sig

DESCRIPTION = (
    "Compare two results (classify --json's line saved to a file, or compare's results.json "
    "with FILE#NAME or --a-classifier/--b-classifier) made on the same test images and folds, "
    "e.g. two feature settings: both accuracies with 95 % intervals, the difference with its "
    "interval and a paired p (cluster bootstrap over subjects where known; exact McNemar for "
    "one split without subjects; paired bootstrap over images otherwise). Results on "
    "different images or folds are refused (exit 2).")


def register(sub) -> None:
    p = sub.add_parser(
        "significance", formatter_class=O.Fmt, help="paired test of two results made on the same test images",
        description=DESCRIPTION,
        epilog="example:\n  python -m fer_features significance default.json margin02.json\n"
               "  python -m fer_features significance rep/results.json#lda rep/results.json#cubic_svm")
    p.add_argument("a", metavar="A.json", help="first result (FILE or FILE#CLASSIFIER)")
    p.add_argument("b", metavar="B.json", help="second result (FILE or FILE#CLASSIFIER)")
    p.add_argument("--a-classifier", default=None, metavar="NAME", help="entry of A's results.json")
    p.add_argument("--b-classifier", default=None, metavar="NAME", help="entry of B's results.json")
    p.add_argument("--resamples", type=int, default=2000, help="bootstrap resamples")
    O.SEED.add(p, help="seeds the bootstrap")
    O.JSON.add(p, help="print ONE JSON object")
    p.set_defaults(func=run)


def run(a) -> int:
    if a.resamples < 100:
        raise ValueError(f"--resamples must be at least 100, got {a.resamples}")
    ra, rb = sig.load_result(a.a, a.a_classifier), sig.load_result(a.b, a.b_classifier)
    d = sig.significance(ra, rb, n_resamples=a.resamples, seed=a.seed)
    if a.json:
        print(json.dumps({**d, "files": [a.a, a.b]}))
    else:
        print(sig.format_significance(d, (a.a, a.b)))
    return 0
