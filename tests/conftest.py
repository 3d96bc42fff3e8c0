"""Shared fixtures: real datasets beside the repo, tiny generated image folders, a small network for finetune.

Helpers (the in-process CLI runner, the synthetic cache builder...) live in tests/helpers.py; the names older
tests imported from here (``shared``, ``SHARED``, ``make_folder_dataset``) are re-exported."""
from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest

from helpers import ROOT, SHARED, make_folder_dataset, shared  # noqa: F401  (re-exported)


@pytest.fixture
def jaffe_dir() -> Path:
    return shared("jaffe")


@pytest.fixture
def ckplus_dir() -> Path:
    return shared("ckplus48")


@pytest.fixture
def fer_csv() -> Path:
    return shared("fer2013/fer2013.csv.gz")


@pytest.fixture
def small_network(monkeypatch):
    """finetune.build_model replaced by a small network (for tests of the training loop, not of the network):
    the same structure, a nested base model of two stages with batch norm, so every phase has weights."""
    import keras

    from fer_features.finetune import training as T  # the module whose build_model train() calls
    from fer_features.backbones.layers import InputNormalization

    def build_model(cfg, n_classes):
        size = cfg.size
        bi = keras.Input((size, size, 3))
        h = keras.layers.Conv2D(8, 3, strides=2, padding="same", name="c1")(bi)
        h = keras.layers.BatchNormalization(name="bn1")(h)
        h = keras.layers.Conv2D(16, 3, strides=2, padding="same", name="c2")(h)
        base = keras.Model(bi, keras.layers.Conv2D(16, 3, padding="same", name="c3")(h), name="small")
        inputs = keras.Input((size, size, 3), name="rgb_0_255")
        x = base(InputNormalization("lite", name="preprocess_input")(inputs))
        x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
        out = keras.layers.Dense(n_classes, activation="softmax", name="classes")(x)
        return keras.Model(inputs, out, name=cfg.name()), base

    monkeypatch.setattr(T, "build_model", build_model)


@pytest.fixture
def tiny_folder(tmp_path) -> Path:
    return make_folder_dataset(tmp_path / "data")
