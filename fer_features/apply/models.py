"""Saved models as classes, each with what predict needs (``label_names``, ``extraction``: the settings its
images are prepared with, ``info``) and a ``scorer``: ``SkopsModel`` (``classify --save``: a scikit-learn
pipeline on frozen features in skops format, whose loading runs no arbitrary code) and ``KerasModel``
(``finetune --save``: a fine-tuned network, ``.keras``). ``load(path)`` returns the right one by file type;
models saved by release 0.1 load as they were, and read like its bundle dict (``model["pipeline"]``)."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar, Mapping, Sequence

import numpy as np

from fer_features.data.preprocess import Preprocessor
from fer_features.errors import ModelError
from fer_features.features.extractor import FeatureExtractor
from fer_features.finetune.config import preprocessor
from fer_features.finetune.keras_io import load_keras
from fer_features.finetune.training import predict_proba

MODEL_FORMAT = "fer_features.model/1"
TRUSTED_PREFIXES = ("sklearn.", "sklearnex.", "daal4py.", "onedal.", "numpy.", "builtins.", "fer_features.",
                    "collections.", "scipy.")

Proba = Callable[[np.ndarray], np.ndarray]  # prepared images (N, S, S, 3) -> probabilities (N, classes)


class SavedModel:
    """What every saved model offers: ``label_names``, ``extraction``, ``info``, ``path`` and ``scorer``."""

    kind: ClassVar[str] = ""
    label_names: list[str]
    extraction: dict[str, Any]
    info: dict[str, Any]
    path: Path | None

    def scorer(self, *, batch_size: int = 32, weights: str | None = None) -> tuple[Preprocessor, Proba]:
        """(the ``Preprocessor`` that crops and prepares each face as training did, the probabilities of a
        batch of prepared faces, columns in ``label_names`` order); ``weights`` overrides a backbone file."""
        raise NotImplementedError

    def bundle(self) -> dict[str, Any]:
        """The dict that release 0.1's ``load_model`` returned (its values, not copies)."""
        raise NotImplementedError

    # release 0.1's load_model gave a dict: its keys still read
    def __getitem__(self, key: str) -> Any:
        return self.bundle()[key]

    def __contains__(self, key: object) -> bool:
        return key in self.bundle()

    def get(self, key: str, default: Any = None) -> Any:
        return self.bundle().get(key, default)


@dataclass(eq=False)
class SkopsModel(SavedModel):
    """A scikit-learn pipeline on frozen features, with the extraction settings of its features."""

    kind: ClassVar[str] = "skops"
    pipeline: Any
    label_names: list[str]
    extraction: dict[str, Any]
    info: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None

    @classmethod
    def load(cls, path: str | Path) -> SkopsModel:
        """Types outside scikit-learn / numpy / scipy / fer_features are refused before anything is built."""
        import skops.io as sio  # skops.io takes ~0.6 s to import: only when a model is saved or loaded

        path = Path(path)
        try:
            untrusted = sio.get_untrusted_types(file=path)
        except Exception as exc:  # noqa: BLE001 - whatever fails to read, it is no skops file
            raise ModelError(f"{path}: not a skops model file ({exc})") from None
        bad = [t for t in untrusted if not t.startswith(TRUSTED_PREFIXES)]
        if bad:
            raise ModelError(f"{path}: refuses to load untrusted types {bad[:5]}")
        bundle = sio.load(path, trusted=untrusted)
        if not isinstance(bundle, dict) or bundle.get("format") != MODEL_FORMAT:
            raise ModelError(f"{path}: not a fer_features model")
        return cls.from_bundle(bundle, path)

    @classmethod
    def from_bundle(cls, bundle: Mapping[str, Any], path: Path | None = None) -> SkopsModel:
        return cls(bundle["pipeline"], list(bundle["label_names"]), dict(bundle["extraction"]),
                   dict(bundle.get("info") or {}), path)

    def save(self, path: str | Path) -> Path:
        """Written as a temporary file and renamed: a reader never sees half a model."""
        import skops.io as sio  # skops.io takes ~0.6 s to import: only when a model is saved or loaded

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        sio.dump(self.bundle(), tmp)
        tmp.replace(path)
        self.path = path
        return path

    def bundle(self) -> dict[str, Any]:
        return {"format": MODEL_FORMAT, "pipeline": self.pipeline, "label_names": self.label_names,
                "extraction": self.extraction, "info": self.info}

    def scorer(self, *, batch_size: int = 32, weights: str | None = None) -> tuple[Preprocessor, Proba]:
        settings = dict(self.extraction)
        if weights:
            settings["weights"] = weights
        fx = FeatureExtractor(batch_size=batch_size, **settings).fit()
        pipe, n = self.pipeline, len(self.label_names)
        cols = [int(c) for c in pipe.classes_]

        def proba(batch: np.ndarray) -> np.ndarray:
            feats = fx.embed(batch)
            if hasattr(pipe, "predict_proba"):
                p = pipe.predict_proba(feats)
            else:  # no probabilities: one-hot of the prediction
                p = np.eye(len(cols))[[cols.index(int(c)) for c in pipe.predict(feats)]]
            out = np.zeros((len(batch), n))
            out[:, cols] = p
            return out

        return fx.preprocessor_, proba


@dataclass(eq=False)
class KerasModel(SavedModel):
    """A fine-tuned network, images to probabilities end to end; ``info`` is the metadata saved with it (format,
    fine-tuning settings, training rows, dataset, validation split, epochs run)."""

    kind: ClassVar[str] = "keras"
    network: Any
    label_names: list[str]
    extraction: dict[str, Any]
    info: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None

    @classmethod
    def load(cls, path: str | Path) -> KerasModel:
        try:
            bundle = load_keras(path)
        except (ValueError, OSError, KeyError) as exc:
            raise ModelError(f"{path}: cannot load ({exc})") from None
        return cls.from_bundle(bundle, Path(path))

    @classmethod
    def from_bundle(cls, bundle: Mapping[str, Any], path: Path | None = None) -> KerasModel:
        meta = {k: v for k, v in bundle.items() if k != "keras_model"}
        return cls(bundle["keras_model"], list(meta["label_names"]), dict(meta["extraction"]), meta, path)

    def bundle(self) -> dict[str, Any]:
        return {**self.info, "label_names": self.label_names, "extraction": self.extraction,
                "keras_model": self.network}

    def scorer(self, *, batch_size: int = 32, weights: str | None = None) -> tuple[Preprocessor, Proba]:
        network = self.network  # carries its own weights: ``weights`` does not apply

        def proba(batch: np.ndarray) -> np.ndarray:
            return predict_proba(network, batch, batch_size)

        return preprocessor(self.extraction), proba


LOADERS: dict[str, type[SkopsModel | KerasModel]] = {".keras": KerasModel}  # by suffix; others: skops


def load(path: str | Path) -> SavedModel:
    """The saved model at ``path``: a ``KerasModel`` for a ``.keras`` file, else a ``SkopsModel``."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"{path}: no such model file")
    return LOADERS.get(path.suffix, SkopsModel).load(path)


load_model = load  # its name in release 0.1 (which returned the bundle dict: the model reads like one)


def as_model(model: SavedModel | Mapping[str, Any] | str | Path) -> SavedModel:
    """A loaded model, a path to one, or a bundle dict of release 0.1's ``load_model``, as a ``SavedModel``."""
    if isinstance(model, SavedModel):
        return model
    if isinstance(model, Mapping):  # release 0.1's dicts: a fine-tuned network's held the network itself
        return (KerasModel if "keras_model" in model else SkopsModel).from_bundle(model)
    return load(model)


def save_model(path: str | Path, pipeline, label_names: Sequence[str], extraction: dict, info: dict) -> Path:
    """A trained pipeline saved with its label names and extraction settings (``SkopsModel.save``)."""
    return SkopsModel(pipeline, list(label_names), dict(extraction), dict(info)).save(path)
