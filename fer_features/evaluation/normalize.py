"""Subject normalisation (``--subject-norm``): each subject's mean (or mean neutral) feature subtracted, each
part of a fold on its own rows."""
from __future__ import annotations

import numpy as np

SUBJECT_NORMS = ("none", "center", "neutral")


SUBJECT_NORM_NOTES = {
    "center": "subject-norm center: each subject's mean feature is subtracted, computed separately in the "
              "training part and in the test part; for test subjects this uses their unlabelled test images "
              "(transductive: it needs several images of a new person at test time)",
    "neutral": "subject-norm neutral: each subject's mean neutral-image feature is subtracted (the subject's "
               "mean feature where it has no neutral image in that part); this assumes a neutral reference "
               "capture of every test person is known at test time",
}


def subject_normalize(X: np.ndarray, groups: np.ndarray, mode: str,
                      neutral: np.ndarray | None = None) -> tuple[np.ndarray, int]:
    """Subtract each subject's mean (``center``) or mean neutral feature (``neutral``) from its rows.

    Returns the normalised copy and how many subjects fell back from neutral to their mean.
    """
    if mode in (None, "none"):
        return X, 0
    if mode not in SUBJECT_NORMS:
        raise ValueError(f"unknown subject normalisation {mode!r}; use one of {', '.join(SUBJECT_NORMS)}")
    X = np.array(X, dtype=np.float32, copy=True)
    fallback = 0
    for g in np.unique(groups):
        m = groups == g
        ref = None
        if mode == "neutral" and neutral is not None:
            mn = m & neutral
            if mn.any():
                ref = X[mn].mean(axis=0)
        if ref is None:
            fallback += int(mode == "neutral")
            ref = X[m].mean(axis=0)
        X[m] -= ref
    return X, fallback
