"""Subject ids for any dataset: --subject-pattern, the folder layout's guess notes, the auto-protocol warning."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fer_features import evaluation as ev
from fer_features.errors import DatasetError
from fer_features.data.formats import load_dataset
from fer_features.features.extractor import FeatureExtractor
from fer_features.features.extract import dataset_cache_path, extract_dataset
from helpers import run_cli

HOG = dict(backbone="hog", face_crop="none", flip_average=False, image_size=32)


def _img(path: Path, value: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((24, 24), value, np.uint8)).save(path)


def own_folder(root: Path, subjects=("KA", "MO", "NA"), classes=("happy", "sad"), per=2) -> Path:
    """Class folders of ``<SUBJ>_<NNNN>.png`` (names no layout recognises)."""
    k = 0
    for ci, cls in enumerate(classes):
        for s in subjects:
            for _ in range(per):
                _img(root / cls / f"{s}_{k:04d}.png", 40 + 100 * ci + k)
                k += 1
    return root


def test_pattern_on_file_names_gives_subjects_and_keys_the_cache(tmp_path):
    root = own_folder(tmp_path / "own")
    plain = load_dataset(root)
    assert plain.format == "folder" and plain.subjects == []
    ds = load_dataset(root, subject_pattern=r"^(?P<subject>[A-Z]{2})_")
    assert ds.subjects == ["KA", "MO", "NA"]
    assert all(Path(r.path).name.startswith(r.subject + "_") for r in ds.records)
    assert ds.options == {"subject_pattern": r"^(?P<subject>[A-Z]{2})_"}
    # group 1 and the whole match work too
    assert load_dataset(root, subject_pattern=r"^([A-Z]{2})_").subjects == ["KA", "MO", "NA"]
    assert load_dataset(root, subject_pattern=r"^[A-Z]{2}").subjects == ["KA", "MO", "NA"]
    # part of the cache key: another pattern (same subjects) or none is another cache
    ext = FeatureExtractor(**HOG)
    p1 = dataset_cache_path(ds, ext, tmp_path / "c")[0]
    p2 = dataset_cache_path(load_dataset(root, subject_pattern=r"^([A-Z]{2})_"), ext, tmp_path / "c")[0]
    p0 = dataset_cache_path(plain, ext, tmp_path / "c")[0]
    assert len({p0, p1, p2}) == 3
    assert ds.fingerprint() != plain.fingerprint()


def test_pattern_errors_are_one_line(tmp_path):
    root = own_folder(tmp_path / "own")
    _img(root / "sad" / "odd-one.png", 7)
    with pytest.raises(DatasetError) as e:
        load_dataset(root, subject_pattern=r"^(?P<subject>[A-Z]{2})_")
    msg = str(e.value)
    assert "\n" not in msg and "sad/odd-one.png" in msg and "[A-Z]{2}" in msg and "1 of 13" in msg
    (root / "sad" / "odd-one.png").unlink()
    with pytest.raises(DatasetError, match="not a valid regular expression") as e:
        load_dataset(root, subject_pattern=r"^(?P<subject>[A-Z]{2}_")
    assert "\n" not in str(e.value)
    with pytest.raises(DatasetError, match="one subject") as e:
        load_dataset(root, subject_pattern=r"(?P<subject>png)$")
    with pytest.raises(DatasetError, match="give no subject id"):
        load_dataset(root, subject_pattern=r"^(?P<subject>x?)[A-Z]")  # an empty id is no id


def test_pattern_with_a_slash_matches_the_relative_path(tmp_path):
    root = tmp_path / "nested"
    for ci, cls in enumerate(("happy", "sad")):
        for p in ("person07", "person11", "person12"):
            for i in range(2):
                _img(root / cls / p / f"img{i}.png", 30 + 90 * ci + i)
    ds = load_dataset(root, subject_pattern=r"^[^/]+/(?P<subject>[^/]+)/")
    assert ds.format == "folder" and ds.subjects == ["person07", "person11", "person12"]
    rec = next(r for r in ds.records if r.path.endswith("sad/person11/img1.png"))
    assert (rec.label, rec.subject) == ("sad", "person11")
    # without a slash the pattern sees the file name only: img0/img1 are two subjects, not persons
    assert load_dataset(root, subject_pattern=r"^img(\d)").subjects == ["0", "1"]


def test_pattern_overrides_a_layouts_own_subjects_and_not_for_fer2013(tmp_path):
    root = tmp_path / "jaffe"
    for k, (s, c) in enumerate([("KA", "AN"), ("KA", "HA"), ("MO", "AN"), ("MO", "HA")]):
        _img(root / f"{s}.{c}1.{k}.tiff", 50 + 40 * k)
    assert load_dataset(root).subjects == ["KA", "MO"]
    ds = load_dataset(root, subject_pattern=r"\.(\d+)\.tiff$")
    assert ds.format == "jaffe" and ds.subjects == ["0", "1", "2", "3"]
    csv = tmp_path / "fer.csv"
    csv.write_text("emotion,pixels,Usage\n0," + " ".join(["1"] * 4) + ",Training\n")
    with pytest.raises(DatasetError, match="manifest"):
        load_dataset(csv, subject_pattern="x")


def test_cli_extract_pattern_then_classify_is_subject_grouped(tmp_path):
    root = own_folder(tmp_path / "own", subjects=("KA", "MO", "NA", "TM"))
    cache = tmp_path / "cache"
    p = run_cli("extract", "--data", root, "--subject-pattern", "^(?P<subject>[A-Z]{2})_", "--backbone", "hog",
                "--face-crop", "none", "--no-flip-average", "--image-size", 32, "--cache-dir", cache, "--no-progress")
    assert p.returncode == 0, p.stderr
    assert "16 images, 2 classes, 4 subjects" in p.stderr
    out = p.stdout.strip().splitlines()[-1]
    r = json.loads(run_cli("classify", "--cache", out, "--clf", "linear_svm", "--folds", 2,
                           "--json").stdout.strip().splitlines()[-1])
    assert r["protocol"] == "group-kfold" and r["subject_independent"]
    info = json.loads(run_cli("info", out, "--json").stdout)
    assert info["subjects"] == 4 and info["settings"]["dataset_options"]["subject_pattern"].startswith("^(?P")
    # an image that does not match: exit 2, one line naming it, nothing written
    _img(root / "sad" / "stray.png", 3)
    cache2 = tmp_path / "cache2"
    p = run_cli("extract", "--data", root, "--subject-pattern", "^(?P<subject>[A-Z]{2})_", "--backbone", "hog",
                "--face-crop", "none", "--cache-dir", cache2)
    errs = [line for line in p.stderr.splitlines() if "error" in line]
    assert p.returncode == 2 and len(errs) == 1 and "sad/stray.png" in errs[0] and p.stdout == ""
    assert not cache2.exists() or not any(cache2.iterdir())


def test_folder_subject_guess_is_said_partial_guess_not_used(tmp_path):
    root = tmp_path / "mixed"
    for k, (s, c) in enumerate([("KA", "happy"), ("KA", "sad"), ("MO", "happy"), ("MO", "sad")]):
        _img(root / c / f"{s}.{c[:2].upper()}1.{k}.tiff", 50 + 40 * k)
    full = load_dataset(root)
    assert full.format == "folder" and full.subjects == ["KA", "MO"]
    assert any("JAFFE-style" in n and "all 4 images" in n for n in full.notes)
    _img(root / "sad" / "other.png", 9)
    _img(root / "happy" / "another.png", 19)
    part = load_dataset(root)
    assert part.subjects == [] and all(r.subject == "" for r in part.records)
    note = " ".join(part.notes)
    assert "4 of 6 images" in note and "2 without" in note and "--subject-pattern" in note
    logged = []
    path = extract_dataset(root, cache_dir=tmp_path / "c", progress=False, log=logged.append, **HOG)
    assert any("4 of 6 images" in m for m in logged)
    assert any("6 images, 2 classes, no subject ids" in m for m in logged), logged
    assert path.exists()


class _Cache:
    def __init__(self, subjects: bool, split: bool = False):
        self.labels = np.array([0, 1] * 10)
        self.label_names = ["happy", "sad"]
        self.subjects = np.array([f"S{i % 4}" for i in range(20)], dtype=object) if subjects else np.array([""] * 20)
        self.split = np.array(["Training"] * 14 + ["PrivateTest"] * 6, dtype=object) if split else np.array([""] * 20)
        self.has_subjects, self.has_split = subjects, split


def test_auto_protocol_without_subjects_warns_that_folds_are_by_image():
    _, info, notes = ev.protocol_for_cache(_Cache(False), "auto", folds=5)
    assert info["protocol"] == "kfold"
    warn = [n for n in notes if n.startswith("warning:") and "by image" in n]
    assert len(warn) == 1 and "same person" in warn[0]
    assert "--subject-pattern" in warn[0] and "manifest" in warn[0]
    assert not ev.protocol_for_cache(_Cache(True), "auto", folds=2)[2]  # group-kfold: nothing to say
    assert not ev.protocol_for_cache(_Cache(False, split=True), "auto")[2]  # the dataset's own split
    assert not any("by image" in n for n in ev.protocol_for_cache(_Cache(False), "kfold", folds=5)[2])


def test_the_pattern_is_echoed_as_typed(tmp_path):
    """Issue 28: the echoed --subject-pattern showed doubled backslashes (its repr)."""
    root = own_folder(tmp_path / "own")
    typed = r"^(?P<subject>[A-Z]{2})_\d+"
    note = next(n for n in load_dataset(root, subject_pattern=typed).notes if "--subject-pattern" in n)
    assert typed in note and "\\\\" not in note, note
    for bad, says in ((r"^(?P<subject>[A-Z]{2})_\d{9}", "give no subject id"), (r"(\d+", "not a valid"),
                      (r"(?P<subject>\.png)$", "one subject")):
        with pytest.raises(DatasetError, match=says) as e:
            load_dataset(root, subject_pattern=bad)
        assert bad in str(e.value) and "\\\\" not in str(e.value), str(e.value)
    p = run_cli("extract", "--data", root, "--subject-pattern", typed, "--backbone", "hog", "--face-crop", "none",
                "--no-flip-average", "--image-size", 32, "--cache-dir", tmp_path / "c", "--no-progress")
    assert p.returncode == 0 and typed in p.stderr and "\\\\" not in p.stderr, p.stderr
