"""Old flat module paths (``fer_features.classifiers``, ``fer_features.extract``...) of release 0.1, kept for one
release: importing one gives a module that serves the old names from their new homes, with a DeprecationWarning.
Saved models name their classes by module path (skops), so models written before the restructure load through
these names (docs/architecture.md lists where each module went)."""
from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import types
import warnings

MOVED: dict[str, tuple[str, ...]] = {  # old module -> the new modules its names live in, first the main one
    "annotate": ("apply.annotate",), "augment": ("features.augment",),
    "cache": ("features.cache", "features.cache_writer"), "checkpoints": ("finetune.checkpoints",),
    "classical": ("backbones.classical",), "classifiers": ("classify.presets", "classify.registry"),
    "cluster": ("distributed.cluster",), "cross_dataset": ("evaluation.cross_dataset",), "datasets": ("data",),
    "device": ("backbones.device",), "distributed_extract": ("distributed.extract",),
    "duplicates": ("data.duplicates", "evaluation.leakage"), "experiments": ("reporting.experiments",),
    "extract": ("features.extract", "features.extractor", "features.spec"),
    "feature_map": ("reporting.feature_map",), "inference": ("apply",), "keras_backbone": ("backbones.keras_file",),
    "manifest": ("data.manifest",), "merge": ("features.merge",), "models": ("apply.models", "features.spec"),
    "optimizable": ("classify.optimizable", "classify.search"), "pooling": ("backbones.pooling", "errors"),
    "preprocess": ("data.preprocess", "data.faces", "data.intensity"),
    "protocols": ("evaluation.protocols", "data.splits", "errors"),
    "reports": ("reporting.tables", "reporting.machine"), "settings": ("features.spec",),
    "significance": ("reporting.significance",), "stats": ("evaluation.stats", "errors"),
    "subjects": ("data.subjects",), "_efficientnet_lite": ("backbones._efficientnet_lite",),
    "_fused_mlp": ("classify._fused_mlp",), "_layers": ("backbones.layers",),
    "_torch_legacy": ("backbones._torch_legacy",),
}


class _Moved(types.ModuleType):
    """An old module path: each attribute read from the first new module that has it."""

    def __init__(self, name: str, targets: tuple[str, ...]):
        super().__init__(name, f"moved to {', '.join('fer_features.' + t for t in targets)}")
        self._targets = targets

    def _modules(self):
        return [importlib.import_module("fer_features." + t) for t in self._targets]

    def __getattr__(self, attr: str):
        if attr.startswith("__"):
            raise AttributeError(attr)
        for module in self._modules():
            if hasattr(module, attr):
                return getattr(module, attr)
        raise AttributeError(f"module {self.__name__!r} (moved to {', '.join(self._targets)}) has no {attr!r}")

    def __dir__(self):
        return sorted({n for m in self._modules() for n in dir(m)})


class _Finder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, fullname, path=None, target=None):
        old = fullname.partition("fer_features.")[2]
        if fullname.startswith("fer_features.") and old in MOVED:
            return importlib.util.spec_from_loader(fullname, self)
        return None

    def create_module(self, spec):
        targets = MOVED[spec.name.partition(".")[2]]
        warnings.warn(f"{spec.name} moved to {', '.join('fer_features.' + t for t in targets)} "
                      "(docs/architecture.md); the old path goes in the next release", DeprecationWarning, stacklevel=3)
        return _Moved(spec.name, targets)

    def exec_module(self, module):
        pass  # nothing to run: the names are read from the new modules


def install() -> None:
    if not any(isinstance(f, _Finder) for f in sys.meta_path):
        sys.meta_path.append(_Finder())
