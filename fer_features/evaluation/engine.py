"""Classifiers on folds: every (classifier, fold) is one ``folds.fold_task`` run by an executor (this process,
joblib workers or a Dask cluster: the same code path); each classifier's folds are scored into one result."""
from __future__ import annotations

import os
import time
from typing import Iterator, Sequence

import numpy as np

from fer_features.classify import registry, search
from fer_features.classify.presets import DEFAULT_ENGINE
from fer_features.evaluation.folds import (
    Executor,
    FoldOutcome,
    LocalExecutor,
    clone_for,
    fold_task,
    prepare,
    progress_bar,
    say_fitting,
)
from fer_features.evaluation.normalize import SUBJECT_NORM_NOTES
from fer_features.evaluation.result import Result
from fer_features.evaluation.scoring import score_folds


def evaluate_many(executor: Executor, X, y, label_names, classifiers: Sequence[str], splits: list, info: dict, *,
                  engine: str = DEFAULT_ENGINE, overrides: dict | None = None, pca=None, duplicates=None,
                  subject_norm: str = "none", groups=None, on_fold=None, split=None, search=None,
                  progress: bool = False) -> Iterator[tuple[int, Result]]:
    """Every classifier x fold as one task on ``executor`` (the data shared once, not sent with each task);
    yields ``(classifier index, result)`` as each classifier's last fold ends. ``progress``: an optimizable
    preset's trial bar, for tasks run one at a time in this process."""
    prepared = [prepare(name, y, label_names, engine, overrides, pca, subject_norm, groups, search=search,
                        progress=progress) for name in classifiers]
    tasks = [(clone_for(pipe, f, len(splits)), norm, name, engine, f)
             for (pipe, norm), name in zip(prepared, classifiers) for f in range(len(splits))]
    outs: list[list] = [[None] * len(splits) for _ in classifiers]
    left = [len(splits)] * len(classifiers)
    t0 = time.perf_counter()
    shared = {"X": X, "y": y, "splits": splits, "meta": (groups, split)}
    for t, out in executor.map_unordered(fold_task, tasks, shared=shared):
        k, f = divmod(t, len(splits))
        outs[k][f] = out
        left[k] -= 1
        if on_fold is not None:
            on_fold()
        if left[k] == 0:
            yield k, _result(outs[k], time.perf_counter() - t0, y, label_names, classifiers[k], splits, info,
                             engine=engine, overrides=overrides, pca=pca, n_jobs=executor.n_slots,
                             duplicates=duplicates, subject_norm=subject_norm, groups=groups, norm=prepared[k][1],
                             pipe=prepared[k][0])


def evaluate(X: np.ndarray, y: np.ndarray, label_names: Sequence[str], classifier: str, splits: list,
             protocol_info: dict, *, engine: str = DEFAULT_ENGINE, overrides: dict | None = None,
             pca: float | int | None = None, n_jobs: int | None = None, duplicates: dict[str, int] | None = None,
             subject_norm: str = "none", groups: np.ndarray | None = None, progress: bool = False,
             on_fold=None, split: np.ndarray | None = None, search: dict | None = None) -> Result:
    """Fit and score ``classifier`` on every fold (``n_jobs`` folds at a time); return its ``Result``.

    ``duplicates``: the ``duplicate_report`` of these folds, added to the result as is.
    ``subject_norm``: none | center | neutral (needs ``groups``; neutral needs a 'neutral' label).
    ``progress``: a bar over the folds on stderr; ``on_fold()`` is called as each fold finishes instead.
    ``split``: the rows' dataset split and ``search`` (budget, inner_folds, seed): for the optimizable presets,
    whose nested search runs on each fold's training rows only (``optimizable.py``; ``result["search"]``).
    """
    if n_jobs is None:
        n_jobs = min(len(splits), os.cpu_count() or 1, 2)
    bar = progress_bar(len(splits), classifier) if progress and on_fold is None else None
    on_fold = bar.update if bar is not None else on_fold
    if progress:
        say_fitting(classifier, splits)
    try:
        (_, result), = evaluate_many(
            LocalExecutor(n_jobs), X, y, label_names, [classifier], splits, protocol_info, engine=engine,
            overrides=overrides, pca=pca, duplicates=duplicates, subject_norm=subject_norm, groups=groups,
            on_fold=on_fold, split=split, search=search,
            progress=bool(progress) and (n_jobs <= 1 or len(splits) == 1))
    finally:
        if bar is not None:
            bar.close()
    return result


def _result(outs: list[FoldOutcome], wall: float, y, label_names, classifier: str, splits: list,
            protocol_info: dict, *, engine, overrides, pca, n_jobs, duplicates, subject_norm, groups, norm,
            pipe=None) -> Result:
    """The result of one classifier from its folds' outcomes (in fold order)."""
    subject_norm = subject_norm or "none"
    probas = [o.proba for o in outs]
    res = score_folds(classifier, label_names, y, splits, [o.pred for o in outs], [o.fit_seconds for o in outs],
                      [o.predict_seconds for o in outs], wall, protocol_info, groups=groups,
                      probas=None if any(p is None for p in probas) else probas)
    res.update({
        "params": registry.describe(classifier)["params"] | (overrides or {}),
        "n_jobs": int(n_jobs),
        "engine": "+".join(sorted({o.engine for o in outs})),  # as the fitted folds ran it
        "pca": pca,
        "subject_norm": subject_norm,
    })
    if norm is not None:
        res["subject_norm_note"] = SUBJECT_NORM_NOTES[subject_norm]
        if subject_norm == "neutral":
            res["subject_norm_fallbacks"] = int(sum(o.norm_fallbacks for o in outs))
    if outs and outs[0].search is not None:
        res["search"] = search.search_result([o.search for o in outs], pipe)
    res.update(duplicates or {})
    return res
