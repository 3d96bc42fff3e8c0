"""Which Keras backend, and which device, compute the features: named in logs and stored in caches.

Keras 3 runs the same models on TensorFlow (the default), JAX or PyTorch, chosen by ``KERAS_BACKEND`` (or
``~/.keras/keras.json``) before Keras is first imported. Each backend puts the work on a GPU by itself when it
sees one; ``describe()`` says which one it picked, so a log shows whether a run used the GPU.
"""
from __future__ import annotations

import json
import os
import sys
from importlib import metadata
from pathlib import Path

BACKENDS = ("tensorflow", "jax", "torch")


def keras_backend() -> str:
    """The Keras backend in use (or that importing Keras will pick), without importing Keras."""
    if "keras" in sys.modules:
        try:
            return str(sys.modules["keras"].backend.backend())
        except AttributeError:  # keras only partly imported
            pass
    if os.environ.get("KERAS_BACKEND"):
        return os.environ["KERAS_BACKEND"]
    home = Path(os.environ.get("KERAS_HOME", Path.home() / ".keras"))
    try:
        return str(json.loads((home / "keras.json").read_text()).get("backend", "tensorflow"))
    except (OSError, ValueError, AttributeError):
        return "tensorflow"


def _tensorflow() -> str:
    import tensorflow as tf  # heavy, and optional beside JAX: only where TensorFlow itself is used

    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        return "tensorflow on CPU"
    name = tf.config.experimental.get_device_details(gpus[0]).get("device_name", "GPU")
    more = f" (of {len(gpus)} GPUs)" if len(gpus) > 1 else ""
    return f"tensorflow on GPU:0 {name}{more}"


def _jax() -> str:
    import jax  # an optional Keras backend

    devs = jax.devices()
    d = devs[0]
    more = f" (of {len(devs)})" if len(devs) > 1 else ""
    return f"jax on {d.platform.upper()}:{d.id} {d.device_kind}{more}"


def _torch() -> str:
    import torch  # an optional Keras backend

    if torch.cuda.is_available():
        return f"torch on GPU:0 {torch.cuda.get_device_name(0)}"
    return "torch on CPU"


def describe() -> str:
    """``'<backend> on <device>'``, e.g. ``'jax on GPU:0 NVIDIA H200'`` or ``'tensorflow on CPU'``."""
    backend = keras_backend()
    try:
        return {"tensorflow": _tensorflow, "jax": _jax, "torch": _torch}[backend]()
    except Exception as exc:  # unknown backend, or a broken install: say so rather than fail the run
        return f"{backend} (device unknown: {type(exc).__name__})"


def tensorflow_conflict() -> str | None:
    """A warning when more than one distribution provides the ``tensorflow`` module (they overwrite each
    other's files, e.g. ``tensorflow-cpu`` left behind when installing ``tensorflow[and-cuda]``), else None."""
    found = []
    for dist in ("tensorflow", "tensorflow-cpu", "tensorflow-gpu", "tensorflow-intel"):
        try:
            found.append(f"{dist} {metadata.version(dist)}")
        except metadata.PackageNotFoundError:
            pass
    if len(found) < 2:
        return None
    return (f"{' and '.join(found)} are all installed: they overwrite each other's 'tensorflow' module. "
            "Uninstall all of them, then install one (README: GPU)")
