"""The HDF5 cache: chunked writes, resume, and no way to mistake a partial file for a complete one."""
from __future__ import annotations

import numpy as np
import pytest

from fer_features.errors import CacheError
from fer_features.features.cache_writer import CacheWriter
from fer_features.features.cache import cache_filename, cache_key, is_complete, load_cache


def _chunk(writer, start, n, dim=4, skipped=()):
    rows = np.arange(start, start + n, dtype=np.float32)[:, None] * np.ones((1, dim), np.float32)
    writer.append(rows, [i % 2 for i in range(start, start + n)], [f"S{i % 3}" for i in range(start, start + n)],
                  ["train"] * n, [f"p{i}" for i in range(start, start + n)], ["AN"] * n, [-1] * n,
                  n_processed=start + n, skipped=skipped)


def test_key_depends_on_every_setting_and_the_data():
    s = {"backbone": "b", "image_size": 224, "pooling": "avg"}
    k = cache_key(s, "fp")
    assert k == cache_key(dict(s), "fp")
    assert k != cache_key({**s, "pooling": "max"}, "fp")
    assert k != cache_key(s, "fp2")
    assert cache_filename("jaffe", s, k).endswith(f"{k[:12]}.h5")


def test_write_finish_load(tmp_path):
    final = tmp_path / "c.h5"
    w = CacheWriter(final, "k1", 4, ["happy", "sad"], {"backbone": "b"})
    assert w.open() == 0
    _chunk(w, 0, 5)
    assert not is_complete(final) and not final.exists()
    _chunk(w, 5, 3, skipped=[("bad.png", "bad.png: truncated")])
    w.finish()
    assert is_complete(final) and not w.part_path.exists()
    c = load_cache(final)
    assert c.features.shape == (8, 4) and c.features.dtype == np.float32
    np.testing.assert_array_equal(c.features[:, 0], np.arange(8))
    assert c.label_names == ["happy", "sad"] and list(c.paths[:2]) == ["p0", "p1"]
    assert c.skipped == ["bad.png"] and c.attrs["n_skipped"] == 1 and c.attrs["backbone"] == "b"
    assert c.has_subjects and c.has_split


def test_resume_continues_after_interruption(tmp_path):
    final = tmp_path / "c.h5"
    w = CacheWriter(final, "k1", 4, ["happy", "sad"], {})
    w.open()
    _chunk(w, 0, 4)
    w.close()  # interrupted
    with pytest.raises(CacheError):
        load_cache(final)
    with pytest.raises(CacheError):
        load_cache(w.part_path)  # the part file is never accepted
    w2 = CacheWriter(final, "k1", 4, ["happy", "sad"], {})
    assert w2.open() == 4
    _chunk(w2, 4, 4)
    w2.finish()
    np.testing.assert_array_equal(load_cache(final).features[:, 0], np.arange(8))


def test_a_kill_mid_chunk_loses_only_that_chunk(tmp_path):
    """What SIGKILL can leave: a chunk half-written under its temporary name, or a torn chunk file."""
    final = tmp_path / "c.h5"
    w = CacheWriter(final, "k", 4, ["a"], {})
    w.open()
    _chunk(w, 0, 4)
    _chunk(w, 4, 4)
    (w.part_path / "chunk-0000000008.npz.tmp").write_bytes(b"half")  # killed while writing chunk 3
    w2 = CacheWriter(final, "k", 4, ["a"], {})
    assert w2.open() == 8 and w2.n_rows == 8
    assert not list(w2.part_path.glob("*.tmp"))
    second = w2.part_path / "chunk-0000000004.npz"
    second.write_bytes(second.read_bytes()[:100])  # a torn file (no fsync'd rename): redone, and said so
    said = []
    w3 = CacheWriter(final, "k", 4, ["a"], {}, log=said.append)
    assert w3.open() == 4 and w3.n_rows == 4
    assert any("unusable" in m and "redoing from record 4" in m for m in said)
    _chunk(w3, 4, 4)
    w3.finish()
    np.testing.assert_array_equal(load_cache(final).features[:, 0], np.arange(8))


def test_part_folder_of_another_key_or_an_old_part_file_is_restarted_and_said(tmp_path):
    final = tmp_path / "c.h5"
    w = CacheWriter(final, "k1", 4, ["a"], {})
    w.open()
    _chunk(w, 0, 4)
    w.close()
    said = []
    assert CacheWriter(final, "other", 4, ["a"], {}, log=said.append).open() == 0
    assert any("other settings" in m for m in said)
    import shutil

    shutil.rmtree(w.part_path)
    w.part_path.write_bytes(b"an HDF5 .part file of version 1")  # single-file part of the older writer
    said.clear()
    w3 = CacheWriter(final, "k1", 4, ["a"], {}, log=said.append)
    assert w3.open() == 0 and w3.part_path.is_dir()
    assert any("older" in m and "starting over" in m for m in said)
    w3.discard()
    assert not w3.part_path.exists()


def test_foreign_or_missing_files_are_rejected(tmp_path):
    with pytest.raises(CacheError, match="no such"):
        load_cache(tmp_path / "none.h5")
    junk = tmp_path / "junk.h5"
    junk.write_bytes(b"not hdf5")
    with pytest.raises(CacheError, match="not a complete"):
        load_cache(junk)


def test_the_lock_file_is_removed_when_released(tmp_path):
    """Issue 28: ``.lock`` files stayed in cache/ after every run."""
    from fer_features.features.cache import cache_lock
    from fer_features.features.extract import extract_dataset
    from helpers import make_folder_dataset

    cdir = tmp_path / "c"
    with cache_lock(cdir / "x.h5"):
        assert (cdir / "x.lock").is_file()
    assert not list(cdir.glob("*.lock"))
    with pytest.raises(KeyboardInterrupt), cache_lock(cdir / "x.h5"):  # released by an interrupt too
        raise KeyboardInterrupt
    assert not list(cdir.glob("*.lock"))
    data = make_folder_dataset(tmp_path / "data", per_class=3, size=24)
    out = extract_dataset(data, cache_dir=cdir, backbone="hog", image_size=32, face_crop="none",
                          flip_average=False, progress=False)
    assert out.is_file() and not list(cdir.glob("*.lock"))


_LOCKER = """
import sys, time
from fer_features.features.cache import cache_lock
path, count, rounds = sys.argv[1], sys.argv[2], int(sys.argv[3])
for _ in range(rounds):
    with cache_lock(path):
        with open(count) as f:
            n = int(f.read() or 0)
        time.sleep(0.001)  # a read-modify-write that two holders at once would lose
        with open(count, "w") as f:
            f.write(str(n + 1))
"""


def test_removing_the_lock_file_keeps_the_lock_exclusive(tmp_path):
    """Processes that open the lock file while another holds it, and find it removed once they get it, take
    the new one: no two hold the lock at once (every increment under it survives), and no lock file is left."""
    import subprocess
    import sys

    from helpers import ROOT, process_env

    count = tmp_path / "count"
    count.write_text("0")
    procs = [subprocess.Popen([sys.executable, "-c", _LOCKER, str(tmp_path / "c" / "x.h5"), str(count), "60"],
                              cwd=ROOT, env=process_env(), stderr=subprocess.PIPE, text=True) for _ in range(4)]
    errs = [p.communicate(timeout=300)[1] for p in procs]
    assert [p.returncode for p in procs] == [0] * 4, errs
    assert count.read_text() == "240" and not list((tmp_path / "c").glob("*.lock"))
