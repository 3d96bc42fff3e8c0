"""``merge``: join two feature caches of the same images into one (features side by side)."""
from __future__ import annotations

import sys

from fer_features.cli import _options as O
from fer_features.features.merge import merge_caches

DESCRIPTION = (
    "Join two feature caches of the SAME images (e.g. ImageNet features and a fine-tuned "
    "network's) into one cache whose features are A's followed by B's. Dataset content, paths, "
    "labels, subjects and splits must agree (rows are matched by path when the orders differ); "
    "otherwise nothing is written and the exit status is 2. Settings that differ read 'A+B' "
    "(e.g. backbone), and both sources' settings are kept; classify, compare and info read the "
    "result like any cache. Augmentation and classify --save refuse a merged cache.\n"
    "The path of the merged cache is printed as the last line of stdout.")


def register(sub) -> None:
    p = sub.add_parser(
        "merge", formatter_class=O.Fmt, help="join two caches of the same images into one (features side by side)",
        description=DESCRIPTION,
        epilog="example:\n  python -m fer_features merge cache/jaffe__A__1234.h5 cache/jaffe__B__5678.h5")
    p.add_argument("a", metavar="A.h5", help="first cache (its rows' order is kept)")
    p.add_argument("b", metavar="B.h5", help="second cache of the same images")
    p.add_argument("-o", "--output", default=None, metavar="OUT.h5",
                   help="merged cache (default: beside A, named after both; an existing merge of the same two "
                   "caches is reused)")
    p.set_defaults(func=run)


def run(a) -> int:
    print(merge_caches(a.a, a.b, a.output, log=lambda m: print(m, file=sys.stderr)))
    return 0
