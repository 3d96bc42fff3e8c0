"""Saved models: a trained pipeline with its label names and extraction settings, in skops format
(loading runs no arbitrary code). Prediction on new images is in ``inference``."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

from fer_features.features.settings import EXTRACTION_KEYS, extraction_settings  # noqa: F401  (their old home)
from fer_features.errors import ModelError

MODEL_FORMAT = "fer_features.model/1"
TRUSTED_PREFIXES = ("sklearn.", "sklearnex.", "daal4py.", "onedal.", "numpy.", "builtins.", "fer_features.",
                    "collections.", "scipy.")


def save_model(path: str | Path, pipeline, label_names: Sequence[str], extraction: dict, info: dict) -> Path:
    import skops.io as sio

    bundle = {"format": MODEL_FORMAT, "pipeline": pipeline, "label_names": list(label_names),
              "extraction": dict(extraction), "info": dict(info)}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    sio.dump(bundle, tmp)
    tmp.replace(path)
    return path


def load_model(path: str | Path) -> dict:
    """Load a saved model; types outside scikit-learn / numpy / fer_features are refused."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"{path}: no such model file")
    if path.suffix == ".keras":  # a fine-tuned network (finetune --save)
        from fer_features.finetune.train import load_keras

        try:
            return load_keras(path)
        except (ValueError, OSError, KeyError) as exc:
            raise ModelError(f"{path}: cannot load ({exc})") from None
    import skops.io as sio

    try:
        untrusted = sio.get_untrusted_types(file=path)
    except Exception as exc:
        raise ModelError(f"{path}: not a skops model file ({exc})") from None
    bad = [t for t in untrusted if not t.startswith(TRUSTED_PREFIXES)]
    if bad:
        raise ModelError(f"{path}: refuses to load untrusted types {bad[:5]}")
    bundle = sio.load(path, trusted=untrusted)
    if not isinstance(bundle, dict) or bundle.get("format") != MODEL_FORMAT:
        raise ModelError(f"{path}: not a fer_features model")
    return bundle
