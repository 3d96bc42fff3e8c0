"""Features belong to images, not to a dataset's description.

A feature row is identified by its image's content (``Dataset.content_ids``) and the feature spec
(``features_key``: every setting of ``ExtractionSpec.settings()``); labels, subjects, splits, paths and the
dataset's format are its description, applied on top. ``ReuseIndex`` finds, in the complete caches of some
folders, the rows already computed for an image content under the same feature spec, so an extraction runs the
network only for the rest (a new subject pattern, a manifest of the same images, renamed or moved files: no
network run), and pixel-identical images inside one dataset are embedded once."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Iterable, Sequence

import h5py
import numpy as np

from fer_features.features.cache import _strs, is_complete

DESCRIPTION_KEYS = ("dataset_format", "dataset_options")  # settings of the description, not of the features


def features_key(settings: dict) -> str:
    """The feature spec's identity: the hash of the settings that change the features (a cache's settings less
    its dataset description)."""
    spec = {k: v for k, v in settings.items() if k not in DESCRIPTION_KEYS}
    return hashlib.sha256(json.dumps(spec, sort_keys=True, default=str).encode()).hexdigest()[:24]


class ReuseIndex:
    """Content id -> (cache file, row) over the complete caches of ``folders`` made with one feature spec."""

    def __init__(self, where: dict[str, tuple[Path, int]], files: list[Path]):
        self.where, self.files = where, files
        self._open: dict[Path, h5py.File] = {}

    @classmethod
    def scan(cls, folders: Iterable[str | Path], settings: dict, exclude: str | Path | None = None) -> ReuseIndex:
        key, where, files = features_key(settings), {}, []
        seen: set[Path] = set()
        for folder in folders:
            folder = Path(folder)
            if not folder.is_dir():
                continue
            for f in sorted(folder.glob("*.h5")):
                real = f.resolve()
                if real in seen or (exclude is not None and real == Path(exclude).resolve()) or not is_complete(f):
                    continue
                seen.add(real)
                try:
                    with h5py.File(f, "r") as h:
                        if "content" not in h or features_key(json.loads(h.attrs.get("settings_json", "{}"))) != key:
                            continue
                        content = _strs(h["content"])
                except OSError:  # unreadable: not a source
                    continue
                files.append(f)
                for row, c in enumerate(content):
                    if not (c.startswith("bad:") or c == "missing"):
                        where.setdefault(str(c), (f, row))
        return cls(where, files)

    def __contains__(self, content: str) -> bool:
        return content in self.where

    def __len__(self) -> int:
        return len(self.where)

    @property
    def dim(self) -> int:
        """The features' width (every source has the same: the same feature settings)."""
        with h5py.File(self.files[0], "r") as h:
            return int(h["features"].shape[1])

    def rows(self, contents: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """(features, face_found) of ``contents`` (every one in the index), in their order."""
        feats, found = [None] * len(contents), np.zeros(len(contents), dtype=np.int8)
        by_file: dict[Path, list[tuple[int, int]]] = {}
        for i, c in enumerate(contents):
            f, row = self.where[c]
            by_file.setdefault(f, []).append((row, i))
        for f, pairs in by_file.items():
            h = self._open.get(f) or self._open.setdefault(f, h5py.File(f, "r"))
            rows = sorted({r for r, _ in pairs})
            block, ff = h["features"][rows], h["face_found"][rows]  # h5py: increasing indices
            at = {r: k for k, r in enumerate(rows)}
            for r, i in pairs:
                feats[i], found[i] = block[at[r]], ff[at[r]]
        return np.stack(feats).astype(np.float32, copy=False), found

    def close(self) -> None:
        for h in self._open.values():
            h.close()
        self._open.clear()
