"""Cross-dataset evaluation: train on every image of one cache (A), test on every image of another (B).

The standard generalisation test of FER papers (e.g. train on CK+, test on JAFFE). Labels are aligned by
their canonical names: a class present on one side only is dropped (and said so); both caches must come
from the same extraction settings, or the features would not mean the same thing.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from fer_features.data.datasets import CANONICAL_LABELS, dataset_stem
from fer_features.errors import ProtocolError
from fer_features.evaluation.protocols import FEATURE_DEFAULTS, describe_protocol
from fer_features.features.spec import EXTRACTION_KEYS

PROTOCOL = "cross-dataset"


def _protocol_error(msg: str):
    return ProtocolError(msg)


def dataset_name(cache) -> str:
    """'jaffe', 'ckplus48', 'fer2013 Training': the dataset folder (or CSV) name, plus the split when the
    cache holds one split only (a subset of FER2013)."""
    root = cache.dataset_root or cache.path.name.split("__", 1)[0]
    name = dataset_stem(root) or cache.path.stem
    splits = {str(s) for s in cache.split}
    if len(splits) == 1 and "" not in splits:
        name += f" {splits.pop()}"
    return name


def feature_settings(cache) -> dict[str, Any]:
    """The settings that define the features: the stored settings less the dataset's own (``dataset_*``)."""
    s = {**FEATURE_DEFAULTS, **cache.settings}
    return {k: v for k, v in s.items() if not k.startswith("dataset")}


def check_same_settings(train, test) -> None:
    """``ProtocolError`` naming the first setting that differs between the two caches' features."""
    a, b = feature_settings(train), feature_settings(test)
    keys = [k for k in EXTRACTION_KEYS if k in a or k in b] + sorted((set(a) | set(b)) - set(EXTRACTION_KEYS))
    for k in keys:
        if a.get(k) != b.get(k):
            raise _protocol_error(
                f"the two caches come from different extraction settings: {k} is {a.get(k)!r} in "
                f"{train.path.name} but {b.get(k)!r} in {test.path.name} (extract both with the same options)")


def _order(names) -> list[str]:
    rank = {n: i for i, n in enumerate(CANONICAL_LABELS)}
    return sorted(names, key=lambda n: (rank.get(n, len(rank)), n))


def _counts(cache) -> dict[str, int]:
    counts = np.bincount(np.asarray(cache.labels, dtype=np.int64), minlength=len(cache.label_names))
    return {str(n): int(c) for n, c in zip(cache.label_names, counts) if c > 0}


def align_labels(train, test) -> tuple[list[str], dict[str, dict[str, int]]]:
    """(classes present on both sides, in canonical order; {dropped class: {"train": n, "test": m}})."""
    a, b = _counts(train), _counts(test)
    common = _order(set(a) & set(b))
    dropped = {n: {"train": a.get(n, 0), "test": b.get(n, 0)} for n in _order(set(a) ^ set(b))}
    if not common:
        raise _protocol_error(
            f"no class in common: {train.path.name} has {', '.join(_order(a))}; "
            f"{test.path.name} has {', '.join(_order(b))}")
    return common, dropped


def _rows(cache, common: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """(row indices of the common classes, their labels re-indexed into ``common``)."""
    names = np.array([str(n) for n in cache.label_names], dtype=object)[np.asarray(cache.labels, dtype=np.int64)]
    keep = np.flatnonzero(np.isin(names, common))
    index = {n: i for i, n in enumerate(common)}
    return keep, np.array([index[n] for n in names[keep]], dtype=np.int64)


def cross_data(train, test, protocol: str = "auto", *, subject_norm: str = "none", seed: int = 0,
               augments: bool = False):
    """Everything ``evaluation.run`` needs for train = all of ``train``, test = all of ``test``.

    Returns (X, y, groups, splits, protocol info, warnings, label names, result fields).
    """
    if protocol not in ("auto", PROTOCOL):
        raise _protocol_error(f"--test-cache trains on all of one cache and tests on all of the other (protocol "
                              f"{PROTOCOL}); protocol {protocol!r} cannot be combined with it")
    if augments:
        raise _protocol_error("--copies / --balance are not supported with --test-cache")
    check_same_settings(train, test)
    common, dropped = align_labels(train, test)
    tr_rows, ytr = _rows(train, common)
    te_rows, yte = _rows(test, common)
    notes = []
    if dropped:
        notes.append("warning: classes on one side only, dropped: " + ", ".join(
            f"{n} ({c['train']} train, {c['test']} test)" for n, c in dropped.items()))
    subject_norm = subject_norm or "none"
    groups = None
    if train.has_subjects and test.has_subjects:
        groups = np.concatenate([np.array([f"train:{s}" for s in train.subjects[tr_rows]], dtype=object),
                                 np.array([f"test:{s}" for s in test.subjects[te_rows]], dtype=object)])
    elif subject_norm != "none":
        missing = [c.path.name for c in (train, test) if not c.has_subjects]
        raise _protocol_error(f"--subject-norm {subject_norm} needs subject ids in both caches; "
                              f"{' and '.join(missing)} has none")
    X = np.concatenate([np.asarray(train.features, dtype=np.float32)[tr_rows],
                        np.asarray(test.features, dtype=np.float32)[te_rows]])
    y = np.concatenate([ytr, yte])
    n_tr, n_te = len(tr_rows), len(te_rows)
    splits = [(np.arange(n_tr), np.arange(n_tr, n_tr + n_te))]
    a_name, b_name = dataset_name(train), dataset_name(test)
    info: dict[str, Any] = {
        "protocol": PROTOCOL, "n_folds": 1, "seed": seed,
        # different datasets: different people, as far as the datasets say (no id links them)
        "subject_independent": True,
        "train_dataset": a_name, "test_dataset": b_name, "n_train_images": n_tr, "n_test_images": n_te,
        # the stacked rows' rows in their own cache (the test part's in the test cache): for the predictions
        "source_rows": np.concatenate([tr_rows, te_rows]),
    }
    info["description"] = describe_protocol(info)
    fields = {"train_dataset": a_name, "test_dataset": b_name, "train_cache": str(train.path),
              "test_cache": str(test.path), "train_n_images": len(train), "test_n_images": len(test),
              "dropped_classes": dropped}
    return X, y, groups, splits, info, notes, common, fields
