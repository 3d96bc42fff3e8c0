"""What the tests share (importable as ``helpers``: setup.cfg puts tests/ on pytest's pythonpath).

* :func:`run_cli` runs ``python -m fer_features ARGS`` IN this process (``fer_features.cli.main``), capturing
  stdout and stderr; it returns a :class:`CliResult` shaped like ``subprocess.CompletedProcess``.
* :func:`run_cli_process` / :func:`cli_command` / :func:`process_env`: a real ``python -m fer_features``
  process, ONLY for tests of the process itself (signals, two processes, a closed pipe, one smoke test).
* :func:`write_cache`: the one synthetic feature cache builder (any features, labels and settings).
* :func:`blobs`: separable synthetic features with subject offsets; :func:`make_folder_dataset`: tiny images.
* :func:`shared`: a real dataset beside the repo (``../shared/datasets``), else the test is skipped.
"""
from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
import time
import traceback
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "datasets"
LABELS = ["angry", "happy", "sad"]


# -- real data ------------------------------------------------------------------------------------------------
def shared(name: str) -> Path:
    """``../shared/datasets/NAME``; the test is skipped when it is not there."""
    p = SHARED / name
    if not p.exists():
        pytest.skip(f"real dataset {p} not present")
    return p


# -- the command line -----------------------------------------------------------------------------------------
@dataclass
class CliResult:
    """One command's outcome, as ``subprocess.CompletedProcess`` names it (plus its wall time)."""

    args: list[str]
    returncode: int
    stdout: str
    stderr: str
    seconds: float = 0.0

    @property
    def last_line(self) -> str:
        """stdout's last non-empty line (what extract and merge print: the cache path)."""
        return self.stdout.strip().splitlines()[-1]


def _python_default_warning_filters() -> None:
    """The filters a fresh ``python -m fer_features`` starts with (no -W, no PYTHONWARNINGS): what its user sees,
    not pytest's per-test filters (which show every DeprecationWarning)."""
    warnings.resetwarnings()
    warnings.filterwarnings("default", category=DeprecationWarning, module="__main__", append=True)
    for category in (DeprecationWarning, PendingDeprecationWarning, ImportWarning, ResourceWarning):
        warnings.filterwarnings("ignore", category=category, append=True)


@contextlib.contextmanager
def _environment(env: dict[str, str | None] | None, cwd: str | Path | None):
    """``env`` set (None: removed) and ``cwd`` entered for the block; every variable the command set itself,
    and the working directory, restored after it."""
    saved_env, saved_cwd = dict(os.environ), os.getcwd()
    try:
        for k, v in (env or {}).items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = str(v)
        if cwd is not None:
            os.chdir(cwd)
        yield
    finally:
        os.chdir(saved_cwd)
        if dict(os.environ) != saved_env:
            os.environ.clear()
            os.environ.update(saved_env)


def run_cli(*args: Any, cwd: str | Path | None = None, env: dict[str, str | None] | None = None) -> CliResult:
    """``python -m fer_features ARGS`` in this process: ``fer_features.cli.main(ARGS)`` with ``sys.stdout`` and
    ``sys.stderr`` captured (tqdm and the CLI's messages write to ``sys.stderr`` when they run), warnings as a
    fresh interpreter shows them, and what a process would turn into an exit status turned into one:
    ``SystemExit`` (argparse's --help, --version, a bad option) its code, an uncaught exception 1 with its
    traceback on stderr. ``cwd`` and ``env`` (extra variables) hold for the call only."""
    from fer_features.cli import main

    argv = [str(a) for a in args]
    out, err = io.StringIO(), io.StringIO()
    t = time.perf_counter()
    with _environment(env, cwd), warnings.catch_warnings():  # catch_warnings: main's showwarning undone after
        _python_default_warning_filters()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                rc = main(argv)
            except SystemExit as exc:
                code = exc.code
                if code is None or isinstance(code, int):
                    rc = code or 0
                else:  # sys.exit("message"): the message on stderr, status 1
                    print(code, file=sys.stderr)
                    rc = 1
            except Exception:  # noqa: BLE001 - what the interpreter would do: a traceback and status 1
                traceback.print_exc()
                rc = 1
            finally:
                with contextlib.suppress(Exception):
                    sys.stdout.flush()
                    sys.stderr.flush()
    return CliResult(argv, int(rc or 0), out.getvalue(), err.getvalue(), time.perf_counter() - t)


def cli_command(*args: Any) -> list[str]:
    """The argv of a real ``python -m fer_features ARGS`` process."""
    return [sys.executable, "-m", "fer_features", *map(str, args)]


def process_env(**extra: str) -> dict[str, str]:
    """The environment for a child process: this one's, the repository importable, TensorFlow's C++ log quiet."""
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONPATH": path, "TF_CPP_MIN_LOG_LEVEL": "2", **extra}


def run_cli_process(*args: Any, timeout: float = 600, **env: str) -> subprocess.CompletedProcess:
    """A real ``python -m fer_features ARGS`` process (for tests of the process itself only: it imports
    TensorFlow again, seconds each)."""
    t = time.perf_counter()
    p = subprocess.run(cli_command(*args), capture_output=True, text=True, cwd=ROOT, env=process_env(**env),
                       timeout=timeout)
    p.seconds = time.perf_counter() - t
    return p


def error_lines(p) -> list[str]:
    """stderr's lines that say ``error`` (a refused input is exactly one)."""
    return [line for line in p.stderr.strip().splitlines() if "error" in line]


# -- synthetic feature caches ---------------------------------------------------------------------------------
def write_cache(path: str | Path, X: np.ndarray, y: Sequence[int], subjects: Sequence[str] | None = None, *,
                labels: Sequence[str] = LABELS, settings: dict | None = None, split: Sequence[str] | None = None,
                paths: Sequence[str] | None = None, raw_labels: Sequence[str] | None = None,
                face_found: Sequence[int] | None = None, key: str = "k", attrs: dict | None = None) -> Path:
    """A complete feature cache file of features ``X`` (rows) and label indices ``y`` into ``labels``, as
    ``CacheWriter`` writes it in one chunk. ``subjects``/``split`` default to none ("" each); ``settings``
    (default ``{"backbone": "test"}``) is stored as ``settings_json``; ``attrs`` adds or overrides attributes."""
    from fer_features.features.cache_writer import CacheWriter

    X = np.asarray(X, np.float32)
    y = np.asarray(y)
    n = len(y)
    labels = list(labels)
    all_attrs = {"settings_json": json.dumps({"backbone": "test"} if settings is None else settings),
                 **(attrs or {})}
    w = CacheWriter(Path(path), key, X.shape[1], labels, all_attrs)
    w.open()
    w.append(X, y, [""] * n if subjects is None else list(subjects), [""] * n if split is None else list(split),
             [f"img{i}.png" for i in range(n)] if paths is None else list(paths),
             [labels[i] for i in y] if raw_labels is None else list(raw_labels),
             [-1] * n if face_found is None else list(face_found), n_processed=n)
    return w.finish()


def blobs(n_subjects: int = 6, per: int = 6, dim: int = 16, seed: int = 0, sep: float = 3.0):
    """(X, y, subjects): one centre per class of ``LABELS`` (``sep`` apart), a per-subject offset, noise 0.5."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(len(LABELS), dim)) * sep
    X, y, g = [], [], []
    for s in range(n_subjects):
        offset = rng.normal(size=dim)
        for i in range(per):
            c = i % len(LABELS)
            X.append(centres[c] + offset + rng.normal(size=dim) * 0.5)
            y.append(c)
            g.append(f"S{s:02d}")
    return np.array(X, np.float32), np.array(y), np.array(g, dtype=object)


# Every setting a result reports about its features (a JAFFE-like extraction); for caches made by hand.
SETTINGS = {"backbone": "test", "image_size": 224, "pooling": "grid7", "layer": "block4c_add", "preprocess": "none",
            "face_crop": "haar", "face_margin": 0.0, "align": False, "flip_average": True, "weights": "imagenet",
            "dataset_format": "jaffe"}


def cache_with(path: str | Path, settings: dict = SETTINGS, n_subjects: int = 6):
    """A loaded cache of ``blobs(n_subjects)`` with these extraction settings."""
    from fer_features.features.cache import load_cache

    X, y, g = blobs(n_subjects=n_subjects)
    return load_cache(write_cache(path, X, y, g, settings=settings))


# -- tiny image folders ---------------------------------------------------------------------------------------
def make_folder_dataset(root: Path, classes=("happy", "sad"), per_class: int = 5, size: int = 40,
                        seed: int = 0) -> Path:
    """A folder-per-class dataset of small synthetic grey/RGB images (distinct per class)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    for ci, cls in enumerate(classes):
        d = Path(root) / cls
        d.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            base = np.full((size, size), (60 + 120 * ci) % 256, np.uint8)  # two classes: 60, 180; more wrap
            img = np.clip(base + rng.integers(-40, 40, (size, size)), 0, 255).astype(np.uint8)
            if i % 2:
                Image.fromarray(np.stack([img] * 3, -1)).save(d / f"img{i}.jpg")
            else:
                Image.fromarray(img).save(d / f"img{i}.png")
    return Path(root)
