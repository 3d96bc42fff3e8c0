"""The Python doors of evaluation: ``evaluate(cache, classifier)`` and ``compare(cache, classifiers)`` return
``Result`` objects, on the same folds as ``classify`` / ``compare`` would use with the same options."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

from fer_features.evaluation.result import Result
from fer_features.evaluation.runner import run
from fer_features.features.cache import FeatureCache, load_cache


def _cache(cache: FeatureCache | str | Path) -> FeatureCache:
    return cache if isinstance(cache, FeatureCache) else load_cache(cache)


def compare(cache: FeatureCache | str | Path, classifiers: Sequence[str] = ("linear_svm",), protocol: str = "auto",
            *, progress: bool = False, **options) -> list[Result]:
    """Every classifier on the same folds of ``cache`` (a ``FeatureCache`` or its path), in the order given.

    ``protocol``: auto (subject-grouped 10-fold with subject ids, the official split with one, else stratified
    10-fold), loso, group-kfold, kfold, holdout, official, augment-then-split (leaky, labelled so) or
    cross-dataset (``test_cache=``). ``options``: those of ``evaluation.run`` (folds, seed, subject_norm,
    augment/copies/balance, pca, overrides, engine, test_cache, cluster...). Warnings the CLI prints are in each
    result's ``warnings``."""
    results, _ = run(_cache(cache), list(classifiers), protocol, progress=progress, **options)
    return [Result.from_dict(r) for r in results]


def evaluate(cache: FeatureCache | str | Path, classifier: str = "linear_svm", protocol: str = "auto", *,
             progress: bool = False, **options) -> Result:
    """One classifier on ``cache`` under ``protocol`` (see ``compare``)."""
    return compare(cache, [classifier], protocol, progress=progress, **options)[0]
