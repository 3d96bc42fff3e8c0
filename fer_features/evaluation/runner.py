"""Evaluation of a cache: the honest protocol is the default, the leaky ones say so.

Protocols: ``holdout`` (stratified), ``kfold`` (stratified), ``group-kfold`` (subject-independent,
stratified where possible), ``loso`` (leave one subject out), ``official`` (the dataset's own split), and
``augment-then-split`` (the seed papers' LEAKY protocol: augment everything, then a random holdout split),
and ``cross-dataset`` (train on all of one cache, test on all of another: ``cross_dataset.py``).
Augmentation (``features/augment.py``) otherwise adds copies of each fold's training images only.
``run`` evaluates several classifiers on the same folds of a cache (augmented where asked), each result
carrying where its features came from and the warnings the user must see.
"""
from __future__ import annotations

import os
from typing import Any, Sequence

import numpy as np

from fer_features.classify import registry
from fer_features.classify.presets import DEFAULT_ENGINE
from fer_features.evaluation.cross_dataset import cross_data
from fer_features.evaluation.engine import evaluate, evaluate_many
from fer_features.evaluation.folds import LocalExecutor, progress_bar, say_fitting
from fer_features.evaluation.leakage import duplicate_report, row_hashes
from fer_features.evaluation.protocols import FEATURE_DEFAULTS
from fer_features.evaluation.splits import LEAKY_PROTOCOL, protocol_for_cache, require_classes
from fer_features.features import augment as A
from fer_features.features.spec import EXTRACTION_KEYS


def cache_summary(cache) -> dict[str, Any]:
    """Where a result's features came from: the cache, dataset, backbone and every setting that changes them."""
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
        test_split: str | None = None, seed: int = 0, engine: str = DEFAULT_ENGINE,
        overrides: dict | None = None, pca: float | int | None = None, n_jobs: int | None = None,
        subject_norm: str = "none", augment=None, copies: int = 0, balance: int | str | None = None,
        progress: bool = True, on_result=None, test_cache=None, search: dict | None = None,
        cluster=None, on_start=None) -> tuple[list[dict], list[str]]:
    """Evaluate each classifier on the same folds of a cache; returns (results, warnings) in classifier order.

    ``test_cache``: protocol ``cross-dataset``, train on all of ``cache`` and test on all of this one
    (classes aligned by name, one-sided ones dropped; see ``cross_dataset.cross_data``).

    ``progress``: a bar over classifiers x folds on stderr, moved as each fold ends (and a line before each
    single-split fit); ``on_result(r)`` is called as each classifier ends (in the order they end).
    ``search``: budget / inner_folds of the optimizable presets' nested search (seeded with ``seed``).
    ``cluster``: a ``cluster.Cluster``: every classifier x fold runs as a task there (the feature matrix sent to
    each worker once), with the same results; augmentation, if any, is still computed here.
    ``on_start(X, splits, slots)`` is called once the rows and folds are known, before the first fit (``slots``:
    how many folds, or classifiers, run at once).
    """
    label_names, cross = cache.label_names, {}
    if test_cache is not None:
        X, y, groups, splits, info, notes, label_names, cross = cross_data(
            cache, test_cache, protocol, subject_norm=subject_norm, seed=seed, augments=A.augments(copies, balance))
    require_classes(cache.labels if test_cache is None else y, label_names)
    for name in classifiers:
        registry.check(name)
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
    parallel = cluster is None and len(splits) == 1 and workers > 1 and len(classifiers) > 1
    if on_start is not None:
        on_start(X, splits, cluster.n_slots if cluster is not None else workers if parallel
                 else n_jobs or min(len(splits), os.cpu_count() or 1, 2))
    bar = progress_bar(len(classifiers) * len(splits), "classify") if progress else None
    on_fold = bar.update if bar is not None else None
    if cluster is not None:  # every classifier x fold at once, the data sent to each worker once
        outs = evaluate_many(cluster, X, y, label_names, classifiers, splits, info, on_fold=on_fold, **kw)
    elif parallel:
        # one split (official, holdout): the folds cannot run in parallel, so the classifiers do, two at a
        # time with one BLAS thread each (fit/predict seconds are each classifier's own, measured in its worker)
        if bar is not None:
            for name in classifiers:
                say_fitting(name, splits)
        outs = evaluate_many(LocalExecutor(workers, inner_threads=1), X, y, label_names, classifiers, splits, info,
                             on_fold=on_fold, **kw)
    else:  # one classifier after another, its folds n_jobs at a time
        outs = ((k, evaluate(X, y, label_names, name, splits, info, n_jobs=n_jobs, progress=bar is not None,
                             on_fold=on_fold, **kw))
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
                r["n_jobs"] = 1  # each classifier's own fit ran in one worker
            results[k] = r
            if on_result:
                on_result(r)
    finally:
        if bar is not None:
            bar.close()
    return results, notes


def _cache_rows(r: dict, cache, source: np.ndarray | None, test_cache=None) -> None:
    """The predictions' rows as cache rows (a copy's: its source image's; cross-dataset: the test cache's),
    their paths and, where the cache has them, their image content ids, in place."""
    p = r.get("predictions")
    if p:
        rows = np.asarray(p["row"], dtype=np.int64)
        rows = rows if source is None else np.asarray(source)[rows]
        tested = cache if test_cache is None else test_cache
        p["row"], p["path"] = rows.tolist(), [str(x) for x in np.asarray(tested.paths)[rows]]
        if getattr(tested, "content", None) is not None:  # the image's content id: pairs results across renames
            p["content"] = [str(x) for x in np.asarray(tested.content)[rows]]
