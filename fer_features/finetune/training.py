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

import hashlib
import io
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from fer_features import evaluation as ev
from fer_features.data.splits import VALIDATION_SPLITS
from fer_features.evaluation.splits import has_groups, make_splits
from fer_features.finetune.checkpoints import TrainingStore, new_phase, resumable_early_stopping, write_json
from fer_features.finetune.config import FinetuneConfig
from fer_features.finetune.data import _log_device, _targets, _validation_split, load_images, make_dataset
from fer_features.finetune.keras_io import write_keras
from fer_features.finetune.model import build_model, set_phase


def _epoch_logger(phase: str, log):
    """Keras callback: one line per epoch (loss, accuracy, val accuracy, seconds) through ``log``."""
    import keras  # heavy (loads the Keras backend): only when a model is built or run

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
    import keras  # heavy (loads the Keras backend): only when a model is built or run


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


def checkpoint_key(cfg: FinetuneConfig, fingerprint: str, **what: Any) -> str:
    """What a checkpoint folder belongs to: every setting but ``epochs`` and ``head_epochs`` (a re-run may
    train longer), the dataset's content and ``what`` (protocol, folds...)."""
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
        write_json(folder / "run.json", {"key": key, "purpose": purpose, "finetune": cfg.to_dict(), **about})
    return folder


def validation_rows(split: np.ndarray, info: dict) -> tuple[np.ndarray, list[str]]:
    """Rows of the dataset's validation split(s) (FER2013's PublicTest) that the official protocol leaves
    out of both training and test: finetune's early stopping and model choice use them."""
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
    if folder is None:
        return

    write_json(folder / "history.json", hist)
    buf = io.BytesIO()
    np.savez(buf, proba=proba, fit_s=fit_s, pred_s=pred_s)
    tmp = folder / "result.npz.tmp"
    tmp.write_bytes(buf.getvalue())
    os.replace(tmp, folder / "result.npz")  # last: its presence means the fold is done


def run(data, cfg: FinetuneConfig, protocol: str = "auto", *, format: str = "auto", folds: int = 10,
        test_size: float = 0.1, test_split: str | None = None, progress: bool = True, log=None,
        subject_pattern: str | None = None, checkpoint_dir: str | Path | None = None,
        save_model: str | Path | None = None, label_map=None, allow_new_labels: bool = False) -> dict[str, Any]:
    """Fine-tune and test on every fold of ``protocol``; returns a result dict with ``evaluate``'s keys.

    ``save_model``: a protocol of one split only (official, holdout): also save the model that was tested
    (``.keras``, as :func:`save` writes), e.g. to reuse it as a frozen backbone (``extract --backbone``).
    Protocol ``official`` with a validation split (FER2013: train Training, test PrivateTest): the
    validation split (PublicTest) drives early stopping and model choice and is never trained on; other
    protocols hold out ``cfg.val_fraction`` of each fold's training part. ``checkpoint_dir``: per-epoch
    checkpoints of every fold, and each finished fold's predictions, under
    ``<checkpoint_dir>/<name>-run-<key>/``; the same call again resumes where it stopped.
    ``label_map``, ``allow_new_labels``: as for ``load_dataset`` (``data/labels.py``).
    """
    log = log or (lambda m: print(m, file=sys.stderr))
    _log_device(log)
    ds, images = load_images(data, cfg, format, progress, subject_pattern, label_map, allow_new_labels)
    names = ds.label_names
    y, groups, split = _targets(ds)
    with_groups = has_groups(groups)
    if protocol == "auto":
        protocol = ev.default_protocol(with_groups, any(split))
    splits, info = ev.make_splits(protocol, y, groups if with_groups else None, split if any(split) else None,
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
            model, hist = train(cfg, images[tr], y[tr], len(names), groups[tr] if with_groups else None, log,
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
                         groups=groups if with_groups else None, probas=probas)
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
         log=None, subject_pattern: str | None = None, checkpoint_dir: str | Path | None = None,
         label_map=None, allow_new_labels: bool = False) -> Path:
    """Train on all images (or the training split) and save a .keras model with labels and preprocessing.

    A dataset with splits: trained on the training split(s) only, with the validation split (FER2013's
    PublicTest) for early stopping and model choice; the test split is not used. ``checkpoint_dir``: as
    for :func:`run` (``<checkpoint_dir>/<name>-save-<key>/``); a re-run resumes.
    """
    path = Path(path)
    if path.suffix != ".keras":  # before the training, not after it
        raise ValueError(f"{path}: a fine-tuned model is saved as .keras")
    _log_device(log or (lambda m: print(m, file=sys.stderr)))
    ds, images = load_images(data, cfg, format, progress, subject_pattern, label_map, allow_new_labels)
    names = ds.label_names
    y, groups, split = _targets(ds)
    idx, val_rows, val_names = np.arange(len(y)), np.array([], int), []
    if any(split):
        splits, info = make_splits("official", y, None, split)
        (idx, _), = splits
        val_rows, val_names = validation_rows(split, info)
    key = checkpoint_key(cfg, ds.fingerprint(), purpose="save", n=len(ds)) if checkpoint_dir else ""
    folder = _run_folder(checkpoint_dir, cfg, key, "save", {"data": str(data)})
    model, hist = train(cfg, images[idx], y[idx], len(names), groups[idx] if has_groups(groups) else None, log,
                        validation=(images[val_rows], y[val_rows]) if len(val_rows) else None,
                        checkpoint=folder, checkpoint_key=key)
    return write_keras(path, model, ds, cfg, hist, n_train=len(idx), validation=val_names)


