"""What the evaluation protocols say about themselves (one line for every result), and the settings older
caches do not store."""
from __future__ import annotations

from typing import Any

FEATURE_DEFAULTS = {"precision": "float32"}  # settings older caches (and float32 ones) do not store
def describe_protocol(info: dict[str, Any]) -> str:
    """A one-line statement of what a protocol measures (from ``make_splits``' info), for every result."""
    protocol, n_folds = info["protocol"], info["n_folds"]
    if protocol == "loso":
        return f"leave-one-subject-out ({n_folds} subjects): subject-independent"
    if protocol == "group-kfold":
        return f"subject-grouped {n_folds}-fold: subject-independent"
    if protocol == "kfold":
        return f"stratified {n_folds}-fold by image: the same person can be in train and test"
    if protocol == "holdout":
        return f"stratified holdout, test size {info.get('test_size')}: the same person can be in train and test"
    if protocol == "cross-dataset":
        return (f"cross-dataset: train on {info.get('train_dataset')} ({info.get('n_train_images')} images), "
                f"test on {info.get('test_dataset')} ({info.get('n_test_images')} images)")
    if protocol == "official":
        return f"official split: train {info.get('train_splits')} / test {info.get('test_split')}"
    return protocol
