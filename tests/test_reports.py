"""What a result says about itself: the pooled headline accuracy, every feature setting, the protocol and
features of each row of a mixed table (LEAKY on the row), and progress while classifiers fit."""
from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fer_features import evaluation as ev
from fer_features import reports as R
from fer_features.cache import CacheWriter, load_cache

from test_classify import LABELS, blobs

ROOT = Path(__file__).resolve().parents[1]


def cache_with(path, settings: dict, n_subjects=6):
    X, y, g = blobs(n_subjects=n_subjects)
    w = CacheWriter(path, "k", X.shape[1], LABELS, {"settings_json": json.dumps(settings)})
    w.open()
    n = len(y)
    w.append(X, y, g, [""] * n, [f"img{i}.png" for i in range(n)], [LABELS[i] for i in y], [-1] * n, n_processed=n)
    return load_cache(w.finish())


SETTINGS = {"backbone": "test", "image_size": 224, "pooling": "grid7", "layer": "block4c_add", "preprocess": "none",
            "face_crop": "haar", "face_margin": 0.0, "align": False, "flip_average": True, "weights": "imagenet",
            "dataset_format": "jaffe"}


def run_cli(*args):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    return subprocess.run([sys.executable, "-m", "fer_features", *map(str, args)], capture_output=True, text=True,
                          cwd=ROOT, env=env, timeout=600)


# -- item 8: every feature setting in the result -----------------------------------------------------------
def test_cache_summary_names_every_setting_that_changes_features(tmp_path):
    f = ev.cache_summary(cache_with(tmp_path / "a.h5", SETTINGS))["features"]
    assert f["face_margin"] == 0.0 and f["align"] is False and f["face_crop"] == "haar"
    assert f["precision"] == "float32"  # older caches (and float32 ones) do not store it
    assert {"image_size", "pooling", "layer", "preprocess", "flip_average", "weights"} <= set(f)
    f = ev.cache_summary(cache_with(tmp_path / "b.h5", {**SETTINGS, "precision": "bfloat16", "face_margin": 0.2}))
    assert f["features"]["precision"] == "bfloat16" and f["features"]["face_margin"] == 0.2
    r = R.protocol_header([{"protocol": "loso", "protocol_description": "x", "cache": "c.h5", "backbone": "test",
                            **f, "n_folds": 2, "n_test": 3}])
    assert '"face_margin": 0.2' in r and '"precision": "bfloat16"' in r


