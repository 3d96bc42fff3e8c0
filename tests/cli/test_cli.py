"""The command line on real data and on bad input: exit codes, stdout's last line, nothing half-written."""
from __future__ import annotations

import json
import re
import time
from pathlib import Path

import numpy as np
import pytest

from fer_features import backbones as bb
from fer_features.features.cache import load_cache
from helpers import run_cli, run_cli_process


def last_line(p) -> str:
    return p.stdout.strip().splitlines()[-1]


def test_smoke_python_m_fer_features_in_a_real_process():
    """The one test of ``python -m fer_features`` as a process (every other test calls ``cli.main`` in this
    one): __main__ reaches the parser, argparse's exit is the exit status, the help is on stdout."""
    p = run_cli_process("--help")
    assert p.returncode == 0, p.stderr[-2000:]
    assert p.stdout.startswith("usage: python -m fer_features") and "extract" in p.stdout
    assert "Traceback" not in p.stderr


def test_help_explains_every_command():
    p = run_cli("--help")
    assert p.returncode == 0 and "extract" in p.stdout and "backbones" in p.stdout
    p = run_cli("extract", "--help")
    for opt in ("--data", "--format", "--backbone", "--weights", "--image-size", "--pooling", "--preprocess",
                "--face-crop", "--batch-size", "--cache-dir", "--strict", "bbhe"):
        assert opt in p.stdout


def test_help_does_not_repeat_a_default_it_names():
    """--augment's help names 'default' (the seed papers' ranges): no "(default: default)" after it."""
    from fer_features.cli import build_parser

    sub = build_parser()._subparsers._group_actions[0].choices
    for cmd in ("classify", "compare", "finetune"):
        text = " ".join(sub[cmd].format_help().split())
        assert "(default: default)" not in text and "'default' (the seed papers'" in text
    assert "(default: 10)" in " ".join(sub["finetune"].format_help().split())  # other defaults still shown


def test_backbones_lists_the_registry():
    p = run_cli("backbones")
    assert p.returncode == 0
    for name, cfg in bb.REGISTRY.items():
        line = next(l for l in p.stdout.splitlines() if l.startswith(name + " ") or l.startswith(name + "  "))
        assert str(cfg.feature_dim) in line and str(cfg.default_size) in line and cfg.preprocess in line
    rows = json.loads(run_cli("backbones", "--json").stdout)
    assert {r["name"] for r in rows} == set(bb.REGISTRY)


def test_backbones_shows_the_default_features_size_and_layers_a_header():
    """Issue 28: "last dim 1280" for the default backbone whose features are 3,920 (block4c_add's 80 channels
    on a 7x7 grid at 224 px); ``backbones --layers NAME`` printed no header row."""
    lines = run_cli("backbones").stdout.splitlines()
    spans = [m.span() for m in re.finditer(r"-+", lines[1])]  # the columns, from the rule under the header

    def cells(line):
        return {lines[0][a:b].strip(): line[a:b].strip() for a, b in spans}

    lite = cells(next(line for line in lines if line.startswith("efficientnet_lite0")))
    assert lite["features"] == "3920" and lite["last dim"] == "1280"  # the last layer's size is still shown
    for name in ("resnet50", "hog"):  # last@avg and a descriptor: the features are the registered size
        assert cells(next(line for line in lines if line.startswith(name + " ")))["features"] == \
            str(bb.REGISTRY[name].feature_dim)
    p = run_cli("backbones", "--layers", "efficientnet_lite0", "--image-size", 64)
    first = p.stdout.splitlines()[0].split()
    assert p.returncode == 0 and first[0] == "layer" and "stage" in first, p.stdout[:300]
    assert p.stdout.splitlines()[2].startswith("stem_conv")  # under the header and its rule
    rows = json.loads(run_cli("backbones", "--layers", "efficientnet_lite0", "--image-size", 64, "--json").stdout)
    assert rows[0] == {"layer": "stem_conv", "shape": [32, 32, 32], "stage": ""}  # the JSON as it was


@pytest.mark.parametrize("make", ["missing", "empty", "no_classes", "unknown_file"])
def test_bad_dataset_is_a_one_line_error_with_exit_2(tmp_path, make):
    data = tmp_path / "data"
    if make == "empty":
        data.mkdir()
    elif make == "no_classes":
        data.mkdir()
        (data / "notes.txt").write_text("hello")
    elif make == "unknown_file":
        data = tmp_path / "data.bin"
        data.write_bytes(b"\0" * 10)
    cache = tmp_path / "cache"
    p = run_cli("extract", "--data", data, "--cache-dir", cache)
    assert p.returncode == 2, p.stderr
    err = [l for l in p.stderr.strip().splitlines() if "error" in l]
    assert len(err) == 1 and str(data.name) in err[0]
    assert p.stdout.strip() == ""
    assert not cache.exists() or not any(cache.iterdir())


def test_bad_option_exit_2(tiny_folder, tmp_path):
    p = run_cli("extract", "--data", tiny_folder, "--cache-dir", tmp_path, "--pooling", "median")
    assert p.returncode == 2 and "pooling" in p.stderr
    assert not any(tmp_path.glob("*.h5*"))
    p = run_cli("extract", "--data", tiny_folder, "--cache-dir", tmp_path, "--image-size", 48, "--pooling", "grid7")
    assert p.returncode == 2 and "block4c_add gives a 3x3 map" in p.stderr and "use grid3 or less" in p.stderr
    assert len([l for l in p.stderr.splitlines() if "error" in l]) == 1 and not any(tmp_path.glob("*.h5*"))


def test_strict_exits_nonzero_and_names_the_file(tiny_folder, tmp_path):
    (tiny_folder / "sad" / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR")
    cache = tmp_path / "cache"
    p = run_cli("extract", "--data", tiny_folder, "--cache-dir", cache, "--image-size", 48, "--strict")
    assert p.returncode == 1 and "corrupt.png" in p.stderr
    assert not any(cache.glob("*.h5*"))
    p = run_cli("extract", "--data", tiny_folder, "--cache-dir", cache, "--image-size", 48)
    assert p.returncode == 0 and "corrupt.png" in p.stderr
    # at 48 px block4c_add is a 3x3 map: the default grid7 is reduced to grid3, said once, and named in the file
    assert p.stderr.count("warning: efficientnet_lite0 at 48 px: layer block4c_add gives a 3x3 map") == 1
    assert "using grid3" in p.stderr and "-48-grid3-" in Path(last_line(p)).name
    assert load_cache(last_line(p)).skipped[0].endswith("corrupt.png")


def test_jaffe_end_to_end_and_fast_cache_hit(jaffe_dir, tmp_path):
    """The README's main job: 213 rows, 10 subjects; the identical re-run is a hit in under 5 s."""
    cache = tmp_path / "cache"
    p = run_cli("extract", "--data", jaffe_dir, "--cache-dir", cache)
    assert p.returncode == 0, p.stderr[-2000:]
    assert "img/s" in p.stderr  # progress bar with a rate
    c = load_cache(last_line(p))
    assert c.features.shape == (213, 80 * 49) and np.isfinite(c.features).all()
    assert len(set(c.subjects)) == 10 and c.attrs["dataset_format"] == "jaffe"
    assert c.settings["image_size"] == 224 and c.attrs["n_skipped"] == 0
    assert sorted(set(c.raw_labels)) == ["AN", "DI", "FE", "HA", "NE", "SA", "SU"]
    again = run_cli("extract", "--data", jaffe_dir, "--cache-dir", cache)
    assert again.returncode == 0 and last_line(again) == last_line(p)
    assert "cache hit" in again.stderr and again.seconds < 5.0, again.seconds
    info = json.loads(run_cli("info", last_line(p), "--json").stdout)
    assert info["rows"] == 213 and info["subjects"] == 10


def test_ckplus_end_to_end(ckplus_dir, tmp_path):
    p = run_cli("extract", "--data", ckplus_dir, "--cache-dir", tmp_path, "--image-size", 64, "--no-progress")
    assert p.returncode == 0, p.stderr[-2000:]
    c = load_cache(last_line(p))
    assert len(c) == 981 and len(set(c.subjects)) == 118
    assert c.label_names == ["angry", "contempt", "disgust", "fear", "happy", "sad", "surprise"]


def test_fer2013_subset_keeps_the_three_splits(fer_csv, tmp_path):
    """FER2013 end to end through the Python API on a stratified slice of the CSV (the full run is in
    the closing note / bench): labels from the emotion codes, Usage as the split."""
    from fer_features.data.formats import load_dataset
    from fer_features.features.extract import extract_dataset

    t = time.perf_counter()
    ds = load_dataset(fer_csv)
    n = len(ds)
    assert time.perf_counter() - t < 15 and n == 35887
    by_split = {}  # two classes (one is refused), 20 images of each in each split
    for i, r in enumerate(ds.records):
        if r.label in ("angry", "happy"):
            by_split.setdefault((r.split, r.label), []).append(i)
    pick = sorted(i for rows in by_split.values() for i in rows[:20])
    path = extract_dataset(ds.subset(pick), cache_dir=tmp_path, image_size=48, progress=False)
    c = load_cache(path)
    assert len(c) == 120 and sorted(set(c.split)) == ["PrivateTest", "PublicTest", "Training"]
    assert set(c.label_names) <= {"angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"}
    assert not c.has_subjects
