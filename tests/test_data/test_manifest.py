"""Manifest CSV (path,label[,subject][,split][,...]): loading, detection, identity, errors."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fer_features.errors import DatasetError
from fer_features.data.formats import detect_format, load_dataset
from fer_features.features.extractor import FeatureExtractor
from fer_features.features.extract import dataset_cache_path, extract_dataset
from fer_features.features.cache import load_cache

HOG = dict(backbone="hog", face_crop="none", flip_average=False, image_size=32)


def _img(path: Path, value: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((24, 24), value, np.uint8)).save(path)


def make_manifest(tmp_path: Path) -> tuple[Path, Path]:
    """list.csv in tmp/proj with relative rows and rows pointing (absolute) at tmp/elsewhere."""
    proj, far = tmp_path / "proj", tmp_path / "elsewhere"
    rows = ["path,label,subject,split,session"]
    for k in range(8):
        subj, lab = f"P{k % 4}", ("happy", "Sadness")[k % 2]
        if k < 5:
            _img(proj / "imgs" / f"{k}.png", 20 * k)
            rows.append(f"imgs/{k}.png,{lab},{subj},{'test' if k % 4 == 3 else 'train'},s{k}")
        else:
            _img(far / f"{k}.png", 20 * k)
            rows.append(f"{far / f'{k}.png'},{lab},{subj},{'test' if k % 4 == 3 else 'train'},s{k}")
    csv = proj / "list.csv"
    csv.write_text("\n".join(rows) + "\n")
    return csv, far


def test_manifest_loads_relative_and_absolute_rows(tmp_path):
    csv, far = make_manifest(tmp_path)
    assert detect_format(csv) == "manifest"
    ds = load_dataset(csv)
    assert ds.format == "manifest" and len(ds) == 8 and ds.root == csv
    assert ds.label_names == ["happy", "sad"] and ds.subjects == ["P0", "P1", "P2", "P3"]
    r = ds.records[1]
    assert (r.label, r.raw_label, r.subject, r.split, r.get("session")) == ("sad", "Sadness", "P1", "train", "s1")
    assert r.path == str(csv.parent / "imgs" / "1.png")
    assert ds.records[6].path == str(far / "6.png")
    assert ds.rel_path(1) == "imgs/1.png" and ds.rel_path(6) == (far / "6.png").as_posix()
    assert ds.load_image(6).shape == (24, 24)
    assert {r.split for r in ds.records} == {"train", "test"}


def test_manifest_fingerprint_tracks_images_and_rows_not_the_csv_folder(tmp_path):
    csv, far = make_manifest(tmp_path)
    fp = load_dataset(csv).fingerprint()
    # moved: the project folder elsewhere (absolute rows unchanged) -> same identity and cache path
    moved = tmp_path / "moved"
    shutil.copytree(csv.parent, moved)
    ds2 = load_dataset(moved / "list.csv")
    assert ds2.fingerprint() == fp and ds2.rel_paths() == load_dataset(csv).rel_paths()
    ext = FeatureExtractor(**HOG)
    assert (dataset_cache_path(ds2, ext, tmp_path / "c")[0] == dataset_cache_path(load_dataset(csv), ext,
                                                                                  tmp_path / "c")[0])
    # metadata column edited: same identity; subject, split or label edited: another
    text = csv.read_text()
    csv.write_text(text.replace(",s3\n", ",other\n"))
    assert load_dataset(csv).fingerprint() == fp
    for old, new in ((",P1,train,s1", ",P9,train,s1"), (",P1,train,s1", ",P1,test,s1"),
                     ("imgs/1.png,Sadness", "imgs/1.png,happy")):
        csv.write_text(text.replace(old, new))
        assert load_dataset(csv).fingerprint() != fp, new
    csv.write_text(text)
    _img(far / "6.png", 255)  # an image's bytes changed
    assert load_dataset(csv).fingerprint() != fp


def test_manifest_extracts_and_the_cache_keeps_subjects_and_split(tmp_path):
    csv, _ = make_manifest(tmp_path)
    logs = []
    path = extract_dataset(csv, cache_dir=tmp_path / "c", progress=False, log=logs.append, **HOG)
    c = load_cache(path)
    assert path.name.startswith("list__")
    assert len(c) == 8 and sorted(set(c.subjects)) == ["P0", "P1", "P2", "P3"] and c.has_split
    assert list(c.paths[:2]) == ["imgs/0.png", "imgs/1.png"]
    assert c.image_paths()[1] == str(csv.parent / "imgs" / "1.png")
    assert any("8 images, 2 classes, 4 subjects" in m for m in logs)


def test_manifest_without_subject_column_takes_a_pattern(tmp_path):
    proj = tmp_path / "p"
    rows = ["Path,Label"]
    for k in range(6):
        _img(proj / f"S{k % 3}" / f"{k}.png", 30 * k)
        rows.append(f"S{k % 3}/{k}.png,{('happy', 'sad')[k % 2]}")
    (proj / "m.csv").write_text("\n".join(rows) + "\n")
    ds = load_dataset(proj / "m.csv", "manifest")
    assert ds.subjects == []
    ds = load_dataset(proj / "m.csv", subject_pattern=r"^(?P<subject>S\d)/")
    assert ds.subjects == ["S0", "S1", "S2"] and ds.options == {"subject_pattern": r"^(?P<subject>S\d)/"}


@pytest.mark.parametrize("case, expect", [
    ("missing_file", r"line 3: .*imgs/nope\.png.* no such file"),
    ("duplicate", r"line 4: duplicate path imgs/0\.png \(first on line 2\)"),
    ("one_class", r"one class \(happy\)"),
    ("no_label", r"no label column"),
    ("no_path_as_manifest", r"no path column"),
    ("empty_label", r"line 3: empty label"),
])
def test_manifest_errors_are_one_line_naming_the_row(tmp_path, case, expect):
    proj = tmp_path / "p"
    for k in range(3):
        _img(proj / "imgs" / f"{k}.png", 50 * k)
    rows = {"missing_file": ["path,label", "imgs/0.png,happy", "imgs/nope.png,sad"],
            "duplicate": ["path,label", "imgs/0.png,happy", "imgs/1.png,sad", "./imgs/0.png,sad"],
            "one_class": ["path,label", "imgs/0.png,happy", "imgs/1.png,happy"],
            "no_label": ["path,emotion_name", "imgs/0.png,happy", "imgs/1.png,sad"],
            "no_path_as_manifest": ["file,label", "imgs/0.png,happy", "imgs/1.png,sad"],
            "empty_label": ["path,label", "imgs/0.png,happy", "imgs/1.png,", "imgs/2.png,sad"]}[case]
    csv = proj / "m.csv"
    csv.write_text("\n".join(rows) + "\n")
    fmt = "manifest" if case == "no_path_as_manifest" else "auto"
    with pytest.raises(DatasetError, match=expect) as e:
        load_dataset(csv, fmt)
    assert "\n" not in str(e.value) and "m.csv" in str(e.value)


def test_fer2013_csv_is_still_fer2013(tmp_path):
    csv = tmp_path / "f.csv"
    csv.write_text("emotion,pixels,Usage\n0," + " ".join(["1"] * 4) + ",Training\n3," + " ".join(["2"] * 4)
                   + ",PrivateTest\n")
    assert detect_format(csv) == "fer2013" and load_dataset(csv).format == "fer2013"
