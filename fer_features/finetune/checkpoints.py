"""Resumable training for ``finetune``: early stopping whose state survives a restart, and per-epoch checkpoints.

A checkpoint folder holds one training (one fold, or the ``--save`` training):

* ``state.json``: per phase (head, then top/full) its epochs done, validation-accuracy history, best value and
  epoch, epochs without improvement (early-stopping wait), whether it stopped early, and the files below;
* ``phase<i>-e<epoch>.keras``: the model after its latest epoch, with the optimizer's state (Adam moments,
  step count);
* ``phase<i>-best-e<epoch>.weights.h5``: the weights of the best validation epoch so far (model choice);
* ``phase<i>-end.weights.h5``: the weights a finished phase ended with (its best, restored).

Every file is written under a temporary name and renamed, ``state.json`` last, so a kill at any moment
leaves the previous epoch's consistent state; files it no longer names are deleted after it is written.
A re-run resumes after the last finished epoch: the phase's epochs continue (``--epochs`` may be raised to
train longer), a finished or early-stopped phase is not redone.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

STATE = "state.json"


def write_json(path: Path, obj: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as fh:
        json.dump(obj, fh, indent=1)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


class TrainingStore:
    """The checkpoint folder of one training; ``folder=None``: nothing written (best weights kept in memory)."""

    def __init__(self, folder: str | Path | None, key: str = ""):
        self.folder = Path(folder) if folder else None
        self.key = key
        self._best_in_memory: list | None = None

    def load(self) -> dict[str, Any]:
        """The saved state (``{"key", "phases": [...]}``), or a fresh one; a state of another key is an error."""
        fresh = {"key": self.key, "phases": []}
        if self.folder is None or not (self.folder / STATE).is_file():
            return fresh
        state = json.loads((self.folder / STATE).read_text())
        if state.get("key") != self.key:
            raise ValueError(f"{self.folder}: a checkpoint of another training (settings or data differ); "
                             "use another --checkpoint-dir or delete this folder")
        return state

    def _save_model(self, model, name: str) -> str:
        tmp = self.folder / (name.replace(".keras", ".tmp.keras") if name.endswith(".keras")
                             else name.replace(".weights.h5", ".tmp.weights.h5"))
        (model.save if name.endswith(".keras") else model.save_weights)(tmp)
        os.replace(tmp, self.folder / name)
        return name

    def epoch_end(self, model, state: dict, i: int, improved: bool) -> None:
        """Record phase ``i``'s finished epoch: the model (with optimizer), the best weights if they improved,
        then the state; superseded files are removed."""
        rec = state["phases"][i]
        if self.folder is None:
            if improved:
                self._best_in_memory = model.get_weights()
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        e = rec["epochs_done"]
        rec["model_file"] = self._save_model(model, f"phase{i}-e{e}.keras")
        if improved:
            rec["best_file"] = self._save_model(model, f"phase{i}-best-e{e}.weights.h5")
        self.commit(state)

    def commit(self, state: dict) -> None:
        """Write the state and delete the files it no longer names."""
        if self.folder is None:
            return
        write_json(self.folder / STATE, state)
        keep = {STATE} | {r.get(k) for r in state["phases"] for k in ("model_file", "best_file", "end_file")}
        for f in self.folder.iterdir():
            if f.name not in keep and (f.suffix in (".keras", ".h5") or f.name.endswith(".tmp")):
                f.unlink(missing_ok=True)

    def restore_best(self, model, rec: dict) -> bool:
        """Load the phase's best weights into ``model`` (True), or leave it as is when there are none."""
        if self.folder is None:
            if self._best_in_memory is None:
                return False
            model.set_weights(self._best_in_memory)
            self._best_in_memory = None
            return True
        if not rec.get("best_file"):
            return False
        model.load_weights(self.folder / rec["best_file"])
        return True

    def phase_end(self, model, state: dict, i: int) -> None:
        """Keep the weights phase ``i`` ended with (the next phase, or a re-run, starts from them)."""
        if self.folder is None:
            return
        state["phases"][i]["end_file"] = self._save_model(model, f"phase{i}-end.weights.h5")
        state["phases"][i]["finished"] = True
        self.commit(state)

    def load_end(self, model, rec: dict) -> None:
        model.load_weights(self.folder / rec["end_file"])

    def resume(self, model, rec: dict) -> None:
        """Weights and optimizer state after the phase's last saved epoch (compile the model first)."""
        model.optimizer.build(model.trainable_variables)
        model.load_weights(self.folder / rec["model_file"])


def new_phase(phase: str, lr: float) -> dict[str, Any]:
    return {"phase": phase, "lr": lr, "epochs_done": 0, "best": None, "best_epoch": None, "wait": 0,
            "stopped": False, "finished": False, "history": {}}


def resumable_early_stopping(store: TrainingStore, state: dict, i: int, patience: int, monitor: bool):
    """Keras callback: records each epoch in ``state['phases'][i]`` (history, seconds), tracks the best
    validation accuracy and the early-stopping wait (``monitor``: there is a validation set), stops after
    ``patience`` epochs without improvement, and checkpoints through ``store``."""
    import keras  # heavy (loads the Keras backend): only when a model is built or run

    class ResumableEarlyStopping(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.t = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            rec = state["phases"][i]
            for k, v in (logs or {}).items():
                rec["history"].setdefault(k, []).append(float(v))
            rec["history"].setdefault("seconds", []).append(time.perf_counter() - self.t)
            rec["epochs_done"] = epoch + 1
            improved = False
            if monitor and "val_accuracy" in (logs or {}):
                v = float(logs["val_accuracy"])
                if rec["best"] is None or v > rec["best"]:
                    rec.update(best=v, best_epoch=epoch + 1, wait=0)
                    improved = True
                else:
                    rec["wait"] += 1
                if rec["wait"] >= patience:
                    rec["stopped"] = True
                    self.model.stop_training = True
            store.epoch_end(self.model, state, i, improved)

    return ResumableEarlyStopping()


__all__ = ["TrainingStore", "new_phase", "resumable_early_stopping", "write_json", "STATE"]
