"""Extraction and comparison on a Dask LocalCluster: equal to a local run, resumable, a killed worker costs
only its shard, bad images as in a local run. One 2-worker cluster is shared by the whole module (workers
keep their network between tests); the network is efficientnet_lite0 at 48 px on tiny generated images."""
from __future__ import annotations

import os
import shutil
import signal
import time

import numpy as np
import pytest

pytest.importorskip("distributed")

from fer_features import evaluation as ev
from fer_features.features.cache_writer import CacheWriter
from fer_features.features.cache import load_cache
from fer_features.cli import main
from fer_features.distributed.cluster import Cluster, parse_address
from fer_features.errors import ClusterError
from fer_features.distributed.extract import on_cluster
from fer_features.errors import ExtractionError
from fer_features.features.extractor import FeatureExtractor
from fer_features.features.extract import extract_dataset
from helpers import make_folder_dataset, write_cache

CNN = dict(image_size=48, face_crop="none", flip_average=False, batch_size=4, progress=False)
CNN_ARGS = ["--image-size", "48", "--face-crop", "none", "--no-flip-average", "--batch-size", "4", "--no-progress"]
SHARD = 8


@pytest.fixture(scope="module")
def cluster():
    with Cluster("local:2", shard_size=SHARD) as cl:
        yield cl


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_folder_dataset(tmp_path_factory.mktemp("dist") / "data", per_class=20)  # 40 images: 5 shards


@pytest.fixture(scope="module")
def clean(data, tmp_path_factory):
    """The single-process run everything is compared with."""
    return load_cache(extract_dataset(data, cache_dir=tmp_path_factory.mktemp("clean"), **CNN))


def _same(c, clean, atol=1e-5):
    assert c.path.name == clean.path.name  # same key, same file name
    assert list(c.paths) == list(clean.paths) and len(set(c.paths)) == len(c.paths)  # each row once, in order
    assert list(c.labels) == list(clean.labels) and list(c.subjects) == list(clean.subjects)
    assert c.skipped == clean.skipped
    np.testing.assert_allclose(c.features, clean.features, atol=atol)


def test_addresses_and_loopback_only(cluster):
    assert parse_address("local:3") == ("local", 3)
    assert parse_address("tls://10.0.0.1:8786") == ("remote", "tls://10.0.0.1:8786")
    for bad in ("local:0", "http://x:1", "tcp://", "8786"):
        with pytest.raises(ClusterError):
            parse_address(bad)
    info = cluster.client.scheduler_info()
    addrs = [info["address"], *info["workers"]]
    assert len(addrs) == 3 and all(a.startswith("tcp://127.0.0.1:") for a in addrs), addrs
    with pytest.raises(ClusterError, match="TLS needs certificates"):
        Cluster("tls://127.0.0.1:1").__enter__()


def test_extract_on_cluster_equals_local_and_builds_once_per_worker(cluster, data, clean, tmp_path):
    said = []
    c = load_cache(extract_dataset(data, cache_dir=tmp_path / "a", runner=on_cluster(cluster), log=said.append, **CNN))
    _same(c, clean)
    st = cluster.last_stats
    assert st["shards"] == 5 and st["images"] == 40 and c.attrs["shard_size"] == SHARD
    assert len(st["processes"]) == 2  # both workers took shards...
    assert len(st["build_seconds"]) <= 2  # ...and built the network at most once each, for all their shards
    assert not list((tmp_path / "a").glob("*.part"))
    # --gather: features come back to the client, which writes the same shard files and the same cache
    cluster.gather = True
    try:
        g = load_cache(extract_dataset(data, cache_dir=tmp_path / "g", runner=on_cluster(cluster), **CNN))
    finally:
        cluster.gather = False
    _same(g, clean)
    assert cluster.last_stats["build_seconds"] == []  # the workers kept their networks from the run before


def test_resume_after_interruption_does_only_the_missing_shards(cluster, data, clean, tmp_path, monkeypatch):
    cdir = tmp_path / "c"
    real_add = CacheWriter.add_chunk
    calls = {"n": 0}

    def interrupted(self, *a, **k):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real_add(self, *a, **k)

    monkeypatch.setattr(CacheWriter, "add_chunk", interrupted)
    with pytest.raises(KeyboardInterrupt):
        extract_dataset(data, cache_dir=cdir, runner=on_cluster(cluster), **CNN)
    monkeypatch.undo()
    assert not list(cdir.glob("*.h5")) and len(list(cdir.glob("*.h5.part/chunk-*.npz"))) >= 2
    time.sleep(1)  # shards still in flight at the interruption may land too: they are whole, and reused
    said = []
    c = load_cache(extract_dataset(data, cache_dir=cdir, runner=on_cluster(cluster), log=said.append, **CNN))
    _same(c, clean)
    resumed = [m for m in said if m.startswith("resuming")]
    assert resumed and cluster.last_stats["shards"] < 5, said
    assert f"{cluster.last_stats['shards']} shard(s) to do" in resumed[0]


def test_cluster_resumes_a_single_process_run_and_shares_its_format(cluster, data, clean, tmp_path, monkeypatch):
    cdir = tmp_path / "c"
    calls = {"n": 0}
    real_embed = FeatureExtractor.embed

    def flaky(self, batch):
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt
        return real_embed(self, batch)

    monkeypatch.setattr(FeatureExtractor, "embed", flaky)
    with pytest.raises(KeyboardInterrupt):
        extract_dataset(data, cache_dir=cdir, **CNN)  # one process, chunks of 4 records
    monkeypatch.undo()
    said = []
    c = load_cache(extract_dataset(data, cache_dir=cdir, runner=on_cluster(cluster), log=said.append, **CNN))
    _same(c, clean)
    assert any("12 of 40 records done" in m for m in said), said


def test_bad_images_as_in_a_local_run(cluster, tmp_path):
    data = make_folder_dataset(tmp_path / "bad", per_class=6)
    (data / "happy" / "img2.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 30)
    (data / "sad" / "zz.png").write_text("not an image")
    local = load_cache(extract_dataset(data, cache_dir=tmp_path / "l", **CNN))
    assert local.attrs["n_skipped"] == 2
    c = load_cache(extract_dataset(data, cache_dir=tmp_path / "d", runner=on_cluster(cluster), **CNN))
    _same(c, local)
    assert c.attrs["n_skipped"] == 2 and json_list(c.attrs["skipped_reasons"]) == json_list(local.attrs["skipped_reasons"])
    # --strict: the first bad image stops the run; nothing final, no part folder left
    with pytest.raises(ExtractionError, match=r"img2\.png|zz\.png"):
        extract_dataset(data, cache_dir=tmp_path / "s", strict=True, runner=on_cluster(cluster), **CNN)
    assert not any((tmp_path / "s").glob("*.h5*"))


def json_list(s):
    import json

    return json.loads(s)


def test_cli_extract_and_classify_on_a_running_scheduler(cluster, data, clean, tmp_path, monkeypatch, capsys):
    """--cluster tcp://... (here the fixture's scheduler), also taken from $FER_FEATURES_CLUSTER."""
    addr = cluster.client.scheduler.address
    assert main(["extract", "--data", str(data), "--cache-dir", str(tmp_path), "--cluster", addr,
                 "--shard-size", "16", *CNN_ARGS]) == 0
    path = capsys.readouterr().out.strip().splitlines()[-1]
    c = load_cache(path)
    _same(c, clean)
    assert c.attrs["shard_size"] == 16
    monkeypatch.setenv("FER_FEATURES_CLUSTER", addr)
    assert main(["classify", "--cache", path, "--clf", "linear_svm", "--protocol", "kfold", "--folds", "3",
                 "--no-progress", "--json"]) == 0
    import json

    on_cluster_result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    monkeypatch.delenv("FER_FEATURES_CLUSTER")
    assert main(["classify", "--cache", path, "--clf", "linear_svm", "--protocol", "kfold", "--folds", "3",
                 "--no-progress", "--json"]) == 0
    local_result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert on_cluster_result["predictions"] == local_result["predictions"]
    assert main(["classify", "--cache", path, "--cluster", "local:0"]) == 2  # a bad address: exit 2


def _blobs(n_subjects=8, per=9, dim=24, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(3, dim)) * 2.0
    X, y, g = [], [], []
    for s in range(n_subjects):
        off = rng.normal(size=dim)
        for i in range(per):
            X.append(centres[i % 3] + off + rng.normal(size=dim))
            y.append(i % 3)
            g.append(f"S{s}")
    return np.array(X, np.float32), np.array(y), np.array(g, dtype=object)


def _blob_cache(tmp_path):
    """A feature cache of ``_blobs()`` (3 classes, 8 subjects), and the blobs."""
    X, y, g = _blobs()
    path = write_cache(tmp_path / "b.h5", X, y, g, paths=[f"i{i}.png" for i in range(len(y))],
                       raw_labels=["x"] * len(y))
    return load_cache(path), (X, y, g)


def test_compare_on_cluster_equals_local_and_sends_the_data_once(cluster, tmp_path):
    cache, (X, y, g) = _blob_cache(tmp_path)
    names = ["lda", "linear_svm", "fine_knn", "logreg"]
    local, _ = ev.run(cache, names, "group-kfold", folds=4, progress=False)
    remote, _ = ev.run(cache, names, "group-kfold", folds=4, progress=False, cluster=cluster)
    for a, b in zip(local, remote):
        assert a["classifier"] == b["classifier"]
        assert a["accuracy"] == b["accuracy"] and a["confusion_matrix"] == b["confusion_matrix"]
        assert a["predictions"]["pred"] == b["predictions"]["pred"] and a["predictions"]["row"] == b["predictions"]["row"]
    # the shared matrix is one object per worker process, whatever the number of tasks there
    seen = dict(cluster.map_unordered(_where, [()] * 12, shared={"X": X}))
    per_process = {}
    for pid, obj_id in seen.values():
        per_process.setdefault(pid, set()).add(obj_id)
    assert all(len(ids) == 1 for ids in per_process.values()), per_process


def test_optimizable_preset_on_cluster_equals_local_and_its_search_never_sees_test_subjects(cluster, tmp_path):
    """A nested search is one task per outer fold: its subject ids travel with the scattered data, so the
    inner folds are grouped as in a local run and the chosen parameters and predictions are the same."""
    cache, (X, y, g) = _blob_cache(tmp_path)
    search = {"budget": 3, "inner_folds": 3}
    (local,), _ = ev.run(cache, ["optimizable_knn"], "group-kfold", folds=3, progress=False, search=search)
    (remote,), _ = ev.run(cache, ["optimizable_knn"], "group-kfold", folds=3, progress=False, search=search,
                          cluster=cluster)
    assert remote["accuracy"] == local["accuracy"] and remote["predictions"]["pred"] == local["predictions"]["pred"]
    lf, rf = local["search"]["folds"], remote["search"]["folds"]
    assert [f["best_params"] for f in rf] == [f["best_params"] for f in lf] and len(rf) == 3
    assert "group" in remote["search"]["inner_cv"].lower() or "subject" in remote["search"]["inner_cv"].lower()
    pred, fold = np.array(remote["predictions"]["row"]), np.array(remote["predictions"]["fold"])
    for k, f in enumerate(rf):  # inner splits (cache rows): none of the outer fold's test rows or subjects
        test_rows = set(pred[fold == k].tolist())
        test_subjects = set(g[pred[fold == k]])
        for sp in f["inner_splits"]:
            rows = sp["train"] + sp["validation"]
            assert rows and not test_rows & set(rows) and not test_subjects & set(g[rows])


def _where(*, X):
    return os.getpid(), id(X)


def test_auto_shard_size():
    from fer_features.distributed.cluster import DEFAULT_SHARD_SIZE, auto_shard_size

    assert auto_shard_size(1_000_000, 64) == DEFAULT_SHARD_SIZE
    assert auto_shard_size(400, 2) == 64  # at least 4 shards per worker, whole batches of 32
    assert auto_shard_size(981, 2, 32) == 128
    assert auto_shard_size(3, 2) == 32


RANDOM = dict(CNN, weights="random")


def test_random_weights_are_the_same_on_a_worker(cluster, data, tmp_path):
    """A worker's event loop draws from Python's global random while the network is built: the weights must
    not depend on it (extract._own_python_random)."""
    clean = load_cache(extract_dataset(data, cache_dir=tmp_path / "l", **RANDOM))
    c = load_cache(extract_dataset(data, cache_dir=tmp_path / "d", runner=on_cluster(cluster), **RANDOM))
    _same(c, clean)


def test_a_killed_worker_costs_only_its_shard(cluster, tmp_path, monkeypatch):
    """Runs last: the killed worker's replacement builds its network again."""
    data = make_folder_dataset(tmp_path / "k", per_class=32)  # 64 images: 8 shards
    clean = load_cache(extract_dataset(data, cache_dir=tmp_path / "clean", **RANDOM))
    client = cluster.client
    before = set(client.run(os.getpid).values())
    real_add = CacheWriter.add_chunk
    killed = []

    def kill_once(self, *a, **k):
        if not killed:
            busy = [w for w, keys in client.processing().items() if keys]
            pid = client.run(os.getpid, workers=busy[:1])[busy[0]]
            os.kill(pid, signal.SIGKILL)  # the worker process dies mid-shard
            killed.append(pid)
        return real_add(self, *a, **k)

    monkeypatch.setattr(CacheWriter, "add_chunk", kill_once)
    c = load_cache(extract_dataset(data, cache_dir=tmp_path / "d", runner=on_cluster(cluster), **RANDOM))
    assert killed
    _same(c, clean)
    assert cluster.last_stats["shards"] == 8  # every shard counted once: the lost one was redone, not doubled
    deadline = time.time() + 60
    while len(client.scheduler_info()["workers"]) < 2 and time.time() < deadline:  # the nanny restarts it
        time.sleep(0.5)
    assert set(client.run(os.getpid).values()) != before
    shutil.rmtree(tmp_path / "k", ignore_errors=True)



def test_a_cluster_cache_stores_the_rows_content_ids(tmp_path):
    """Shards carry each row's image content id, as a local extraction stores it (the rows' identity)."""
    from fer_features.data import load_dataset
    from fer_features.distributed.cluster import open_cluster
    from fer_features.distributed.extract import on_cluster
    from fer_features.features.cache import load_cache
    from fer_features.features.extract import extract_dataset
    from helpers import make_folder_dataset

    data = make_folder_dataset(tmp_path / "data", per_class=3, size=32)
    kw = dict(backbone="hog", face_crop="none", flip_average=False, progress=False, log=lambda m: None)
    with open_cluster("local:1") as cluster:
        c = load_cache(extract_dataset(data, cache_dir=tmp_path / "c", runner=on_cluster(cluster), **kw))
    ds = load_dataset(data)
    want = dict(zip(ds.rel_paths(), ds.content_ids()))
    assert c.content is not None and [want[p] for p in c.paths] == list(c.content)
