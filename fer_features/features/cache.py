"""HDF5 feature cache: one file per (dataset content, extraction settings), written in chunks, resumable.

A file is complete only when it has its final name AND its ``complete`` attribute is true: work in
progress lives in the folder ``<name>.h5.part/`` as whole chunk files, joined and renamed atomically at
the end, so an interrupted (even killed) run can never be mistaken for a finished one, and the next
identical run resumes after the last whole chunk. A lock file per cache (``<name>.lock``) makes a second
identical run wait and then find the finished file.

Image paths are stored relative to the dataset root, and the key hashes the dataset's content, not its
place: a copied or moved dataset finds its cache, and ``dataset_root`` (an attribute, updated on a cache
hit from a new place) lets the cache find its images.
"""
from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Iterator

import h5py
import numpy as np
from filelock import FileLock, Timeout

from fer_features.errors import CacheError

try:
    import fcntl
except ImportError:  # Windows: cache_lock uses filelock's lock
    fcntl = None

CACHE_FORMAT = 2  # 2: content fingerprint, paths relative to the dataset root, root not in the key
_STR = h5py.string_dtype("utf-8")


def cache_key(settings: dict[str, Any], fingerprint: str) -> str:
    """SHA-256 over the extraction settings and the dataset fingerprint (file contents)."""
    payload = json.dumps({"settings": settings, "dataset": fingerprint, "format": CACHE_FORMAT},
                         sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()


def cache_filename(dataset_name: str, settings: dict[str, Any], key: str) -> str:
    """Readable file name naming every setting that changes features and is not at its neutral value:
    ``<dataset>__<backbone>_<size>_<pooling>_<layer>_<crop>-m<margin>[-align]_..._w-<weights>__<key12>.h5``."""
    parts = [settings.get("backbone", "x"), str(settings.get("image_size", "")), settings.get("pooling", "")]
    if settings.get("layer"):
        parts.append(str(settings["layer"]))
    if settings.get("face_crop", "none") != "none":
        crop = f"{settings['face_crop']}-m{float(settings.get('face_margin', 0.0)):g}"
        parts.append(crop + ("-align" if settings.get("align") else ""))
    if settings.get("preprocess", "none") != "none":
        parts.append(settings["preprocess"])
    if settings.get("flip_average"):
        parts.append("flip")
    if settings.get("precision", "float32") != "float32":
        parts.append(settings["precision"])
    weights = str(settings.get("weights", "imagenet"))
    if weights not in ("imagenet", "none", "model-file"):  # model-file: a .keras backbone (named by backbone)  # random, or a file: 'file:<name>:<size>:<mtime>'
        parts.append("w-" + (weights.split(":")[1].rsplit(".", 1)[0] if weights.startswith("file:") else weights))
    slug = lambda s: re.sub(r"[^A-Za-z0-9.+-]+", "-", s).strip("-")  # noqa: E731
    return f"{slug(dataset_name)}__{slug('_'.join(p for p in parts if p))}__{key[:12]}.h5"


def package_versions() -> dict[str, str]:
    out = {}
    for pkg in ("fer_features", "tensorflow-cpu", "tensorflow", "keras", "jax", "jaxlib", "torch",
                "numpy", "h5py",
                "opencv-python-headless", "scikit-image", "pillow", "mtcnn"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            pass
    return out


@dataclass
class FeatureCache:
    """A loaded cache: arrays plus the settings and metadata stored with them."""

    path: Path
    features: np.ndarray
    labels: np.ndarray
    label_names: list[str]
    subjects: np.ndarray
    split: np.ndarray
    paths: np.ndarray
    raw_labels: np.ndarray
    face_found: np.ndarray
    attrs: dict[str, Any] = field(default_factory=dict)
    content: np.ndarray | None = None  # each row's image content id (caches written before 0.2 have none)

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def settings(self) -> dict[str, Any]:
        return json.loads(self.attrs.get("settings_json", "{}"))

    @property
    def dataset_root(self) -> str:
        """Where the images were read (or last found: a cache hit from a moved copy updates it)."""
        return str(self.attrs.get("dataset_root") or self.settings.get("dataset_root", ""))

    def image_paths(self) -> list[str]:
        """Absolute source path of every row: the dataset root (a manifest's folder) joined with the stored
        relative path."""
        root = self.dataset_root
        base = Path(root).parent if self.settings.get("dataset_format") == "manifest" else Path(root)
        return [root + p if p.startswith("#row=") else str(base / p) for p in self.paths]

    @property
    def skipped(self) -> list[str]:
        return json.loads(self.attrs.get("skipped_paths", "[]"))

    @property
    def has_subjects(self) -> bool:
        return bool(len(self.subjects)) and all(s != "" for s in self.subjects)

    @property
    def has_split(self) -> bool:
        return bool(len(self.split)) and all(s != "" for s in self.split)


def _strs(ds) -> np.ndarray:
    return np.array([s.decode() if isinstance(s, bytes) else str(s) for s in ds[()]], dtype=object)


def is_complete(path: str | Path) -> bool:
    """True for a finished cache file (final name, ``complete`` attribute set)."""
    path = Path(path)
    if path.suffix != ".h5" or not path.is_file():
        return False
    try:
        with h5py.File(path, "r") as f:
            return bool(f.attrs.get("complete", False))
    except OSError:
        return False


def read_attrs(path: str | Path) -> dict[str, Any]:
    """A cache file's attributes alone (no arrays read): cheap, for cache hits."""
    with h5py.File(path, "r") as f:
        attrs = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in f.attrs.items()}
    return {k: (v.item() if isinstance(v, np.generic) else v) for k, v in attrs.items()}


def set_dataset_root(path: str | Path, root: str | Path) -> bool:
    """Record where a complete cache's dataset is now (after it was copied or moved); False if read-only."""
    try:
        with h5py.File(path, "r+") as f:
            f.attrs["dataset_root"] = str(root)
        return True
    except OSError:
        return False


def require_complete(path: Path) -> None:
    """``CacheError`` (naming the file) unless ``path`` is a complete cache file."""
    if not path.exists():
        raise CacheError(f"{path}: no such cache file")
    if not is_complete(path):
        raise CacheError(f"{path}: not a complete fer_features cache (interrupted or foreign file)")


def load_cache(path: str | Path) -> FeatureCache:
    """Load a complete cache file; ``CacheError`` (naming the file) for anything else."""
    path = Path(path)
    require_complete(path)
    attrs = read_attrs(path)
    with h5py.File(path, "r") as f:
        return FeatureCache(
            path=path,
            features=f["features"][()],
            labels=f["labels"][()],
            label_names=list(_strs(f["label_names"])),
            subjects=_strs(f["subjects"]),
            split=_strs(f["split"]),
            paths=_strs(f["paths"]),
            raw_labels=_strs(f["raw_labels"]),
            face_found=f["face_found"][()],
            attrs=attrs,
            content=_strs(f["content"]) if "content" in f else None,
        )


@contextlib.contextmanager
def cache_lock(path: str | Path, log=None, what: str = "extract") -> Iterator[None]:
    """Hold an inter-process lock for one cache file (``<name>.lock`` beside it) for the ``with`` block; the lock
    file is removed when the lock is released.

    Another process holding it (an identical run) is waited for, and the wait is said through ``log``. Removing
    a lock file that another process has open and waits on is the classic race (it gets the lock on the removed
    file while a third process creates a new one and locks that), which is why filelock keeps its file on Unix.
    Here the file is removed only while held, and whoever gets a lock checks that the name still leads to the
    file it locked, else takes the file now under that name: two runs never hold the lock at once.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lock_path = path.with_suffix(".lock")

    def waiting() -> None:
        if log:
            log(f"waiting for another {what} of {path.name} to finish (lock {lock_path})")

    fd = _flock(lock_path, waiting)
    if fd is None:  # no flock (Windows, a filesystem without it): filelock's lock, which removes its file there
        with _filelock(lock_path, waiting):
            yield
        return
    try:
        yield
    finally:
        _release(lock_path, fd)


def _holds_the_name(lock_path: Path, fd: int) -> bool:
    """Whether ``lock_path`` still names the file open as ``fd`` (not removed, not replaced)."""
    try:
        return os.path.samestat(os.fstat(fd), os.stat(lock_path))
    except FileNotFoundError:
        return False


def _flock(lock_path: Path, waiting) -> int | None:
    """A descriptor of the file named ``lock_path``, exclusively flock-ed (``waiting()`` called once if another
    process holds it); None where flock is not available."""
    if fcntl is None:
        return None
    said = False
    while True:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if not said:
                    waiting()
                    said = True
                fcntl.flock(fd, fcntl.LOCK_EX)
            if _holds_the_name(lock_path, fd):
                return fd
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.ENOSYS, errno.ENOLCK, errno.EOPNOTSUPP):
                return None
            raise
        except BaseException:  # Ctrl-C or SIGTERM while waiting
            os.close(fd)
            raise
        os.close(fd)  # the holder removed this file when it released it: lock the one under the name now


def _release(lock_path: Path, fd: int) -> None:
    """Remove the lock file while still holding it (if it is still the one held), then unlock (a forked child
    may share the descriptor: unlocking, not only closing, releases it) and close."""
    try:
        if _holds_the_name(lock_path, fd):
            with contextlib.suppress(OSError):
                lock_path.unlink()
        fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


@contextlib.contextmanager
def _filelock(lock_path: Path, waiting) -> Iterator[None]:
    """filelock's lock on ``lock_path`` (where there is no flock), ``waiting()`` called if another holds it."""
    lock = FileLock(str(lock_path))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        waiting()
        lock.acquire()
    try:
        yield
    finally:
        lock.release()


