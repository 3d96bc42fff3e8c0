"""End-to-end fine-tuning beside the frozen path: same registry, preprocessing, protocols and result keys.

Modes: ``head`` (backbone frozen, new classifier head trained), ``top`` (head first, then the last stage of the
backbone unfrozen at the fine learning rate), ``full`` (head first, then everything at the fine learning rate),
``scratch`` (random initialisation, everything trained at the learning rate). Batch-norm layers of a pretrained
backbone stay frozen in inference mode in every phase (the usual Keras transfer-learning recipe); ``scratch``
trains them.
Training images stream through ``tf.data`` with on-the-fly augmentation (training images only); a validation
part carved from each fold's training part (by subject where ids exist) drives early stopping and restores the
best weights. Results carry the same keys as ``evaluation.evaluate`` so ``compare --include`` can table them.
"""
from __future__ import annotations

import json
import sys
import time
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import backbones as bb
from .augment import AugmentConfig
from .preprocess import DEFAULT_FACE_CROP, DEFAULT_FACE_MARGIN

MODES = ("head", "top", "full", "scratch")
KERAS_META = "fer_features.json"  # extra member of the saved .keras zip: labels and preprocessing


@dataclass
class FinetuneConfig:
    """Every setting of a fine-tuning run (stored with its results and its saved model)."""

    backbone: str = bb.DEFAULT_BACKBONE
    mode: str = "top"
    weights: str = "imagenet"
    image_size: int | None = None
    epochs: int = 10  # per phase: the head phase, then the fine phase (top/full)
    batch_size: int = 32
    lr: float = 1e-3
    fine_lr: float = 1e-4
    hidden: int = 0  # units of an optional dense hidden layer in the head (with dropout)
    dropout: float = 0.2
    patience: int = 3  # early stopping on validation accuracy; best weights restored
    val_fraction: float = 0.15
    augment: AugmentConfig | None = field(default_factory=AugmentConfig)
    preprocess: str = "none"
    face_crop: str = DEFAULT_FACE_CROP  # the same preparation as extract's by default
    face_margin: float = DEFAULT_FACE_MARGIN
    align: bool = False
    seed: int = 0

    def __post_init__(self):
        if self.mode not in MODES:
            raise ValueError(f"unknown fine-tuning mode {self.mode!r}; use one of {', '.join(MODES)}")
        cfg = bb.get_config(self.backbone)
        if cfg.family == "classical":
            raise ValueError(f"{self.backbone} is not a network: it cannot be fine-tuned")
        if self.epochs < 1 or self.batch_size < 1 or self.lr <= 0 or self.fine_lr <= 0:
            raise ValueError("epochs and batch size must be >= 1 and learning rates > 0")
        if not 0 <= self.dropout < 1 or not 0 <= self.val_fraction < 0.5:
            raise ValueError("dropout must be in [0, 1) and the validation fraction in [0, 0.5)")

    @property
    def size(self) -> int:
        return int(self.image_size or bb.get_config(self.backbone).default_size)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["image_size"] = self.size
        return d

    def name(self) -> str:
        return f"finetune_{self.backbone}_{self.mode}"

    def extraction(self) -> dict[str, Any]:
        """The image preparation settings (stored in a saved model; ``preprocessor`` rebuilds it)."""
        return {"image_size": self.size, "preprocess": self.preprocess, "face_crop": self.face_crop,
                "face_margin": float(self.face_margin), "align": bool(self.align)}


def preprocessor(extraction: dict[str, Any]):
    """The ``Preprocessor`` of ``FinetuneConfig.extraction()`` settings: the same preparation as extract."""
    from .preprocess import PreprocessConfig, Preprocessor

    return Preprocessor(PreprocessConfig(image_size=int(extraction["image_size"]), face_crop=extraction["face_crop"],
                                         face_margin=float(extraction["face_margin"]),
                                         align=bool(extraction.get("align", False)),  # absent: saved before --align
                                         intensity=extraction["preprocess"]))


# -- model ----------------------------------------------------------------------------------------------
def build_model(cfg: FinetuneConfig, n_classes: int):
    """(model, backbone): RGB 0-255 input -> family preprocessing -> backbone -> pooled -> [dense] -> softmax."""
    import keras

    from ._layers import InputNormalization

    bcfg = bb.get_config(cfg.backbone)
    weights = "random" if cfg.mode == "scratch" else bb.normalize_weights(cfg.weights)
    base = bb._base(bcfg, False, weights, cfg.size)
    inputs = keras.Input((cfg.size, cfg.size, 3), name="rgb_0_255")
    x = InputNormalization(bcfg.preprocess, name="preprocess_input")(inputs)
    # Keras 3 hands the outer ``training`` flag to every inner layer (a ``training=False`` here would be
    # overridden by fit), so batch norm is kept in inference mode by set_phase instead.
    x = base(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    if cfg.hidden:
        x = keras.layers.Dense(cfg.hidden, activation="relu", name="hidden")(x)
    if cfg.dropout:
        x = keras.layers.Dropout(cfg.dropout, name="dropout")(x)
    out = keras.layers.Dense(n_classes, activation="softmax", name="classes")(x)
    return keras.Model(inputs, out, name=cfg.name()), base


def last_stage_start(base) -> int:
    """Index of the first backbone layer at the resolution of its last convolution: the last stage."""
    maps = [(i, tuple(layer.output.shape[1:3])) for i, layer in enumerate(base.layers)
            if len(getattr(layer.output, "shape", ())) == 4]
    last_weighted = max(i for i, layer in enumerate(base.layers) if layer.weights and len(layer.output.shape) == 4)
    size = dict(maps)[last_weighted]
    return next(i for i, s in maps if s == size)


def set_phase(base, cfg: FinetuneConfig, phase: str) -> None:
    """head: backbone frozen; top: its last stage trainable; full/scratch: all trainable.

    Batch norm of a pretrained backbone stays frozen in every phase: a non-trainable Keras 3
    BatchNormalization runs in inference mode (ImageNet statistics, no updates from small batches).
    Only ``scratch`` (random initialisation) trains its batch norm.
    """
    import keras

    if phase == "head":
        base.trainable = False
        return
    base.trainable = True  # (a no-op if it already was: so every layer is set explicitly below)
    k = last_stage_start(base) if phase == "top" else 0
    for i, layer in enumerate(base.layers):
        frozen_bn = isinstance(layer, keras.layers.BatchNormalization) and cfg.mode != "scratch"
        layer.trainable = i >= k and not frozen_bn


# -- data -----------------------------------------------------------------------------------------------
def _augmenter(aug: AugmentConfig | None, seed: int):
    import keras

    if aug is None:
        return None
    layers = []
    if aug.flip:
        layers.append(keras.layers.RandomFlip("horizontal", seed=seed))
    if aug.rotation:
        layers.append(keras.layers.RandomRotation(aug.rotation / 360.0, fill_mode="nearest", seed=seed))
    if aug.shift:
        layers.append(keras.layers.RandomTranslation(aug.shift, aug.shift, fill_mode="nearest", seed=seed))
    if aug.zoom or aug.stretch:
        z = aug.zoom or 0.0
        layers.append(keras.layers.RandomZoom((-z - aug.stretch, z + aug.stretch), (-z, z), fill_mode="nearest",
                                              seed=seed))
    if aug.shear:
        layers.append(keras.layers.RandomShear(x_factor=aug.shear / 45.0, fill_mode="nearest", seed=seed))
    if aug.brightness:
        layers.append(keras.layers.RandomBrightness(aug.brightness, value_range=(0, 255), seed=seed))
    return keras.Sequential(layers, name="augment") if layers else None


def make_dataset(images: np.ndarray, labels: np.ndarray, batch_size: int, *, training: bool = False,
                 augment: AugmentConfig | None = None, seed: int = 0):
    """tf.data pipeline of uint8 images -> float32 batches, shuffled and augmented when training."""
    import tensorflow as tf

    ds = tf.data.Dataset.from_tensor_slices((images, labels.astype(np.int32)))
    if training:
        ds = ds.shuffle(len(images), seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size).map(lambda x, y: (tf.cast(x, tf.float32), y), num_parallel_calls=tf.data.AUTOTUNE)
    aug = _augmenter(augment, seed) if training else None
    if aug is not None:
        ds = ds.map(lambda x, y: (aug(x, training=True), y))  # sequential: seeded random draws in order
    return ds.prefetch(tf.data.AUTOTUNE)


def _validation_split(y: np.ndarray, groups: np.ndarray | None, fraction: float, seed: int):
    """(train, val) positions: by subject where ids exist, else stratified; no validation if too small."""
    from sklearn.model_selection import GroupShuffleSplit, StratifiedShuffleSplit

    idx = np.arange(len(y))
    if fraction <= 0 or len(y) < 20:
        return idx, idx[:0]
    if groups is not None and len(set(groups)) >= 3:
        tr, va = next(GroupShuffleSplit(1, test_size=fraction, random_state=seed).split(idx, y, groups))
    else:
        try:
            tr, va = next(StratifiedShuffleSplit(1, test_size=fraction, random_state=seed).split(idx, y))
        except ValueError:  # a class with a single image
            return idx, idx[:0]
    return tr, va


def _epoch_logger(phase: str, log):
    """Keras callback: one line per epoch (loss, accuracy, val accuracy, seconds) through ``log``."""
    import keras

    class EpochLog(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.t = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            logs = logs or {}
            val = f", val acc {logs['val_accuracy']:.3f}" if "val_accuracy" in logs else ""
            log(f"  {phase} epoch {epoch + 1}: loss {logs.get('loss', float('nan')):.4f}, "
                f"acc {logs.get('accuracy', float('nan')):.3f}{val}, {time.perf_counter() - self.t:.1f} s")

    return EpochLog()


def train(cfg: FinetuneConfig, images: np.ndarray, y: np.ndarray, n_classes: int,
          groups: np.ndarray | None = None, log=None) -> tuple[Any, dict]:
    """Train a model on ``images`` (uint8, N x S x S x 3); returns (model, history summary)."""
    import keras

    log = log or (lambda m: print(m, file=sys.stderr))
    keras.utils.set_random_seed(cfg.seed)
    tr, va = _validation_split(y, groups, cfg.val_fraction, cfg.seed)
    train_ds = make_dataset(images[tr], y[tr], cfg.batch_size, training=True, augment=cfg.augment, seed=cfg.seed)
    val_ds = make_dataset(images[va], y[va], cfg.batch_size) if len(va) else None
    model, base = build_model(cfg, n_classes)
    phases = [("scratch", cfg.lr)] if cfg.mode == "scratch" else [("head", cfg.lr)]
    if cfg.mode in ("top", "full"):
        phases.append((cfg.mode, cfg.fine_lr))
    history: dict[str, Any] = {"n_train": int(len(tr)), "n_val": int(len(va)), "phases": []}
    for phase, lr in phases:
        set_phase(base, cfg, phase)
        model.compile(optimizer=keras.optimizers.Adam(lr), loss="sparse_categorical_crossentropy",
                      metrics=["accuracy"])
        callbacks = [_epoch_logger(phase, log)]
        if val_ds is not None:
            callbacks.append(keras.callbacks.EarlyStopping("val_accuracy", patience=cfg.patience,
                                                           restore_best_weights=True))
        h = model.fit(train_ds, validation_data=val_ds, epochs=cfg.epochs, verbose=0, callbacks=callbacks,
                      shuffle=False)  # make_dataset shuffles
        history["phases"].append({"phase": phase, "lr": lr, "epochs_run": len(h.history["loss"]),
                                  "trainable_weights": len(model.trainable_weights),
                                  **{k: [float(v) for v in vals] for k, vals in h.history.items()}})
    return model, history


def predict_proba(model, images: np.ndarray, batch_size: int = 32) -> np.ndarray:
    return np.asarray(model.predict(make_dataset(images, np.zeros(len(images)), batch_size), verbose=0))


# -- whole runs -----------------------------------------------------------------------------------------
def load_images(data, cfg: FinetuneConfig, format: str = "auto", progress: bool = True,
                subject_pattern: str | None = None):
    """(dataset, uint8 images N x S x S x 3) through the same preprocessing as extract."""
    from .datasets import Dataset, load_dataset

    if isinstance(data, Dataset):
        ds = data
        if subject_pattern:
            from .subjects import apply_subject_pattern

            ds = apply_subject_pattern(ds, subject_pattern, ds.root)
    else:
        ds = load_dataset(data, format, subject_pattern=subject_pattern)
    ds.require_classes()
    prep = preprocessor(cfg.extraction())
    it = range(len(ds))
    if progress:
        from tqdm import tqdm

        it = tqdm(it, unit="img", desc="preprocess", file=sys.stderr, dynamic_ncols=True, mininterval=0.5)
    return ds, np.stack([prep(ds.load_image(i))[0] for i in it])


def _targets(ds) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(class index, subject id, split name) per record of ``ds``."""
    y = np.array([ds.label_names.index(r.label) for r in ds.records])
    groups = np.array([r.subject for r in ds.records], dtype=object)
    split = np.array([r.split for r in ds.records], dtype=object)
    return y, groups, split


def run(data, cfg: FinetuneConfig, protocol: str = "auto", *, format: str = "auto", folds: int = 10,
        test_size: float = 0.1, test_split: str | None = None, progress: bool = True, log=None,
        subject_pattern: str | None = None) -> dict[str, Any]:
    """Fine-tune and test on every fold of ``protocol``; returns a result dict with ``evaluate``'s keys."""
    from . import evaluation as ev

    log = log or (lambda m: print(m, file=sys.stderr))
    ds, images = load_images(data, cfg, format, progress, subject_pattern)
    names = ds.label_names
    y, groups, split = _targets(ds)
    has_groups = ev._has_groups(groups)
    if protocol == "auto":
        protocol = ev.default_protocol(has_groups, any(split))
    splits, info = ev.make_splits(protocol, y, groups if has_groups else None, split if any(split) else None,
                                  folds=folds, test_size=test_size, test_split=test_split, seed=cfg.seed,
                                  label_names=names)
    preds, probas, fit_s, pred_s, histories = [], [], [], [], []
    t0 = time.perf_counter()
    for k, (tr, te) in enumerate(splits):
        log(f"fold {k + 1}/{len(splits)}: {len(tr)} train, {len(te)} test")
        t = time.perf_counter()
        model, hist = train(cfg, images[tr], y[tr], len(names), groups[tr] if has_groups else None, log)
        fit_s.append(time.perf_counter() - t)
        t = time.perf_counter()
        probas.append(predict_proba(model, images[te], cfg.batch_size))
        preds.append(probas[-1].argmax(axis=1))
        pred_s.append(time.perf_counter() - t)
        histories.append(hist)
        log(f"fold {k + 1}: accuracy {np.mean(preds[-1] == y[te]):.3f} (fit {fit_s[-1]:.0f} s)")
    res = ev.score_folds(cfg.name(), names, y, splits, preds, fit_s, pred_s, time.perf_counter() - t0, info,
                         groups=groups if has_groups else None, probas=probas)
    paths = ds.rel_paths()  # the predictions' rows are the dataset's records, as a cache's rows are
    res["predictions"]["path"] = [paths[i] for i in res["predictions"]["row"]]
    res.update({"source": "finetune", "params": cfg.to_dict(), "engine": "keras", "n_jobs": 1, "pca": None,
                "subject_norm": "none", "backbone": cfg.backbone, "dataset": ds.format, "n_images": len(ds),
                "cache": "", "features": {"fine_tuned": True, "mode": cfg.mode, "weights": cfg.weights,
                                          **cfg.extraction()},
                "epochs_run": [[p["epochs_run"] for p in h["phases"]] for h in histories],
                "training_history": histories})
    return res


def save(path: str | Path, data, cfg: FinetuneConfig, *, format: str = "auto", progress: bool = True,
         log=None, subject_pattern: str | None = None) -> Path:
    """Train on all images (or the training split) and save a .keras model with labels and preprocessing."""
    from .evaluation import _has_groups, make_splits

    path = Path(path)
    if path.suffix != ".keras":  # before the training, not after it
        raise ValueError(f"{path}: a fine-tuned model is saved as .keras")
    ds, images = load_images(data, cfg, format, progress, subject_pattern)
    names = ds.label_names
    y, groups, split = _targets(ds)
    idx = np.arange(len(y))
    if any(split):
        (idx, _), = make_splits("official", y, None, split)[0]
    model, _ = train(cfg, images[idx], y[idx], len(names), groups[idx] if _has_groups(groups) else None, log)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.keras")
    model.save(tmp)
    meta = {"format": "fer_features.keras/1", "label_names": names, "finetune": cfg.to_dict(),
            "extraction": cfg.extraction(), "n_train": int(len(idx))}
    with zipfile.ZipFile(tmp, "a") as z:
        z.writestr(KERAS_META, json.dumps(meta, default=str))
    tmp.replace(path)
    return path


def load_keras(path: str | Path) -> dict:
    """A saved fine-tuned model as a bundle for ``inference.predict``."""
    import keras

    from .backbones import _custom_objects

    with zipfile.ZipFile(path) as z:
        if KERAS_META not in z.namelist():
            raise ValueError(f"{path}: a Keras model, but not one saved by fer_features finetune")
        meta = json.loads(z.read(KERAS_META))
    model = keras.models.load_model(path, custom_objects=_custom_objects(), compile=False)
    return {**meta, "keras_model": model}
