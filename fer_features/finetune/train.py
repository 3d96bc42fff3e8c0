"""End-to-end fine-tuning beside the frozen path: same registry, preprocessing, protocols and result keys.

Modes: ``head`` (backbone frozen, new classifier head trained), ``top`` (head first, then the last stage of the
backbone unfrozen at the fine learning rate), ``full`` (head first, then everything at the fine learning rate),
``scratch`` (random initialisation, everything trained at the learning rate). Batch-norm layers of a pretrained
backbone stay frozen in inference mode in every phase (the usual Keras transfer-learning recipe); ``scratch``
trains them.
Training images stream through ``tf.data`` with on-the-fly augmentation (training images only); a validation
part carved from each fold's training part (by subject where ids exist) drives early stopping and restores the
best weights; under the official protocol a dataset's validation split (FER2013's PublicTest) does instead,
never trained on. With a checkpoint folder every epoch is saved and a re-run resumes (``checkpoints.py``).
Results carry the same keys as ``evaluation.evaluate`` so ``compare --include`` can table them.
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

from fer_features import backbones as bb
from fer_features.features.augment import AugmentConfig
from fer_features.data.faces import DEFAULT_FACE_CROP, DEFAULT_FACE_MARGIN

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
    head_epochs: int | None = None  # top/full: epochs of the head phase before the fine one (None: epochs)
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
        head = 1 if self.head_epochs is None else self.head_epochs
        if min(self.epochs, head, self.batch_size) < 1 or self.lr <= 0 or self.fine_lr <= 0:
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
    from fer_features.data.preprocess import PreprocessConfig, Preprocessor

    return Preprocessor(PreprocessConfig(image_size=int(extraction["image_size"]), face_crop=extraction["face_crop"],
                                         face_margin=float(extraction["face_margin"]),
                                         align=bool(extraction.get("align", False)),  # absent: saved before --align
                                         intensity=extraction["preprocess"]))


# -- model ----------------------------------------------------------------------------------------------
def build_model(cfg: FinetuneConfig, n_classes: int):
    """(model, backbone): RGB 0-255 input -> family preprocessing -> backbone -> pooled -> [dense] -> softmax."""
    import keras

    from fer_features.backbones.layers import InputNormalization

    bcfg = bb.get_config(cfg.backbone)
    weights = "random" if cfg.mode == "scratch" else bb.normalize_weights(cfg.weights)
    base = bb.base_network(bcfg, False, weights, cfg.size)
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


def _tensorflow():
    """TensorFlow, for tf.data (with any Keras backend: the model itself runs on JAX or torch as well)."""
    try:
        import tensorflow as tf
    except ImportError:
        from fer_features.backbones.device import keras_backend

        raise ValueError("finetune streams its images through tf.data and needs TensorFlow installed, whatever "
                         f"the Keras backend (here {keras_backend()}): pip install tensorflow-cpu") from None
    return tf


def _log_device(log) -> None:
    from fer_features.backbones import device

    _tensorflow()  # before the images are loaded: a missing TensorFlow stops the run at once
    log(f"training on {device.describe()}")


def make_dataset(images: np.ndarray, labels: np.ndarray, batch_size: int, *, training: bool = False,
                 augment: AugmentConfig | None = None, seed: int = 0):
    """tf.data pipeline of uint8 images -> float32 batches, shuffled and augmented when training."""
    tf = _tensorflow()

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
          groups: np.ndarray | None = None, log=None, *, validation: tuple[np.ndarray, np.ndarray] | None = None,
          checkpoint: str | Path | None = None, checkpoint_key: str = "") -> tuple[Any, dict]:
    """Train a model on ``images`` (uint8, N x S x S x 3); returns (model, history summary).

    ``validation``: (images, labels) that drive early stopping and model choice (the best validation epoch's
    weights are kept), e.g. FER2013's PublicTest; without it, ``cfg.val_fraction`` of ``images`` is held out
    (by subject where ``groups`` are given). ``checkpoint``: a folder for per-epoch checkpoints
    (``checkpoints.py``); a re-run with the same folder resumes after the last finished epoch.
    """
    import keras

    from fer_features.finetune.checkpoints import TrainingStore, new_phase, resumable_early_stopping

    log = log or (lambda m: print(m, file=sys.stderr))
    keras.utils.set_random_seed(cfg.seed)
    if validation is not None:
        tr, (val_x, val_y) = np.arange(len(y)), validation
    else:
        tr, va = _validation_split(y, groups, cfg.val_fraction, cfg.seed)
        val_x, val_y = images[va], y[va]
    train_ds = make_dataset(images[tr], y[tr], cfg.batch_size, training=True, augment=cfg.augment, seed=cfg.seed)
    val_ds = make_dataset(val_x, val_y, cfg.batch_size) if len(val_y) else None
    model, base = build_model(cfg, n_classes)
    fine = cfg.mode in ("top", "full")  # (phase, learning rate, epochs): the first phase, then the fine one
    phases = [("scratch" if cfg.mode == "scratch" else "head", cfg.lr, (cfg.head_epochs or cfg.epochs) if fine
               else cfg.epochs)] + ([(cfg.mode, cfg.fine_lr, cfg.epochs)] if fine else [])
    store = TrainingStore(checkpoint, checkpoint_key)
    state = store.load()
    history: dict[str, Any] = {"n_train": int(len(tr)), "n_val": int(len(val_y)), "phases": [],
                               "validation": "given" if validation is not None else f"{cfg.val_fraction:g} held out",
                               "earlier_seconds": 0.0}  # epochs of earlier runs of a resumed training
    pending_end = None  # a finished phase of an earlier run: the next phase starts from its weights
    for i, (phase, lr, epochs) in enumerate(phases):
        rec = state["phases"][i] if i < len(state["phases"]) else None
        later = len(state["phases"]) > i + 1
        set_phase(base, cfg, phase)
        if rec is not None and (later or rec["stopped"] or rec["epochs_done"] >= epochs):
            if not rec.get("finished"):  # stopped between its last epoch and its end: end it now
                model.compile(optimizer=keras.optimizers.Adam(lr), loss="sparse_categorical_crossentropy",
                              metrics=["accuracy"])
                store.resume(model, rec)
                store.restore_best(model, rec)
                store.phase_end(model, state, i)
            log(f"  {phase} phase: done in an earlier run ({rec['epochs_done']} epochs)")
            history["earlier_seconds"] += float(sum(rec["history"].get("seconds", [])))
            history["phases"].append(_phase_summary(rec, model))
            pending_end = rec
            continue
        model.compile(optimizer=keras.optimizers.Adam(lr), loss="sparse_categorical_crossentropy",
                      metrics=["accuracy"])
        if rec is None:
            rec = new_phase(phase, lr)
            state["phases"].append(rec)
            if pending_end is not None:
                store.load_end(model, pending_end)
        else:
            store.resume(model, rec)
            history["earlier_seconds"] += float(sum(rec["history"].get("seconds", [])))
            log(f"  {phase} phase: resuming at epoch {rec['epochs_done'] + 1} of {epochs} ({store.folder})")
        pending_end = None
        callbacks = [_epoch_logger(phase, log),
                     resumable_early_stopping(store, state, i, cfg.patience, monitor=val_ds is not None)]
        model.fit(train_ds, validation_data=val_ds, initial_epoch=rec["epochs_done"], epochs=epochs,
                  verbose=0, callbacks=callbacks, shuffle=False)  # make_dataset shuffles
        if store.restore_best(model, rec):
            log(f"  {phase} phase: best validation accuracy {rec['best']:.3f} at epoch {rec['best_epoch']}")
        store.phase_end(model, state, i)
        history["phases"].append(_phase_summary(rec, model))
    if pending_end is not None:  # every phase was done before: the model is the last phase's end
        store.load_end(model, pending_end)
    return model, history


def _phase_summary(rec: dict, model) -> dict[str, Any]:
    """One phase of a training's history, as ``run`` reports it (the lists span every run of a resumed one)."""
    return {"phase": rec["phase"], "lr": rec["lr"], "epochs_run": rec["epochs_done"],
            "trainable_weights": len(model.trainable_weights), "best_epoch": rec["best_epoch"],
            "stopped_early": rec["stopped"], "train_seconds": float(sum(rec["history"].get("seconds", []))),
            **{k: list(v) for k, v in rec["history"].items()}}


def predict_proba(model, images: np.ndarray, batch_size: int = 32) -> np.ndarray:
    return np.asarray(model.predict(make_dataset(images, np.zeros(len(images)), batch_size), verbose=0))


# -- whole runs -----------------------------------------------------------------------------------------
def load_images(data, cfg: FinetuneConfig, format: str = "auto", progress: bool = True,
                subject_pattern: str | None = None):
    """(dataset, uint8 images N x S x S x 3) through the same preprocessing as extract."""
    from fer_features.data.datasets import Dataset
    from fer_features.data.formats import load_dataset

    if isinstance(data, Dataset):
        ds = data
        if subject_pattern:
            from fer_features.data.subjects import apply_subject_pattern

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


def checkpoint_key(cfg: FinetuneConfig, fingerprint: str, **what: Any) -> str:
    """What a checkpoint folder belongs to: every setting but ``epochs`` and ``head_epochs`` (a re-run may
    train longer), the dataset's content and ``what`` (protocol, folds...)."""
    import hashlib

    d = cfg.to_dict()
    d.pop("epochs")
    d.pop("head_epochs")
    payload = json.dumps({"config": d, "dataset": fingerprint, **what}, sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()


def _run_folder(root: str | Path | None, cfg: FinetuneConfig, key: str, purpose: str, about: dict) -> Path | None:
    """``<root>/<name>-<purpose>-<key12>/`` with a ``run.json`` saying what it holds (None without a root)."""
    if not root:
        return None
    folder = Path(root) / f"{cfg.name()}-{purpose}-{key[:12]}"
    folder.mkdir(parents=True, exist_ok=True)
    if not (folder / "run.json").exists():
        from fer_features.finetune.checkpoints import write_json

        write_json(folder / "run.json", {"key": key, "purpose": purpose, "finetune": cfg.to_dict(), **about})
    return folder


def validation_rows(split: np.ndarray, info: dict) -> tuple[np.ndarray, list[str]]:
    """Rows of the dataset's validation split(s) (FER2013's PublicTest) that the official protocol leaves
    out of both training and test: finetune's early stopping and model choice use them."""
    from fer_features.data.splits import VALIDATION_SPLITS

    used = set(info.get("train_splits") or []) | {info.get("test_split")}
    names = [s for s in dict.fromkeys(split.tolist()) if s and s.lower() in VALIDATION_SPLITS and s not in used]
    return np.flatnonzero(np.isin(split, names)), names


def _fold_done(folder: Path | None) -> dict | None:
    if folder is None or not (folder / "result.npz").is_file():
        return None
    with np.load(folder / "result.npz", allow_pickle=False) as z:
        out = {"proba": z["proba"], "fit_s": float(z["fit_s"]), "pred_s": float(z["pred_s"])}
    out["history"] = json.loads((folder / "history.json").read_text())
    return out


def _save_fold(folder: Path | None, proba: np.ndarray, fit_s: float, pred_s: float, hist: dict) -> None:
    import io
    import os

    if folder is None:
        return
    from fer_features.finetune.checkpoints import write_json

    write_json(folder / "history.json", hist)
    buf = io.BytesIO()
    np.savez(buf, proba=proba, fit_s=fit_s, pred_s=pred_s)
    tmp = folder / "result.npz.tmp"
    tmp.write_bytes(buf.getvalue())
    os.replace(tmp, folder / "result.npz")  # last: its presence means the fold is done


def run(data, cfg: FinetuneConfig, protocol: str = "auto", *, format: str = "auto", folds: int = 10,
        test_size: float = 0.1, test_split: str | None = None, progress: bool = True, log=None,
        subject_pattern: str | None = None, checkpoint_dir: str | Path | None = None,
        save_model: str | Path | None = None) -> dict[str, Any]:
    """Fine-tune and test on every fold of ``protocol``; returns a result dict with ``evaluate``'s keys.

    ``save_model``: a protocol of one split only (official, holdout): also save the model that was tested
    (``.keras``, as :func:`save` writes), e.g. to reuse it as a frozen backbone (``extract --backbone``).
    Protocol ``official`` with a validation split (FER2013: train Training, test PrivateTest): the
    validation split (PublicTest) drives early stopping and model choice and is never trained on; other
    protocols hold out ``cfg.val_fraction`` of each fold's training part. ``checkpoint_dir``: per-epoch
    checkpoints of every fold, and each finished fold's predictions, under
    ``<checkpoint_dir>/<name>-run-<key>/``; the same call again resumes where it stopped.
    """
    from fer_features import evaluation as ev

    log = log or (lambda m: print(m, file=sys.stderr))
    _log_device(log)
    ds, images = load_images(data, cfg, format, progress, subject_pattern)
    names = ds.label_names
    y, groups, split = _targets(ds)
    has_groups = ev._has_groups(groups)
    if protocol == "auto":
        protocol = ev.default_protocol(has_groups, any(split))
    splits, info = ev.make_splits(protocol, y, groups if has_groups else None, split if any(split) else None,
                                  folds=folds, test_size=test_size, test_split=test_split, seed=cfg.seed,
                                  label_names=names)
    if save_model and (len(splits) != 1 or Path(save_model).suffix != ".keras"):
        raise ValueError(f"{save_model}: saving the tested model needs a protocol of one split (official, holdout) "
                         "and a .keras file name")
    val_rows, val_names = validation_rows(split, info) if protocol == "official" else (np.array([], int), [])
    if len(val_rows):
        info["validation_split"] = val_names
        info["description"] += (f"; validation {', '.join(val_names)} ({len(val_rows)} images): early stopping "
                                "and model choice, never trained on")
    key = ""
    if checkpoint_dir:
        key = checkpoint_key(cfg, ds.fingerprint(), purpose="run", protocol=protocol, folds=folds,
                             test_size=test_size, test_split=test_split, n=len(ds))
    run_dir = _run_folder(checkpoint_dir, cfg, key, "run", {"data": str(data), "protocol": protocol})
    preds, probas, fit_s, pred_s, histories = [], [], [], [], []
    t0 = time.perf_counter()
    for k, (tr, te) in enumerate(splits):
        folder = run_dir / f"fold-{k + 1}" if run_dir else None
        done = _fold_done(folder)
        if done is not None and save_model and not Path(save_model).is_file():
            done = None  # the model is wanted: the checkpoint gives it back without training again
        if done is not None:
            log(f"fold {k + 1}/{len(splits)}: done in an earlier run ({folder})")
            proba, f_s, p_s, hist = done["proba"], done["fit_s"], done["pred_s"], done["history"]
        else:
            log(f"fold {k + 1}/{len(splits)}: {len(tr)} train, {len(te)} test"
                + (f", {len(val_rows)} validation ({', '.join(val_names)})" if len(val_rows) else ""))
            t = time.perf_counter()
            model, hist = train(cfg, images[tr], y[tr], len(names), groups[tr] if has_groups else None, log,
                                validation=(images[val_rows], y[val_rows]) if len(val_rows) else None,
                                checkpoint=folder, checkpoint_key=f"{key}:{k}")
            f_s = time.perf_counter() - t + hist.get("earlier_seconds", 0.0)
            t = time.perf_counter()
            proba = predict_proba(model, images[te], cfg.batch_size)
            p_s = time.perf_counter() - t
            if save_model:
                write_keras(save_model, model, ds, cfg, hist, n_train=len(tr), validation=val_names)
                log(f"model saved: {save_model}")
            _save_fold(folder, proba, f_s, p_s, hist)
        probas.append(proba)
        preds.append(proba.argmax(axis=1))
        fit_s.append(f_s)
        pred_s.append(p_s)
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
                "validation_split": val_names, "n_validation": int(len(val_rows)),
                "epochs_run": [[p["epochs_run"] for p in h["phases"]] for h in histories],
                "training_history": histories})
    if run_dir is not None:
        res["checkpoint_dir"] = str(run_dir)
    if save_model:
        res["saved_model"] = str(save_model)
    return res


def save(path: str | Path, data, cfg: FinetuneConfig, *, format: str = "auto", progress: bool = True,
         log=None, subject_pattern: str | None = None, checkpoint_dir: str | Path | None = None) -> Path:
    """Train on all images (or the training split) and save a .keras model with labels and preprocessing.

    A dataset with splits: trained on the training split(s) only, with the validation split (FER2013's
    PublicTest) for early stopping and model choice; the test split is not used. ``checkpoint_dir``: as
    for :func:`run` (``<checkpoint_dir>/<name>-save-<key>/``); a re-run resumes.
    """
    from fer_features.evaluation.splits import _has_groups, make_splits

    path = Path(path)
    if path.suffix != ".keras":  # before the training, not after it
        raise ValueError(f"{path}: a fine-tuned model is saved as .keras")
    _log_device(log or (lambda m: print(m, file=sys.stderr)))
    ds, images = load_images(data, cfg, format, progress, subject_pattern)
    names = ds.label_names
    y, groups, split = _targets(ds)
    idx, val_rows, val_names = np.arange(len(y)), np.array([], int), []
    if any(split):
        splits, info = make_splits("official", y, None, split)
        (idx, _), = splits
        val_rows, val_names = validation_rows(split, info)
    key = checkpoint_key(cfg, ds.fingerprint(), purpose="save", n=len(ds)) if checkpoint_dir else ""
    folder = _run_folder(checkpoint_dir, cfg, key, "save", {"data": str(data)})
    model, hist = train(cfg, images[idx], y[idx], len(names), groups[idx] if _has_groups(groups) else None, log,
                        validation=(images[val_rows], y[val_rows]) if len(val_rows) else None,
                        checkpoint=folder, checkpoint_key=key)
    return write_keras(path, model, ds, cfg, hist, n_train=len(idx), validation=val_names)


def write_keras(path: str | Path, model, ds, cfg: FinetuneConfig, history: dict, *, n_train: int,
                validation: list[str]) -> Path:
    """Save a trained model as ``.keras`` with its labels, preprocessing and training summary (written as a
    temporary file and renamed)."""
    from fer_features.data.datasets import dataset_stem

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
    import keras

    from fer_features.backbones.layers import custom_objects as _custom_objects

    with zipfile.ZipFile(path) as z:
        if KERAS_META not in z.namelist():
            raise ValueError(f"{path}: a Keras model, but not one saved by fer_features finetune")
        meta = json.loads(z.read(KERAS_META))
    model = keras.models.load_model(path, custom_objects=_custom_objects(), compile=False)
    return {**meta, "keras_model": model}
