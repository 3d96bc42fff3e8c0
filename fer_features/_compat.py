"""Old flat module paths (``fer_features.classifiers``, ``fer_features.extract``...) of release 0.1, kept for one
release: importing one gives its new module and a DeprecationWarning. Saved models name their classes by module
path (skops), so models written before the restructure load through these names."""
from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import warnings

MOVED = {
    "annotate": "apply.annotate", "augment": "features.augment", "cache": "features.cache",
    "checkpoints": "finetune.checkpoints", "classical": "backbones.classical",
    "classifiers": "classify.presets", "cluster": "distributed.cluster",
    "cross_dataset": "evaluation.cross_dataset", "datasets": "data", "device": "backbones.device",
    "distributed_extract": "distributed.extract", "duplicates": "data.duplicates",
    "experiments": "reporting.experiments", "extract": "features.extract", "feature_map": "reporting.feature_map",
    "inference": "apply.predict", "keras_backbone": "backbones.keras_file",
    "manifest": "data.manifest", "merge": "features.merge", "models": "apply.models",
    "optimizable": "classify.optimizable", "pooling": "backbones.pooling", "preprocess": "data.preprocess",
    "protocols": "evaluation.protocols", "reports": "reporting.tables", "settings": "features.spec",
    "significance": "reporting.significance", "stats": "evaluation.stats", "subjects": "data.subjects",
    "_efficientnet_lite": "backbones._efficientnet_lite", "_fused_mlp": "classify._fused_mlp",
    "_layers": "backbones.layers", "_torch_legacy": "backbones._torch_legacy",
}


class _Alias(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, fullname, path=None, target=None):
        old = fullname.partition("fer_features.")[2]
        if fullname.startswith("fer_features.") and old in MOVED:
            return importlib.util.spec_from_loader(fullname, self)
        return None

    def create_module(self, spec):
        new = "fer_features." + MOVED[spec.name.partition(".")[2]]
        warnings.warn(f"{spec.name} moved to {new} (docs/architecture.md); the old path goes in the next release",
                      DeprecationWarning, stacklevel=3)
        module = importlib.import_module(new)
        sys.modules[spec.name] = module
        return module

    def exec_module(self, module):
        pass  # the new module is already executed


def install() -> None:
    if not any(isinstance(f, _Alias) for f in sys.meta_path):
        sys.meta_path.append(_Alias())
