"""Old flat module paths (release 0.1) still import for one release, with a DeprecationWarning, and serve the
old names from their new homes."""
from __future__ import annotations

import importlib
import sys

import pytest

from fer_features._compat import MOVED

OLD_NAMES = {  # old module: names the README and saved models used from it
    "extract": ["FeatureExtractor", "extract_dataset", "WHOLE_IMAGE", "dataset_cache_path"],
    "datasets": ["load_dataset", "read_image", "Dataset", "DatasetError"],
    "classifiers": ["make_classifier", "FusedMLP", "SingleThreadMLP", "PRESETS"],
    "optimizable": ["OptimizableClassifier", "make_optimizable", "search_table"],
    "duplicates": ["find_duplicates", "accuracy_without"],
    "cache": ["load_cache", "FeatureCache", "CacheWriter"],
    "preprocess": ["Preprocessor", "FaceDetector", "bbhe"],
    "stats": ["paired_test", "accuracy_ci"],
}


@pytest.mark.parametrize("old", sorted(OLD_NAMES))
def test_old_module_paths_serve_their_names_with_a_warning(old):
    sys.modules.pop(f"fer_features.{old}", None)
    with pytest.warns(DeprecationWarning, match=f"fer_features.{old} moved to"):
        module = importlib.import_module(f"fer_features.{old}")
    for name in OLD_NAMES[old]:
        assert getattr(module, name) is not None


def test_every_old_module_resolves():
    for old, targets in MOVED.items():
        for t in targets:
            importlib.import_module(f"fer_features.{t}")
