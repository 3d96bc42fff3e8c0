"""A fine-tuned model as a ``.keras`` file with fer_features' metadata (labels, preprocessing) inside the zip,
and reading it back for ``predict``."""
from __future__ import annotations

import json
import zipfile
from pathlib import Path

from fer_features.data.datasets import dataset_stem
from fer_features.finetune.config import KERAS_META, FinetuneConfig


def write_keras(path: str | Path, model, ds, cfg: FinetuneConfig, history: dict, *, n_train: int,
                validation: list[str]) -> Path:
    """Save a trained model as ``.keras`` with its labels, preprocessing and training summary (written as a
    temporary file and renamed)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.keras")
    model.save(tmp)
    meta = {"format": "fer_features.keras/1", "label_names": ds.label_names, "finetune": cfg.to_dict(),
            "extraction": cfg.extraction(), "n_train": int(n_train), "dataset": dataset_stem(ds.root),
            "validation_split": validation, "n_validation": int(history.get("n_val", 0)),
            "epochs_run": [p["epochs_run"] for p in history["phases"]],
            "best_val_accuracy": [max(p.get("val_accuracy") or [float("nan")]) for p in history["phases"]]}
    with zipfile.ZipFile(tmp, "a") as z:
        z.writestr(KERAS_META, json.dumps(meta, default=str))
    tmp.replace(path)
    return path


def load_keras(path: str | Path) -> dict:
    """A saved fine-tuned model as a bundle for ``inference.predict``."""
    import keras  # heavy (loads the Keras backend): only when a model is built or run

    from fer_features.backbones.layers import custom_objects as _custom_objects  # Keras layers: imports keras

    with zipfile.ZipFile(path) as z:
        if KERAS_META not in z.namelist():
            raise ValueError(f"{path}: a Keras model, but not one saved by fer_features finetune")
        meta = json.loads(z.read(KERAS_META))
    model = keras.models.load_model(path, custom_objects=_custom_objects(), compile=False)
    return {**meta, "keras_model": model}
