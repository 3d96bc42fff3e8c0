"""Cache keys and file names do not move: caches written before the restructure (release 0.1.0) are hits after it.
The keys below were computed by 0.1.0's own code on the same generated images (and on JAFFE where present)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fer_features.data import load_dataset
from fer_features.features.extract import dataset_cache_path
from fer_features.features.extractor import FeatureExtractor

PINNED = {  # case: (file name, key) from fer_features 0.1.0
    "default": ("data__efficientnet-lite0-224-grid7-block4c-add-haar-m0-flip__230b1d7003e7.h5",
                "230b1d7003e7401f9364333ae9b1586d8b7a89587bbe390dcf6c320d6c366eea"),
    "hog": ("data__hog-96-n-a__9c7aa273e41c.h5", "9c7aa273e41c2f002bbd1bb21ee1fa1ef07b9a2f9141b90ee7a29af5acc7df6f"),
    "subject_pattern": ("data__efficientnet-lite0-112-grid4-block3b-add-haar-m0-flip__fc125381684c.h5",
                        "fc125381684c0758cf5a252dd96c6b9dc9c69b730ee9f41326a012230a36bc0b"),
    "fer2013": ("tiny__efficientnet-lite0-112-grid7-block4c-add-bbhe-flip__bd651b4d5d00.h5",
                "bd651b4d5d0089f279c3b3746f3a6279ae642f9e2e4482c53a3ab0e8f7d43dd1"),
    "resnet50_random": ("data__resnet50-224-max-last-haar-m0-flip-w-random__a98d53b6d3ea.h5",
                        "a98d53b6d3ea44a09a124d501d69be14d4bbc01477666356c6df77eeda688c08"),
}
CASES = {  # case: (which data, load_dataset options, FeatureExtractor options)
    "default": ("folder", {}, {}),
    "hog": ("folder", {}, {"backbone": "hog", "face_crop": "none", "flip_average": False}),
    "subject_pattern": ("folder", {"subject_pattern": r"^[^/]+/(S\d+)_"},
                        {"layer": "block3b_add", "pooling": "grid4", "image_size": 112}),
    "fer2013": ("csv", {}, {"image_size": 112, "preprocess": "bbhe", "face_crop": "none"}),
    "resnet50_random": ("folder", {}, {"backbone": "resnet50", "weights": None, "pooling": "max"}),
}


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict[str, Path]:
    """The images 0.1.0's keys were computed on: PNGs of seeded noise, and a six-row FER2013 CSV."""
    base = tmp_path_factory.mktemp("pinned")
    root, rng = base / "data", np.random.default_rng(7)
    for c, cls in enumerate(("happy", "sad")):
        (root / cls).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(rng.integers(0, 256, (24, 24), dtype=np.uint8)).save(root / cls / f"S{10 + i}_{c}.png")
    rows = ["emotion,pixels,Usage"] + [
        f"{k % 7},{' '.join(str((k * 7 + j) % 256) for j in range(2304))},{'Training' if k < 4 else 'PrivateTest'}"
        for k in range(6)]
    (base / "tiny.csv").write_text("\n".join(rows) + "\n")
    return {"folder": root, "csv": base / "tiny.csv"}


@pytest.mark.parametrize("case", list(CASES))
def test_key_and_file_name_as_in_release_0_1(case, data):
    which, dkw, ekw = CASES[case]
    path, key, _ = dataset_cache_path(load_dataset(data[which], **dkw), FeatureExtractor(**ekw), "cache")
    assert (path.name, key) == PINNED[case]


def test_jaffe_default_key(jaffe_dir):
    path, key, _ = dataset_cache_path(load_dataset(jaffe_dir), FeatureExtractor(), "cache")
    assert key[:12] == "6919dc5be34c" and path.name.endswith("__6919dc5be34c.h5")
