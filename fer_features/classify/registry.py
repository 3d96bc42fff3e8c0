"""ONE classifier registry: the fixed presets (MATLAB Classification Learner's names, ``presets``) and the
optimizable ones (a nested hyper-parameter search, ``optimizable``) under one set of names, looked up, described
and built here and nowhere else."""
from __future__ import annotations

from typing import Any

from fer_features.classify import optimizable, presets
from fer_features.errors import ClassifierError

NAMES: tuple[str, ...] = (*presets.PRESETS, *optimizable.PRESETS)  # fixed presets first, as listed to users
GROUPS: dict[str, tuple[str, ...]] = {"all": tuple(presets.PRESETS), "seed": tuple(presets.SEED_CLASSIFIERS),
                                      "optimizable": tuple(optimizable.PRESETS)}


def expand(spec: str) -> list[str]:
    """``compare --clf``: comma-separated preset names or groups (all, seed, optimizable), each name once, in
    order (``all,optimizable``: every preset; empty: all)."""
    tokens = [n.strip() for n in spec.split(",") if n.strip()] or ["all"]
    return list(dict.fromkeys(n for t in tokens for n in GROUPS.get(t, (t,))))


def is_optimizable(name: str) -> bool:
    return optimizable.is_optimizable(name)


def check(name: str) -> None:
    """``ClassifierError`` unless ``name`` is a fixed or an optimizable preset."""
    if name not in NAMES:
        raise ClassifierError(f"unknown classifier {name!r}; known: {', '.join(presets.PRESETS)}, "
                              f"{', '.join(optimizable.PRESETS)}")


def describe(name: str) -> dict[str, Any]:
    """The preset's description (kind, parameters, what MATLAB calls it; the search space of an optimizable one)."""
    check(name)
    return optimizable.describe(name) if is_optimizable(name) else presets.describe(name)


def make(name: str, overrides: dict | None = None, *, engine: str = presets.DEFAULT_ENGINE,
         pca: float | int | None = None, search: dict | None = None, progress: bool = False):
    """The unfitted pipeline of preset ``name``. ``search``: budget / inner_folds / seed of an optimizable
    preset's nested search (``progress``: its trial bar); ignored by a fixed preset."""
    check(name)
    if is_optimizable(name):
        return optimizable.make_optimizable(name, overrides, engine=engine, pca=pca, **(search or {}),
                                            progress=progress)
    return presets.make_classifier(name, overrides, engine=engine, pca=pca)
