"""The cache as users meet it: data reached through a symbolic link, copied or moved datasets, runs killed
by SIGKILL or SIGTERM, and two identical extracts started together."""
from __future__ import annotations

import shutil
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from fer_features.features import augment as A
from fer_features import evaluation as ev
from fer_features.features.cache import load_cache
from fer_features.features.extract import extract_dataset
from helpers import ROOT, cli_command, make_folder_dataset, process_env

HOG = dict(backbone="hog", image_size=48, face_crop="none", flip_average=False, progress=False)
CNN_ARGS = ["--image-size", "48", "--face-crop", "none", "--no-flip-average", "--batch-size", "4", "--no-progress"]
CNN = dict(image_size=48, face_crop="none", flip_average=False, batch_size=4, progress=False)


def _augment_one_copy(cache) -> A.AugmentedData:
    splits, _ = ev.make_splits("kfold", cache.labels, folds=2)
    return A.augment_splits(cache, splits, A.AugmentConfig(seed=1), copies=1, progress=False)


def test_a_dataset_reached_through_a_symlink_augments(tiny_folder, tmp_path):
    link = tmp_path / "link"
    link.symlink_to(tiny_folder, target_is_directory=True)
    cache = load_cache(extract_dataset(link, cache_dir=tmp_path / "c", **HOG))
    assert cache.dataset_root == str(link) and not Path(cache.paths[0]).is_absolute()
    d = _augment_one_copy(cache)  # re-reads the images the cache was made from
    assert len(d.X) == 2 * len(cache)
    assert [p.name for p in (tmp_path / "c").glob("*__aug-*.h5")]  # and wrote them
    # the same data reached directly is the same cache
    said = []
    assert extract_dataset(tiny_folder, cache_dir=tmp_path / "c", log=said.append, **HOG) == cache.path
    assert said and said[0].startswith("cache hit")


def test_a_copied_dataset_is_a_cache_hit_and_a_moved_one_finds_its_images(tiny_folder, tmp_path):
    cdir = tmp_path / "c"
    first = extract_dataset(tiny_folder, cache_dir=cdir, **HOG)
    copy = tmp_path / "elsewhere" / "data"
    shutil.copytree(tiny_folder, copy)
    said = []
    assert extract_dataset(copy, cache_dir=cdir, log=said.append, **HOG) == first
    assert said == [f"cache hit: {first}"]  # the original still exists: it stays the recorded root
    shutil.rmtree(tiny_folder)  # now the dataset has moved
    with pytest.raises(A.AugmentError, match="does not exist.*extract --data"):
        _augment_one_copy(load_cache(first))
    said.clear()
    assert extract_dataset(copy, cache_dir=cdir, log=said.append, **HOG) == first
    assert any("recorded in the cache" in m for m in said)
    cache = load_cache(first)
    assert cache.dataset_root == str(copy) and all(Path(p).is_file() for p in cache.image_paths())
    assert len(_augment_one_copy(cache).X) == 2 * len(cache)


def _extract_cmd(data: Path, cache_dir: Path) -> list[str]:
    """A real ``python -m fer_features extract`` process: these tests signal it, or run two at once."""
    return cli_command("extract", "--data", data, "--cache-dir", cache_dir, *CNN_ARGS)


@pytest.fixture(scope="module")
def three_hundred(tmp_path_factory):
    """(300 tiny images, their uninterrupted extraction): read-only, shared by the SIGKILL and SIGTERM runs."""
    root = tmp_path_factory.mktemp("killed")
    data = make_folder_dataset(root / "data", per_class=150, size=40)
    return data, load_cache(extract_dataset(data, cache_dir=root / "clean", **CNN))


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_a_killed_extract_resumes_and_equals_an_uninterrupted_one(tmp_path, sig, three_hundred):
    data, clean = three_hundred
    cdir = tmp_path / "c"
    proc = subprocess.Popen(_extract_cmd(data, cdir), cwd=ROOT, env=process_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and len(list(cdir.glob("*.h5.part/chunk-*.npz"))) < 2:
        if proc.poll() is not None:
            break
        time.sleep(0.01)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode != 0, "the run finished before it could be killed"
    assert not list(cdir.glob("*.h5")), err
    if sig == signal.SIGTERM:
        assert proc.returncode == 143 and "resumes" in err
    said = []
    path = extract_dataset(data, cache_dir=cdir, log=said.append, **CNN)
    resumed = [m for m in said if m.startswith("resuming")]
    assert resumed and " at record 0 " not in resumed[0], said
    c = load_cache(path)
    assert list(c.paths) == list(clean.paths) and list(c.labels) == list(clean.labels)
    np.testing.assert_allclose(c.features, clean.features, atol=1e-6)
    assert not list(cdir.glob("*.part"))


@pytest.mark.slow
def test_two_identical_extracts_started_together_both_succeed(tmp_path):
    data = make_folder_dataset(tmp_path / "data", per_class=40, size=40)
    cdir = tmp_path / "c"
    procs = [subprocess.Popen(_extract_cmd(data, cdir), cwd=ROOT, env=process_env(), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [e for _, e in outs]
    lines = [o.strip().splitlines()[-1] for o, _ in outs]
    assert lines[0] == lines[1] and Path(lines[0]).is_file()
    errs = "".join(e for _, e in outs)
    assert errs.count("extracted 80 images") == 1  # one did the work, the other waited or hit the cache
    assert not list(cdir.glob("*.part")) and not list(cdir.glob("*.tmp"))
