"""Extraction as shards on a Dask cluster, into the same cache file as a single-process run.

The dataset's records are cut into shards of ``cluster.shard_size`` records; each shard is one task. A worker
builds the network once (kept in this module's ``_MODELS`` for every later shard of that process), reads,
preprocesses and embeds the shard's images, and writes the shard as one whole chunk file of the cache's part
folder (``<cache>.h5.part/chunk-<first record>.npz``, written under a temporary name and renamed): the same
files a single-process run writes, so both resume from each other's work. With ``gather`` the worker returns
the shard to the client, which writes the same file (workers that share no filesystem with it; the client
then also sends the image bytes). The client joins the chunks in record order into the ordinary ``.h5``
(a copy, not an HDF5 virtual dataset: the cache stays one self-contained file that can be moved, copied or
read without the part folder, and the join costs ~1 % of the run: bench/results/distributed.md).

A re-run after an interruption does only the records no whole chunk covers; a worker that dies mid-shard is
replaced by Dask and its shard run again (``distributed.scheduler.allowed-failures`` times), so every row is
written exactly once. ``strict``: the first unreadable image stops the run; the shards in flight are waited
for and the part folder deleted, so nothing stays behind.
"""
from __future__ import annotations

import io
import os
import socket
import sys
import time
import uuid
from collections import deque
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from fer_features import __version__
from fer_features.data.images import read_image
from fer_features.distributed.cluster import TF_THREADS_VAR, auto_shard_size
from fer_features.errors import ClusterError, ExtractionError, ImageReadError
from fer_features.features.cache_writer import CacheWriter, _write_atomic, chunk_name, encode_chunk
from fer_features.features.extract import cache_attrs, dataset_summary, log_outcome
from fer_features.features.extractor import FeatureExtractor

# per worker process: the built extractor of the settings it last ran (one network in memory at a time)
_MODELS: dict[str, FeatureExtractor] = {}


# -- worker side -----------------------------------------------------------------------------------------
def _tf_threads() -> None:
    """Give TensorFlow this worker's share of the cores (``$FER_FEATURES_TF_THREADS``) before it starts."""
    n = os.environ.get(TF_THREADS_VAR)
    if not n:
        return
    import tensorflow as tf  # heavy, and optional beside JAX: only where TensorFlow itself is used

    try:
        tf.config.threading.set_intra_op_parallelism_threads(int(n))
        tf.config.threading.set_inter_op_parallelism_threads(int(n))
    except RuntimeError:  # TensorFlow already started in this process: it keeps its threads
        pass


def _extractor(params: dict) -> tuple[FeatureExtractor, float | None]:
    """This process's fitted extractor for ``params`` and its build time (None: built by an earlier shard)."""
    key = repr(sorted(params.items()))
    ext = _MODELS.get(key)
    if ext is not None:
        return ext, None
    t = time.perf_counter()
    _tf_threads()
    ext = FeatureExtractor(**params).fit()
    _MODELS.clear()
    _MODELS[key] = ext
    return ext, time.perf_counter() - t


def _probe(params: dict) -> dict:
    """Build the network on one worker: its feature width, build time and the package version there."""
    ext, built = _extractor(params)
    return {"dim": int(ext.n_features_out_), "build_seconds": built or 0.0, "version": __version__}


def _sees(part: str, root: str | None) -> tuple[bool, bool]:
    return os.path.isdir(part), root is None or os.path.exists(root)


def _decode(source: Any, path: str) -> np.ndarray:
    """An image from what the client sent: a path this worker reads, the file's bytes, a decoded array, or
    ``("error", message)`` (the client could not read it)."""
    if isinstance(source, str):
        return read_image(source)
    if isinstance(source, bytes):
        try:
            return read_image(io.BytesIO(source))
        except ImageReadError as exc:  # name the file, not the buffer
            raise ImageReadError(f"{path}: {str(exc).split(': ', 1)[-1]}") from None
    if isinstance(source, tuple):
        raise ImageReadError(source[1])
    return np.asarray(source)


def run_shard(params: dict, start: int, end: int, items: list[tuple], part_dir: str | None, dim: int,
              strict: bool) -> dict:
    """One shard on a worker: records ``start..end-1`` (``items``: index, path, image source, label index,
    subject, split, relative path, raw label, image content id). Writes ``part_dir/chunk-<start>.npz`` (or, without a
    ``part_dir``, returns its bytes as ``data``); returns the chunk's summary plus timings."""
    ext, built = _extractor(params)
    if int(ext.n_features_out_) != dim:
        raise ExtractionError(f"worker {socket.gethostname()} builds {ext.n_features_out_} features, not {dim}: "
                              "another fer_features version or weights file there?")
    prep = ext.preprocessor_
    t0 = time.perf_counter()
    good, bad = [], []
    for i, path, source, label, subject, split, rel, raw, content in items:
        try:
            img, found = prep(_decode(source, path))
        except ImageReadError as exc:
            err = str(exc)
        except Exception as exc:  # noqa: BLE001 - a decoder or preprocessing failure on one file
            err = f"{path}: {type(exc).__name__}: {exc}"
        else:
            good.append((img, -1 if found is None else int(bool(found)), label, subject, split, rel, raw, content))
            continue
        if strict:
            raise ExtractionError(f"unreadable image: {err}")
        bad.append((rel, err))
    t1 = time.perf_counter()
    feats = ext.embed(np.stack([g[0] for g in good])) if good else np.zeros((0, dim), np.float32)
    t2 = time.perf_counter()
    data, summary = encode_chunk(dim, feats, [g[2] for g in good], [g[3] for g in good], [g[4] for g in good],
                                 [g[5] for g in good], [g[6] for g in good], [g[1] for g in good],
                                 n_processed=end, skipped=bad, content=[g[7] for g in good])
    if part_dir is None:
        summary["data"] = data
    else:
        if not os.path.isdir(part_dir):  # the run was stopped and its folder deleted: write nothing
            raise FileNotFoundError(f"{part_dir}: no such folder on worker {socket.gethostname()}")
        _write_atomic(Path(part_dir) / chunk_name(start), data)
    summary.update(start=start, load_seconds=t1 - t0, embed_seconds=t2 - t1,
                   write_seconds=time.perf_counter() - t2, build_seconds=built,
                   worker=f"{socket.gethostname()}:{os.getpid()}")
    return summary


# -- client side -----------------------------------------------------------------------------------------
def on_cluster(cluster):
    """The ``runner`` for ``extract.extract_dataset``: shards on ``cluster`` (a ``cluster.Cluster``)."""

    def runner(path, key, settings, ds, ext, *, strict, progress, log):
        final, cluster.last_stats = extract_shards(cluster, path, key, settings, ds, ext, strict=strict,
                                                   progress=progress, log=log)
        return final

    return runner


def _source(ds, i: int, gather: bool, inline: bool) -> Any:
    """What a worker gets to read record ``i``: its path (shared filesystem), its bytes (``gather``), or the
    decoded array (``inline``: a CSV dataset, whose pixels live in this process)."""
    path = ds.records[i].path
    try:
        if inline:
            return ds.load_image(i)
        return Path(path).read_bytes() if gather else path
    except ImageReadError as exc:
        return ("error", str(exc))
    except OSError as exc:
        return ("error", f"{path}: {exc}")


def extract_shards(cluster, path: Path, key: str, settings: dict, ds, ext: FeatureExtractor, *, strict: bool,
                   progress: bool, log) -> tuple[Path, dict]:
    """Extract ``ds`` into the cache ``path`` on ``cluster``; returns (final path, timings). The caller holds
    the cache lock (``extract.extract_dataset`` does)."""
    from distributed import as_completed, wait  # Dask: optional (the cluster extra), only with --cluster

    client = cluster.client
    t_start = time.perf_counter()
    params = ext.get_params()
    tag = uuid.uuid4().hex[:8]
    # every worker builds the network now, all at once (a worker that joins later builds on its first shard)
    workers = list(client.scheduler_info()["workers"])
    probes = client.gather([client.submit(_probe, params, key=f"fer-probe-{tag}-{k}", workers=[w],
                                          allow_other_workers=False, pure=False) for k, w in enumerate(workers)])

    if {p["dim"] for p in probes} != {probes[0]["dim"]}:
        raise ExtractionError(f"the workers build networks of different widths {sorted({p['dim'] for p in probes})}: "
                              "different fer_features versions or weights files?")
    for v in sorted({p["version"] for p in probes} - {__version__}):
        log(f"warning: a worker runs fer_features {v}, this process {__version__}")
    probe = {"dim": probes[0]["dim"], "build_seconds": max(p["build_seconds"] for p in probes)}
    dim = probe["dim"]
    label_names = list(ds.label_names)
    label_index = {n: i for i, n in enumerate(label_names)}
    for note in ds.notes:
        log(note)
    log(dataset_summary(ds))
    n = len(ds)
    writer = CacheWriter(path, key, dim, label_names, cache_attrs(settings, ds, ext), log=log)
    done = writer.open(ordered=False)
    missing = writer.missing(n)
    size = cluster.shard_size or auto_shard_size(sum(b - a for a, b in missing), cluster.n_slots,
                                                 int(ext.batch_size))
    shards = deque((s, min(b, s + size)) for a, b in missing for s in range(a, b, size))
    if done:
        log(f"resuming {writer.part_path}: {done} of {n} records done, {len(shards)} shard(s) to do")
    inline = ds.format == "fer2013"  # pixels parsed here: shipped as arrays (48x48, small)
    part_dir = None if cluster.gather else str(writer.part_path)
    if part_dir is not None:
        seen = client.run(_sees, part_dir, None if inline else str(ds.root))
        blind = [w for w, (p, r) in seen.items() if not (p and r)]
        if blind:
            raise ClusterError(f"worker(s) {', '.join(blind[:3])} do not see {writer.part_path} or {ds.root} at "
                               "the same path: put the cache folder and the data on a filesystem they share, "
                               "or give --gather")
    rel = ds.rel_paths()
    records, contents = ds.records, ds.content_ids()  # the rows' identity, as a local run stores it

    def items(s: int, e: int) -> list[tuple]:
        return [(i, records[i].path, _source(ds, i, cluster.gather, inline), label_index[records[i].label],
                 records[i].subject, records[i].split, rel[i], records[i].raw_label, contents[i])
                for i in range(s, e)]

    bar = None
    if progress:
        bar = tqdm(total=n, initial=done, unit="img", desc=f"extract {ext.spec_.backbone.ref} on {cluster.n_workers} workers",
                   file=sys.stderr, dynamic_ncols=True, mininterval=0.5)
    futs = as_completed()
    flying: dict[str, Any] = {}
    summaries: list[dict] = []
    window = max(2, 2 * cluster.n_slots)  # shards queued at once: every worker busy, client memory bounded

    def submit_next() -> None:
        s, e = shards.popleft()
        f = client.submit(run_shard, params, s, e, items(s, e), part_dir, dim, strict,
                          key=f"fer-shard-{key[:12]}-{s:010d}-{tag}", pure=False)
        flying[f.key] = f
        futs.add(f)

    t_work = time.perf_counter()
    ok = False
    try:
        for _ in range(min(window, len(shards))):
            submit_next()
        for f in futs:
            try:
                summary = f.result()  # a worker's exception (strict stop, ...) is raised here
            except (ExtractionError, KeyboardInterrupt):
                raise
            except Exception as exc:  # noqa: BLE001 - e.g. KilledWorker: a shard killed its workers repeatedly
                raise ClusterError(f"shard at record {f.key.split('-')[-2].lstrip('0') or 0}: "
                                   f"{type(exc).__name__}: {exc}; the finished shards are kept and the same "
                                   "command resumes") from exc
            del flying[f.key]
            start = summary["start"]
            chunk = writer.chunk_path(start)
            if part_dir is None:
                _write_atomic(chunk, summary.pop("data"))
            elif not chunk.is_file():
                raise ClusterError(f"a worker wrote {chunk.name} but this machine does not see it in "
                                   f"{writer.part_path}: use a shared filesystem at the same path, or --gather")
            writer.add_chunk(start, chunk, summary)
            summaries.append(summary)
            for _, err in summary["skipped"]:
                log(f"skipped: {err}")
            if bar is not None:
                bar.update(summary["n_processed"] - start)
            if shards:
                submit_next()
        t_done = time.perf_counter()
        if writer.n_rows == 0:
            raise ExtractionError(f"{ds.root}: no readable image among {n}")
        elapsed = t_done - t_start
        n_new = sum(s["n_rows"] for s in summaries)
        rate = n_new / elapsed if elapsed > 0 else 0.0
        final = writer.finish({"extract_seconds": elapsed, "model_build_seconds": probe["build_seconds"],
                               "images_per_second": rate, "cluster_workers": cluster.n_workers,
                               "shard_size": size})
        t_join = time.perf_counter() - t_done
        ok = True
        if bar is not None:
            bar.close()
            bar = None
        log_outcome(writer, ext, log)
        log(f"extracted {n_new} images in {elapsed:.1f} s ({rate:.1f} img/s) on {cluster.n_workers} Dask "
            f"worker(s), {len(summaries)} shard(s) of up to {size}; joined in {t_join:.2f} s")
        stats = {"seconds": elapsed + t_join, "work_seconds": t_done - t_work, "setup_seconds": t_work - t_start,
                 "join_seconds": t_join, "images": n_new, "shards": len(summaries),
                 "workers": cluster.n_workers, "shard_size": size, "probe_build_seconds": probe["build_seconds"],
                 "build_seconds": [s["build_seconds"] for s in summaries if s["build_seconds"] is not None],
                 "load_seconds": sum(s["load_seconds"] for s in summaries),
                 "embed_seconds": sum(s["embed_seconds"] for s in summaries),
                 "write_seconds": sum(s["write_seconds"] for s in summaries),
                 "processes": sorted({s["worker"] for s in summaries})}
        return final, stats
    except KeyboardInterrupt:
        client.cancel(list(flying.values()))
        writer.close()  # the whole shards stay: the next identical run does only the others
        log(f"stopped with {writer.n_processed} of {n} records done: the same command resumes there")
        raise
    finally:
        if bar is not None:
            bar.close()
        if not ok and isinstance(sys.exc_info()[1], ExtractionError):
            wait(list(flying.values()))  # shards in flight end (at most two per worker), then nothing stays
            writer.discard()
        elif not ok:
            client.cancel(list(flying.values()))


__all__ = ["extract_shards", "on_cluster", "run_shard"]
