"""The whole-dataset extraction into the HDF5 cache: cache hits, locks, resume after an interruption, the
thread pool that decodes and crops ahead of the network, and the run's log."""
from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import threading
import time
import warnings
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from tqdm import tqdm

from fer_features import backbones as bb
from fer_features.backbones import device
from fer_features.data.datasets import dataset_stem
from fer_features.data.faces import DEFAULT_FACE_CROP, DEFAULT_FACE_MARGIN
from fer_features.data.formats import as_dataset
from fer_features.errors import ExtractionError, ImageReadError, Terminated
from fer_features.features.cache import (
    cache_filename,
    cache_key,
    cache_lock,
    is_complete,
    load_cache,
    package_versions,
    read_attrs,
    set_dataset_root,
)
from fer_features.features.cache_writer import CacheWriter
from fer_features.features.extractor import FeatureExtractor
from fer_features.features.reuse import ReuseIndex, features_key
from fer_features.features.spec import DEFAULT_FLIP_AVERAGE, ExtractionSpec

DEFAULT_CACHE_DIR = "cache"


def default_cache_dir() -> Path:
    """``$FER_FEATURES_CACHE`` or ``./cache``."""
    return Path(os.environ.get("FER_FEATURES_CACHE", DEFAULT_CACHE_DIR))


def dataset_cache_path(dataset, extractor: FeatureExtractor, cache_dir: str | Path | None = None) -> tuple[Path, str, dict]:
    """(cache file path, key, settings) for ``dataset`` embedded by ``extractor``; loads no model.

    The key hashes the settings and the dataset's content (not where it lies), so a copy finds its cache.
    """
    settings = {**extractor.settings(), "dataset_format": dataset.format}
    opts = getattr(dataset, "options", None)
    if opts:
        settings["dataset_options"] = opts
    key = cache_key(settings, dataset.fingerprint())

    name = dataset_stem(dataset.root) or "dataset"
    return Path(cache_dir or default_cache_dir()) / cache_filename(name, settings, key), key, settings


def dataset_summary(ds) -> str:
    """'N images, K classes, S subjects' (or '..., no subject ids') of a listed dataset."""
    subj = [r.subject for r in ds.records]
    n_subj = len(set(subj)) if subj and all(subj) else 0
    return (f"{len(subj)} images, {len(ds.label_names)} classes, "
            + (f"{n_subj} subjects" if n_subj else "no subject ids"))


@contextlib.contextmanager
def _sigterm_as_interrupt():
    """Turn SIGTERM into :class:`Terminated` for the block (main thread only; restored after)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise Terminated(f"terminated by signal {signum}")

    before = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, before)


def _complete_with_key(path: Path, key: str) -> Path | None:
    """The complete cache of this key: ``path`` itself, or one made under another dataset folder name (the
    same content reached through a link, or a renamed copy)."""
    if is_complete(path):
        return path
    for other in sorted(path.parent.glob(f"*__{key[:12]}.h5")):
        if is_complete(other) and read_attrs(other).get("key") == key:
            return other
    return None


def _cache_hit(path: Path, ds, log) -> Path:
    """Log the hit and, when the dataset now lies elsewhere (copied, moved), record its new root."""
    log(f"cache hit: {path}")
    root = str(ds.root)
    try:
        recorded = str(read_attrs(path).get("dataset_root", ""))
    except OSError:  # a hit was just confirmed; a read failure surfaces on use
        return path
    if recorded != root and not Path(recorded).exists() and set_dataset_root(path, root):
        log(f"dataset found at {root} (was {recorded}): recorded in the cache")
    return path


def extract_dataset(data, format: str = "auto", *, cache_dir: str | Path | None = None,
                    backbone: str = bb.DEFAULT_BACKBONE, weights: str | None = "imagenet",
                    image_size: int | None = None, pooling: str | None = None, layer: str | None = None,
                    preprocess: str = "none", face_crop: str = DEFAULT_FACE_CROP,
                    face_margin: float = DEFAULT_FACE_MARGIN, align: bool = False,
                    flip_average: bool = DEFAULT_FLIP_AVERAGE, precision: str = "float32",
                    batch_size: int = 32, frontal_only: bool = False, subject_pattern: str | None = None,
                    label_map=None, allow_new_labels: bool = False,
                    strict: bool = False, progress: bool = True, workers: int = 2,
                    log=None, runner=None, spec: ExtractionSpec | None = None,
                    reuse_from: Sequence[str | Path] = ()) -> Path:
    """Embed every image of a dataset (path or ``Dataset``) into the HDF5 cache; return the cache path.

    An identical earlier run is a cache hit (no model is loaded); an interrupted or killed one is resumed
    after its last finished chunk; an identical run going on in another process is waited for (one lock
    per cache file). Unreadable images are skipped and listed in the cache, or stop the run when ``strict``.
    ``subject_pattern``: a regex giving each image's subject id (see ``subjects.py``); part of the cache key.
    ``label_map``, ``allow_new_labels``: labels renamed, new ones kept (``data/labels.py``); a map joins the key.
    ``runner``: a callable doing the extraction step instead of this process, same arguments as
    ``_extract_into`` less ``workers`` (``distributed_extract.on_cluster(cluster)``: shards on a Dask cluster).
    ``spec``: an ``ExtractionSpec`` already built, instead of the options from ``backbone`` to ``precision``.
    ``reuse_from``: folders of other caches whose rows (same image content, same feature settings) are copied
    instead of computed, besides the cache folder itself (``features/reuse.py``).
    """
    log = log or (lambda msg: print(msg, file=sys.stderr))
    ds = as_dataset(data, format, frontal_only=frontal_only, subject_pattern=subject_pattern, label_map=label_map,
                    allow_new_labels=allow_new_labels)
    if spec is None:  # the door: every option resolved and checked once, read downstream
        spec = ExtractionSpec.build(backbone=backbone, weights=weights, image_size=image_size, pooling=pooling,
                                    layer=layer, preprocess=preprocess, face_crop=face_crop, face_margin=face_margin,
                                    align=align, flip_average=flip_average, precision=precision)
    ext = FeatureExtractor.from_spec(spec, batch_size=batch_size)
    path, key, settings = dataset_cache_path(ds, ext, cache_dir)
    if (hit := _complete_with_key(path, key)) is not None:
        return _cache_hit(hit, ds, log)
    ds.require_classes()  # here, not before the hit: listing FER2013's classes parses its CSV
    with cache_lock(path, log):
        if (hit := _complete_with_key(path, key)) is not None:  # an identical run finished while we waited
            return _cache_hit(hit, ds, log)
        with _sigterm_as_interrupt():
            if runner is not None:  # e.g. shards on a Dask cluster: same cache, key, rows and resume
                return runner(path, key, settings, ds, ext, strict=strict, progress=progress, log=log)
            return _extract_into(path, key, settings, ds, ext, strict=strict, progress=progress, reuse_from=reuse_from,
                                 workers=workers, log=log)


def cache_attrs(settings: dict, ds, ext: FeatureExtractor, *, compute_device: str | None = None) -> dict[str, Any]:
    """The attributes a cache file of ``ds`` embedded by ``ext`` records (settings, versions, dataset identity,
    and ``compute_device``, the backend and device that ran the network, where known)."""
    return {
        "settings_json": json.dumps(settings, sort_keys=True),
        "versions_json": json.dumps(package_versions(), sort_keys=True),
        "dataset_fingerprint": ds.fingerprint(),
        "dataset_root": str(ds.root),
        "n_records": len(ds),
        "weights_spec": ext.spec_.weights,
        **({"backbone_spec": ext.spec_.backbone.source}  # where the .keras file was read
           if settings.get("weights") == "model-file" else {}),
        **({"compute_device": compute_device} if compute_device else {}),
        **{k: (v if isinstance(v, (str, int, float, bool)) else json.dumps(v)) for k, v in settings.items()},
    }


def log_outcome(writer: CacheWriter, ext: FeatureExtractor, log) -> None:
    """After a finished extraction: how many images were skipped, and in how many no face was found."""
    if writer.n_skipped:
        log(f"{writer.n_skipped} unreadable image(s) skipped (listed in the cache attribute skipped_paths)")
    if ext.spec_.face_crop != "none":
        log(f"no face found in {writer.n_no_face} of {writer.n_rows} image(s): whole image kept")


def _plan(ds, settings: dict, path: Path, reuse_from: Sequence[str | Path]) -> tuple[list[str], ReuseIndex, dict]:
    """Each record's content id, the index of rows other caches already computed for these contents, and the
    records whose content appeared earlier in this dataset (record -> its first occurrence)."""
    contents = ds.content_ids()
    index = ReuseIndex.scan([path.parent, *reuse_from], settings, exclude=path)
    first: dict[str, int] = {}
    dup_of: dict[int, int] = {}
    for i, c in enumerate(contents):
        j = first.setdefault(c, i)
        if j != i and not c.startswith(("bad:", "missing")):
            dup_of[i] = j
    return contents, index, dup_of


def _extract_into(path: Path, key: str, settings: dict, ds, ext: FeatureExtractor, *, strict: bool,
                  progress: bool, workers: int, log, reuse_from: Sequence[str | Path] = ()) -> Path:
    """The extraction itself, into ``path`` (the caller holds the cache lock). Rows whose image content was
    already embedded with these settings (another cache of ``path``'s folder or of ``reuse_from``, or an
    identical image earlier in this dataset) are copied; the network runs, and is built, only for the rest."""
    t0 = time.perf_counter()
    contents, index, dup_of = _plan(ds, settings, path, reuse_from)
    n = len(ds)
    t_build, on = 0.0, "no network: every row reused"
    if any(contents[i] not in index and i not in dup_of for i in range(n)):  # else the index holds every row
        t_build = time.perf_counter()
        ext.fit()
        t_build = time.perf_counter() - t_build
        on = "CPU" if ext.spec_.backbone.classical else device.describe()
        if on.startswith("tensorflow") and (clash := device.tensorflow_conflict()):
            warnings.warn(clash, UserWarning, stacklevel=2)
    dim = ext.n_features_out_ if hasattr(ext, "n_features_out_") else index.dim
    label_names = list(ds.label_names)
    label_index = {n: i for i, n in enumerate(label_names)}
    for note in ds.notes:  # where subject ids came from (or why there are none)
        log(note)
    log(dataset_summary(ds))
    attrs = {**cache_attrs(settings, ds, ext, compute_device=on), "features_key": features_key(settings)}
    writer = CacheWriter(path, key, dim, label_names, attrs, log=log)
    start = writer.open()
    if start:
        log(f"resuming {writer.part_path} at record {start} of {n}")
    bs, rel = int(ext.batch_size), ds.rel_paths()
    prep = ext.preprocessor_ if hasattr(ext, "preprocessor_") else None
    kept: dict[str, tuple[np.ndarray, int]] = {}  # computed here, for the identical images later in the dataset
    wanted = {contents[j] for j in dup_of.values()}

    def load_one(i: int):
        try:
            img, found = prep(ds.load_image(i))
            return i, img, found, None
        except ImageReadError as exc:
            return i, None, None, str(exc)
        except Exception as exc:  # a decoder or preprocessing failure on one file
            return i, None, None, f"{ds.records[i].path}: {type(exc).__name__}: {exc}"

    scheduled: set[str] = set()  # contents sent to the network in this run (their copies wait for them)

    def computes(i: int) -> bool:
        c = contents[i]
        if c in index or (i in dup_of and c in scheduled):
            return False
        scheduled.add(c)
        return True

    bar = None
    if progress:
        bar = tqdm(total=n, initial=start, unit="img", desc=f"extract {ext.spec_.backbone.ref}", file=sys.stderr,
                   dynamic_ncols=True, mininterval=0.5)
    n_computed = n_reused = n_copies = 0
    ok = False
    try:
        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            pending: deque = deque()
            next_start = start

            def submit_next():
                nonlocal next_start
                if next_start < n:
                    idx = range(next_start, min(n, next_start + bs))
                    # an identical image earlier in this batch is not computed yet: it is computed again
                    pending.append((idx, {i: pool.submit(load_one, i) for i in idx if computes(i)}))
                    next_start = idx[-1] + 1

            for _ in range(3):  # prefetch: decode/preprocess run ahead of the network
                submit_next()
            while pending:
                idx, futs = pending.popleft()
                submit_next()
                results = {i: f.result() for i, f in futs.items()}
                bad = [(rel[i], err) for i, _, _, err in results.values() if err]
                if bad and strict:
                    raise ExtractionError(f"unreadable image: {bad[0][1]}")
                for p, err in bad:
                    log(f"skipped: {err}")
                good = [(i, img, found) for i, img, found, err in results.values() if not err]
                rows: dict[int, tuple[np.ndarray, int]] = {}
                if good:
                    feats = ext.embed(np.stack([g[1] for g in good]))
                    for (i, _, found), f in zip(good, feats):
                        rows[i] = (f, -1 if found is None else int(bool(found)))
                        if contents[i] in wanted:
                            kept.setdefault(contents[i], rows[i])
                reused = [i for i in idx if i not in results and contents[i] in index]
                if reused:
                    feats, found = index.rows([contents[i] for i in reused])
                    rows.update({i: (f, int(ff)) for i, f, ff in zip(reused, feats, found)})
                copies = {i: kept[contents[i]] for i in idx if i not in results and i not in rows
                          and contents[i] in kept}
                rows.update(copies)
                for i in idx:  # a copy of an image that could not be read
                    if i not in results and i not in rows:
                        bad.append((rel[i], f"{ds.records[i].path}: the same bytes as an unreadable image"))
                n_copies += len(copies)
                order = [i for i in idx if i in rows]
                recs = [ds.records[i] for i in order]
                writer.append(
                    np.stack([rows[i][0] for i in order]) if order else np.zeros((0, dim), np.float32),
                    [label_index[r.label] for r in recs], [r.subject for r in recs], [r.split for r in recs],
                    [rel[i] for i in order], [r.raw_label for r in recs], [rows[i][1] for i in order],
                    n_processed=idx[-1] + 1, skipped=bad, content=[contents[i] for i in order])
                n_computed += len(good)
                n_reused += len(order) - len(good)
                if bar is not None:
                    bar.update(len(idx))
        if writer.n_rows == 0:
            raise ExtractionError(f"{ds.root}: no readable image among {n}")
        elapsed = time.perf_counter() - t0
        rate = (n_computed / elapsed) if elapsed > 0 else 0.0
        # a resumed run times its own records only: ``resumed_at_record`` says where it began
        final = writer.finish({"extract_seconds": elapsed, "model_build_seconds": t_build,
                               "images_per_second": rate, "resumed_at_record": int(start),
                               "reused_rows": int(n_reused), "duplicate_rows": int(n_copies),
                               "computed_rows": int(n_computed)})
        ok = True
        if bar is not None:
            bar.close()
            bar = None
        log_outcome(writer, ext, log)
        if n_reused:
            log(f"reused {n_reused} of {n_reused + n_computed} rows ({n_reused - n_copies} already embedded with "
                f"these feature settings in {len(index.files)} other cache(s), {n_copies} copies of identical images "
                f"in this dataset); the network ran on {n_computed}")
        log(f"extracted {n_computed} images in {elapsed:.1f} s ({rate:.1f} img/s; model built in {t_build:.1f} s; "
            f"{on})")
        return final
    except KeyboardInterrupt:
        writer.close()  # keep the finished chunks: the next identical run resumes after them
        log(f"stopped after record {writer.n_processed} of {n}: the same command resumes there")
        raise
    finally:
        index.close()
        if bar is not None:
            bar.close()
        if not ok and isinstance(sys.exc_info()[1], ExtractionError):
            writer.discard()  # strict stop or nothing readable: leave nothing behind
        # any other failure keeps the finished chunks, so a re-run resumes


__all__ = ["FeatureExtractor", "extract_dataset", "load_cache", "dataset_cache_path", "default_cache_dir",
           "ExtractionError", "Terminated"]
