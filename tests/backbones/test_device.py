"""Keras backends and devices: which one computes (logged, stored), and equal features on JAX."""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from fer_features.features import spec as S
from fer_features.backbones import device
from fer_features.features import extract as E
from helpers import ROOT


def test_keras_backend_read_without_importing_keras(monkeypatch, tmp_path):
    monkeypatch.delitem(sys.modules, "keras", raising=False)
    monkeypatch.setenv("KERAS_BACKEND", "jax")
    assert device.keras_backend() == "jax"
    monkeypatch.delenv("KERAS_BACKEND")
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    assert device.keras_backend() == "tensorflow"  # no keras.json: Keras' own default
    (tmp_path / "keras.json").write_text(json.dumps({"backend": "torch"}))
    assert device.keras_backend() == "torch"
    assert "keras" not in sys.modules


def test_describe_names_the_backend_and_its_device():
    import keras

    text = device.describe()
    assert text.startswith(keras.backend.backend() + " on "), text


def test_two_tensorflow_distributions_are_reported(monkeypatch):
    from importlib import metadata

    installed = {"tensorflow-cpu": "2.21.0"}

    def version(name):
        if name not in installed:
            raise metadata.PackageNotFoundError(name)
        return installed[name]

    monkeypatch.setattr(device.metadata, "version", version)
    assert device.tensorflow_conflict() is None
    installed["tensorflow"] = "2.21.0"
    msg = device.tensorflow_conflict()
    assert msg and "tensorflow-cpu 2.21.0" in msg and "tensorflow 2.21.0" in msg


def test_random_weights_are_keyed_by_backend_trained_weights_are_not(monkeypatch):
    rnd = E.FeatureExtractor(backbone="resnet50", weights="random")
    trained = E.FeatureExtractor()
    tf_random, tf_trained = rnd.settings(), trained.settings()
    assert "keras_backend" not in tf_random and "keras_backend" not in tf_trained  # keys TF caches had before
    monkeypatch.setattr(S, "keras_backend", lambda: "jax")  # the spec names the backend in the key
    assert rnd.settings() == {**tf_random, "keras_backend": "jax"}  # other random numbers: another cache
    assert trained.settings() == tf_trained  # same features to float tolerance: the same cache
    assert E.FeatureExtractor(backbone="hog").settings().get("keras_backend") is None


@pytest.mark.slow
def test_lite0_imagenet_build_leaves_no_kernel_at_its_zero_initial_value():
    """efficientnet_lite0 is built with zero kernels when the ImageNet file overwrites them all (fast on JAX)."""
    from fer_features import backbones as bb

    model = bb.base_network(bb.get_config("efficientnet_lite0"), True, "imagenet", 224)
    kernels = [(layer.name, w) for layer in model.layers for w in layer.weights if "kernel" in w.path]
    assert len(kernels) == 50  # stem, 15 expansions + 16 depthwise + 16 projections, head, classifier
    zero = [name for name, w in kernels if not np.any(np.asarray(w.numpy()))]
    assert not zero, zero


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="jax not installed (pip install -e '.[jax]')")
def test_default_features_equal_on_jax_and_tensorflow(ckplus_dir, tmp_path):
    """The default extraction under KERAS_BACKEND=jax (a fresh process) gives TensorFlow's features."""
    from PIL import Image

    files = sorted(ckplus_dir.glob("*/*.png"))[::245][:4]  # four images, different classes
    script = textwrap.dedent(f"""
        import sys, numpy as np
        from PIL import Image
        from fer_features import FeatureExtractor
        import keras
        assert keras.backend.backend() == "jax"
        imgs = [np.asarray(Image.open(f)) for f in {[str(f) for f in files]!r}]
        np.save({str(tmp_path / 'jax.npy')!r}, FeatureExtractor(batch_size=4).fit().transform(imgs))
        print("tensorflow" in sys.modules)
    """)
    env = {**os.environ, "KERAS_BACKEND": "jax", "PYTHONPATH": os.pathsep.join([str(ROOT), *sys.path])}
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().splitlines()[-1] == "False"  # the JAX route never imported TensorFlow
    ours = E.FeatureExtractor(batch_size=4).fit().transform([np.asarray(Image.open(f)) for f in files])
    theirs = np.load(tmp_path / "jax.npy")
    assert theirs.shape == ours.shape == (4, 3920)
    np.testing.assert_allclose(theirs, ours, rtol=1e-4, atol=1e-4)
