"""Leakage checks: identical feature rows across a fold's train and test parts, and re-scoring a result
without the test images that have a copy in training (``accuracy_without``)."""
from __future__ import annotations

import hashlib
from collections import Counter
from typing import Any, Sequence

import numpy as np

from fer_features.evaluation import stats


def row_hashes(X: np.ndarray) -> np.ndarray:
    """One hash per feature row: identical images give identical rows."""
    X = np.ascontiguousarray(X, dtype=np.float32)
    return np.array([hashlib.blake2b(r.tobytes(), digest_size=12).hexdigest() for r in X], dtype=object)


def duplicate_report(hashes: np.ndarray, splits: list) -> dict[str, int]:
    """Rows duplicated within the data, and test rows whose exact copy is in that fold's training part."""
    counts = Counter(hashes.tolist())
    cross = 0
    for tr, te in splits:
        train_set = set(hashes[tr].tolist())
        cross += int(sum(h in train_set for h in hashes[te].tolist()))
    return {"duplicate_rows": int(sum(c - 1 for c in counts.values() if c > 1)),
            "test_rows_duplicated_in_train": cross}


def accuracy_without(result: dict[str, Any], paths: Sequence[str]) -> dict[str, Any]:
    """A result's pooled accuracy over its test images minus ``paths`` (matched by the predictions' paths),
    with its 95 % interval (same method as the result's, images as units without subjects)."""
    p = result.get("predictions") or {}
    if not p.get("path") or not any(p["path"]):
        raise ValueError(f"{result.get('classifier')}: the result has no per-image paths to leave images out by")
    drop = set(paths)
    keep = np.array([x not in drop for x in p["path"]])
    correct = (np.asarray(p["true"]) == np.asarray(p["pred"]))[keep]
    subj = np.asarray(p.get("subject") or [""] * len(keep), dtype=object)[keep]
    units = subj.astype(str) if len(subj) and all(s != "" for s in subj) else None
    unit = "subjects" if units is not None else "images"
    lo, hi, method = stats.accuracy_ci(correct, units, unit=unit)
    note = stats.ci_note(len(correct), units, unit)
    return {"accuracy": float(correct.mean()) if len(correct) else float("nan"), "accuracy_ci": [lo, hi],
            "accuracy_ci_method": method, **({"accuracy_ci_note": note} if note else {}),
            "n_test": int(keep.sum()), "n_left_out": int((~keep).sum())}
