"""duplicates: pixel-identical images found by hashing decoded pixels; test images with a copy in training."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from PIL import Image

from fer_features.cli import main
from fer_features.data.formats import load_dataset
from fer_features.evaluation.leakage import accuracy_without
from fer_features.data.duplicates import find_duplicates, pixel_hash
from helpers import make_folder_dataset, run_cli


def test_pixel_hash_is_about_pixels_not_files():
    a = np.arange(48 * 48, dtype=np.uint8).reshape(48, 48)
    assert pixel_hash(a) == pixel_hash(a.copy()) != pixel_hash(a.T)
    assert pixel_hash(a) != pixel_hash(a.reshape(24, 96))  # same bytes, another shape
    b = a.copy()
    b[0, 0] ^= 1
    assert pixel_hash(a) != pixel_hash(b)


def test_folder_copies_are_grouped_whatever_the_file(tmp_path):
    root = make_folder_dataset(tmp_path / "d", per_class=4)
    shutil.copy(root / "happy" / "img0.png", root / "happy" / "copy_of_0.png")  # same file, another name
    Image.open(root / "happy" / "img2.png").save(root / "sad" / "img2_as_sad.bmp")  # same pixels, other format
    r = find_duplicates(load_dataset(root))
    assert sorted(map(sorted, r.groups)) == [["happy/copy_of_0.png", "happy/img0.png"],
                                             ["happy/img2.png", "sad/img2_as_sad.bmp"]]
    assert r.duplicate_images == 2 and r.conflicting_groups == 1 and r.test_split is None


def _fer(path, rows):
    """A FER2013-format CSV from (label, pixel seed, usage) rows."""
    lines = ["emotion,pixels,Usage"]
    for label, seed, usage in rows:
        px = np.random.default_rng(seed).integers(0, 256, 48 * 48)
        lines.append(f"{label},{' '.join(map(str, px))},{usage}")
    path.write_text("\n".join(lines) + "\n")
    return path


def test_test_images_with_a_copy_in_training(tmp_path, capsys):
    csv = _fer(tmp_path / "fer2013.csv", [
        (3, 1, "Training"), (4, 2, "Training"), (3, 3, "Training"), (4, 9, "Training"),
        (3, 4, "PublicTest"), (4, 5, "PublicTest"),
        (3, 1, "PrivateTest"),  # copy of a Training image, same label
        (3, 2, "PrivateTest"),  # copy of a Training image labelled sad there
        (4, 4, "PrivateTest"),  # copy of a PublicTest image only: not in training
        (4, 6, "PrivateTest"), (3, 7, "PrivateTest"),
    ])
    ds = load_dataset(csv)
    r = find_duplicates(ds)
    assert (r.test_split, r.train_splits, r.n_test) == ("PrivateTest", ["Training"], 5)
    assert r.test_with_train_copy == ["#row=6", "#row=7"] and r.test_with_train_copy_other_label == 1
    assert len(r.groups) == 3 and r.conflicting_groups == 2
    assert main(["duplicates", "--data", str(csv), "--json", "--no-progress", "--list"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["test_with_train_copy"] == 2 and d["test_with_train_copy_paths"] == ["#row=6", "#row=7"]
    assert main(["duplicates", "--data", str(csv), "--no-progress"]) == 0
    assert "2 of 5 PrivateTest images have a copy in Training" in capsys.readouterr().out


def test_accuracy_without_the_copies():
    res = {"classifier": "x", "predictions": {"path": ["a", "b", "c", "d"], "true": [0, 1, 1, 0],
                                              "pred": [0, 1, 0, 1], "subject": ["", "", "", ""]}}
    out = accuracy_without(res, ["a", "b"])
    assert out["accuracy"] == 0.0 and out["n_test"] == 2 and out["n_left_out"] == 2
    assert out["accuracy_ci"][0] <= out["accuracy"] <= out["accuracy_ci"][1]
    assert accuracy_without(res, [])["accuracy"] == 0.5
    with pytest.raises(ValueError, match="no per-image paths"):
        accuracy_without({"classifier": "y", "predictions": {"path": ["", ""], "true": [0], "pred": [0]}}, [])


def test_duplicates_names_every_group_and_says_one_group(tmp_path):
    """Issue 28: "1 groups with differing labels" and no file named, with or without --list/--json."""
    root = make_folder_dataset(tmp_path / "d", per_class=4)
    shutil.copy(root / "happy" / "img0.png", root / "happy" / "copy_of_0.png")
    Image.open(root / "happy" / "img2.png").save(root / "sad" / "img2_as_sad.bmp")
    files = ("happy/copy_of_0.png", "happy/img0.png", "happy/img2.png", "sad/img2_as_sad.bmp")
    for extra in ([], ["--list"]):
        p = run_cli("duplicates", "--data", root, "--no-progress", *extra)
        assert p.returncode == 0, p.stderr
        assert "1 group with differing labels" in p.stdout and "1 groups" not in p.stdout
        assert all(f in p.stdout for f in files), p.stdout
        conflict = next(line for line in p.stdout.splitlines() if "sad/img2_as_sad.bmp" in line)
        assert "happy/img2.png" in conflict and "happy" in conflict and "sad" in conflict  # its labels
    d = json.loads(run_cli("duplicates", "--data", root, "--no-progress", "--json").stdout)
    assert d["duplicate_groups"] == 2 and d["conflicting_groups"] == 1  # the counts as before
    groups = sorted(d["groups"], key=lambda g: sorted(g["paths"]))
    assert [sorted(g["paths"]) for g in groups] == [list(files[:2]), list(files[2:])]
    assert [g["labels_differ"] for g in groups] == [False, True]
    assert dict(zip(groups[1]["paths"], groups[1]["labels"])) == {"happy/img2.png": "happy",
                                                                 "sad/img2_as_sad.bmp": "sad"}
