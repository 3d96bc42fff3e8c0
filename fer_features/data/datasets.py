"""Facial-expression dataset loading: layouts, labels, robust image decoding.

Supported layouts (see :data:`FORMATS`):

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

import gzip
import hashlib
import io
import json
import math
import os
import re
import threading
import zlib
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np
from fer_features.errors import DatasetError, ImageReadError

__all__ = [
    "CANONICAL_LABELS",
    "FORMATS",
    "IMAGE_EXTENSIONS",
    "FER2013_LABELS",
    "DatasetError",
    "ImageReadError",
    "Record",
    "Sample",
    "Dataset",
    "canonical_label",
    "read_image",
    "detect_format",
    "load_dataset",
]

CANONICAL_LABELS: tuple[str, ...] = (
    "angry", "contempt", "disgust", "fear", "happy", "neutral", "sad", "surprise",
)
FORMATS: tuple[str, ...] = ("auto", "folder", "jaffe", "ckplus", "kdef", "fer2013", "manifest")
IMAGE_EXTENSIONS: frozenset[str] = frozenset({
    ".png", ".jpg", ".jpeg", ".jpe", ".jfif", ".tif", ".tiff", ".bmp", ".dib",
    ".gif", ".webp", ".ppm", ".pgm", ".pbm", ".pnm", ".tga", ".jp2",
})
#: FER2013 emotion codes 0..6, in code order.
FER2013_LABELS: tuple[str, ...] = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
FER2013_CODES = FER2013_LABELS  # alias


def _one_line(text: object) -> str:
    return " ".join(str(text).split())


def _err(path: object, problem: str) -> DatasetError:
    return DatasetError(_one_line(f"{path}: {problem}"))


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

_ALPHA_MODES = {"LA", "La", "PA", "RGBA", "RGBa"}
_HIGH_DEPTH_PREFIXES = ("I", "F")  # I, I;16, I;16B, I;16L, I;16N, I;32..., F, F;32...


def _scale_to_uint8(arr: np.ndarray) -> np.ndarray:
    """Stretch a high bit-depth image to 0..255 by its own min/max.

    A constant image has no range to stretch: it is clipped to 0..255 instead.
    Non-finite values (float images) count as 0.
    """
    a = np.asarray(arr, dtype=np.float64)
    if not np.all(np.isfinite(a)):
        a = np.nan_to_num(a, nan=0.0, posinf=0.0, neginf=0.0)
    lo, hi = float(a.min()), float(a.max())
    if hi > lo:
        a = (a - lo) * (255.0 / (hi - lo))
        return np.rint(a).astype(np.uint8)
    return np.clip(np.rint(a), 0, 255).astype(np.uint8)


def _composite_on_white(img) -> np.ndarray:
    """Drop alpha by compositing over a white background."""
    if img.mode in ("LA", "La"):
        la = np.asarray(img.convert("LA"), dtype=np.float32)
        colour, alpha = la[..., 0], la[..., 1] / 255.0
    else:
        rgba = np.asarray(img.convert("RGBA"), dtype=np.float32)
        colour, alpha = rgba[..., :3], rgba[..., 3:4] / 255.0
    out = colour * alpha + 255.0 * (1.0 - alpha)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def _grey_if_equal(rgb: np.ndarray) -> np.ndarray:
    if (np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 0], rgb[..., 2])):
        return np.ascontiguousarray(rgb[..., 0])
    return rgb


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Decode one image file to a uint8 array, HxW (grey) or HxWx3 (RGB).

    Mode handling: ``1``/``L`` -> grey; ``P`` -> grey when every used colour is
    grey, else RGB; ``I;16``/``I``/``F`` -> grey stretched to 0..255 by the
    image's own min/max (constant images clipped); modes with alpha
    (``LA``/``PA``/``RGBA``, palette transparency) are composited over a white
    background (``LA`` stays grey); ``CMYK``/``YCbCr``/``LAB``/``HSV`` -> RGB.
    Multi-frame files give their first frame.  No EXIF rotation is applied.

    Raises :class:`ImageReadError` (``"{path}: {reason}"``) for missing,
    truncated, corrupt or non-image files.
    """
    from PIL import Image  # local: keeps ``import fer_features.datasets`` light

    try:
        with Image.open(path) as img:
            img.load()  # forces full decode: truncation is detected here
            mode = img.mode
            if mode == "P":
                if "transparency" in img.info:
                    arr = _grey_if_equal(_composite_on_white(img))
                else:
                    arr = _grey_if_equal(np.asarray(img.convert("RGB")))
            elif mode == "L":
                arr = np.asarray(img)
            elif mode == "1":
                arr = np.asarray(img.convert("L"))
            elif mode in _ALPHA_MODES:
                arr = _composite_on_white(img)
            elif mode.startswith(_HIGH_DEPTH_PREFIXES):
                arr = _scale_to_uint8(np.asarray(img))
            elif mode == "RGB":
                arr = np.asarray(img)
            else:  # CMYK, YCbCr, LAB, HSV, RGBX, ...
                arr = np.asarray(img.convert("RGB"))
            arr = np.array(arr, dtype=np.uint8, copy=True, order="C")
    except ImageReadError:
        raise
    except (OSError, ValueError, SyntaxError, EOFError, TypeError,
            Image.DecompressionBombError) as exc:
        reason = _one_line(exc) or type(exc).__name__
        raise ImageReadError(_one_line(f"{path}: {reason}")) from exc
    if arr.ndim == 2 or (arr.ndim == 3 and arr.shape[2] == 3):
        return arr
    raise ImageReadError(_one_line(f"{path}: unexpected decoded shape {arr.shape}"))


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
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=4) as pool:  # hashlib releases the GIL on large reads
            digests = list(pool.map(content_hash, paths))
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


def content_hash(path: str | os.PathLike) -> str:
    """BLAKE2b hex digest of a file's bytes (``missing`` when it cannot be read)."""
    h = hashlib.blake2b()
    try:
        with open(path, "rb") as fh:
            while block := fh.read(1 << 20):
                h.update(block)
    except OSError:
        return "missing"
    return h.hexdigest()


# ------------------------------------------------------------------- patterns

JAFFE_CODES = ("AN", "DI", "FE", "HA", "NE", "SA", "SU")
KDEF_CODES = ("AF", "AN", "DI", "HA", "NE", "SA", "SU")
KDEF_ANGLES = ("FL", "HL", "S", "HR", "FR")

_JAFFE_RE = re.compile(r"^([A-Za-z]{2})\.([A-Za-z]{2})(\d+)\.(\d+)\.[A-Za-z0-9]+$")
_CK_RE = re.compile(r"^(S\d+)_(\d+)_(\d+)\.[A-Za-z0-9]+$", re.IGNORECASE)
_KDEF_RE = re.compile(
    r"^([AB])([FM])(\d{2})(AF|AN|DI|HA|NE|SA|SU)(FL|HL|HR|FR|S)\.[A-Za-z0-9]+$", re.IGNORECASE)


def _jaffe_match(name: str) -> re.Match | None:
    m = _JAFFE_RE.match(name)
    return m if m and m.group(2).upper() in JAFFE_CODES else None


def _is_image_name(name: str) -> bool:
    return os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def _scan(root: Path) -> tuple[list[str], bool, list[str]]:
    """List ``root`` without opening any file.

    Returns the image files below it (relative posix paths, sorted; hidden
    files/folders skipped), whether it has any visible entry, and its visible
    top-level sub-folders.
    """
    images: list[str] = []
    has_entries = False
    top_dirs: list[str] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        rel_dir = os.path.relpath(dirpath, root)
        if rel_dir == ".":
            top_dirs = list(dirnames)
            has_entries = bool(dirnames) or any(not f.startswith(".") for f in filenames)
            rel_dir = ""
        for f in filenames:
            if not f.startswith(".") and _is_image_name(f):
                images.append(f"{Path(rel_dir).as_posix()}/{f}" if rel_dir else f)
    images.sort()
    return images, has_entries, top_dirs


def _basename(rel: str) -> str:
    return rel.rsplit("/", 1)[-1]


def _check_path(path: str | os.PathLike) -> Path:
    p = Path(path).expanduser()
    if not p.exists():
        raise _err(path, "does not exist")
    return Path(os.path.abspath(p))


def _is_csv_name(p: Path) -> bool:
    return p.name.lower().endswith((".csv", ".csv.gz"))


def _detect_dir(shown: object, images: list[str], has_entries: bool, top_dirs: list[str]) -> str:
    if not has_entries:
        raise _err(shown, "empty folder")
    if not images:
        if top_dirs:
            raise _err(shown, "unknown layout: class folders contain no images")
        raise _err(shown, "unknown layout: no image files and no class sub-folders")
    names = [_basename(r) for r in images]
    if sum(bool(_KDEF_RE.match(n)) for n in names) * 2 > len(names):
        return "kdef"
    top = [r for r in images if "/" not in r]
    if top and sum(bool(_jaffe_match(n)) for n in top) * 2 > len(top):
        return "jaffe"
    classed = [r for r in images if "/" in r]
    if classed:
        ck = sum(bool(_CK_RE.match(_basename(r))) for r in classed)
        return "ckplus" if ck * 2 > len(classed) else "folder"
    raise _err(shown, "unknown layout: images but no class sub-folders and no "
                      "recognised file names (JAFFE, KDEF)")


def detect_format(path: str | os.PathLike) -> str:
    """Recognise the layout of ``path``: one of :data:`FORMATS` except ``auto``.

    A ``.csv``/``.csv.gz`` file is a ``manifest`` if it has a ``path`` column, else
    ``fer2013``; a folder is ``kdef`` if most of
    its images (recursively) have KDEF names, else ``jaffe`` if most top-level
    images have JAFFE names, else ``ckplus`` if most images in class folders
    have CK+ names, else ``folder`` if class folders hold images.
    Raises :class:`DatasetError` (missing path, empty folder, unknown layout).
    """
    root = _check_path(path)
    if root.is_file():
        if _is_csv_name(root):
            return _csv_kind(root, path)
        raise _err(path, "unknown layout: a file that is not .csv or .csv.gz")
    images, has_entries, top_dirs = _scan(root)
    return _detect_dir(path, images, has_entries, top_dirs)


def _csv_kind(path: Path, shown: object) -> str:
    """``manifest`` when the CSV's header has a ``path`` column, else ``fer2013``."""
    return "manifest" if "path" in {c.lower() for c in _csv_header(path, shown)} else "fer2013"


# -------------------------------------------------------------------- loaders

def _subject_guess(name: str) -> tuple[str, str]:
    """(subject id, naming style) guessed from a file name; ``("", "")`` for no known style."""
    if m := _CK_RE.match(name):
        return m.group(1).upper(), "CK+"
    if m := _KDEF_RE.match(name):
        return (m.group(2) + m.group(3)).upper(), "KDEF"
    if m := _jaffe_match(name):
        return m.group(1).upper(), "JAFFE"
    return "", ""


def _guess_note(rels: list[str], styles: list[str], n_subjects: int) -> str:
    """What the folder layout's subject guess found, for :attr:`Dataset.notes`."""
    n, n_guessed = len(rels), sum(bool(s) for s in styles)
    how = "/".join(sorted({s for s in styles if s}))
    if n_guessed == 0:
        return ("no subject ids: file names are not JAFFE/CK+/KDEF-style (give --subject-pattern, "
                "or a manifest with a subject column)")
    if n_guessed == n:
        return f"subjects guessed from {how}-style file names for all {n} images ({n_subjects} subjects)"
    without = [r for r, s in zip(rels, styles) if not s]
    return (f"subjects guessed from {how}-style file names for {n_guessed} of {n} images; {len(without)} "
            f"without (e.g. {without[0]}): no subject ids used (give --subject-pattern)")


def _class_images(shown: object, images: list[str], top_dirs: list[str]) -> list[str]:
    classed = [r for r in images if "/" in r]
    if not top_dirs:
        raise _err(shown, "no class sub-folders (expected one folder per class)")
    if not classed:
        raise _err(shown, "class folders contain no images")
    return classed


def _load_folder(root: Path, shown: object, images: list[str], top_dirs: list[str],
                 guess: bool = True) -> Dataset:
    """Folder per class; subjects guessed from JAFFE/CK+/KDEF-style names (all images or none), said in
    ``notes``.  ``guess=False`` leaves them empty (a subject pattern will set them)."""
    rels = _class_images(shown, images, top_dirs)
    guesses = [_subject_guess(_basename(rel)) if guess else ("", "") for rel in rels]
    ids = [g[0] for g in guesses]
    notes = []
    if guess:
        notes.append(_guess_note(rels, [g[1] for g in guesses], len(set(ids) - {""})))
        if not all(ids):  # partial: evaluation could not use them anyway; say so rather than keep half
            ids = [""] * len(rels)
    records = []
    for rel, subj in zip(rels, ids):
        cls = rel.split("/", 1)[0]
        records.append(Record(str(root / rel), canonical_label(cls), cls, subj))
    ignored = [r for r in images if "/" not in r]
    return Dataset("folder", root, records, ignored=ignored, notes=notes)


def _load_ckplus(root: Path, shown: object, images: list[str], top_dirs: list[str]) -> Dataset:
    records, ignored = [], [r for r in images if "/" not in r]
    for rel in _class_images(shown, images, top_dirs):
        cls = rel.split("/", 1)[0]
        m = _CK_RE.match(_basename(rel))
        if not m:
            ignored.append(rel)
            continue
        subj = m.group(1).upper()
        extra = (("sequence", f"{subj}_{m.group(2)}"), ("frame", str(int(m.group(3)))))
        records.append(Record(str(root / rel), canonical_label(cls), cls, subj, "", extra))
    if not records:
        raise _err(shown, "no CK+ names in the class folders (expected files like "
                          "S010_004_00000017.png)")
    return Dataset("ckplus", root, records, ignored=sorted(ignored))


def _load_jaffe(root: Path, shown: object, images: list[str]) -> Dataset:
    records, ignored = [], []
    for rel in images:
        m = _jaffe_match(_basename(rel))
        if not m:
            ignored.append(rel)
            continue
        code = m.group(2).upper()
        extra = (("pose", m.group(3)), ("serial", m.group(4)))
        records.append(Record(str(root / rel), canonical_label(code), code,
                              m.group(1).upper(), "", extra))
    if not records:
        raise _err(shown, "no JAFFE file names (expected names like KA.AN1.39.tiff)")
    return Dataset("jaffe", root, records, ignored=ignored)


def _load_kdef(root: Path, shown: object, images: list[str], frontal_only: bool) -> Dataset:
    records, ignored, n_matched = [], [], 0
    for rel in images:
        m = _KDEF_RE.match(_basename(rel))
        if not m:
            ignored.append(rel)
            continue
        n_matched += 1
        session, gender, person, code, angle = (g.upper() for g in m.groups())
        if frontal_only and angle != "S":
            continue
        extra = (("session", session), ("angle", angle))
        records.append(Record(str(root / rel), canonical_label(code), code,
                              gender + person, "", extra))
    if not n_matched:
        raise _err(shown, "no KDEF file names (expected names like AF01ANS.JPG)")
    if not records:
        raise _err(shown, "no frontal (angle S) KDEF images")
    options = {"frontal_only": True} if frontal_only else {}
    return Dataset("kdef", root, records, options=options, ignored=ignored)


# -------------------------------------------------------------------- FER2013

def _gunzip(data: bytes, shown: object) -> bytes:
    """Decompress every gzip member of ``data`` (one C call per member)."""
    parts = []
    while data:
        d = zlib.decompressobj(wbits=31)
        try:
            parts.append(d.decompress(data))
            parts.append(d.flush())
        except zlib.error as exc:
            raise _err(shown, f"cannot read CSV: bad gzip data ({exc})") from None
        if not d.eof:
            raise _err(shown, "cannot read CSV: truncated gzip file")
        data = d.unused_data
        if not data.strip(b"\0"):
            break
    parts = [p for p in parts if p]
    return parts[0] if len(parts) == 1 else b"".join(parts)


def _read_bytes(path: Path, shown: object) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise _err(shown, f"cannot read CSV: {exc}") from None


def _text_bytes(data: bytes, shown: object) -> bytes:
    """A file's bytes, gunzipped if they are gzip data."""
    return _gunzip(data, shown) if data[:2] == b"\x1f\x8b" else data


def _read_text_bytes(path: Path, shown: object) -> bytes:
    return _text_bytes(_read_bytes(path, shown), shown)


def _csv_header(path: Path, shown: object) -> list[str]:
    """The header names (stripped), read cheaply from the first line."""
    try:
        with open(path, "rb") as fh:
            magic = fh.read(2)
        opener = gzip.open if magic == b"\x1f\x8b" else open
        with opener(path, "rb") as fh:
            line = fh.readline(1 << 16)
    except (OSError, EOFError, zlib.error) as exc:
        raise _err(shown, f"cannot read CSV: {exc}") from None
    text = line.decode("utf-8", errors="replace").lstrip("\ufeff").strip()
    return [c.strip().strip('"').strip() for c in text.split(",")]


def _need_columns(shown: object, names: Sequence[str]) -> dict[str, str]:
    cols = {str(c).strip().lower(): c for c in names}
    missing = [c for c in ("emotion", "pixels") if c not in cols]
    if missing:
        raise _err(shown, f"CSV lacks column(s) {', '.join(missing)} "
                          f"(expected emotion,pixels[,Usage] for FER2013, or a manifest with path,label; "
                          f"found {','.join(map(str, names))})")
    return cols


def _parse_pixels(px: list[str]) -> tuple[np.ndarray, dict[int, str]]:
    """Parse stripped pixel strings into an (N, side, side) uint8 array and bad rows.

    Fast path: when every row is non-empty, single-space separated, free of
    signs, and has the same square count, all rows are parsed in one
    ``np.fromstring`` call.  Otherwise each row is parsed on its own and rows
    that are non-numeric, out of 0..255, non-square or of a size other than
    the most common square size are reported in ``bad`` (row -> reason).
    """
    n = len(px)
    if n and all(px):
        joined = " ".join(px)
        # Only single spaces may separate tokens here, so a row's token count is
        # at most its space count + 1: equal counts plus the right total size
        # mean every row has exactly c0 values (double spaces are caught too).
        if not any(t in joined for t in ("\t", "\n", "\r", "\v", "\f", "-")):
            counts = np.fromiter((s.count(" ") for s in px), dtype=np.int64, count=n) + 1
            c0 = int(counts[0])
            side = math.isqrt(c0)
            if side * side == c0 and bool(np.all(counts == c0)):
                try:
                    # int16 then range check: out-of-range values are caught (a
                    # 5+ digit value that wraps into 0..255 is the one blind spot).
                    flat = np.fromstring(joined, dtype=np.int16, sep=" ")
                except ValueError:
                    flat = None
                del joined
                if (flat is not None and flat.size == n * c0
                        and int(flat.min()) >= 0 and int(flat.max()) <= 255):
                    return flat.astype(np.uint8).reshape(n, side, side), {}
    # Slow path: row by row, only for malformed files.
    bad: dict[int, str] = {}
    values: dict[int, np.ndarray] = {}
    for i, s in enumerate(px):
        if not s:
            bad[i] = "empty pixels field"
            continue
        try:
            v = np.fromstring(s, dtype=np.int64, sep=" ")
        except ValueError:
            bad[i] = "non-numeric pixel value"
            continue
        if v.min() < 0 or v.max() > 255:
            bad[i] = "pixel values outside 0..255"
            continue
        values[i] = v.astype(np.uint8)
    sizes = Counter(v.size for v in values.values())
    squares = [(cnt, size) for size, cnt in sizes.items() if math.isqrt(size) ** 2 == size]
    c0 = max(squares)[1] if squares else 0
    side = math.isqrt(c0)
    pixels = np.zeros((n, side, side), np.uint8)
    for i, v in values.items():
        if v.size == c0:
            pixels[i] = v.reshape(side, side)
        elif math.isqrt(v.size) ** 2 != v.size:
            bad[i] = f"{v.size} pixel values is not a square image"
        else:
            bad[i] = f"{v.size} pixel values, expected {c0} ({side}x{side}) like the other rows"
    return pixels, bad


@dataclass
class _CSVData:
    records: list[Record]  # rows with a valid emotion code, in file order
    rows: np.ndarray  # file row (0-based) of each record
    pixels: np.ndarray  # (N_rows, side, side) uint8, read-only
    bad: dict[int, str]  # file row -> why its pixels are unusable
    ignored: list[str]  # "row=i: reason" for rows left out of the records


_TABLES: dict[str, tuple] = {}  # the last CSV read, by the digest of its bytes: a re-load reuses it
_TABLES_LOCK = threading.Lock()


def _csv_table(path: Path, shown: object) -> tuple[np.ndarray, dict[int, str], list[str], list[str]]:
    """(pixels, bad rows, emotion codes, usages) of the CSV. The last file read is remembered by its bytes'
    digest (~30 ms for FER2013's file): loading the same CSV again in one process (augmenting a cache of it
    does, on every call) does not parse its 35,887 rows again (~10 s)."""
    import pandas as pd

    data = _read_bytes(path, shown)
    key = hashlib.blake2b(data, digest_size=16).hexdigest()
    with _TABLES_LOCK:
        if key in _TABLES:
            return _TABLES[key]
    raw = _text_bytes(data, shown)
    del data
    try:
        df = pd.read_csv(io.BytesIO(raw), dtype=object, na_filter=False, low_memory=False)
    except pd.errors.EmptyDataError:
        raise _err(shown, "empty CSV") from None
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as exc:
        raise _err(shown, f"cannot parse CSV: {exc}") from None
    del raw
    cols = _need_columns(shown, list(df.columns))
    if len(df) == 0:
        raise _err(shown, "CSV has no data rows")
    px = [str(s).strip() for s in df[cols["pixels"]].tolist()]
    emotion = [str(s).strip() for s in df[cols["emotion"]].tolist()]
    usage = ([str(s).strip() for s in df[cols["usage"]].tolist()] if "usage" in cols
             else [""] * len(df))
    del df
    pixels, bad = _parse_pixels(px)
    del px
    pixels.flags.writeable = False
    with _TABLES_LOCK:
        _TABLES.clear()  # one file kept: FER2013's pixels are ~80 MB
        _TABLES[key] = (pixels, bad, emotion, usage)
    return pixels, bad, emotion, usage


def _parse_fer2013(path: Path, shown: object) -> _CSVData:
    """Read the CSV once: records, all pixels as one uint8 array, bad rows."""
    pixels, bad, emotion, usage = _csv_table(path, shown)
    codes = {str(i): lab for i, lab in enumerate(FER2013_LABELS)}
    records, rows, ignored = [], [], []
    csv_path = str(path)
    for i, (code, split) in enumerate(zip(emotion, usage)):
        label = codes.get(code)
        if label is None:
            ignored.append(f"row={i}: emotion code {code!r} not in 0..6")
            continue
        records.append(Record(f"{csv_path}#row={i}", label, code, "", split))
        rows.append(i)
    if not records:
        raise _err(shown, "no row has a FER2013 emotion code 0..6")
    return _CSVData(records, np.asarray(rows, dtype=np.int64), pixels, dict(bad), ignored)


class _LazyCSV:
    """Parses the FER2013 CSV on first use (thread-safe), so a cache hit never pays for it."""

    def __init__(self, path: Path, shown: object) -> None:
        self.path, self.shown = path, shown
        self._data: _CSVData | None = None
        self._lock = threading.Lock()

    def get(self) -> _CSVData:
        if self._data is None:
            with self._lock:
                if self._data is None:
                    self._data = _parse_fer2013(self.path, self.shown)
        return self._data


def _load_fer2013(path: Path, shown: object) -> Dataset:
    _need_columns(shown, _csv_header(path, shown))  # cheap check now; rows parsed on first use
    return Dataset("fer2013", path, None, _csv=_LazyCSV(path, shown))


# ----------------------------------------------------------------------- entry

def load_dataset(path: str | os.PathLike, format: str = "auto", *,
                 frontal_only: bool = False, subject_pattern: str | None = None) -> Dataset:
    """List a dataset (no image is decoded).

    ``format`` is one of :data:`FORMATS`; ``auto`` uses :func:`detect_format`.
    ``frontal_only`` keeps only straight (``S``) KDEF views.  ``subject_pattern``
    (a regex, see :mod:`fer_features.subjects`) sets every image's subject id,
    overriding the layout's own; it is kept in ``options`` (the cache key).
    A FER2013 CSV is checked for its columns now and parsed on first use of the
    records or images (a few seconds for the full 35,887 rows).
    Raises :class:`DatasetError` naming the path for unusable input,
    including an explicit format that the files do not match.
    """
    ds = _load(path, format, frontal_only, guess=not subject_pattern)
    if subject_pattern:
        from fer_features.data.subjects import apply_subject_pattern

        ds = apply_subject_pattern(ds, subject_pattern, path)
    return ds


def _load(path: str | os.PathLike, format: str, frontal_only: bool, guess: bool) -> Dataset:
    if format not in FORMATS:
        raise _err(path, f"unknown format {format!r} (expected one of {', '.join(FORMATS)})")
    root = _check_path(path)
    if root.is_file():
        if format == "auto" and not _is_csv_name(root):
            raise _err(path, "unknown layout: a file that is not .csv or .csv.gz")
        if format not in ("auto", "fer2013", "manifest"):
            raise _err(path, f"format {format} needs a folder, not a file")
        if format == "manifest" or (format == "auto" and _csv_kind(root, path) == "manifest"):
            from fer_features.data.manifest import load_manifest

            return load_manifest(root, path)
        return _load_fer2013(root, path)
    if format in ("fer2013", "manifest"):
        raise _err(path, f"format {format} needs a .csv or .csv.gz file, not a folder")
    images, has_entries, top_dirs = _scan(root)
    if not has_entries:
        raise _err(path, "empty folder")
    fmt = _detect_dir(path, images, has_entries, top_dirs) if format == "auto" else format
    if fmt == "folder":
        return _load_folder(root, path, images, top_dirs, guess)
    if fmt == "ckplus":
        return _load_ckplus(root, path, images, top_dirs)
    if fmt == "jaffe":
        return _load_jaffe(root, path, images)
    return _load_kdef(root, path, images, frontal_only)
