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


def register(sub) -> None:
    p = sub.add_parser(
        "duplicates", formatter_class=O.Fmt, help="find pixel-identical images in a dataset (and test images "
        "with a copy in training)", description=DESCRIPTION,
        epilog="example:\n  python -m fer_features duplicates --data ../shared/datasets/fer2013/fer2013.csv.gz")
    O.DATA.add(p, help="dataset folder, FER2013 CSV or manifest CSV (as for extract)")
    O.FORMAT.add(p)
    O.TEST_SPLIT.add(p, help="the test split (default PrivateTest / test)")
    p.add_argument("--list", action="store_true", help="also print the test images with a copy in training")
    O.JSON.add(p, help="print ONE JSON object")
    O.NO_PROGRESS.add(p)
    p.set_defaults(func=run)


def run(a) -> int:
    r = find_duplicates(load_dataset(a.data, a.format), test_split=a.test_split, progress=not a.no_progress)
    if a.json:
        print(json.dumps({**r.to_dict(), **({"test_with_train_copy_paths": r.test_with_train_copy} if a.list else {})}))
        return 0
    print(r.summary())
    if a.list:
        print("\n".join(r.test_with_train_copy))
    return 0
