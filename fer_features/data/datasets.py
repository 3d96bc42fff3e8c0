"""A listed dataset (``Dataset``: records of path, label, subject, split; images decoded on demand), its content
fingerprint, and the canonical expression labels. Layouts and their loaders are in ``formats``; see
:data:`FORMATS`:

* ``folder``  -- one sub-folder per class, images anywhere below it.
* ``jaffe``   -- flat JAFFE folder, names like ``KA.AN1.39.tiff``.
* ``ckplus``  -- CK+ class folders, names like ``S010_004_00000017.png``.
* ``kdef``    -- KDEF files ``AF01ANS.JPG`` anywhere below the root.
* ``fer2013`` -- FER2013 CSV (plain or gzip) with ``emotion,pixels[,Usage]``.
* ``manifest`` -- CSV ``path,label[,subject][,split][,...]`` listing image files (``manifest.py``).

``subject_pattern`` (``subjects.py``) takes subject ids from file names or relative paths, for any layout.

Listing a dataset reads names and file stats only; images are decoded on
demand (:meth:`Dataset.load_image`, iteration) and a bad file raises
:class:`ImageReadError` naming it.  FER2013 pixels live in the CSV: they are
parsed once, vectorised, into one uint8 array on first use.  Labels are
mapped onto :data:`CANONICAL_LABELS`.
"""
from __future__ import annotations

import hashlib
import json
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Iterator, Sequence

import numpy as np

from fer_features.data.images import _err, _one_line, content_hash, read_image
from fer_features.errors import ImageReadError

if TYPE_CHECKING:  # the lazy FER2013 table lives in fer2013.py, which imports this module
    from fer_features.data.fer2013 import _LazyCSV


CANONICAL_LABELS: tuple[str, ...] = (
    "angry", "contempt", "disgust", "fear", "happy", "neutral", "sad", "surprise",
)
FORMATS: tuple[str, ...] = ("auto", "folder", "jaffe", "ckplus", "kdef", "fer2013", "manifest")
#: FER2013 emotion codes 0..6, in code order.
FER2013_LABELS: tuple[str, ...] = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
FER2013_CODES = FER2013_LABELS  # alias


# --------------------------------------------------------------------- labels

_ALIASES: dict[str, str] = {}
for _canon, _names in {
    "angry": ("angry", "anger", "an"),
    "contempt": ("contempt", "contemptuous", "co"),
    "disgust": ("disgust", "disgusted", "di"),
    "fear": ("fear", "afraid", "scared", "fearful", "fe", "af"),
    "happy": ("happy", "happiness", "joy", "ha"),
    "neutral": ("neutral", "ne"),
    "sad": ("sad", "sadness", "sa"),
    "surprise": ("surprise", "surprised", "su"),
}.items():
    for _n in _names:
        _ALIASES[_n] = _canon


def canonical_label(name: str) -> str:
    """Map a dataset's expression name or code to the canonical vocabulary.

    Case-insensitive (``"AN"``, ``"anger"``, ``"Angry"`` -> ``"angry"``).
    Unknown names are returned lower-cased, otherwise unchanged.
    """
    return _ALIASES.get(name.strip().lower(), name.lower())


# -------------------------------------------------------------------- records

@dataclass(frozen=True)
class Record:
    """One labelled example, as listed (nothing decoded)."""

    path: str  # source path; for CSV rows f"{csv_path}#row={i}" (0-based data row)
    label: str  # canonical label
    raw_label: str  # the dataset's own name ("anger", "AN", "0", ...)
    subject: str = ""  # "" when unknown
    split: str = ""  # "" when the dataset has none
    extra: tuple = ()  # optional (key, value) pairs

    def get(self, key: str, default: str = "") -> str:
        """Value of ``key`` in :attr:`extra` (``default`` if absent)."""
        for k, v in self.extra:
            if k == key:
                return v
        return default


@dataclass
class Sample:
    """What iterating a :class:`Dataset` yields."""

    image: np.ndarray  # uint8, HxW (grey) or HxWx3 (RGB)
    record: Record


# --------------------------------------------------------------- image reader

# -------------------------------------------------------------------- dataset

class Dataset:
    """A listed dataset: records plus on-demand image access.

    Attributes: ``format`` (one of :data:`FORMATS` except ``auto``), ``root``
    (the folder, or the CSV file), ``records``, ``options`` (loader options
    that change the content, e.g. ``{"frontal_only": True}``), ``ignored``
    (image files, or CSV rows, that the layout could not use) and ``notes``
    (what the loader guessed, e.g. where subject ids came from; extract logs them).
    A manifest's root is its CSV file; its relative paths are relative to the CSV's folder.

    FER2013 is parsed on first use of ``records``/``len``/images, so a
    ``fingerprint()`` (e.g. for a cache hit) reads the file's bytes but parses nothing.
    """

    def __init__(
        self,
        format: str,
        root: str | os.PathLike,
        records: Sequence[Record] | None,
        *,
        options: dict | None = None,
        ignored: Sequence[str] = (),
        notes: Sequence[str] = (),
        _csv: "_LazyCSV | None" = None,
        _sel: np.ndarray | None = None,
    ) -> None:
        self.format = format
        self.root = Path(root)
        self.options = dict(options or {})
        self._records = list(records) if records is not None else None
        self._ignored = tuple(ignored)
        self.notes = list(notes)
        self._csv = _csv  # FER2013: parsed CSV, shared by subsets
        self._content: list[str] | None = None  # content_ids(), computed once
        self._sel = _sel  # FER2013 subsets: positions into the full record list
        self._fingerprint: str | None = None  # computed once: listing is fixed, hashing is not free

    # -- listing ------------------------------------------------------------------------------
    @property
    def records(self) -> list[Record]:
        """The records, in dataset order."""
        if self._records is None:
            recs = self._csv.get().records  # type: ignore[union-attr]
            self._records = list(recs) if self._sel is None else [recs[k] for k in self._sel]
        return self._records

    @property
    def ignored(self) -> tuple[str, ...]:
        """Image files (relative paths) or CSV rows (``row=i: reason``) left out."""
        if self._csv is not None:
            return tuple(self._csv.get().ignored)
        return self._ignored

    def __len__(self) -> int:
        return len(self.records)

    def __repr__(self) -> str:
        return (f"Dataset(format={self.format!r}, root={str(self.root)!r}, "
                f"n={len(self)}, labels={self.label_names})")

    @property
    def label_names(self) -> list[str]:
        """Sorted distinct canonical labels present."""
        return sorted({r.label for r in self.records})

    def require_classes(self, minimum: int = 2) -> None:
        """Raise :class:`DatasetError` unless at least ``minimum`` classes are present (one tells nothing apart)."""
        names = self.label_names
        if len(names) < minimum:
            raise _err(self.root, f"{len(names)} class{'' if len(names) == 1 else 'es'} ({', '.join(names) or '-'}); "
                                  f"expression recognition needs at least {minimum}")

    @property
    def subjects(self) -> list[str]:
        """Sorted distinct non-empty subject ids."""
        return sorted({r.subject for r in self.records if r.subject})

    # -- images -------------------------------------------------------------------------------
    def load_image(self, i: int) -> np.ndarray:
        """Decoded image of record ``i``: uint8 HxW (grey) or HxWx3 (RGB).

        For FER2013 this is a read-only view into the in-memory pixel array.
        Raises :class:`ImageReadError` for an undecodable file or CSV row.
        """
        if self._csv is None:
            return read_image(self.records[i].path)
        data = self._csv.get()
        pos = range(len(self))[i]  # normalises negative indices, raises IndexError
        if self._sel is not None:
            pos = int(self._sel[pos])
        row = int(data.rows[pos])
        problem = data.bad.get(row)
        if problem is not None:
            raise ImageReadError(_one_line(f"{self.root}#row={row}: {problem}"))
        return data.pixels[row]

    def __iter__(self) -> Iterator[Sample]:
        """Yield every :class:`Sample`; a bad image raises :class:`ImageReadError`."""
        for i, rec in enumerate(self.records):
            yield Sample(self.load_image(i), rec)

    def subset(self, indices: Iterable[int] | np.ndarray) -> "Dataset":
        """Same format/root with the selected records (int indices or a boolean mask)."""
        idx = np.asarray(indices if isinstance(indices, np.ndarray) else list(indices))
        if idx.dtype == bool:
            if idx.shape != (len(self),):
                raise ValueError(f"boolean mask of shape {idx.shape} for {len(self)} records")
            idx = np.flatnonzero(idx)
        idx = idx.astype(np.int64).reshape(-1)
        n = len(self)
        if idx.size and (idx.min() < -n or idx.max() >= n):
            raise IndexError(f"subset index out of range for {n} records")
        idx = np.where(idx < 0, idx + n, idx)
        records = [self.records[int(k)] for k in idx]
        sel = None
        if self._csv is not None:
            sel = idx if self._sel is None else self._sel[idx]
        return Dataset(self.format, self.root, records, options=self.options,
                       ignored=self._ignored, notes=self.notes, _csv=self._csv, _sel=sel)

    # -- identity -----------------------------------------------------------------------------
    @property
    def base(self) -> Path:
        """The folder relative paths start from: ``root``, or a manifest's folder."""
        return self.root.parent if self.format == "manifest" else self.root

    def rel_path(self, i: int) -> str:
        """Record ``i``'s path relative to :attr:`base` (posix): what a cache stores, so a moved or copied
        dataset still matches it. CSV rows are ``#row=N`` (row N of the file that is the root); a
        manifest row outside the manifest's folder keeps its absolute path."""
        return _rel_path(self.records[i].path, self.base)

    def rel_paths(self) -> list[str]:
        base = self.base
        return [_rel_path(r.path, base) for r in self.records]

    def fingerprint(self) -> str:
        """SHA-256 hex of the content identity: the bytes of every file read, never names of folders above
        the root nor modification times, so a copied, moved or re-synced dataset keeps its fingerprint.

        Covers the format, the options and, for every record, its path relative to ``root``, a BLAKE2b
        hash of the file's bytes and its label; for a CSV, the hash of the file plus the selected rows
        (if a subset). Files are hashed, not decoded (JAFFE 0.03 s, CK+48 0.04 s, FER2013 0.14 s here:
        bench/results/fingerprint_cost.md); a missing file counts as ``missing`` rather than raising.
        A manifest adds each row's raw label, subject and split (its own content; the CSV's bytes and
        metadata columns are not hashed).
        """
        if self._fingerprint is None:
            self._fingerprint = self._content_fingerprint()
        return self._fingerprint

    def content_ids(self) -> list[str]:
        """Each record's content identity: the BLAKE2b digest of its file's bytes (``missing`` if unreadable), or
        of a CSV row's decoded pixels (``px:`` prefix; a bad row: ``bad:<row>``). Two records with the same id are
        the same image, whatever their paths, labels or subjects: their features are computed once."""
        if self._content is None:
            if self._csv is not None:
                data = self._csv.get()
                rows = [int(data.rows[int(k)]) for k in (self._sel if self._sel is not None else range(len(self)))]
                self._content = [f"bad:{r}" if r in data.bad else
                                 "px:" + hashlib.blake2b(np.ascontiguousarray(data.pixels[r]).tobytes()).hexdigest()
                                 for r in rows]
            else:
                with ThreadPoolExecutor(max_workers=4) as pool:  # hashlib releases the GIL on large reads
                    self._content = list(pool.map(content_hash, [r.path for r in self.records]))
        return self._content

    def _content_fingerprint(self) -> str:
        h = hashlib.sha256()
        h.update(json.dumps({"format": self.format, "options": self.options},
                            sort_keys=True).encode())
        if self._csv is not None:
            h.update(f"\n{content_hash(self.root)}\n".encode())
            if self._sel is None:
                h.update(b"all")
            else:
                h.update(np.ascontiguousarray(self._sel, dtype="<i8").tobytes())
            return h.hexdigest()
        paths = [r.path for r in self.records]
        digests = self.content_ids()
        base, manifest = self.base, self.format == "manifest"
        lines = sorted(f"{_rel_path(p, base)}\t{d}\t{r.label}"
                       + (f"\t{r.raw_label}\t{r.subject}\t{r.split}" if manifest else "")
                       for p, d, r in zip(paths, digests, self.records))
        h.update(("\n" + "\n".join(lines)).encode())
        return h.hexdigest()


def _rel_path(path: str, root: Path) -> str:
    if "#row=" in path:  # a CSV row: the root is the file itself
        return "#row=" + path.rsplit("#row=", 1)[1]
    try:
        return Path(path).relative_to(root).as_posix()
    except ValueError:
        return Path(path).as_posix()


def dataset_stem(root: str | os.PathLike) -> str:
    """The dataset's short name: its folder's name, or its CSV's without ``.csv``/``.csv.gz`` ('' for none)."""
    return Path(root).name.replace(".csv.gz", "").replace(".csv", "")


# ------------------------------------------------------------------- patterns

JAFFE_CODES = ("AN", "DI", "FE", "HA", "NE", "SA", "SU")
KDEF_CODES = ("AF", "AN", "DI", "HA", "NE", "SA", "SU")
KDEF_ANGLES = ("FL", "HL", "S", "HR", "FR")

# -------------------------------------------------------------------- loaders

# -------------------------------------------------------------------- FER2013

# ----------------------------------------------------------------------- entry

