"""Each fact resolved once: one extraction resolves its backbone's spec once (a .keras file: its zip read once)."""
from __future__ import annotations

import numpy as np
import pytest

from fer_features.backbones import keras_file, registry
from fer_features.features.extract import extract_dataset
from helpers import make_folder_dataset


@pytest.fixture
def counted(monkeypatch):
    """Counts of spec resolutions (from a name) and of .keras file descriptions (zip opened and parsed)."""
    registry.RESOLUTIONS.clear()
    reads = []
    real = keras_file.describe
    monkeypatch.setattr(keras_file, "describe", lambda path: reads.append(str(path)) or real(path))
    return registry.RESOLUTIONS, reads


def _foreign_model(path):
    import keras

    inputs = keras.Input((32, 32, 3))
    x = keras.layers.Rescaling(1 / 255)(inputs)
    x = keras.layers.Conv2D(4, 3, strides=2, padding="same", name="conv")(x)
    keras.Model(inputs, x, name="tiny").save(path)
    return path


def test_one_resolution_per_extraction_of_a_keras_file(tmp_path, counted):
    resolutions, reads = counted
    data = make_folder_dataset(tmp_path / "data", per_class=3, size=32)
    model = str(_foreign_model(tmp_path / "tiny.keras"))
    kw = dict(backbone=model, face_crop="none", flip_average=False, cache_dir=tmp_path / "cache", progress=False,
              log=lambda m: None)
    extract_dataset(data, **kw)
    assert resolutions[model] == 1 and len(reads) == 1  # was 23 resolutions and 26 zip reads before
    resolutions.clear(), reads.clear()
    extract_dataset(data, **kw)  # a cache hit
    assert resolutions[model] == 1 and len(reads) == 1  # was 5 and 5


def test_one_resolution_per_extraction_of_a_registered_backbone(tmp_path, counted):
    resolutions, _ = counted
    data = make_folder_dataset(tmp_path / "data", per_class=3, size=32)
    path = extract_dataset(data, backbone="hog", face_crop="none", flip_average=False, cache_dir=tmp_path / "c",
                           progress=False, log=lambda m: None)
    assert path.is_file() and dict(resolutions) == {"hog": 1}


def test_a_spec_is_used_as_it_is(counted):
    resolutions, _ = counted
    spec = registry.resolve("efficientnet_lite0")
    assert registry.resolve(spec) is spec and sum(resolutions.values()) == 1
    assert np.isclose(spec.default_size, 224) and spec.ref == "efficientnet_lite0" and not spec.keras_file
