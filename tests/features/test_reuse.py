"""Extract once, describe many times: rows are identified by image content + feature settings, so a new
description of the same images (subject pattern, manifest, renamed or moved files) runs no network, and
identical images in one dataset are embedded once."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from fer_features.evaluation import stats
from fer_features.features.cache import load_cache
from fer_features.features.extract import extract_dataset
from fer_features.features.extractor import FeatureExtractor
from fer_features.features.merge import merge_caches
from helpers import make_folder_dataset, run_cli

HOG = dict(backbone="hog", face_crop="none", flip_average=False, progress=False)


def _renamed_copy(src: Path, dst: Path) -> Path:
    """The same images in a folder per class, renamed ``p<k>_<i>.png`` (subject k: the i-th image's parity)."""
    for f in sorted(src.rglob("*.*")):
        d = dst / f.parent.name
        d.mkdir(parents=True, exist_ok=True)
        i = int(f.stem[3:])
        shutil.copy(f, d / f"p{i % 2}_{f.parent.name}{i}{f.suffix}")
    return dst


def _manifest(folder: Path) -> Path:
    rows = ["path,label,subject"] + [f"{f.relative_to(folder)},{f.parent.name},p{f.name[1]}"
                                     for f in sorted(folder.rglob("*.*")) if f.suffix != ".csv"]
    (folder / "list.csv").write_text("\n".join(rows) + "\n")
    return folder / "list.csv"


@pytest.fixture
def no_network(monkeypatch):
    """Fails the test if any network (or descriptor) is built."""
    monkeypatch.setattr(FeatureExtractor, "fit", lambda self, *a, **k: pytest.fail("a network was built"))


@pytest.fixture
def first(tmp_path):
    data = make_folder_dataset(tmp_path / "data", per_class=4, size=32)
    return data, load_cache(extract_dataset(data, cache_dir=tmp_path / "cache", log=lambda m: None, **HOG))


def _by_content(c):
    return {k: c.features[i] for i, k in enumerate(c.content)}


def test_new_description_of_the_same_images_runs_no_network(tmp_path, first, no_network):
    data, a = first
    copy = _renamed_copy(data, tmp_path / "copy")
    logs = []
    b = load_cache(extract_dataset(copy, subject_pattern=r"^(p\d)_", cache_dir=tmp_path / "cache", log=logs.append,
                                   **HOG))
    assert b.path != a.path and b.has_subjects and set(b.subjects) == {"p0", "p1"}
    assert any("reused 8 of 8 rows" in m and "the network ran on 0" in m for m in logs), logs
    fa, fb = _by_content(a), _by_content(b)
    assert set(fa) == set(fb) and all(np.array_equal(fa[k], fb[k]) for k in fa)
    m = load_cache(extract_dataset(_manifest(copy), cache_dir=tmp_path / "cache", log=logs.append, **HOG))
    assert m.attrs["reused_rows"] == 8 and m.attrs["computed_rows"] == 0
    assert all(np.array_equal(_by_content(m)[k], fa[k]) for k in fa)


def test_only_new_images_are_computed_and_reuse_from_another_folder(tmp_path, first):
    data, a = first
    copy = _renamed_copy(data, tmp_path / "copy")
    shutil.copy(data / "sad" / "img0.png", copy / "happy" / "p0_twin.png")  # the same image, twice in the copy
    make_folder_dataset(tmp_path / "more", classes=("happy",), per_class=1, size=32, seed=5)
    shutil.copy(tmp_path / "more" / "happy" / "img0.png", copy / "happy" / "p1_fresh.png")
    c = load_cache(extract_dataset(copy, subject_pattern=r"^(p\d)_", cache_dir=tmp_path / "other",
                                   reuse_from=[tmp_path / "cache"], log=lambda m: None, **HOG))
    assert (c.attrs["reused_rows"], c.attrs["computed_rows"]) == (9, 1)  # 8 + the twin reused, the fresh one run


def test_identical_images_in_one_dataset_are_embedded_once(tmp_path, monkeypatch):
    data = make_folder_dataset(tmp_path / "data", per_class=3, size=32)
    shutil.copy(data / "happy" / "img0.png", data / "happy" / "img9.png")
    shutil.copy(data / "happy" / "img0.png", data / "sad" / "img9.png")
    embedded = []
    real = FeatureExtractor.embed
    monkeypatch.setattr(FeatureExtractor, "embed", lambda self, b: embedded.append(len(b)) or real(self, b))
    c = load_cache(extract_dataset(data, cache_dir=tmp_path / "cache", log=lambda m: None, **HOG))
    assert len(c) == 8 and sum(embedded) == 6 and c.attrs["duplicate_rows"] == 2
    rows = [i for i, p in enumerate(c.paths) if p.endswith(("happy/img0.png", "img9.png"))]
    assert len(rows) == 3 and all(np.array_equal(c.features[rows[0]], c.features[r]) for r in rows)


def test_folder_and_manifest_results_pair_and_merge_by_content(tmp_path, first):
    data, _ = first
    copy = _renamed_copy(data, tmp_path / "copy")
    a = extract_dataset(copy, subject_pattern=r"^(p\d)_", cache_dir=tmp_path / "cache", log=lambda m: None, **HOG)
    rows = ["path,label,subject"] + [f"{f.relative_to(copy)},{f.parent.name},{f.name[:2]}"
                                     for f in sorted((f for f in copy.rglob("*.*") if f.suffix != ".csv"),
                                                     key=lambda f: f.name)]  # another order than the folder's
    (copy / "list.csv").write_text("\n".join(rows) + "\n")
    b = extract_dataset(copy / "list.csv", cache_dir=tmp_path / "cache", log=lambda m: None, **HOG)
    ra, rb = (run_cli("classify", "--cache", c, "--clf", "linear_svm", "--protocol", "loso", "--json",
                      "--no-progress") for c in (a, b))
    (tmp_path / "a.json").write_text(ra.stdout.strip().splitlines()[-1])
    (tmp_path / "b.json").write_text(rb.stdout.strip().splitlines()[-1])
    p = run_cli("significance", tmp_path / "a.json", tmp_path / "b.json")
    assert p.returncode == 0 and "the same images and folds in both" in p.stdout, p.stderr
    merged = load_cache(merge_caches(a, b, out_dir=tmp_path / "m"))
    assert merged.features.shape[1] == 2 * load_cache(a).features.shape[1]


def test_a_refusal_says_which_field_differs():
    r = {"labels": ["a", "b"], "predictions": {"fold": [0, 0], "row": [0, 1], "path": ["x.png", "y.png"],
                                               "true": [0, 1], "pred": [0, 1], "subject": ["", ""]}}
    other = {**r, "predictions": {**r["predictions"], "path": ["x.png", "z.png"]}}
    with pytest.raises(stats.MismatchError, match=r"the first at test row 1: path 'y.png' vs 'z.png'"):
        stats.paired_test(r, other)
