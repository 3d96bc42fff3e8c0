"""A classifier preset trained on a whole feature cache and saved for ``predict``: what ``classify --save`` does,
as a function. The rows are every image, or the training split of a dataset with splits and no subject ids
(FER2013: Training); augmented copies of them when asked for; the model is stock scikit-learn (skops stores its
estimators safely), probabilities on, with the extraction settings of its features."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from fer_features.apply.models import save_model
from fer_features.classify.optimizable import is_optimizable, make_optimizable
from fer_features.classify.presets import DEFAULT_ENGINE, make_classifier
from fer_features.errors import ProtocolError
from fer_features.evaluation.splits import LEAKY_PROTOCOL, make_splits
from fer_features.features.augment import AugmentConfig, augment_splits, augments
from fer_features.features.cache import FeatureCache, load_cache
from fer_features.features.spec import cache_options


@dataclass(frozen=True)
class TrainedModel:
    """Where the model was saved, what it was trained on ('all images', 'the training split', '+ N augmented
    copies') and the ``info`` saved with it. Usable as a path: ``predict(train_model(...), images)``."""

    path: Path
    trained_on: str
    n_train: int
    info: dict[str, Any] = field(default_factory=dict, repr=False)

    def __fspath__(self) -> str:
        return str(self.path)


def check_protocol(protocol: str) -> None:
    """A saved model cannot come from the leaky protocol (said before a long evaluation, too)."""
    if protocol == LEAKY_PROTOCOL:
        raise ProtocolError(f"--save cannot be combined with the leaky protocol {LEAKY_PROTOCOL}")


def train_model(cache: FeatureCache | str | Path, classifier: str, path: str | Path, *,
                overrides: Mapping[str, Any] | None = None, protocol: str = "auto", test_split: str | None = None,
                engine: str = DEFAULT_ENGINE, pca: float | int | None = None, seed: int = 0,
                augment: AugmentConfig | None = None, copies: int = 0, balance: int | str | None = None,
                search: Mapping[str, Any] | None = None, progress: bool = True) -> TrainedModel:
    """Train preset ``classifier`` on ``cache`` (a ``FeatureCache`` or its path) and save it as ``path`` (skops).

    ``protocol`` auto or official on a cache with splits and no subject ids trains on the training split only
    (``test_split``: the one left out); any other, or a cache with subject ids, on every image. ``overrides``
    (``--set``) and ``pca`` as ``make_classifier`` takes them; ``augment``/``copies``/``balance`` add augmented
    copies of the training rows as ``evaluation.run`` does. An optimizable preset runs its search (``search``:
    budget, inner_folds; with ``engine`` and ``seed``) on the training rows and refits with stock scikit-learn.
    """
    check_protocol(protocol)
    if not isinstance(cache, FeatureCache):
        cache = load_cache(cache)
    overrides = dict(overrides or {})
    idx = np.arange(len(cache))
    trained_on = "all images"
    if cache.has_split and protocol in ("auto", "official") and not cache.has_subjects:
        (tr, _te), = make_splits("official", cache.labels, None, cache.split, test_split=test_split)[0]
        idx = tr
        trained_on = "the training split"
    # saved models use stock scikit-learn: skops stores its estimators safely (sklearnex holds native state)
    if is_optimizable(classifier):  # the search runs on the rows the model is trained on; its refit is stock sklearn
        pipe = make_optimizable(classifier, overrides, engine=engine, pca=pca, seed=seed, refit_engine="sklearn",
                                probability=True, progress=progress, **dict(search or {}))
    else:
        pipe = make_classifier(classifier, overrides, engine="sklearn", probability=True, pca=pca)
    X, y = cache.features, cache.labels
    groups = cache.subjects if cache.has_subjects else None
    split = cache.split if cache.has_split else None
    if augments(copies, balance):
        d = augment_splits(cache, [(idx, np.array([], dtype=np.int64))], augment or AugmentConfig(seed=seed),
                           copies=copies, balance=balance)
        (idx, _), = d.splits
        X, y, groups, split = d.X, d.y, d.groups, None
        trained_on += f" + {d.info['augmented_train_rows']} augmented copies"
    fit_kw = {}
    if getattr(pipe, "accepts_groups", False):
        fit_kw = {"groups": None if groups is None else np.asarray(groups)[idx],
                  "split": None if split is None else np.asarray(split)[idx], "row_ids": idx}
    pipe.fit(X[idx], y[idx], **fit_kw)
    info = {"classifier": classifier, "engine": "sklearn", "overrides": overrides, "trained_on": trained_on,
            "n_train": len(idx), "cache": str(cache.path)}
    if hasattr(pipe, "search_record"):
        info["search"] = pipe.search_record(inner_splits=False)
    saved = save_model(path, pipe, cache.label_names, cache_options(cache), info)
    return TrainedModel(saved, trained_on, len(idx), info)
