"""Saved models: a trained pipeline with its label names and extraction settings, in skops format
(loading runs no arbitrary code), and prediction on new images."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from .settings import EXTRACTION_KEYS, extraction_settings  # noqa: F401  (their old home)

MODEL_FORMAT = "fer_features.model/1"
TRUSTED_PREFIXES = ("sklearn.", "sklearnex.", "daal4py.", "onedal.", "numpy.", "builtins.", "fer_features.",
                    "collections.", "scipy.")


class ModelError(ValueError):
    """Not a fer_features model, or one that cannot be loaded safely."""


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
        from .finetune import load_keras

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


def expand_inputs(items: Iterable[str | Path]) -> list[Path]:
    """Files as given, folders expanded (recursively, sorted) to the image files in them."""
    from .datasets import IMAGE_EXTENSIONS

    out: list[Path] = []
    for it in items:
        p = Path(it)
        if p.is_dir():
            out += sorted(q for q in p.rglob("*") if q.is_file() and q.suffix.lower() in IMAGE_EXTENSIONS
                          and not q.name.startswith("."))
        else:
            out.append(p)
    return out


def predict_images(bundle: dict, paths: Sequence[str | Path], *, batch_size: int = 32,
                   weights: str | None = None) -> list[dict[str, Any]]:
    """One row per image: path, predicted label, probability per class, or an error message."""
    from .datasets import ImageReadError, read_image
    from .extract import FeatureExtractor

    labels = bundle["label_names"]
    if "keras_model" in bundle:  # fine-tuned network: the same preprocessing, then the network end to end
        from .finetune import predict_proba, preprocessor

        prep = preprocessor(bundle["extraction"])
        classes = list(range(len(labels)))

        def proba_of(imgs):
            return predict_proba(bundle["keras_model"], np.stack([prep(i)[0] for i in imgs]), batch_size)
    else:
        ext_settings = dict(bundle["extraction"])
        if weights:
            ext_settings["weights"] = weights
        fx = FeatureExtractor(batch_size=batch_size, **ext_settings)
        pipe = bundle["pipeline"]
        classes = list(pipe.classes_)

        def proba_of(imgs):
            feats = fx.fit().transform(imgs)
            if hasattr(pipe, "predict_proba"):
                return pipe.predict_proba(feats)
            return np.eye(len(labels))[pipe.predict(feats)]  # no probabilities: one-hot of the prediction

    rows: list[dict[str, Any]] = []
    good: list[tuple[int, np.ndarray]] = []
    for p in paths:
        try:
            img = read_image(p)
            rows.append({"path": str(p), "label": None, "error": ""})
            good.append((len(rows) - 1, img))
        except ImageReadError as exc:
            rows.append({"path": str(p), "label": None, "error": str(exc)})
    if good:
        proba = proba_of([g[1] for g in good])
        for (row_i, _), pr in zip(good, proba):
            probs = {labels[c]: float(v) for c, v in zip(classes, pr)}
            for lab in labels:
                probs.setdefault(lab, 0.0)
            rows[row_i]["label"] = labels[classes[int(np.argmax(pr))]]
            rows[row_i]["probabilities"] = {lab: probs[lab] for lab in labels}
    return rows
