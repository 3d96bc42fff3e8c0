"""Evaluation protocols as splitter objects (holdout, kfold, group-kfold, loso, official), the default protocol
for a dataset, and the splits of a cache with the warnings a user must see (no subjects, folds by image)."""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, ClassVar, Sequence

import numpy as np
from sklearn.model_selection import (
    LeaveOneGroupOut,
    StratifiedGroupKFold,
    StratifiedKFold,
    StratifiedShuffleSplit,
)

from fer_features.data.splits import official_split
from fer_features.errors import ProtocolError
from fer_features.evaluation.protocols import describe_protocol

PROTOCOLS = ("auto", "holdout", "kfold", "group-kfold", "loso", "official", "augment-then-split", "cross-dataset")


LEAKY_PROTOCOL = "augment-then-split"


SUBJECT_INDEPENDENT = {"group-kfold", "loso"}


NO_SUBJECTS_WARNING = ("warning: no subject ids, so protocol auto folds by image: the same person may be in "
                       "train and test, which inflates accuracy (give subjects at extract with --subject-pattern "
                       "REGEX or a manifest CSV with a subject column)")


def default_protocol(has_subjects: bool, has_split: bool) -> str:
    """group-kfold with subject ids, else official with a split, else kfold."""
    if has_subjects:
        return "group-kfold"
    if has_split:
        return "official"
    return "kfold"


def has_groups(groups) -> bool:
    """Subject ids given for every row (an empty id means none)."""
    return groups is not None and len(groups) > 0 and all(g != "" for g in groups)


def require_classes(y: np.ndarray, label_names: Sequence[str], minimum: int = 2) -> None:
    """Raise ``ProtocolError`` unless ``y`` holds at least ``minimum`` classes (one class scores 100 % for nothing)."""
    present = [str(label_names[i]) for i in np.unique(np.asarray(y))]
    if len(present) < minimum:
        raise ProtocolError(f"{len(present)} class ({', '.join(present) or '-'}) in these data: a classifier needs "
                            f"at least {minimum}")


def _smallest_class(protocol: str, y: np.ndarray, label_names: Sequence[str] | None) -> int:
    """Images in the smallest class; ``ProtocolError`` naming it when it has fewer than 2 (no stratified split)."""
    values, counts = np.unique(y, return_counts=True)
    i = int(np.argmin(counts))
    if counts[i] < 2:
        name = label_names[values[i]] if label_names is not None else values[i]
        raise ProtocolError(f"{protocol} needs at least 2 images per class; class {name!r} has {counts[i]} image "
                            "(drop it, or use group-kfold / loso with subject ids)")
    return int(counts[i])


@dataclass(frozen=True)
class Splitter:
    """A protocol as an object: ``split(y, groups, split)`` gives the train/test index pairs and what was done.
    Subclasses hold their options (folds, test size, seed...); ``make_splitter(name, ...)`` builds one by name."""

    name: ClassVar[str] = ""
    seed: int = 0
    label_names: Sequence[str] | None = None

    def split(self, y, groups=None, split=None) -> tuple[list, dict[str, Any]]:
        y = np.asarray(y)
        if self.name in SUBJECT_INDEPENDENT and not has_groups(groups):
            raise ProtocolError(f"protocol {self.name!r} needs subject ids; this dataset has none "
                                "(use kfold or official)")
        info: dict[str, Any] = {"protocol": self.name, "seed": self.seed}
        splits = self._pairs(y, np.arange(len(y)), groups, split, info)
        info["n_folds"] = len(splits)
        info["subject_independent"] = self.name in SUBJECT_INDEPENDENT
        if has_groups(groups) and self.name not in SUBJECT_INDEPENDENT:
            shared = sum(len(set(groups[tr]) & set(groups[te])) for tr, te in splits)
            info["subjects_in_train_and_test"] = int(shared)
        info["description"] = describe_protocol(info)
        return splits, info

    def _pairs(self, y, idx, groups, split, info) -> list:
        raise NotImplementedError


@dataclass(frozen=True)
class HoldOut(Splitter):
    """Stratified random holdout by image (the same person can be in train and test)."""

    name: ClassVar[str] = "holdout"
    test_size: float = 0.1

    def _pairs(self, y, idx, groups, split, info):
        _smallest_class(self.name, y, self.label_names)
        info["test_size"] = self.test_size
        return list(StratifiedShuffleSplit(n_splits=1, test_size=self.test_size, random_state=self.seed)
                    .split(idx, y))


@dataclass(frozen=True)
class KFold(Splitter):
    """Stratified k-fold by image (the same person can be in train and test)."""

    name: ClassVar[str] = "kfold"
    folds: int = 10

    def _pairs(self, y, idx, groups, split, info):
        _min_folds(self.folds)
        k = min(self.folds, _smallest_class(self.name, y, self.label_names))
        if k < self.folds:
            warnings.warn(f"kfold: smallest class has {k} images, using {k} folds instead of {self.folds}")
        return list(StratifiedKFold(n_splits=k, shuffle=True, random_state=self.seed).split(idx, y))


@dataclass(frozen=True)
class GroupKFold(Splitter):
    """Subject-grouped k-fold, stratified where possible: subject-independent."""

    name: ClassVar[str] = "group-kfold"
    folds: int = 10

    def _pairs(self, y, idx, groups, split, info):
        _min_folds(self.folds)
        n_groups = len(set(groups))
        k = min(self.folds, n_groups)
        if k < 2:
            raise ProtocolError("group-kfold needs at least 2 subjects")
        if k < self.folds:
            warnings.warn(f"group-kfold: {n_groups} subjects, using {k} folds instead of {self.folds}")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "least populated class" when stratification is partial
            return list(StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=self.seed).split(idx, y, groups))


@dataclass(frozen=True)
class LeaveOneSubjectOut(Splitter):
    """One fold per subject: subject-independent."""

    name: ClassVar[str] = "loso"

    def _pairs(self, y, idx, groups, split, info):
        return list(LeaveOneGroupOut().split(idx, y, groups))


@dataclass(frozen=True)
class Official(Splitter):
    """The dataset's own split (FER2013's Usage column): train on the training splits, test on the test one."""

    name: ClassVar[str] = "official"
    test_split: str | None = None
    train_splits: Sequence[str] | None = None

    def _pairs(self, y, idx, groups, split, info):
        if split is None:
            raise ProtocolError("protocol 'official' needs a dataset split")
        splits, test_split, train_splits = official_split(np.asarray(split), self.test_split, self.train_splits)
        info.update(test_split=test_split, train_splits=train_splits)
        return splits


SPLITTERS: dict[str, type[Splitter]] = {c.name: c for c in (HoldOut, KFold, GroupKFold, LeaveOneSubjectOut, Official)}


def _min_folds(folds: int) -> None:
    if folds < 2:
        raise ProtocolError(f"--folds must be at least 2, got {folds}")


def make_splitter(protocol: str, *, folds: int = 10, test_size: float = 0.1, test_split: str | None = None,
                  train_splits: Sequence[str] | None = None, seed: int = 0,
                  label_names: Sequence[str] | None = None) -> Splitter:
    """The splitter of ``protocol`` with the options that apply to it; ``ProtocolError`` for the protocols
    that are not a split of one cache (augment-then-split, cross-dataset) and for unknown names."""
    if protocol == LEAKY_PROTOCOL:
        raise ProtocolError(f"protocol {LEAKY_PROTOCOL!r} needs augmentation (--copies N or --balance N)")
    if protocol == "cross-dataset":
        raise ProtocolError("protocol 'cross-dataset' needs a test cache (--test-cache B.h5; "
                            "evaluation.run(..., test_cache=...))")
    if protocol not in SPLITTERS:
        raise ProtocolError(f"unknown protocol {protocol!r}; use one of {', '.join(PROTOCOLS)}")
    options = {"folds": folds, "test_size": test_size, "test_split": test_split, "train_splits": train_splits}
    cls = SPLITTERS[protocol]
    own = {k: v for k, v in options.items() if k in cls.__dataclass_fields__}
    return cls(seed=seed, label_names=label_names, **own)


def make_splits(protocol: str, y: np.ndarray, groups: np.ndarray | None = None, split: np.ndarray | None = None,
                *, folds: int = 10, test_size: float = 0.1, test_split: str | None = None,
                train_splits: Sequence[str] | None = None, seed: int = 0,
                label_names: Sequence[str] | None = None) -> tuple[list, dict]:
    """Train/test index pairs for ``protocol`` plus a dict describing what was done (``label_names``: for errors)."""
    if protocol in SUBJECT_INDEPENDENT and not has_groups(groups):  # before the options are checked, as always
        raise ProtocolError(f"protocol {protocol!r} needs subject ids; this dataset has none (use kfold or official)")
    splitter = make_splitter(protocol, folds=folds, test_size=test_size, test_split=test_split,
                             train_splits=train_splits, seed=seed, label_names=label_names)
    return splitter.split(y, groups, split)


def protocol_for_cache(cache, protocol: str = "auto", *, folds: int = 10, test_size: float = 0.1,
                       test_split: str | None = None, seed: int = 0) -> tuple[list, dict, list[str]]:
    """Splits for a loaded cache, the protocol description, and warnings to show the user."""
    notes: list[str] = []
    if protocol == "auto":
        protocol = default_protocol(cache.has_subjects, cache.has_split)
        if protocol == "kfold":
            notes.append(NO_SUBJECTS_WARNING)
    if protocol in ("holdout", "kfold") and cache.has_subjects:
        notes.append(f"warning: protocol {protocol} splits by image although the data have subject ids: "
                     "the same person is in train and test, which inflates accuracy "
                     "(use group-kfold or loso for a subject-independent measure)")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        splits, info = make_splits(protocol, cache.labels, cache.subjects if cache.has_subjects else None,
                                   cache.split if cache.has_split else None, folds=folds, test_size=test_size,
                                   test_split=test_split, seed=seed, label_names=cache.label_names)
    notes += [f"warning: {w.message}" for w in caught if issubclass(w.category, UserWarning)]
    return splits, info, notes
