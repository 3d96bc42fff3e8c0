"""Evaluation protocols and metrics: the honest protocol is the default, the leaky ones say so.

Protocols: ``holdout`` (stratified), ``kfold`` (stratified), ``group-kfold`` (subject-independent,
stratified where possible), ``loso`` (leave one subject out), ``official`` (the dataset's own split), and
``augment-then-split`` (the seed papers' LEAKY protocol: augment everything, then a random holdout split),
and ``cross-dataset`` (train on all of one cache, test on all of another: ``cross_dataset.py``).
Augmentation (``augment.py``) otherwise adds copies of each fold's training images only.
"""
from __future__ import annotations

import hashlib
import os
import sys
import time
import warnings
from collections import Counter
from typing import Any, Sequence

import numpy as np
from joblib import Parallel, delayed
from sklearn.base import clone
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score

from fer_features.classify import presets as clfs
from fer_features.classify import optimizable
from fer_features.evaluation.protocols import FEATURE_DEFAULTS, VALIDATION_SPLITS, describe_protocol
from fer_features.errors import ProtocolError

PROTOCOLS = ("auto", "holdout", "kfold", "group-kfold", "loso", "official", "augment-then-split", "cross-dataset")
LEAKY_PROTOCOL = "augment-then-split"
SUBJECT_INDEPENDENT = {"group-kfold", "loso"}
ACCURACY_DEFINITION = "correct / all test images, pooled over folds"
TEST_SPLIT_NAMES = ("PrivateTest", "test", "Test", "testing", "Testing")


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


def _official(split: np.ndarray, test_split: str | None, train_splits: Sequence[str] | None):
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


def _has_groups(groups) -> bool:
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


def make_splits(protocol: str, y: np.ndarray, groups: np.ndarray | None = None, split: np.ndarray | None = None,
                *, folds: int = 10, test_size: float = 0.1, test_split: str | None = None,
                train_splits: Sequence[str] | None = None, seed: int = 0,
                label_names: Sequence[str] | None = None) -> tuple[list, dict]:
    """Train/test index pairs for ``protocol`` plus a dict describing what was done (``label_names``: for errors)."""
    from sklearn.model_selection import (LeaveOneGroupOut, StratifiedGroupKFold, StratifiedKFold,
                                         StratifiedShuffleSplit)

    y = np.asarray(y)
    idx = np.arange(len(y))
    has_groups = _has_groups(groups)
    info: dict[str, Any] = {"protocol": protocol, "seed": seed}
    if protocol in SUBJECT_INDEPENDENT and not has_groups:
        raise ProtocolError(f"protocol {protocol!r} needs subject ids; this dataset has none (use kfold or official)")
    if protocol in ("kfold", "group-kfold") and folds < 2:
        raise ProtocolError(f"--folds must be at least 2, got {folds}")
    if protocol == "holdout":
        _smallest_class(protocol, y, label_names)
        sss = StratifiedShuffleSplit(n_splits=1, test_size=test_size, random_state=seed)
        splits = list(sss.split(idx, y))
        info["test_size"] = test_size
    elif protocol == "kfold":
        k = min(folds, _smallest_class(protocol, y, label_names))
        if k < folds:
            warnings.warn(f"kfold: smallest class has {k} images, using {k} folds instead of {folds}")
        splits = list(StratifiedKFold(n_splits=k, shuffle=True, random_state=seed).split(idx, y))
    elif protocol == "group-kfold":
        n_groups = len(set(groups))
        k = min(folds, n_groups)
        if k < 2:
            raise ProtocolError("group-kfold needs at least 2 subjects")
        if k < folds:
            warnings.warn(f"group-kfold: {n_groups} subjects, using {k} folds instead of {folds}")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "least populated class" when stratification is partial
            splits = list(StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed).split(idx, y, groups))
    elif protocol == "loso":
        splits = list(LeaveOneGroupOut().split(idx, y, groups))
    elif protocol == LEAKY_PROTOCOL:
        raise ProtocolError(f"protocol {LEAKY_PROTOCOL!r} needs augmentation (--copies N or --balance N)")
    elif protocol == "cross-dataset":
        raise ProtocolError("protocol 'cross-dataset' needs a test cache (--test-cache B.h5; "
                            "evaluation.run(..., test_cache=...))")
    elif protocol == "official":
        if split is None:
            raise ProtocolError("protocol 'official' needs a dataset split")
        splits, test_split, train_splits = _official(np.asarray(split), test_split, train_splits)
        info.update(test_split=test_split, train_splits=train_splits)
    else:
        raise ProtocolError(f"unknown protocol {protocol!r}; use one of {', '.join(PROTOCOLS)}")
    info["n_folds"] = len(splits)
    info["subject_independent"] = protocol in SUBJECT_INDEPENDENT
    if has_groups and protocol not in SUBJECT_INDEPENDENT:
        shared = sum(len(set(groups[tr]) & set(groups[te])) for tr, te in splits)
        info["subjects_in_train_and_test"] = int(shared)
    info["description"] = describe_protocol(info)
    return splits, info


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


def _run_fold(pipe, X, y, tr, te, norm, name, engine, meta=None):
    Xtr, Xte, fb = X[tr], X[te], 0
    if norm is not None:  # (mode, groups, neutral mask): each part normalised on its own rows only
        mode, groups, neutral = norm
        Xtr, f1 = subject_normalize(Xtr, groups[tr], mode, None if neutral is None else neutral[tr])
        Xte, f2 = subject_normalize(Xte, groups[te], mode, None if neutral is None else neutral[te])
        fb = f1 + f2
    t = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # lbfgs iteration-limit notices: the preset's limit is the definition
        pipe.fit(Xtr, y[tr], **_fit_params(pipe, tr, meta))
    fit_s = time.perf_counter() - t
    t = time.perf_counter()
    pred = pipe.predict(Xte)
    pred_s = time.perf_counter() - t
    proba = pipe.predict_proba(Xte) if hasattr(pipe, "predict_proba") else None  # SVC: none (not refitted)
    search = pipe.search_record() if hasattr(pipe, "search_record") else None  # optimizable presets
    return pred, fit_s, pred_s, fb, clfs.fitted_engine(pipe, name, engine), proba, search


def _fit_params(pipe, tr, meta) -> dict:
    """What a nested search (``optimizable.OptimizableClassifier``) is given besides the training rows: their
    subjects and dataset split (``meta``), and their row numbers, so that its inner folds stay inside them."""
    if not getattr(pipe, "accepts_groups", False):
        return {}
    groups, split = meta or (None, None)
    return {"groups": None if not _has_groups(groups) else np.asarray(groups)[tr],
            "split": None if split is None else np.asarray(split)[tr], "row_ids": np.asarray(tr)}


def progress_bar(total: int, desc: str):
    """A tqdm bar on stderr, as ``extract`` shows one."""
    from tqdm import tqdm

    return tqdm(total=total, unit="fold", desc=desc, file=sys.stderr, dynamic_ncols=True, mininterval=0.5)


def _say(msg: str) -> None:
    """A line on stderr that does not break a progress bar."""
    from tqdm import tqdm

    tqdm.write(msg, file=sys.stderr)


def _say_fitting(classifier: str, splits: list) -> None:
    """Before a single-split fit (no fold ends for a while): what is being fitted, on how many rows."""
    if len(splits) == 1:
        tr, te = splits[0]
        _say(f"fitting {classifier} on {len(tr)} training rows (one split; {len(te)} test rows)")


def _run_folds(pipe, X, y, splits, norm, classifier, engine, n_jobs, on_fold=None, meta=None) -> list:
    """``_run_fold`` on every split (``n_jobs`` at a time), calling ``on_fold()`` as each ends; in fold order."""
    args = [(_clone_for(pipe, k, len(splits)), X, y, tr, te, norm, classifier, engine, meta)
            for k, (tr, te) in enumerate(splits)]
    if n_jobs > 1 and len(splits) > 1:  # as completed, so that a bar moves while the slow folds still run
        indexed = Parallel(n_jobs=n_jobs, return_as="generator_unordered")(
            delayed(_run_fold_k)(k, *a) for k, a in enumerate(args))
    else:
        indexed = (_run_fold_k(k, *a) for k, a in enumerate(args))
    outs: list = [None] * len(splits)
    for k, out in indexed:
        outs[k] = out
        if on_fold is not None:
            on_fold()
    return outs


def _clone_for(pipe, k: int, n: int):
    """A fresh copy of ``pipe`` for fold k of n (a nested search's progress bar names its fold)."""
    p = clone(pipe)
    if n > 1 and "progress_label" in p.get_params(deep=False):
        p.set_params(progress_label=f"fold {k + 1}/{n}")
    return p


def _run_fold_k(k: int, *args) -> tuple[int, Any]:
    return k, _run_fold(*args)


def evaluate(X: np.ndarray, y: np.ndarray, label_names: Sequence[str], classifier: str, splits: list,
             protocol_info: dict, *, engine: str = clfs.DEFAULT_ENGINE, overrides: dict | None = None,
             pca: float | int | None = None, n_jobs: int | None = None, duplicates: dict[str, int] | None = None,
             subject_norm: str = "none", groups: np.ndarray | None = None, progress: bool = False,
             on_fold=None, split: np.ndarray | None = None, search: dict | None = None) -> dict[str, Any]:
    """Fit and score ``classifier`` on every fold; return the result dict (JSON-ready).

    ``duplicates``: the ``duplicate_report`` of these folds, added to the result as is.
    ``subject_norm``: none | center | neutral (needs ``groups``; neutral needs a 'neutral' label).
    ``progress``: a bar over the folds on stderr; ``on_fold()`` is called as each fold finishes instead.
    ``split``: the rows' dataset split and ``search`` (budget, inner_folds, seed): for the optimizable presets,
    whose nested search runs on each fold's training rows only (``optimizable.py``; ``result["search"]``).
    """
    if n_jobs is None:
        n_jobs = min(len(splits), os.cpu_count() or 1, 2)
    pipe, norm = _prepare(classifier, y, label_names, engine, overrides, pca, subject_norm, groups, search=search,
                          progress=bool(progress) and (n_jobs <= 1 or len(splits) == 1))
    bar = progress_bar(len(splits), classifier) if progress and on_fold is None else None
    on_fold = bar.update if bar is not None else on_fold
    if progress:
        _say_fitting(classifier, splits)
    t0 = time.perf_counter()
    try:
        outs = _run_folds(pipe, X, y, splits, norm, classifier, engine, n_jobs, on_fold, (groups, split))
    finally:
        if bar is not None:
            bar.close()
    return _result(outs, time.perf_counter() - t0, y, label_names, classifier, splits, protocol_info, engine=engine,
                   overrides=overrides, pca=pca, n_jobs=n_jobs, duplicates=duplicates, subject_norm=subject_norm,
                   groups=groups, norm=norm, pipe=pipe)


def _prepare(classifier: str, y, label_names, engine, overrides, pca, subject_norm, groups, *,
             search: dict | None = None, progress: bool = False) -> tuple[Any, Any]:
    """The classifier's unfitted pipeline and the subject normalisation ``(mode, groups, neutral)`` (or None).

    ``search``: budget / inner_folds / seed of an optimizable preset's nested search (``progress``: its trial bar)."""
    norm = None
    subject_norm = subject_norm or "none"
    if subject_norm != "none":
        if subject_norm not in SUBJECT_NORMS:
            raise ProtocolError(f"unknown --subject-norm {subject_norm!r}; use one of {', '.join(SUBJECT_NORMS)}")
        if not _has_groups(groups):
            raise ProtocolError("--subject-norm needs subject ids; this dataset has none")
        neutral = None
        if subject_norm == "neutral":
            if "neutral" not in label_names:
                raise ProtocolError("--subject-norm neutral needs a 'neutral' class; this dataset has none "
                                    "(use center)")
            neutral = np.asarray(y) == list(label_names).index("neutral")
        norm = (subject_norm, np.asarray(groups), neutral)
    if optimizable.is_optimizable(classifier):  # a trial bar where the folds run one at a time in this process
        return optimizable.make_optimizable(classifier, overrides, engine=engine, pca=pca, **(search or {}),
                                            progress=progress), norm
    return clfs.make_classifier(classifier, overrides, engine=engine, pca=pca), norm


def _result(outs: list, wall: float, y, label_names, classifier: str, splits: list, protocol_info: dict, *,
            engine, overrides, pca, n_jobs, duplicates, subject_norm, groups, norm, pipe=None) -> dict[str, Any]:
    """The result dict of one classifier from its folds' ``_run_fold`` outputs (in fold order)."""
    subject_norm = subject_norm or "none"
    probas = [o[5] for o in outs]
    res = score_folds(classifier, label_names, y, splits, [o[0] for o in outs], [o[1] for o in outs],
                      [o[2] for o in outs], wall, protocol_info, groups=groups,
                      probas=None if any(p is None for p in probas) else probas)
    res.update({
        "params": describe_classifier(classifier)["params"] | (overrides or {}),
        "n_jobs": int(n_jobs),
        "engine": "+".join(sorted({o[4] for o in outs})),  # as the fitted folds ran it
        "pca": pca,
        "subject_norm": subject_norm,
    })
    if norm is not None:
        res["subject_norm_note"] = SUBJECT_NORM_NOTES[subject_norm]
        if subject_norm == "neutral":
            res["subject_norm_fallbacks"] = int(sum(o[3] for o in outs))
    if outs and outs[0][6] is not None:
        res["search"] = optimizable.search_result([o[6] for o in outs], pipe)
    res.update(duplicates or {})
    return res


def describe_classifier(name: str) -> dict[str, Any]:
    """``classifiers.describe`` for a fixed preset, ``optimizable.describe`` for an optimizable one."""
    return optimizable.describe(name) if optimizable.is_optimizable(name) else clfs.describe(name)


def check_classifier(name: str) -> None:
    """``ClassifierError`` unless ``name`` is a fixed or an optimizable preset."""
    if not optimizable.is_optimizable(name):
        try:
            clfs.get_preset(name)
        except clfs.ClassifierError:
            raise clfs.ClassifierError(f"unknown classifier {name!r}; known: {', '.join(clfs.PRESETS)}, "
                                       f"{', '.join(optimizable.PRESETS)}") from None


# -- on a Dask cluster (``cluster.Cluster``; duck-typed here, so this module imports nothing of it) ------------
def _fold_task(pipe, norm, classifier: str, engine: str, fold: int, *, X, y, splits, meta=None) -> tuple:
    """One (classifier, fold) task on a worker; ``X``, ``y``, ``splits``, ``meta`` arrive once per worker."""
    tr, te = splits[fold]
    return _run_fold(pipe, X, y, tr, te, norm, classifier, engine, meta)


def _evaluate_on_cluster(cluster, X, y, label_names, classifiers: Sequence[str], splits: list, info: dict, *,
                         engine, overrides, pca, duplicates, subject_norm, groups, on_fold=None, split=None,
                         search=None):
    """Every classifier x fold as one task on ``cluster``, the data sent to each worker once; yields
    ``(classifier index, result)`` as each classifier's last fold ends. Same fits as a local run."""
    prepared = [_prepare(name, y, label_names, engine, overrides, pca, subject_norm, groups, search=search)
                for name in classifiers]
    tasks = [(clone(pipe), norm, name, engine, f) for (pipe, norm), name in zip(prepared, classifiers)
             for f in range(len(splits))]
    outs: list[list] = [[None] * len(splits) for _ in classifiers]
    left = [len(splits)] * len(classifiers)
    t0 = time.perf_counter()
    for t, out in cluster.map_unordered(_fold_task, tasks, shared={"X": X, "y": y, "splits": splits,
                                                                          "meta": (groups, split)}):
        k, f = divmod(t, len(splits))
        outs[k][f] = out
        left[k] -= 1
        if on_fold is not None:
            on_fold()
        if left[k] == 0:
            yield k, _result(outs[k], time.perf_counter() - t0, y, label_names, classifiers[k], splits, info,
                             engine=engine, overrides=overrides, pca=pca, n_jobs=cluster.n_slots,
                             duplicates=duplicates, subject_norm=subject_norm, groups=groups, norm=prepared[k][1],
                             pipe=prepared[k][0])


def score_folds(classifier: str, label_names: Sequence[str], y: np.ndarray, splits: list, preds: list,
                fit_seconds: Sequence[float], predict_seconds: Sequence[float], wall: float,
                protocol_info: dict, *, groups: np.ndarray | None = None,
                probas: list | None = None) -> dict[str, Any]:
    """The result dict every evaluation path reports (frozen features or fine-tuned networks alike).

    ``accuracy`` is pooled: correct test images / all test images over every fold (``accuracy_fold_mean`` is
    the mean of the fold accuracies, ``accuracy_std`` their std); fit/predict seconds are totals over folds.
    ``accuracy_ci``: its 95 % bootstrap interval, over the test images' subjects (``groups``) where known.
    ``predictions``: per test image its row (index into ``y``), subject, true and predicted label index, fold
    and class probabilities (``probas``, one array per fold) where the model has them.
    """
    labels_idx = np.arange(len(label_names))
    y_true = np.concatenate([y[te] for _, te in splits])
    y_pred = np.concatenate(preds)
    fold_acc = [float(accuracy_score(y[te], p)) for (_, te), p in zip(splits, preds)]
    cm = confusion_matrix(y_true, y_pred, labels=labels_idx)
    with np.errstate(invalid="ignore", divide="ignore"):
        per_class = cm.diagonal() / cm.sum(axis=1)
    present = cm.sum(axis=1) > 0
    pooled = float(accuracy_score(y_true, y_pred))
    res: dict[str, Any] = {
        "classifier": classifier,
        "protocol": protocol_info["protocol"],
        "protocol_description": protocol_info["description"],
        "subject_independent": protocol_info["subject_independent"],
        "leaky": bool(protocol_info.get("leaky", False)),
        "accuracy": pooled,
        "accuracy_definition": ACCURACY_DEFINITION,
        "accuracy_pooled": pooled,  # the same value, for readers of older results
        "accuracy_fold_mean": float(np.mean(fold_acc)),
        "accuracy_std": float(np.std(fold_acc)),
        "fold_accuracies": fold_acc,
        "macro_f1": float(f1_score(y_true, y_pred, labels=labels_idx[present], average="macro", zero_division=0)),
        "labels": list(label_names),
        "per_class_accuracy": {n: (float(a) if p else None) for n, a, p in zip(label_names, per_class, present)},
        "confusion_matrix": cm.tolist(),
        "fit_seconds": float(sum(fit_seconds)),
        "predict_seconds": float(sum(predict_seconds)),
        "wall_seconds": float(wall),
        "n_train": int(round(np.mean([len(tr) for tr, _ in splits]))),
        "n_test": int(sum(len(te) for _, te in splits)),
        "n_folds": len(splits),
        "threads": os.cpu_count(),
    }
    res.update(_uncertainty(y, splits, preds, groups, probas))
    for k in ("test_split", "train_splits", "subjects_in_train_and_test", "test_size", "seed", "augmentation"):
        if k in protocol_info:
            res[k] = protocol_info[k]
    return res


def _uncertainty(y: np.ndarray, splits: list, preds: list, groups, probas) -> dict[str, Any]:
    """``accuracy_ci``, its method and the per-image ``predictions`` of a result (see ``score_folds``)."""
    from fer_features.evaluation import stats

    rows = np.concatenate([np.asarray(te, dtype=np.int64) for _, te in splits])
    subj = np.asarray(groups)[rows].astype(str) if _has_groups(groups) else None
    y_true, y_pred = np.asarray(y)[rows], np.concatenate(preds)
    lo, hi, method = stats.accuracy_ci(y_true == y_pred, subj if subj is not None else rows,
                                       unit="subjects" if subj is not None else "images")
    pred = {"row": rows.tolist(), "path": [""] * len(rows),
            "subject": subj.tolist() if subj is not None else [""] * len(rows),
            "true": y_true.astype(int).tolist(), "pred": y_pred.astype(int).tolist(),
            "fold": np.repeat(np.arange(len(splits)), [len(te) for _, te in splits]).tolist(),
            "proba": None if probas is None else np.round(np.concatenate(probas).astype(np.float64), 4).tolist()}
    return {"accuracy_ci": [lo, hi], "accuracy_ci_method": method, "predictions": pred}


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


def cache_summary(cache) -> dict[str, Any]:
    """Where a result's features came from: the cache, dataset, backbone and every setting that changes them."""
    from fer_features.features.settings import EXTRACTION_KEYS

    s = {**FEATURE_DEFAULTS, **cache.settings}
    return {"cache": str(cache.path), "dataset": s.get("dataset_format", ""), "n_images": len(cache),
            "backbone": s.get("backbone"),
            "features": {k: s[k] for k in EXTRACTION_KEYS if k != "backbone" and k in s}}


def augmented_data(cache, protocol: str = "auto", *, augment=None, copies: int = 0,
                   balance: int | str | None = None, folds: int = 10, test_size: float = 0.1,
                   test_split: str | None = None, seed: int = 0, progress: bool = True):
    """(X, y, groups, splits, protocol info, warnings) for a cache, with augmented training copies if asked.

    ``augment`` (an ``AugmentConfig``) with ``copies``/``balance`` adds copies of each fold's training images
    only; protocol ``augment-then-split`` augments every image first and then splits (leaky, labelled so).
    """
    from fer_features.features import augment as A

    wants = A.augments(copies, balance)
    if protocol == LEAKY_PROTOCOL and wants:  # without augmentation, make_splits refuses the protocol
        d = A.augment_then_split(cache, augment or A.AugmentConfig(seed=seed), copies=copies, balance=balance,
                                 test_size=test_size, seed=seed, progress=progress)
        pct = 100 * d.info["test_rows_with_source_in_train"]
        info = {"protocol": LEAKY_PROTOCOL, "n_folds": 1, "seed": seed, "test_size": test_size, "leaky": True,
                "subject_independent": False,
                "description": f"LEAKY augment-then-split: every image augmented, then a random {test_size:g} "
                               f"holdout; {pct:.0f} % of test rows have their source image or a copy of it in "
                               "training (the seed papers' protocol, for comparison only)"}
        info["augmentation"] = d.info
        info["source_rows"] = d.source  # test rows may be copies: their cache rows, for the predictions
        notes = [f"warning: {info['description']}"]
        return d.X, d.y, d.groups, d.splits, info, notes
    splits, info, notes = protocol_for_cache(cache, protocol, folds=folds, test_size=test_size,
                                             test_split=test_split, seed=seed)
    groups = cache.subjects if cache.has_subjects else None
    X = np.asarray(cache.features, dtype=np.float32)
    if not wants:
        return X, cache.labels, groups, splits, info, notes
    d = A.augment_splits(cache, splits, augment or A.AugmentConfig(seed=seed), copies=copies, balance=balance,
                         progress=progress)
    info = {**info, "augmentation": d.info,
            "description": info["description"] + f"; training parts augmented (+{d.info['augmented_train_rows']} "
                                                 "copies per fold on average, from training images only)"}
    return d.X, d.y, d.groups, d.splits, info, notes


def run(cache, classifiers: Sequence[str], protocol: str = "auto", *, folds: int = 10, test_size: float = 0.1,
        test_split: str | None = None, seed: int = 0, engine: str = clfs.DEFAULT_ENGINE,
        overrides: dict | None = None, pca: float | int | None = None, n_jobs: int | None = None,
        subject_norm: str = "none", augment=None, copies: int = 0, balance: int | str | None = None,
        progress: bool = True, on_result=None, test_cache=None, search: dict | None = None,
        cluster=None) -> tuple[list[dict], list[str]]:
    """Evaluate each classifier on the same folds of a cache; returns (results, warnings) in classifier order.

    ``test_cache``: protocol ``cross-dataset``, train on all of ``cache`` and test on all of this one
    (classes aligned by name, one-sided ones dropped; see ``cross_dataset.cross_data``).

    ``progress``: a bar over classifiers x folds on stderr, moved as each fold ends (and a line before each
    single-split fit); ``on_result(r)`` is called as each classifier ends (in the order they end).
    ``search``: budget / inner_folds of the optimizable presets' nested search (seeded with ``seed``).
    ``cluster``: a ``cluster.Cluster``: every classifier x fold runs as a task there (the feature matrix sent to
    each worker once), with the same results; augmentation, if any, is still computed here.
    """
    label_names, cross = cache.label_names, {}
    if test_cache is not None:
        from fer_features.features.augment import augments
        from fer_features.evaluation.cross_dataset import cross_data

        X, y, groups, splits, info, notes, label_names, cross = cross_data(
            cache, test_cache, protocol, subject_norm=subject_norm, seed=seed, augments=augments(copies, balance))
    require_classes(cache.labels if test_cache is None else y, label_names)
    for name in classifiers:
        check_classifier(name)
    if test_cache is None:
        X, y, groups, splits, info, notes = augmented_data(
            cache, protocol, augment=augment, copies=copies, balance=balance, folds=folds, test_size=test_size,
            test_split=test_split, seed=seed, progress=progress)
    dup = duplicate_report(row_hashes(X), splits)  # once: the folds are the same for every row
    if dup["test_rows_duplicated_in_train"]:
        notes.append(f"warning: {dup['test_rows_duplicated_in_train']} test image(s) have an exact duplicate "
                     f"in their training part ({dup['duplicate_rows']} duplicate rows in the data)")
    # the dataset split of each row, for the nested search's inner folds (not for augmented or cross-dataset rows)
    split = cache.split if test_cache is None and cache.has_split and len(cache.split) == len(y) else None
    kw = dict(engine=engine, overrides=overrides, pca=pca, duplicates=dup, subject_norm=subject_norm, groups=groups,
              split=split, search={"seed": seed, **(search or {})})
    workers = min(len(classifiers), os.cpu_count() or 1, 2) if n_jobs is None else n_jobs
    parallel = len(splits) == 1 and workers > 1 and len(classifiers) > 1
    bar = progress_bar(len(classifiers) * len(splits), "classify") if progress else None
    if cluster is not None:
        outs = _evaluate_on_cluster(cluster, X, y, label_names, classifiers, splits, info,
                                    on_fold=bar.update if bar is not None else None, **kw)
        parallel = False
    elif parallel:
        # one split (official, holdout): the folds cannot run in parallel, so the classifiers do, two at a
        # time with one BLAS thread each (fit/predict seconds are each classifier's own, measured in its worker)
        if bar is not None:
            for name in classifiers:
                _say_fitting(name, splits)
        outs = Parallel(n_jobs=workers, inner_max_num_threads=1, return_as="generator_unordered")(
            delayed(_evaluate_k)(k, X, y, label_names, name, splits, info, n_jobs=1, **kw)
            for k, name in enumerate(classifiers))
    else:
        outs = ((k, evaluate(X, y, label_names, name, splits, info, n_jobs=n_jobs, progress=bar is not None,
                             on_fold=bar.update if bar is not None else None, **kw))
                for k, name in enumerate(classifiers))
    results: list = [None] * len(classifiers)
    try:
        for k, r in outs:
            r.update(cache_summary(cache))
            r.update(cross)
            _cache_rows(r, cache, info.get("source_rows"), test_cache)
            r["warnings"] = notes
            if parallel:
                r["classifiers_in_parallel"] = workers
                if bar is not None:
                    bar.update(len(splits))
            results[k] = r
            if on_result:
                on_result(r)
    finally:
        if bar is not None:
            bar.close()
    return results, notes


def _cache_rows(r: dict, cache, source: np.ndarray | None, test_cache=None) -> None:
    """The predictions' rows as cache rows (a copy's: its source image's; cross-dataset: the test cache's)
    and their paths, in place."""
    p = r.get("predictions")
    if p:
        rows = np.asarray(p["row"], dtype=np.int64)
        rows = rows if source is None else np.asarray(source)[rows]
        tested = cache if test_cache is None else test_cache
        p["row"], p["path"] = rows.tolist(), [str(x) for x in np.asarray(tested.paths)[rows]]


def _evaluate_k(k: int, *args, **kwargs) -> tuple[int, dict]:
    return k, evaluate(*args, **kwargs)
