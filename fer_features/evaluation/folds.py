"""One fold: fit a classifier on the training rows, predict the test rows (``run_fold``); the task every
executor runs (``fold_task``); and the executor interface: ``map_unordered(fn, tasks, shared)`` yielding
``(task index, result)`` as each ends. ``LocalExecutor`` runs tasks in this process or in joblib workers; a Dask
cluster (``fer_features.distributed.cluster.Cluster``) has the same method, so one code path serves all three."""
from __future__ import annotations

import sys
import time
import warnings
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Protocol, Sequence

import numpy as np
from joblib import Parallel, delayed
from sklearn.base import clone

from fer_features.classify import presets as clfs
from fer_features.classify import registry
from fer_features.errors import ProtocolError
from fer_features.evaluation.normalize import SUBJECT_NORMS, subject_normalize
from fer_features.evaluation.splits import has_groups


@dataclass(frozen=True)
class SubjectNorm:
    """A subject normalisation to apply in every fold: ``mode`` with every row's subject and neutral flag."""

    mode: str
    groups: np.ndarray
    neutral: np.ndarray | None = None


@dataclass
class FoldOutcome:
    """What one fold gives back: test predictions, times, the engine that ran, probabilities, search record."""

    pred: np.ndarray
    fit_seconds: float
    predict_seconds: float
    norm_fallbacks: int
    engine: str
    proba: np.ndarray | None = None  # None where the model has no predict_proba (SVC without refit)
    search: dict | None = None  # an optimizable preset's nested-search record


def run_fold(pipe, X, y, tr, te, norm: SubjectNorm | None, name: str, engine: str, meta=None) -> FoldOutcome:
    """Fit ``pipe`` on rows ``tr`` and predict rows ``te`` (each part subject-normalised on its own rows only)."""
    Xtr, Xte, fb = X[tr], X[te], 0
    if norm is not None:
        neutral = norm.neutral
        Xtr, f1 = subject_normalize(Xtr, norm.groups[tr], norm.mode, None if neutral is None else neutral[tr])
        Xte, f2 = subject_normalize(Xte, norm.groups[te], norm.mode, None if neutral is None else neutral[te])
        fb = f1 + f2
    t = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # lbfgs iteration-limit notices: the preset's limit is the definition
        pipe.fit(Xtr, y[tr], **_fit_params(pipe, tr, meta))
    fit_s = time.perf_counter() - t
    t = time.perf_counter()
    with warnings.catch_warnings():  # sklearnex in a Dask worker thread: "'Threading' parallel backend is not
        warnings.filterwarnings("ignore", message=".*'Threading' parallel backend", category=UserWarning)  # supported"
        pred = pipe.predict(Xte)
        pred_s = time.perf_counter() - t
        proba = pipe.predict_proba(Xte) if hasattr(pipe, "predict_proba") else None
    search = pipe.search_record() if hasattr(pipe, "search_record") else None
    return FoldOutcome(pred, fit_s, pred_s, fb, clfs.fitted_engine(pipe, name, engine), proba, search)


def fold_task(pipe, norm, classifier: str, engine: str, fold: int, *, X, y, splits, meta=None) -> FoldOutcome:
    """One (classifier, fold) task: ``X``, ``y``, ``splits``, ``meta`` are the shared data (sent once per worker)."""
    tr, te = splits[fold]
    return run_fold(pipe, X, y, tr, te, norm, classifier, engine, meta)


def _fit_params(pipe, tr, meta) -> dict:
    """What a nested search (``optimizable.OptimizableClassifier``) is given besides the training rows: their
    subjects and dataset split (``meta``), and their row numbers, so that its inner folds stay inside them."""
    if not getattr(pipe, "accepts_groups", False):
        return {}
    groups, split = meta or (None, None)
    return {"groups": None if not has_groups(groups) else np.asarray(groups)[tr],
            "split": None if split is None else np.asarray(split)[tr], "row_ids": np.asarray(tr)}


# -- executors ---------------------------------------------------------------------------------------------
class Executor(Protocol):
    n_slots: int

    def map_unordered(self, fn: Callable, tasks: Sequence[tuple], shared: dict[str, Any] | None = None
                      ) -> Iterator[tuple[int, Any]]: ...


def _indexed(i: int, fn: Callable, task: tuple, shared: dict) -> tuple[int, Any]:
    return i, fn(*task, **shared)


class LocalExecutor:
    """Tasks in this process (``n_jobs`` 1) or ``n_jobs`` joblib worker processes, yielded as each ends (so a
    progress bar moves while slow tasks still run). ``inner_threads``: BLAS threads per worker, if limited."""

    def __init__(self, n_jobs: int = 1, inner_threads: int | None = None):
        self.n_jobs, self.inner_threads = max(1, int(n_jobs)), inner_threads

    @property
    def n_slots(self) -> int:
        return self.n_jobs

    def map_unordered(self, fn, tasks, shared=None):
        shared = shared or {}
        if self.n_jobs > 1 and len(tasks) > 1:
            kw = {} if self.inner_threads is None else {"inner_max_num_threads": self.inner_threads}
            return Parallel(n_jobs=self.n_jobs, return_as="generator_unordered", **kw)(
                delayed(_indexed)(i, fn, t, shared) for i, t in enumerate(tasks))
        return (_indexed(i, fn, t, shared) for i, t in enumerate(tasks))


# -- what a classifier needs before its folds run ----------------------------------------------------------
def clone_for(pipe, k: int, n: int):
    """A fresh copy of ``pipe`` for fold k of n (a nested search's progress bar names its fold)."""
    p = clone(pipe)
    if n > 1 and "progress_label" in p.get_params(deep=False):
        p.set_params(progress_label=f"fold {k + 1}/{n}")
    return p


def subject_norm_for(subject_norm: str | None, y, label_names, groups) -> SubjectNorm | None:
    """The ``SubjectNorm`` of ``--subject-norm`` on these rows (None for none); ``ProtocolError`` if impossible."""
    subject_norm = subject_norm or "none"
    if subject_norm == "none":
        return None
    if subject_norm not in SUBJECT_NORMS:
        raise ProtocolError(f"unknown --subject-norm {subject_norm!r}; use one of {', '.join(SUBJECT_NORMS)}")
    if not has_groups(groups):
        raise ProtocolError("--subject-norm needs subject ids; this dataset has none")
    neutral = None
    if subject_norm == "neutral":
        if "neutral" not in label_names:
            raise ProtocolError("--subject-norm neutral needs a 'neutral' class; this dataset has none (use center)")
        neutral = np.asarray(y) == list(label_names).index("neutral")
    return SubjectNorm(subject_norm, np.asarray(groups), neutral)


def prepare(classifier: str, y, label_names, engine, overrides, pca, subject_norm, groups, *,
            search: dict | None = None, progress: bool = False) -> tuple[Any, SubjectNorm | None]:
    """The classifier's unfitted pipeline (from the one registry) and its subject normalisation (or None)."""
    norm = subject_norm_for(subject_norm, y, label_names, groups)
    return registry.make(classifier, overrides, engine=engine, pca=pca, search=search, progress=progress), norm


# -- progress lines ------------------------------------------------------------------------------------------
def progress_bar(total: int, desc: str):
    """A tqdm bar on stderr, as ``extract`` shows one."""
    from tqdm import tqdm  # tqdm pulls in little, but only the commands that show a bar need it

    return tqdm(total=total, unit="fold", desc=desc, file=sys.stderr, dynamic_ncols=True, mininterval=0.5)


def say(msg: str) -> None:
    """A line on stderr that does not break a progress bar."""
    from tqdm import tqdm  # see progress_bar

    tqdm.write(msg, file=sys.stderr)


def say_fitting(classifier: str, splits: list) -> None:
    """Before a single-split fit (no fold ends for a while): what is being fitted, on how many rows."""
    if len(splits) == 1:
        tr, te = splits[0]
        say(f"fitting {classifier} on {len(tr)} training rows (one split; {len(te)} test rows)")
