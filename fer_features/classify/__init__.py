"""Classifiers: ONE registry (``registry``) of the fixed presets (``presets``: MATLAB Classification Learner's
names as scikit-learn pipelines) and the optimizable ones (``optimizable``: a nested Optuna search), and the
fused MLP engine (``_fused_mlp``)."""
from fer_features.classify.presets import DEFAULT_ENGINE, ENGINES, SEED_CLASSIFIERS, make_classifier, parse_overrides
from fer_features.classify.registry import NAMES, check, describe, is_optimizable, make

__all__ = ["DEFAULT_ENGINE", "ENGINES", "NAMES", "SEED_CLASSIFIERS", "check", "describe", "is_optimizable", "make",
           "make_classifier", "parse_overrides"]
