"""fer_features: facial expression recognition with frozen CNN features and honest evaluation.

Public API (imported lazily, so ``import fer_features`` does not load TensorFlow)::

    from fer_features import FeatureExtractor, extract_dataset, load_cache, load_dataset, create_backbone
    df = predict("model.skops", ["photos/", "interview.mp4"], fps=2)  # one row per face
"""
from __future__ import annotations

import importlib

__version__ = "0.1.0"

from fer_features import _compat

_compat.install()  # old flat module paths (fer_features.classifiers...) for one release

_LAZY = {
    "FeatureExtractor": ("features.extractor", "FeatureExtractor"),
    "extract_dataset": ("features.extract", "extract_dataset"),
    "load_cache": ("features.cache", "load_cache"),
    "FeatureCache": ("features.cache", "FeatureCache"),
    "load_dataset": ("data", "load_dataset"),
    "create_backbone": ("backbones", "create"),
    "list_backbones": ("backbones", "list_backbones"),
    "predict": ("apply.predict", "predict"),
    "train_model": ("apply.train", "train_model"),
    "evaluate": ("evaluation.api", "evaluate"),
    "compare": ("evaluation.api", "compare"),
    "Result": ("evaluation.result", "Result"),
}


def __getattr__(name: str):
    if name in _LAZY:
        mod, attr = _LAZY[name]
        return getattr(importlib.import_module(f".{mod}", __name__), attr)
    raise AttributeError(f"module 'fer_features' has no attribute {name!r}")


__all__ = ["__version__", *_LAZY]
