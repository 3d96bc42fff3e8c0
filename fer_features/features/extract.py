"""Frozen-CNN feature extraction: a scikit-learn transformer and a whole-dataset extractor to the HDF5 cache."""
from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import MappingProxyType
from typing import Any, Sequence

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin

from fer_features.backbones import registry as bb
from fer_features.features.cache import (
    CacheWriter, cache_filename, cache_key, is_complete, load_cache, package_versions, read_attrs,
)
from fer_features.backbones.device import keras_backend
from fer_features.data.preprocess import (
    DEFAULT_FACE_CROP, DEFAULT_FACE_MARGIN, INTENSITY_METHODS, PreprocessConfig, Preprocessor,
)
from fer_features.errors import ExtractionError, Terminated

DEFAULT_CACHE_DIR = "cache"


def default_cache_dir() -> Path:
    """``$FER_FEATURES_CACHE`` or ``./cache``."""
    return Path(os.environ.get("FER_FEATURES_CACHE", DEFAULT_CACHE_DIR))


def _weights_id(weights: str) -> str:
    """Cache-key identity of a weights spec: 'imagenet', 'random' or the file's name and content hash."""
    from fer_features.data.datasets import content_hash

    w = bb.normalize_weights(weights)
    if w in ("imagenet", "random"):
        return w
    return f"file:{Path(w).name}:{content_hash(w)[:24]}"


# bfloat16: Keras mixed precision (bf16 compute, float32 weights). Measured (bench/results/reduced_precision.md):
# downstream accuracy within 0.5 points; faster only for dense-convolution networks (resnet50 1.4x), slower for
# the depthwise ones (efficientnet_lite0 0.75x, mobilenet_v2 0.95x) on this CPU.
PRECISIONS = ("float32", "bfloat16")
DEFAULT_FLIP_AVERAGE = True  # with the Haar crop: chosen by experiment (bench/results/feature_quality.md)
# the whole image through one forward pass (no face crop, no flip average): what the seed papers fed, and the
# network's input path alone in the speed benchmarks; spelt out so their numbers keep whatever the defaults are
WHOLE_IMAGE = MappingProxyType({"face_crop": "none", "flip_average": False})


@contextlib.contextmanager
def _dtype_policy(policy: str | None):
    """Build Keras layers under ``policy`` (e.g. 'mixed_bfloat16'), restoring the global policy after."""
    if policy is None:
        yield
        return
    import keras

    before = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(policy)
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(before)


@contextlib.contextmanager
def _own_python_random(seed: int):
    """Keras draws the seed of every initializer that has none from Python's global ``random``; another thread
    drawing from it during a build (a Dask worker's event loop does) would change random weights. For the block,
    Keras gets a generator of its own, seeded as ``keras.utils.set_random_seed(seed)`` seeds the global one, so
    the weights are those a lone process builds."""
    import random

    try:
        from keras.src.random import seed_generator as sg
    except ImportError:  # another Keras layout: the global generator, as before
        yield
        return
    before = sg.python_random
    sg.python_random = random.Random(seed)
    try:
        yield
    finally:
        sg.python_random = before


class FeatureExtractor(TransformerMixin, BaseEstimator):
    """Embed face images with a frozen pretrained CNN (a registered backbone, or a saved ``.keras`` model
    file such as ``finetune --save`` writes: see ``keras_backbone``).

    ``X`` is an array ``(N, H, W)`` / ``(N, H, W, C)`` of uint8 images or a sequence of such images of
    any size; ``transform`` preprocesses each (face crop, intensity equalisation, grey to RGB, resize)
    and returns float32 features ``(N, D)``. ``fit`` only builds the network (nothing is learned).
    """

    def __init__(self, backbone: str = bb.DEFAULT_BACKBONE, weights: str | None = "imagenet",
                 image_size: int | None = None, pooling: str | None = None, layer: str | None = None,
                 preprocess: str = "none", face_crop: str = DEFAULT_FACE_CROP,
                 face_margin: float = DEFAULT_FACE_MARGIN, align: bool = False,
                 flip_average: bool = DEFAULT_FLIP_AVERAGE, precision: str = "float32",
                 batch_size: int = 32):
        self.backbone = backbone
        self.weights = weights
        self.image_size = image_size
        self.pooling = pooling
        self.layer = layer
        self.preprocess = preprocess
        self.face_crop = face_crop
        self.face_margin = face_margin
        self.align = align
        self.flip_average = flip_average
        self.precision = precision
        self.batch_size = batch_size

    # -- configuration ---------------------------------------------------------------------------
    def _validate(self) -> tuple[bb.BackboneConfig, str, str]:
        """Check every parameter; return the backbone config and the resolved (layer, pooling)."""
        cfg = bb.get_config(self.backbone)
        layer, pooling = bb.resolve_taps(self.backbone, self.layer, self.pooling, self.resolved_image_size())
        if self.preprocess not in INTENSITY_METHODS:  # named after this estimator's parameter
            raise ValueError(f"unknown preprocess {self.preprocess!r}; use one of {', '.join(INTENSITY_METHODS)}")
        self._preprocess_config().validate()  # face crop, margin, size: the preprocessing's own checks
        if int(self.batch_size) < 1:
            raise ValueError("batch_size must be >= 1")
        if self.precision not in PRECISIONS:
            raise ValueError(f"unknown precision {self.precision!r}; use one of {', '.join(PRECISIONS)}")
        if self.precision != "float32" and cfg.family == "classical":
            raise ValueError(f"{self.backbone} is not a network: precision {self.precision} does not apply")
        if self.precision != "float32" and cfg.family == bb.KERAS_FILE:
            raise ValueError(f"{self.backbone}: a .keras backbone runs as saved (float32); precision "
                             f"{self.precision} does not apply")
        return cfg, layer, pooling

    def resolved_image_size(self) -> int:
        return int(self.image_size or bb.get_config(self.backbone).default_size)

    def settings(self) -> dict[str, Any]:
        """Every setting that changes the features (what the cache key hashes)."""
        cfg, layer, pooling = self._validate()
        return {
            "backbone": cfg.name,  # a .keras file: its content id, not its path
            "weights": ("none" if cfg.family == "classical" else "model-file" if cfg.family == bb.KERAS_FILE
                        else _weights_id(self.weights)),
            "image_size": self.resolved_image_size(),
            "pooling": pooling,
            "layer": layer,
            "input_preprocessing": cfg.preprocess,
            "preprocess": self.preprocess,
            "face_crop": self.face_crop,
            "face_margin": float(self.face_margin) if self.face_crop != "none" else 0.0,
            "align": bool(self.align) if self.face_crop != "none" else False,
            "flip_average": bool(self.flip_average),
            # only when not float32, so that float32 caches keep the keys they had before this option
            **({"precision": self.precision} if self.precision != "float32" else {}),
            **self._backend_setting(cfg),
        }

    def _backend_setting(self, cfg: bb.BackboneConfig) -> dict[str, str]:
        """``{'keras_backend': name}`` for random weights on a backend other than TensorFlow, else ``{}``.

        Random weights come from the backend's own generator (same seed, other numbers on JAX or torch);
        trained weights give the same features on every backend, to float tolerance, so they keep one key
        (and TensorFlow caches the keys they had before other backends were supported)."""
        if cfg.family in ("classical", bb.KERAS_FILE) or not self._random_weights():
            return {}
        backend = keras_backend()
        return {} if backend == "tensorflow" else {"keras_backend": backend}

    def _random_weights(self) -> bool:
        return bb.normalize_weights(self.weights) == "random"

    def _preprocess_config(self) -> PreprocessConfig:
        return PreprocessConfig(image_size=self.resolved_image_size(), face_crop=self.face_crop,
                                face_margin=float(self.face_margin), align=bool(self.align),
                                intensity=self.preprocess)

    def preprocessor(self) -> Preprocessor:
        return Preprocessor(self._preprocess_config())

    # -- scikit-learn API ------------------------------------------------------------------------
    def fit(self, X=None, y=None):
        """Build the frozen network; returns self."""
        self._validate()
        seeds = contextlib.nullcontext()
        if self._random_weights():
            import keras

            keras.utils.set_random_seed(0)  # random weights: reproducible, so the cache key stays honest
            seeds = _own_python_random(0)
        with _dtype_policy("mixed_bfloat16" if self.precision == "bfloat16" else None), seeds:
            self.model_ = bb.create(self.backbone, include_top=False, weights=self.weights,
                                    input_size=self.resolved_image_size(), pooling=self.pooling, layer=self.layer)
        self.preprocessor_ = self.preprocessor()
        if bb.is_classical(self.backbone):
            self.n_features_out_ = int(self.model_.n_features)
        else:
            self.n_features_out_ = int(self.model_.output.shape[-1])
            size = self.resolved_image_size()  # trace the graph now (part of the build, not of the first batch)
            self.model_.predict_on_batch(np.zeros((int(self.batch_size), size, size, 3), np.float32))
        self.settings_ = self.settings()
        return self

    def _check_fitted(self):
        if not hasattr(self, "model_"):
            self.fit()

    def prepare(self, images: Sequence[np.ndarray]) -> tuple[np.ndarray, list[bool | None]]:
        """Preprocess images into one ``(N, S, S, 3)`` uint8 batch; also returns face-found flags."""
        self._check_fitted()
        out = [self.preprocessor_(np.asarray(img)) for img in images]
        size = self.resolved_image_size()
        batch = np.stack([o[0] for o in out]) if out else np.zeros((0, size, size, 3), np.uint8)
        return batch, [o[1] for o in out]

    def embed(self, batch: np.ndarray) -> np.ndarray:
        """Run the network on ready ``(N, S, S, 3)`` RGB 0-255 tensors; returns float32 ``(N, D)``."""
        self._check_fitted()
        if len(batch) == 0:
            return np.zeros((0, self.n_features_out_), np.float32)
        bs = int(self.batch_size)
        outs = []
        for i in range(0, len(batch), bs):
            b = batch[i:i + bs]
            f = self._forward(b)
            if self.flip_average:  # mean of the image's and its mirror image's features
                f = (f + self._forward(b[:, :, ::-1])) / 2
            outs.append(f)
        return np.concatenate(outs).astype(np.float32, copy=False)

    def _forward(self, b: np.ndarray) -> np.ndarray:
        """One batch through the network, a short batch zero-padded to ``batch_size``: every call has the
        same shape, so the backend traces (JAX: compiles) the graph once (a new shape costs ~0.5 s or more)."""
        n, bs = len(b), int(self.batch_size)
        x = b.astype(np.float32)
        if n < bs and not bb.is_classical(self.backbone):
            x = np.concatenate([x, np.zeros((bs - n, *x.shape[1:]), np.float32)])
        return np.asarray(self.model_.predict_on_batch(x), dtype=np.float32)[:n]

    def transform(self, X) -> np.ndarray:
        batch, _ = self.prepare(list(X))
        return self.embed(batch)

    def get_feature_names_out(self, input_features=None) -> np.ndarray:
        self._check_fitted()
        return np.array([f"{self.backbone}_{i}" for i in range(self.n_features_out_)], dtype=object)

    def __getstate__(self):
        state = dict(self.__dict__)
        state.pop("model_", None)  # Keras models are rebuilt on demand, not pickled
        state.pop("preprocessor_", None)
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        if "n_features_out_" in state:
            self.fit()


def dataset_cache_path(dataset, extractor: FeatureExtractor, cache_dir: str | Path | None = None) -> tuple[Path, str, dict]:
    """(cache file path, key, settings) for ``dataset`` embedded by ``extractor``; loads no model.

    The key hashes the settings and the dataset's content (not where it lies), so a copy finds its cache.
    """
    settings = {**extractor.settings(), "dataset_format": dataset.format}
    opts = getattr(dataset, "options", None)
    if opts:
        settings["dataset_options"] = opts
    key = cache_key(settings, dataset.fingerprint())
    from fer_features.data.datasets import dataset_stem

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
    import signal
    import threading

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
    from fer_features.features.cache import set_dataset_root

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
                    strict: bool = False, progress: bool = True, workers: int = 2,
                    log=None, runner=None) -> Path:
    """Embed every image of a dataset (path or ``Dataset``) into the HDF5 cache; return the cache path.

    An identical earlier run is a cache hit (no model is loaded); an interrupted or killed one is resumed
    after its last finished chunk; an identical run going on in another process is waited for (one lock
    per cache file). Unreadable images are skipped and listed in the cache, or stop the run when ``strict``.
    ``subject_pattern``: a regex giving each image's subject id (see ``subjects.py``); part of the cache key.
    ``runner``: a callable doing the extraction step instead of this process, same arguments as
    ``_extract_into`` less ``workers`` (``distributed_extract.on_cluster(cluster)``: shards on a Dask cluster).
    """
    from fer_features.features.cache import cache_lock
    from fer_features.data.datasets import Dataset, load_dataset

    log = log or (lambda msg: print(msg, file=sys.stderr))
    if isinstance(data, Dataset):
        ds = data
        if subject_pattern:
            from fer_features.data.subjects import apply_subject_pattern

            ds = apply_subject_pattern(ds, subject_pattern, ds.root)
    else:
        ds = load_dataset(data, format, frontal_only=frontal_only, subject_pattern=subject_pattern)
    ext = FeatureExtractor(backbone=backbone, weights=weights, image_size=image_size, pooling=pooling,
                           layer=layer, preprocess=preprocess, face_crop=face_crop, face_margin=face_margin,
                           align=align, flip_average=flip_average, precision=precision, batch_size=batch_size)
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
            return _extract_into(path, key, settings, ds, ext, strict=strict, progress=progress,
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
        "weights_spec": bb.normalize_weights(ext.weights),
        **({"backbone_spec": str(Path(ext.backbone).expanduser().resolve())}  # where the .keras file was read
           if settings.get("weights") == "model-file" else {}),
        **({"compute_device": compute_device} if compute_device else {}),
        **{k: (v if isinstance(v, (str, int, float, bool)) else json.dumps(v)) for k, v in settings.items()},
    }


def log_outcome(writer: CacheWriter, ext: FeatureExtractor, log) -> None:
    """After a finished extraction: how many images were skipped, and in how many no face was found."""
    if writer.n_skipped:
        log(f"{writer.n_skipped} unreadable image(s) skipped (listed in the cache attribute skipped_paths)")
    if ext.face_crop != "none":
        log(f"no face found in {writer.n_no_face} of {writer.n_rows} image(s): whole image kept")


def _extract_into(path: Path, key: str, settings: dict, ds, ext: FeatureExtractor, *, strict: bool,
                  progress: bool, workers: int, log) -> Path:
    """The extraction itself, into ``path`` (the caller holds the cache lock)."""
    from fer_features.backbones import device
    from fer_features.errors import ImageReadError

    t_build = time.perf_counter()
    ext.fit()
    t_build = time.perf_counter() - t_build
    on = "CPU" if bb.is_classical(ext.backbone) else device.describe()
    if on.startswith("tensorflow") and (clash := device.tensorflow_conflict()):
        import warnings

        warnings.warn(clash, UserWarning, stacklevel=2)
    t0 = time.perf_counter()
    label_names = list(ds.label_names)
    label_index = {n: i for i, n in enumerate(label_names)}
    for note in ds.notes:  # where subject ids came from (or why there are none)
        log(note)
    log(dataset_summary(ds))
    attrs = cache_attrs(settings, ds, ext, compute_device=on)
    writer = CacheWriter(path, key, ext.n_features_out_, label_names, attrs, log=log)
    start = writer.open()
    if start:
        log(f"resuming {writer.part_path} at record {start} of {len(ds)}")
    prep = ext.preprocessor_
    n = len(ds)
    bs = int(ext.batch_size)
    rel = ds.rel_paths()

    def load_one(i: int):
        try:
            img, found = prep(ds.load_image(i))
            return i, img, found, None
        except ImageReadError as exc:
            return i, None, None, str(exc)
        except Exception as exc:  # a decoder or preprocessing failure on one file
            return i, None, None, f"{ds.records[i].path}: {type(exc).__name__}: {exc}"

    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=n, initial=start, unit="img", desc=f"extract {ext.backbone}", file=sys.stderr,
                   dynamic_ncols=True, mininterval=0.5)
    n_done_rows = 0
    ok = False
    try:
        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            pending: deque = deque()
            next_start = start

            def submit_next():
                nonlocal next_start
                if next_start < n:
                    idx = range(next_start, min(n, next_start + bs))
                    pending.append((idx, [pool.submit(load_one, i) for i in idx]))
                    next_start = idx[-1] + 1

            for _ in range(3):  # prefetch: decode/preprocess run ahead of the network
                submit_next()
            while pending:
                idx, futs = pending.popleft()
                submit_next()
                results = [f.result() for f in futs]
                bad = [(rel[i], err) for i, _, _, err in results if err]
                if bad and strict:
                    raise ExtractionError(f"unreadable image: {bad[0][1]}")
                for p, err in bad:
                    log(f"skipped: {err}")
                good = [(i, img, found) for i, img, found, err in results if not err]
                feats = ext.embed(np.stack([g[1] for g in good])) if good else np.zeros((0, ext.n_features_out_))
                recs = [ds.records[g[0]] for g in good]
                writer.append(
                    feats, [label_index[r.label] for r in recs], [r.subject for r in recs],
                    [r.split for r in recs], [rel[g[0]] for g in good], [r.raw_label for r in recs],
                    [-1 if g[2] is None else int(bool(g[2])) for g in good],
                    n_processed=idx[-1] + 1, skipped=bad)
                n_done_rows += len(good)
                if bar is not None:
                    bar.update(len(idx))
        f_rows = writer.n_rows
        if f_rows == 0:
            raise ExtractionError(f"{ds.root}: no readable image among {n}")
        elapsed = time.perf_counter() - t0
        rate = (n_done_rows / elapsed) if elapsed > 0 else 0.0
        # a resumed run times its own records only: ``resumed_at_record`` says where it began
        final = writer.finish({"extract_seconds": elapsed, "model_build_seconds": t_build,
                               "images_per_second": rate, "resumed_at_record": int(start)})
        ok = True
        if bar is not None:
            bar.close()
            bar = None
        log_outcome(writer, ext, log)
        log(f"extracted {n_done_rows} images in {elapsed:.1f} s ({rate:.1f} img/s; model built in {t_build:.1f} s; "
            f"{on})")
        return final
    except KeyboardInterrupt:
        writer.close()  # keep the finished chunks: the next identical run resumes after them
        log(f"stopped after record {writer.n_processed} of {n}: the same command resumes there")
        raise
    finally:
        if bar is not None:
            bar.close()
        if not ok and isinstance(sys.exc_info()[1], ExtractionError):
            writer.discard()  # strict stop or nothing readable: leave nothing behind
        # any other failure keeps the finished chunks, so a re-run resumes


__all__ = ["FeatureExtractor", "extract_dataset", "load_cache", "dataset_cache_path", "default_cache_dir",
           "ExtractionError", "Terminated"]
