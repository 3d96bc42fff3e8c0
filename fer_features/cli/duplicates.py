"""``duplicates``: pixel-identical images in a dataset, and test images with a copy in training."""
from __future__ import annotations

import json

from fer_features.cli import _options as O
from fer_features.data.duplicates import find_duplicates
from fer_features.data.formats import load_dataset

DESCRIPTION = (
    "Hash every image's decoded pixels and report groups of identical images (and those whose "
    "labels differ); for a dataset with splits, the test images (official protocol: FER2013's "
    "PrivateTest) that have a pixel-identical copy in a training split.")
SHOWN = 20  # groups whose images share one label named without --list (those with differing labels: all)


def register(sub) -> None:
    p = sub.add_parser(
        "duplicates", formatter_class=O.Fmt, help="find pixel-identical images in a dataset (and test images "
        "with a copy in training)", description=DESCRIPTION,
        epilog="example:\n  python -m fer_features duplicates --data ../shared/datasets/fer2013/fer2013.csv.gz")
    O.DATA.add(p, help="dataset folder, FER2013 CSV or manifest CSV (as for extract)")
    O.FORMAT.add(p)
    O.add_label_options(p)
    O.TEST_SPLIT.add(p, help="the test split (default PrivateTest / test)")
    p.add_argument("--list", action="store_true", help="name every group (without it: the groups with differing "
                   f"labels and the first {SHOWN} others), and print the test images with a copy in training")
    O.JSON.add(p, help="print ONE JSON object (every group under \"groups\")")
    O.NO_PROGRESS.add(p)
    p.set_defaults(func=run)


def run(a) -> int:
    r = find_duplicates(load_dataset(a.data, a.format, **O.label_kwargs(a)), test_split=a.test_split,
                        progress=not a.no_progress)
    if a.json:
        print(json.dumps({**r.to_dict(), **({"test_with_train_copy_paths": r.test_with_train_copy} if a.list else {})}))
        return 0
    print(r.summary())
    for line in r.group_lines(None if a.list else SHOWN):
        print(line)
    if a.list and r.test_split:
        print(f"{r.test_split} images with a copy in {'+'.join(r.train_splits)}:")
        print("\n".join(r.test_with_train_copy))
    return 0
