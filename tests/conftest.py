"""Shared fixtures: real datasets beside the repo, tiny generated image folders."""
from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "datasets"


def shared(name: str) -> Path:
    p = SHARED / name
    if not p.exists():
        pytest.skip(f"real dataset {p} not present")
    return p


@pytest.fixture
def jaffe_dir() -> Path:
    return shared("jaffe")


@pytest.fixture
def ckplus_dir() -> Path:
    return shared("ckplus48")


@pytest.fixture
def fer_csv() -> Path:
    return shared("fer2013/fer2013.csv.gz")


def make_folder_dataset(root: Path, classes=("happy", "sad"), per_class: int = 5, size: int = 40,
                        seed: int = 0) -> Path:
    """A folder-per-class dataset of small synthetic grey/RGB images (distinct per class)."""
    rng = np.random.default_rng(seed)
    for ci, cls in enumerate(classes):
        d = root / cls
        d.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            base = np.full((size, size), 60 + 120 * ci, np.uint8)
            img = np.clip(base + rng.integers(-40, 40, (size, size)), 0, 255).astype(np.uint8)
            if i % 2:
                Image.fromarray(np.stack([img] * 3, -1)).save(d / f"img{i}.jpg")
            else:
                Image.fromarray(img).save(d / f"img{i}.png")
    return root


@pytest.fixture
def small_network(monkeypatch):
    """finetune.build_model replaced by a small network (for tests of the training loop, not of the network):
    the same structure, a nested base model of two stages with batch norm, so every phase has weights."""
    import keras

    from fer_features.finetune import train as F
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

    monkeypatch.setattr(F, "build_model", build_model)


@pytest.fixture
def tiny_folder(tmp_path) -> Path:
    return make_folder_dataset(tmp_path / "data")
