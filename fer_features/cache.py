"""HDF5 feature cache: one file per (dataset content, extraction settings), written in chunks, resumable.

A file is complete only when it has its final name AND its ``complete`` attribute is true: work in
progress lives in ``<name>.h5.part`` and is renamed atomically at the end, so an interrupted run can
never be mistaken for a finished one; the next identical run resumes the ``.part`` file.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Iterable

import h5py
import numpy as np

CACHE_FORMAT = 1
_STR = h5py.string_dtype("utf-8")


class CacheError(ValueError):
    """Not a complete feature cache, or one that does not match the request."""


def cache_key(settings: dict[str, Any], fingerprint: str) -> str:
    """SHA-256 over the extraction settings and the dataset fingerprint (files, sizes, mtimes)."""
    payload = json.dumps({"settings": settings, "dataset": fingerprint, "format": CACHE_FORMAT},
                         sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()


def cache_filename(dataset_name: str, settings: dict[str, Any], key: str) -> str:
    """Readable file name: ``<dataset>__<backbone>_<size>_<pooling>__<key12>.h5``."""
    parts = [settings.get("backbone", "x"), str(settings.get("image_size", "")), settings.get("pooling", "")]
    if settings.get("layer"):
        parts.append(str(settings["layer"]))
    if settings.get("face_crop", "none") != "none":
        parts.append(settings["face_crop"])
    if settings.get("preprocess", "none") != "none":
        parts.append(settings["preprocess"])
    if settings.get("flip_average"):
        parts.append("flip")
    if settings.get("precision", "float32") != "float32":
        parts.append(settings["precision"])
    slug = lambda s: re.sub(r"[^A-Za-z0-9.+-]+", "-", s).strip("-")  # noqa: E731
    return f"{slug(dataset_name)}__{slug('_'.join(p for p in parts if p))}__{key[:12]}.h5"


def package_versions() -> dict[str, str]:
    out = {}
    for pkg in ("fer_features", "tensorflow-cpu", "tensorflow", "keras", "numpy", "h5py",
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

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def settings(self) -> dict[str, Any]:
        return json.loads(self.attrs.get("settings_json", "{}"))

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


def load_cache(path: str | Path) -> FeatureCache:
    """Load a complete cache file; ``CacheError`` (naming the file) for anything else."""
    path = Path(path)
    if not path.exists():
        raise CacheError(f"{path}: no such cache file")
    if not is_complete(path):
        raise CacheError(f"{path}: not a complete fer_features cache (interrupted or foreign file)")
    with h5py.File(path, "r") as f:
        attrs = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in f.attrs.items()}
        attrs = {k: (v.item() if isinstance(v, np.generic) else v) for k, v in attrs.items()}
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
        )


class CacheWriter:
    """Append-only writer of one cache file with resume support.

    ``open`` creates ``<final>.part`` or resumes it when its key matches; ``append`` writes one chunk
    and records how many source records it covered; ``finish`` marks the file complete and renames it.
    """

    def __init__(self, final_path: str | Path, key: str, dim: int, label_names: list[str],
                 attrs: dict[str, Any]):
        self.final_path = Path(final_path)
        self.part_path = self.final_path.with_name(self.final_path.name + ".part")
        self.key, self.dim, self.label_names, self.attrs = key, dim, label_names, attrs
        self.f: h5py.File | None = None
        self.resumed_from = 0

    # -- lifecycle -----------------------------------------------------------------------------
    def open(self) -> int:
        """Open (or resume) the part file; return how many source records are already done."""
        self.final_path.parent.mkdir(parents=True, exist_ok=True)
        if self.part_path.exists():
            try:
                f = h5py.File(self.part_path, "a", libver="latest")
                ok = f.attrs.get("key") == self.key and f["features"].shape[1] == self.dim
                if ok:
                    self.f = f
                    n_rows = int(f.attrs["n_rows"])
                    for name in self._row_datasets():
                        f[name].resize((n_rows, *f[name].shape[1:]))
                    self.resumed_from = int(f.attrs["n_processed"])
                    return self.resumed_from
                f.close()
            except (OSError, KeyError):
                pass  # unreadable or foreign: start over
            self.part_path.unlink()
        f = h5py.File(self.part_path, "w", libver="latest")
        f.attrs["complete"] = False
        f.attrs["key"] = self.key
        f.attrs["n_rows"] = 0
        f.attrs["n_processed"] = 0
        f.attrs["skipped_paths"] = "[]"
        f.attrs["skipped_reasons"] = "[]"
        f.attrs["n_skipped"] = 0
        f.attrs["n_no_face"] = 0
        for k, v in self.attrs.items():
            f.attrs[k] = v
        chunk = max(1, min(256, (1 << 20) // (4 * max(self.dim, 1))))
        f.create_dataset("features", (0, self.dim), maxshape=(None, self.dim), dtype="float32",
                         chunks=(chunk, self.dim))
        f.create_dataset("labels", (0,), maxshape=(None,), dtype="int32", chunks=(4096,))
        f.create_dataset("face_found", (0,), maxshape=(None,), dtype="int8", chunks=(4096,))
        for name in ("subjects", "split", "paths", "raw_labels"):
            f.create_dataset(name, (0,), maxshape=(None,), dtype=_STR, chunks=(1024,))
        f.create_dataset("label_names", data=np.array(self.label_names, dtype=object), dtype=_STR)
        f.flush()
        self.f = f
        return 0

    @staticmethod
    def _row_datasets() -> tuple[str, ...]:
        return ("features", "labels", "face_found", "subjects", "split", "paths", "raw_labels")

    def append(self, features: np.ndarray, labels: Iterable[int], subjects: Iterable[str],
               split: Iterable[str], paths: Iterable[str], raw_labels: Iterable[str],
               face_found: Iterable[int], n_processed: int,
               skipped: Iterable[tuple[str, str]] = ()) -> None:
        """Write one chunk of rows; ``n_processed`` is the total number of source records handled so far."""
        f = self.f
        assert f is not None, "call open() first"
        cols = {
            "features": np.asarray(features, dtype=np.float32).reshape(-1, self.dim),
            "labels": np.asarray(list(labels), dtype=np.int32),
            "face_found": np.asarray(list(face_found), dtype=np.int8),
            "subjects": np.array(list(subjects), dtype=object),
            "split": np.array(list(split), dtype=object),
            "paths": np.array(list(paths), dtype=object),
            "raw_labels": np.array(list(raw_labels), dtype=object),
        }
        n_new = len(cols["features"])
        if any(len(v) != n_new for v in cols.values()):
            raise ValueError("columns of one chunk differ in length")
        n0 = int(f.attrs["n_rows"])
        if n_new:
            for name, data in cols.items():
                f[name].resize((n0 + n_new, *f[name].shape[1:]))
                f[name][n0:] = data
        skipped = list(skipped)
        if skipped:
            sp = json.loads(f.attrs["skipped_paths"]) + [p for p, _ in skipped]
            sr = json.loads(f.attrs["skipped_reasons"]) + [r for _, r in skipped]
            f.attrs["skipped_paths"] = json.dumps(sp)
            f.attrs["skipped_reasons"] = json.dumps(sr)
            f.attrs["n_skipped"] = len(sp)
        f.attrs["n_no_face"] = int(f.attrs["n_no_face"]) + int(np.sum(cols["face_found"] == 0))
        f.flush()  # data first, then the counters that make it count
        f.attrs["n_rows"] = n0 + n_new
        f.attrs["n_processed"] = int(n_processed)
        f.flush()

    def finish(self, extra_attrs: dict[str, Any] | None = None) -> Path:
        """Mark complete, close and atomically rename to the final name."""
        f = self.f
        assert f is not None
        for k, v in (extra_attrs or {}).items():
            f.attrs[k] = v
        f.attrs["complete"] = True
        f.flush()
        f.close()
        self.f = None
        os.replace(self.part_path, self.final_path)
        return self.final_path

    def close(self) -> None:
        """Close without finishing (the part file stays for a later resume)."""
        if self.f is not None:
            self.f.close()
            self.f = None

    def discard(self) -> None:
        """Close and delete the part file (nothing half-written stays behind)."""
        self.close()
        self.part_path.unlink(missing_ok=True)
