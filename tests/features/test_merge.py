"""merge: two caches of the same images joined into one cache (features side by side), checked row by row."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest

from fer_features import evaluation as ev
from fer_features.errors import CacheError
from fer_features.features.cache import load_cache
from fer_features.cli import main
from fer_features.features.merge import merge_caches
from helpers import write_cache

BASE = {"backbone": "efficientnet_lite0", "weights": "imagenet", "image_size": 112, "pooling": "grid7",
        "layer": "block4c_add", "input_preprocessing": "lite", "preprocess": "none", "face_crop": "haar",
        "face_margin": 0.0, "align": False, "flip_average": True, "dataset_format": "folder"}
N_SUBJ, PER, CLASSES = 5, 4, ("happy", "sad", "surprise")


def rows(seed=0):
    """(paths, labels, subjects) of a small dataset: 5 subjects x 3 classes x 4 images."""
    paths, labels, subjects = [], [], []
    for s in range(N_SUBJ):
        for c in range(len(CLASSES)):
            for k in range(PER):
                paths.append(f"{CLASSES[c]}/S{s}_{k}.png")
                labels.append(c)
                subjects.append(f"S{s}")
    return np.array(paths, dtype=object), np.array(labels), np.array(subjects, dtype=object)


def write(path, X, *, order=None, fingerprint="fp1", settings=None, key="k", labels=None, subjects=None):
    """A complete cache of ``rows()`` (in ``order``) with features ``X`` (rows in the dataset's order)."""
    paths, y, g = rows()
    y = y if labels is None else labels
    g = g if subjects is None else subjects
    order = np.arange(len(paths)) if order is None else order
    st = {**BASE, **(settings or {})}
    attrs = {"dataset_fingerprint": fingerprint, "dataset_root": "/data/x", "n_no_face": 3,
             **{k: str(v) for k, v in st.items()}}
    return write_cache(path, X[order], y[order], g[order], labels=CLASSES, settings=st, split=["train"] * len(order),
                       paths=paths[order], face_found=[1] * len(order), key=key, attrs=attrs)


@pytest.fixture
def pair(tmp_path):
    """A (dim 6) in dataset order; B (dim 4, another backbone and crop) in another order. The classes are
    separable only in B's features."""
    rng = np.random.default_rng(0)
    _, y, _ = rows()
    xa = rng.normal(size=(len(y), 6)).astype(np.float32)
    xb = (rng.normal(size=(len(y), 4)) * 0.2 + np.eye(4)[y] * 3).astype(np.float32)
    perm = rng.permutation(len(y))
    a = write(tmp_path / "ds__a__111111111111.h5", xa, key="ka")
    b = write(tmp_path / "ds__b__222222222222.h5", xb, order=perm, key="kb",
              settings={"backbone": "keras:finetune_x:abc", "face_crop": "none", "weights": "model-file"})
    return a, b, xa, xb


def test_merge_concatenates_features_matched_by_path(pair, tmp_path):
    a, b, xa, xb = pair
    out = merge_caches(a, b)
    assert out.parent == a.parent and out.name.startswith("ds__a+b__") and out.suffix == ".h5"
    m, ca = load_cache(out), load_cache(a)
    assert m.features.shape == (len(ca), 10)
    assert np.array_equal(m.features, np.hstack([xa, xb]))  # B's rows put back in A's order by path
    assert list(m.paths) == list(ca.paths) and np.array_equal(m.labels, ca.labels)
    assert list(m.subjects) == list(ca.subjects) and m.label_names == list(CLASSES)
    s = m.settings
    assert s["backbone"] == "efficientnet_lite0+keras:finetune_x:abc" and s["face_crop"] == "haar+none"
    assert s["image_size"] == 112 and s["layer"] == "block4c_add"  # shared settings keep their value
    assert [x["backbone"] for x in s["sources"]] == ["efficientnet_lite0", "keras:finetune_x:abc"]
    assert m.attrs["dataset_fingerprint"] == "fp1"
    summary = ev.cache_summary(m)  # what every result row says about its features
    assert summary["backbone"] == s["backbone"] and summary["features"]["face_crop"] == "haar+none"


def test_merged_cache_evaluates_and_describes_itself(pair, capsys):
    a, b, _, _ = pair
    out = merge_caches(a, b)
    res, _ = ev.run(load_cache(out), ["lda", "linear_svm"], "loso", progress=False)
    assert all(r["accuracy"] > 0.9 for r in res)  # B's separable half made it through, row-aligned
    alone, _ = ev.run(load_cache(a), ["lda"], "loso", progress=False)
    assert alone[0]["accuracy"] < 0.7  # A's noise alone: the gain is B's features
    assert res[0]["backbone"] == "efficientnet_lite0+keras:finetune_x:abc"
    assert main(["info", str(out), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["dim"] == 10 and info["subjects"] == N_SUBJ and len(info["settings"]["sources"]) == 2


def test_repeat_is_a_hit_and_cli_prints_the_path(pair, tmp_path, capsys):
    a, b, _, _ = pair
    out = merge_caches(a, b)
    before = os.stat(out).st_mtime_ns
    assert main(["merge", str(a), str(b)]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1] == str(out)
    assert os.stat(out).st_mtime_ns == before  # not rewritten
    other = tmp_path / "sub" / "m.h5"
    assert main(["merge", str(a), str(b), "-o", str(other)]) == 0 and load_cache(other).features.shape[1] == 10


def test_merged_cache_refuses_re_extraction(pair):
    from fer_features.features.spec import cache_options

    a, b, _, _ = pair
    with pytest.raises(CacheError, match="merged cache"):
        cache_options(load_cache(merge_caches(a, b)))


@pytest.mark.parametrize("change, match", [
    ({"fingerprint": "fp2"}, "different datasets"),
    ({"labels": "swap"}, "label"),
    ({"subjects": "rename"}, "subject"),
    ({"drop": 1}, "not the same images"),
])
def test_mismatched_caches_are_refused_and_nothing_is_written(tmp_path, capsys, change, match):
    paths, y, g = rows()
    X = np.zeros((len(y), 3), np.float32)
    a = write(tmp_path / "ds__a__1.h5", X, key="ka")
    kw = {}
    if "fingerprint" in change:
        kw["fingerprint"] = change["fingerprint"]
    if change.get("labels") == "swap":
        y2 = y.copy()
        y2[5] = (y2[5] + 1) % 3
        kw["labels"] = y2
    if change.get("subjects") == "rename":
        g2 = g.copy()
        g2[7] = "S99"
        kw["subjects"] = g2
    if change.get("drop"):
        kw["order"] = np.arange(1, len(y))
    b = write(tmp_path / "ds__b__2.h5", X, key="kb", **kw)
    with pytest.raises(CacheError, match=match):
        merge_caches(a, b)
    out = tmp_path / "m.h5"
    assert main(["merge", str(a), str(b), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert "fer_features merge: error:" in err and match in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds__a__1.h5", "ds__b__2.h5"]  # nothing half-written


def test_not_a_cache(tmp_path):
    bad = tmp_path / "x.h5"
    bad.write_bytes(b"no")
    with pytest.raises(CacheError, match="not a complete"):
        merge_caches(bad, bad)
