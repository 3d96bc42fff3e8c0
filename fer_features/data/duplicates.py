"""Exact duplicate images in a dataset, found by hashing their decoded pixels (any format).

Two images are duplicates when their decoded pixel arrays are identical (same shape and bytes): a copy
saved under another name, or FER2013's repeated rows. ``find_duplicates`` groups them and, for a dataset
with splits, lists the test images that have a pixel-identical copy in a training split (a test image the
classifier may have seen verbatim). ``accuracy_without`` re-scores a result without those images.
"""
from __future__ import annotations

import hashlib
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
from tqdm import tqdm

from fer_features.data.splits import official_split
from fer_features.errors import ImageReadError


def pixel_hash(image: np.ndarray) -> str:
    """BLAKE2b of an image's shape, dtype and pixel bytes: equal exactly for pixel-identical images."""
    a = np.ascontiguousarray(image)
    h = hashlib.blake2b(digest_size=16)
    h.update(f"{a.shape}|{a.dtype.str}|".encode())
    h.update(a.tobytes())
    return h.hexdigest()


def pixel_hashes(ds, progress: bool = False) -> list[str | None]:
    """The pixel hash of every record of a ``Dataset`` (None for an unreadable image)."""
    it = range(len(ds))
    if progress:
        it = tqdm(it, unit="img", desc="hash pixels", file=sys.stderr, dynamic_ncols=True, mininterval=0.5)
    out: list[str | None] = []
    for i in it:
        try:
            out.append(pixel_hash(ds.load_image(i)))
        except ImageReadError:
            out.append(None)
    return out


@dataclass
class DuplicateReport:
    """What ``find_duplicates`` found (paths are the dataset's relative paths, as caches store them)."""

    n_images: int
    groups: list[list[str]]  # sets of pixel-identical images (2 or more each)
    conflicting_groups: int  # groups whose images carry different labels
    group_labels: list[list[str]] = field(default_factory=list)  # each group's images' labels, as ``groups``
    train_splits: list[str] = field(default_factory=list)
    test_split: str | None = None
    n_test: int = 0
    test_with_train_copy: list[str] = field(default_factory=list)  # test images with a copy in training
    test_with_train_copy_other_label: int = 0  # ... of which the copy's label differs

    @property
    def duplicate_images(self) -> int:
        """Images beyond the first of each group (what removing the copies would remove)."""
        return sum(len(g) - 1 for g in self.groups)

    def group_dicts(self) -> list[dict[str, Any]]:
        """Every group: its images' paths and labels, and whether the labels differ."""
        labels = self.group_labels or [[""] * len(g) for g in self.groups]
        return [{"paths": list(g), "labels": list(lab), "labels_differ": len(set(lab)) > 1}
                for g, lab in zip(self.groups, labels)]

    def to_dict(self) -> dict[str, Any]:
        return {"n_images": self.n_images, "duplicate_groups": len(self.groups),
                "duplicate_images": self.duplicate_images, "conflicting_groups": self.conflicting_groups,
                "train_splits": self.train_splits, "test_split": self.test_split, "n_test": self.n_test,
                "test_with_train_copy": len(self.test_with_train_copy),
                "test_with_train_copy_other_label": self.test_with_train_copy_other_label,
                "groups": self.group_dicts()}

    def summary(self) -> str:
        s = (f"{self.n_images} images: {_n(len(self.groups), 'group')} of pixel-identical images "
             f"({_n(self.duplicate_images, 'copy', 'copies')} beyond the first; "
             f"{_n(self.conflicting_groups, 'group')} with differing labels)")
        if self.test_split:
            k = len(self.test_with_train_copy)
            s += (f"; {k} of {self.n_test} {self.test_split} images {'has' if k == 1 else 'have'} a copy in "
                  f"{'+'.join(self.train_splits)} ({self.test_with_train_copy_other_label} of them labelled "
                  "differently there)")
        return s

    def group_lines(self, limit: int | None = None) -> list[str]:
        """One line per group naming its images (with their labels where they differ): every group with
        differing labels, then the others (the first ``limit`` of them; None: all)."""
        groups = self.group_dicts()
        differ = [g for g in groups if g["labels_differ"]]
        same = [g for g in groups if not g["labels_differ"]]
        shown = same if limit is None else same[:limit]
        lines = []
        if differ:
            lines.append(f"{_n(len(differ), 'group')} with differing labels:")
            lines += ["  " + ", ".join(f"{p} ({lab})" for p, lab in zip(g["paths"], g["labels"])) for g in differ]
        if same:
            lines.append(f"{_n(len(same), 'group')} with the same label:")
            lines += [f"  {', '.join(g['paths'])} ({g['labels'][0]})" for g in shown]
            if len(shown) < len(same):
                lines.append(f"  ... and {_n(len(same) - len(shown), 'more group')} (--list or --json names "
                             "every one)")
        return lines


def _n(k: int, one: str, many: str | None = None) -> str:
    """``1 group``, ``2 groups``."""
    return f"{k} {one if k == 1 else (many or one + 's')}"


def find_duplicates(ds, hashes: Sequence[str | None] | None = None, *, test_split: str | None = None,
                    train_splits: Sequence[str] | None = None, progress: bool = False) -> DuplicateReport:
    """Group pixel-identical images of ``ds``; with splits, the test images with a copy in training.

    ``test_split``/``train_splits`` default to the official protocol's (FER2013: PrivateTest / Training;
    the validation split PublicTest is neither). Unreadable images are left out.
    """
    hashes = list(hashes) if hashes is not None else pixel_hashes(ds, progress)
    if len(hashes) != len(ds):
        raise ValueError(f"{len(hashes)} hashes for {len(ds)} records")
    paths, recs = ds.rel_paths(), ds.records
    by_hash: dict[str, list[int]] = defaultdict(list)
    for i, h in enumerate(hashes):
        if h is not None:
            by_hash[h].append(i)
    groups = [ix for ix in by_hash.values() if len(ix) > 1]
    report = DuplicateReport(
        n_images=len(ds), groups=[[paths[i] for i in ix] for ix in groups],
        conflicting_groups=sum(len({recs[i].label for i in ix}) > 1 for ix in groups),
        group_labels=[[recs[i].label for i in ix] for ix in groups])
    split = np.array([r.split for r in recs], dtype=object)
    if not any(split):
        return report

    splits, test_name, train_names = official_split(split, test_split, train_splits)
    (tr, te), = splits
    train_labels: dict[str, set[str]] = defaultdict(set)
    for i in tr:
        if hashes[i] is not None:
            train_labels[hashes[i]].add(recs[i].label)
    hit = [i for i in te if hashes[i] is not None and hashes[i] in train_labels]
    report.train_splits, report.test_split, report.n_test = list(train_names), test_name, int(len(te))
    report.test_with_train_copy = [paths[i] for i in hit]
    report.test_with_train_copy_other_label = sum(train_labels[hashes[i]] != {recs[i].label} for i in hit)
    return report


__all__ = ["pixel_hash", "pixel_hashes", "find_duplicates", "DuplicateReport"]
