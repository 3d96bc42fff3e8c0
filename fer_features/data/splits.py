"""A dataset's own split (FER2013's Usage column): which split is the test set, which ones train, and which
are held out for validation (``official_split``; the official protocol and ``duplicates`` both use it)."""
from __future__ import annotations

from typing import Sequence

import numpy as np

from fer_features.errors import ProtocolError

TEST_SPLIT_NAMES = ("PrivateTest", "test", "Test", "testing", "Testing")


def official_split(split: np.ndarray, test_split: str | None, train_splits: Sequence[str] | None):
    """([(train rows, test rows)], test split name, training split names) of the dataset's own split."""
    names = [s for s in dict.fromkeys(split.tolist()) if s]
    if not names:
        raise ProtocolError("protocol 'official' needs a dataset split (e.g. FER2013's Usage column)")
    if test_split is None:
        test_split = next((t for t in TEST_SPLIT_NAMES if t in names), None)
        if test_split is None:
            raise ProtocolError(f"no test split among {names}; pass --test-split")
    if test_split not in names:
        raise ProtocolError(f"test split {test_split!r} not among {names}")
    if not train_splits:
        train_splits = [s for s in names if s != test_split and s.lower() not in VALIDATION_SPLITS]
    train_splits = list(train_splits)
    if not train_splits:
        raise ProtocolError(f"no training split among {names}")
    tr = np.flatnonzero(np.isin(split, train_splits))
    te = np.flatnonzero(split == test_split)
    return [(tr, te)], test_split, train_splits


VALIDATION_SPLITS = {"publictest", "val", "valid", "validation"}  # split names (lower case) held out for validation
