"""Input a new user can get wrong: one-class data, bad --folds/--pca, and the CLI's plumbing (help texts,
--version, a closed pipe). Each is refused with a one-line error (exit 2) or handled quietly."""
from __future__ import annotations

import re
import subprocess
import warnings

import numpy as np
import pytest

from fer_features import evaluation as ev
from fer_features.features.cache import load_cache
from fer_features.errors import DatasetError
from helpers import ROOT, cli_command, error_lines, make_folder_dataset, process_env, run_cli
from helpers import write_cache as _write_cache


def write_cache(path, y, labels=("angry", "happy", "sad"), subjects=None):
    """Random 8-dim features for labels ``y``, subjects S0..S4 in turn unless given."""
    n = len(y)
    X = np.random.default_rng(0).normal(size=(n, 8))
    return _write_cache(path, X, y, subjects if subjects is not None else [f"S{i % 5}" for i in range(n)],
                        labels=labels)


# -- one class, one image per class ----------------------------------------------------------------------

def test_one_class_dataset_is_refused_before_any_model(tmp_path, monkeypatch):
    from fer_features.features import extract

    data = make_folder_dataset(tmp_path / "data", classes=("happy",))
    monkeypatch.setattr(extract.FeatureExtractor, "fit", lambda self: pytest.fail("model built"))
    with pytest.raises(DatasetError, match="1 class .*happy.*at least 2"):
        extract.extract_dataset(data, cache_dir=tmp_path / "cache", progress=False)
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").iterdir())


def test_one_class_dataset_cli_exit_2_nothing_written(tmp_path):
    data = make_folder_dataset(tmp_path / "data", classes=("happy",))
    p = run_cli("extract", "--data", data, "--cache-dir", tmp_path / "cache")
    assert p.returncode == 2, p.stderr
    assert len(error_lines(p)) == 1 and "class" in error_lines(p)[0] and p.stdout.strip() == ""
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").iterdir())


def test_one_class_cache_is_refused_by_evaluation(tmp_path):
    c = write_cache(tmp_path / "one.h5", [1] * 12)
    with pytest.raises(ev.ProtocolError, match="1 class .*happy"):
        ev.run(load_cache(c), ["lda"], progress=False)
    p = run_cli("compare", "--cache", c, "--clf", "lda,fine_knn")
    assert p.returncode == 2 and len(error_lines(p)) == 1 and "class" in p.stderr
    assert "100.0" not in p.stdout


@pytest.mark.parametrize("protocol", ["holdout", "kfold"])
def test_a_class_with_one_image_names_the_class(protocol):
    y = np.array([0] * 10 + [1] * 10 + [2])
    with pytest.raises(ev.ProtocolError, match=f"{protocol}.*'sad' has 1 image"):
        ev.make_splits(protocol, y, folds=5, label_names=["angry", "happy", "sad"])
    splits, _ = ev.make_splits("group-kfold", y, np.array([f"S{i % 5}" for i in range(21)], dtype=object),
                               folds=5)
    assert len(splits) == 5  # subject-grouped folds cope: that image is tested once, never trained on


# -- --folds, --pca --------------------------------------------------------------------------------------

@pytest.mark.parametrize("protocol", ["kfold", "group-kfold"])
def test_folds_below_2_is_an_error_naming_folds(protocol):
    y = np.array([0, 1] * 10)
    g = np.array([f"S{i % 5}" for i in range(20)], dtype=object)
    with pytest.raises(ev.ProtocolError, match="--folds must be at least 2, got 1"):
        ev.make_splits(protocol, y, g, folds=1)


def test_more_folds_than_subjects_warns():
    y = np.array([0, 1] * 10)
    g = np.array([f"S{i % 10}" for i in range(20)], dtype=object)
    with pytest.warns(UserWarning, match="group-kfold: 10 subjects, using 10 folds instead of 50"):
        splits, _ = ev.make_splits("group-kfold", y, g, folds=50)
    assert len(splits) == 10
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ev.make_splits("group-kfold", y, g, folds=5)  # enough subjects: no warning


def test_pca_zero_or_negative_is_an_error(tmp_path):
    from fer_features.errors import ClassifierError
    from fer_features.classify.presets import make_classifier

    for bad in (0, -1, 0.0):
        with pytest.raises(ClassifierError, match="pca"):
            make_classifier("lda", pca=bad)
    c = write_cache(tmp_path / "c.h5", [0, 1, 2] * 10)
    p = run_cli("classify", "--cache", c, "--clf", "lda", "--pca", "0")
    assert p.returncode == 2 and len(error_lines(p)) == 1 and "--pca" in p.stderr


# -- the command line's plumbing -------------------------------------------------------------------------

def _subparsers():
    import argparse

    from fer_features.cli import build_parser

    top = build_parser()
    sub = next(a for a in top._actions if isinstance(a, argparse._SubParsersAction))
    return [("", top), *sub.choices.items()]


def test_every_option_has_one_help_text_and_one_default():
    from fer_features.cli.app import _Fmt

    for cmd, parser in _subparsers():
        fmt = _Fmt(f"python -m fer_features {cmd}")
        for action in parser._actions:
            if not action.option_strings or action.help == "==SUPPRESS==":
                continue
            text = fmt._expand_help(action) if action.help else ""
            where = f"{cmd} {action.option_strings[0]}"
            assert text.strip(), f"{where} has no help text"
            assert len(re.findall(r"\(default\b|default:", text, re.I)) <= 1, f"{where}: {text!r}"
            assert "(default: None)" not in text and "(default: False)" not in text, f"{where}: {text!r}"


def test_version():
    import fer_features

    p = run_cli("--version")
    assert p.returncode == 0 and p.stdout.strip() == f"fer_features {fer_features.__version__}"


def test_closed_pipe_is_quiet(tmp_path):
    """``info CACHE | head -1``: the reader goes away; no BrokenPipeError traceback, exit 0 or 141."""
    c = write_cache(tmp_path / "c.h5", [0, 1, 2] * 10)
    p = subprocess.Popen(cli_command("info", c), stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT,
                         env=process_env())  # a real process: what is tested is its exit with no reader
    p.stdout.close()  # before the command writes anything
    err = p.stderr.read().decode()
    assert p.wait(timeout=300) in (0, 141) and "Error" not in err and "Traceback" not in err, err


# -- what the CLI says on an interrupt and on a missing file ------------------------------------------------

@pytest.mark.parametrize("argv, resumes", [
    (["extract", "--data", "D"], "extraction resumes"),
    (["finetune", "--data", "D", "--checkpoint-dir", "ck"], "resumes from its last checkpoint"),
    (["finetune", "--data", "D"], None),
    (["classify", "--cache", "c.h5"], None),
    (["compare", "--cache", "c.h5"], None),
    (["merge", "a.h5", "b.h5"], None),
])
def test_ctrl_c_says_what_fits_the_command(argv, resumes, monkeypatch):
    """Issue 28: Ctrl-C in classify said "an extraction resumes where it stopped when run again"."""
    import importlib

    def interrupted(a):
        raise KeyboardInterrupt

    monkeypatch.setattr(importlib.import_module(f"fer_features.cli.{argv[0]}"), "run", interrupted)
    p = run_cli(*argv)
    assert p.returncode == 130 and p.stdout == ""
    said = p.stderr.strip().splitlines()[-1]
    if resumes:
        assert said.startswith("interrupted") and resumes in said, said
    else:
        assert said == "interrupted", said  # nothing about an extraction that is not one


def test_a_missing_file_is_named_as_missing(tmp_path):
    """Issue 28: ``significance a.json b.json`` on a missing file said "not a results JSON file"."""
    c = write_cache(tmp_path / "c.h5", [0, 1, 2] * 10)
    checks = [
        (["significance", tmp_path / "a.json", tmp_path / "b.json"], "a.json"),
        (["significance", tmp_path / "a.json#lda", tmp_path / "b.json"], "a.json"),
        (["compare", "--cache", c, "--include", tmp_path / "missing.json"], "missing.json"),
        (["classify", "--cache", c, "--test-cache", tmp_path / "missing.h5"], "missing.h5"),
        (["classify", "--cache", tmp_path / "missing.h5"], "missing.h5"),
        (["predict", "--model", tmp_path / "missing.skops", tmp_path / "x.png"], "missing.skops"),
    ]
    for argv, missing in checks:
        p = run_cli(*argv)
        errs = error_lines(p)
        assert p.returncode == 2 and len(errs) == 1, (argv, p.stderr)
        assert f"{tmp_path / missing}: no such" in errs[0] and "not a" not in errs[0], (argv, errs[0])
