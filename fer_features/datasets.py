"""Dataset loaders: folder per class, JAFFE, CK+, KDEF and the FER2013 CSV.

Listing reads names and file stats only; images are decoded on demand (``Dataset.load_image``), except
FER2013 whose pixels live in the CSV and are parsed once, vectorised.
"""
from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

CANONICAL_LABELS = ("angry", "contempt", "disgust", "fear", "happy", "neutral", "sad", "surprise")
FORMATS = ("auto", "folder", "jaffe", "ckplus", "kdef", "fer2013")
IMAGE_EXTENSIONS = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".gif", ".webp", ".ppm", ".pgm",
                    ".pbm", ".pnm", ".jp2", ".tga", ".dib"}

_SYNONYMS = {
    "angry": ("anger", "angry", "an", "ang", "mad"),
    "contempt": ("contempt", "co", "con"),
    "disgust": ("disgust", "disgusted", "di", "dis"),
    "fear": ("fear", "afraid", "scared", "fearful", "fe", "af"),
    "happy": ("happy", "happiness", "joy", "ha", "hap", "smile"),
    "neutral": ("neutral", "ne", "neu", "calm"),
    "sad": ("sad", "sadness", "sa"),
    "surprise": ("surprise", "surprised", "su", "sur"),
}
_TO_CANONICAL = {syn: canon for canon, syns in _SYNONYMS.items() for syn in syns}
FER2013_CODES = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")

JAFFE_RE = re.compile(r"^(?P<subject>[A-Za-z]{2})\.(?P<expr>[A-Za-z]{2})(?P<pose>\d+)\.(?P<serial>\d+)\.tiff?$", re.I)
CKPLUS_RE = re.compile(r"^(?P<subject>S\d{3})_(?P<seq>\d{3})_(?P<frame>\d+)\.png$", re.I)
KDEF_RE = re.compile(r"^(?P<session>[AB])(?P<gender>[FM])(?P<person>\d{2})(?P<expr>AF|AN|DI|HA|NE|SA|SU)"
                     r"(?P<angle>FL|HL|S|HR|FR)\.jpe?g$", re.I)
_KDEF_EXPR = {"AF": "fear", "AN": "angry", "DI": "disgust", "HA": "happy", "NE": "neutral", "SA": "sad",
              "SU": "surprise"}


class DatasetError(ValueError):
    """Bad dataset input (missing or empty folder, no classes, unknown layout); one line naming the path."""


class ImageReadError(OSError):
    """One image could not be decoded; the message names the path and the reason."""


def canonical_label(name: str) -> str:
    """Map a dataset's label name to the canonical vocabulary; unknown names come back lower-cased."""
    key = str(name).strip().lower()
    return _TO_CANONICAL.get(key, key)


@dataclass(frozen=True)
class Record:
    """One image of a dataset: where it is and what it is labelled."""

    path: str
    label: str
    raw_label: str
    subject: str = ""
    split: str = ""
    extra: tuple = ()


@dataclass
class Sample:
    """What iterating a dataset yields."""

    image: np.ndarray
    record: Record


def read_image(path: str | Path) -> np.ndarray:
    """Decode an image file to uint8: HxW for grey (incl. grey palettes) or HxWx3 RGB.

    16/32-bit and float images are scaled by their own range; alpha is composited onto white.
    Raises ``ImageReadError`` naming the file on a corrupt, truncated or non-image file.
    """
    from PIL import Image, UnidentifiedImageError

    path = str(path)
    try:
        with Image.open(path) as im:
            im.load()
            return _to_uint8(im)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        if isinstance(exc, FileNotFoundError):
            raise ImageReadError(f"{path}: file not found") from None
        reason = str(exc) or type(exc).__name__
        if isinstance(exc, UnidentifiedImageError):
            reason = "not an image Pillow can read"
        raise ImageReadError(f"{path}: {reason}") from None


def _to_uint8(im) -> np.ndarray:
    from PIL import Image

    mode = im.mode
    if mode == "P":
        pal = im.getpalette() or []
        rgb = np.array(pal, dtype=np.int32).reshape(-1, 3) if pal else np.zeros((0, 3))
        used = np.unique(np.asarray(im))
        used = used[used < len(rgb)]
        grey = len(rgb) == 0 or bool(np.all(rgb[used, 0] == rgb[used, 1]) and np.all(rgb[used, 1] == rgb[used, 2]))
        if "transparency" in im.info:
            return _to_uint8(im.convert("RGBA"))
        return np.asarray(im.convert("L" if grey else "RGB"))
    if mode in ("1", "L"):
        return np.asarray(im.convert("L"))
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        a = np.asarray(im).astype(np.float64)
        lo, hi = float(a.min()), float(a.max())
        if hi <= lo:
            return np.zeros(a.shape, np.uint8) if hi <= 0 else np.full(a.shape, 255 if hi >= 255 else int(hi), np.uint8)
        return np.round((a - lo) * (255.0 / (hi - lo))).astype(np.uint8)
    if mode in ("LA", "RGBA", "PA", "La", "RGBa"):
        rgba = im.convert("RGBA")
        bg = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        out = np.asarray(Image.alpha_composite(bg, rgba).convert("RGB"))
        return out[..., 0].copy() if mode in ("LA", "La") else out
    return np.asarray(im.convert("RGB"))


def _is_image(p: Path) -> bool:
    return p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".")


def _walk_images(root: Path) -> list[Path]:
    out = []
    for p in sorted(root.rglob("*")):
        if any(part.startswith(".") for part in p.relative_to(root).parts):
            continue
        if _is_image(p):
            out.append(p)
    return out


class Dataset:
    """A labelled image dataset: ``records`` (cheap metadata) plus on-demand image loading."""

    def __init__(self, format: str, root: str | Path, records: list[Record] | None, *,
                 options: dict | None = None, lazy: "_LazyCSV | None" = None,
                 row_index: Sequence[int] | None = None):
        self.format = format
        self.root = Path(root)
        self._records = list(records) if records is not None else None
        self.options = dict(options or {})
        self._lazy = lazy  # FER2013: records and an (N, side, side) uint8 pixel array, parsed on first use
        self._row_index = list(row_index) if row_index is not None else None

    @property
    def records(self) -> list[Record]:
        if self._records is None:
            recs, _pixels, bad = self._lazy.get()
            idx = self._row_index if self._row_index is not None else [
                i for i, r in enumerate(recs) if r.label != "unknown"]
            self._row_index = idx
            self._records = [recs[i] for i in idx]
        return self._records

    def __len__(self) -> int:
        return len(self.records)

    def __repr__(self) -> str:
        return f"Dataset(format={self.format!r}, root={str(self.root)!r}, n={len(self)}, labels={self.label_names})"

    @property
    def label_names(self) -> list[str]:
        return sorted({r.label for r in self.records})

    @property
    def subjects(self) -> list[str]:
        return sorted({r.subject for r in self.records if r.subject})

    def load_image(self, i: int) -> np.ndarray:
        """Decoded image ``i`` (uint8 HxW or HxWx3); ``ImageReadError`` naming the file otherwise."""
        if self._lazy is not None:
            recs = self.records
            _, pixels, bad = self._lazy.get()
            row = self._row_index[i]
            if row in bad:
                raise ImageReadError(f"{recs[i].path}: {bad[row]}")
            return pixels[row]
        return read_image(self.records[i].path)

    def __iter__(self) -> Iterator[Sample]:
        for i, rec in enumerate(self.records):
            yield Sample(self.load_image(i), rec)

    def fingerprint(self) -> str:
        """SHA-256 of the content identity: files read with their sizes and mtimes, format and options."""
        h = hashlib.sha256()
        h.update(json.dumps({"format": self.format, "options": self.options}, sort_keys=True).encode())
        if self._lazy is not None:
            st = self.root.stat()
            h.update(f"{self.root.name}|{st.st_size}|{st.st_mtime_ns}".encode())
            if self._row_index is not None and "subset" in self.options:
                h.update(",".join(map(str, self._row_index)).encode())
        else:
            for r in self.records:
                p = Path(r.path)
                st = p.stat()
                try:
                    rel = p.relative_to(self.root).as_posix()
                except ValueError:
                    rel = p.as_posix()
                h.update(f"{rel}|{st.st_size}|{st.st_mtime_ns}|{r.label}|{r.subject}\n".encode())
        return h.hexdigest()

    def subset(self, indices: Sequence[int]) -> "Dataset":
        """A dataset of the selected records (same format, root and loader)."""
        idx = [int(i) for i in indices]
        recs = self.records
        rows = [self._row_index[i] for i in idx] if self._lazy is not None else None
        sub = Dataset(self.format, self.root, [recs[i] for i in idx], options=dict(self.options),
                      lazy=self._lazy, row_index=rows)
        if self._lazy is not None:
            sub.options["subset"] = True
        return sub


# -- loaders ----------------------------------------------------------------------------------------
def _class_dirs(root: Path) -> list[Path]:
    return sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))


def _load_folder(root: Path) -> list[Record]:
    recs = []
    classes = _class_dirs(root)
    if not classes:
        raise DatasetError(f"{root}: no class sub-folders (expected one folder per class)")
    for d in classes:
        for p in _walk_images(d):
            recs.append(Record(str(p), canonical_label(d.name), d.name))
    if not recs:
        raise DatasetError(f"{root}: class folders hold no images")
    return recs


def _load_jaffe(root: Path) -> list[Record]:
    recs = []
    for p in sorted(root.iterdir()):
        m = JAFFE_RE.match(p.name)
        if m and p.is_file():
            code = m.group("expr").upper()
            recs.append(Record(str(p), canonical_label(code), code, m.group("subject").upper(),
                               extra=(("pose", m.group("pose")), ("serial", m.group("serial")))))
    if not recs:
        raise DatasetError(f"{root}: no JAFFE file names (like KA.AN1.39.tiff)")
    return recs


def _load_ckplus(root: Path) -> list[Record]:
    recs = []
    for d in _class_dirs(root):
        for p in _walk_images(d):
            m = CKPLUS_RE.match(p.name)
            if not m:
                continue
            subj = m.group("subject").upper()
            recs.append(Record(str(p), canonical_label(d.name), d.name, subj,
                               extra=(("sequence", f"{subj}_{m.group('seq')}"), ("frame", str(int(m.group("frame")))))))
    if not recs:
        raise DatasetError(f"{root}: no CK+ class folders with files like S010_004_00000017.png")
    return recs


def _load_kdef(root: Path, frontal_only: bool) -> list[Record]:
    recs = []
    for p in _walk_images(root):
        m = KDEF_RE.match(p.name)
        if not m:
            continue
        angle = m.group("angle").upper()
        if frontal_only and angle != "S":
            continue
        code = m.group("expr").upper()
        recs.append(Record(str(p), _KDEF_EXPR[code], code, f"{m.group('gender').upper()}{m.group('person')}",
                           extra=(("session", m.group("session").upper()), ("angle", angle))))
    if not recs:
        raise DatasetError(f"{root}: no KDEF file names (like AF01ANS.JPG)" + (" with a frontal view" if frontal_only else ""))
    return recs


def _parse_fer2013(path: Path) -> tuple[list[Record], np.ndarray, dict[int, str]]:
    """Parse the CSV once: records, an (N, side, side) uint8 pixel array and the malformed rows."""
    import pandas as pd

    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False, compression="infer")
    except Exception as exc:
        raise DatasetError(f"{path}: cannot read CSV: {exc}") from None
    cols = {c.strip().lower(): c for c in df.columns}
    if "emotion" not in cols or "pixels" not in cols:
        raise DatasetError(f"{path}: CSV needs columns emotion,pixels[,Usage]; found {','.join(map(str, df.columns))}")
    if len(df) == 0:
        raise DatasetError(f"{path}: CSV has no rows")
    pix = df[cols["pixels"]].tolist()
    first = next((r for r in pix if r.strip()), "")
    n_px = len(first.split())
    side = int(round(math.sqrt(n_px))) if n_px else 0
    if side == 0 or side * side != n_px:
        raise DatasetError(f"{path}: first row has {n_px} pixel values, not a square image")
    flat = np.fromstring(" ".join(pix), dtype=np.int32, sep=" ")  # text mode: fast C parser
    bad_rows: dict[int, str] = {}
    if flat.size == len(pix) * n_px:
        ok = np.ones(len(pix), bool)
    else:  # some rows are malformed: count per row (slower path, only then)
        counts = np.array([len(r.split()) for r in pix])
        ok = counts == n_px
        good = [r for r, g in zip(pix, ok) if g]
        flat = np.fromstring(" ".join(good), dtype=np.int32, sep=" ") if good else np.zeros(0, np.int32)
        if flat.size != ok.sum() * n_px:
            raise DatasetError(f"{path}: pixels column has non-numeric values")
        for i in np.flatnonzero(~ok):
            bad_rows[int(i)] = f"{counts[i]} pixel values, expected {n_px}"
    pixels = np.zeros((len(pix), side, side), np.uint8)
    pixels[ok] = np.clip(flat, 0, 255).astype(np.uint8).reshape(-1, side, side)
    emo = df[cols["emotion"]].str.strip().tolist()
    usage = df[cols["usage"]].str.strip().tolist() if "usage" in cols else [""] * len(df)
    code_ok = {str(i): lab for i, lab in enumerate(FER2013_CODES)}
    recs = []
    for i, (e, u) in enumerate(zip(emo, usage)):
        label = code_ok.get(e)
        if label is None:
            bad_rows[i] = f"emotion code {e!r} not in 0..6"
            label = "unknown"
        recs.append(Record(f"{path}#row={i}", label, e, "", u))
    return recs, pixels, bad_rows


class _LazyCSV:
    """Parse the FER2013 CSV on first use, so a cache hit never pays for it."""

    def __init__(self, path: Path):
        self.path, self._data = path, None

    def get(self):
        if self._data is None:
            self._data = _parse_fer2013(self.path)
        return self._data


def _load_fer2013(path: Path) -> Dataset:
    with open(path, "rb") as fh:  # check the header now (cheap), parse the rows lazily
        head = fh.read(2)
    import gzip

    opener = gzip.open if head == b"\x1f\x8b" else open
    try:
        with opener(path, "rt", encoding="utf-8", errors="replace") as fh:
            header = fh.readline()
    except OSError as exc:
        raise DatasetError(f"{path}: cannot read CSV: {exc}") from None
    names = {c.strip().lower() for c in header.split(",")}
    if "emotion" not in names or "pixels" not in names:
        raise DatasetError(f"{path}: CSV needs columns emotion,pixels[,Usage]; found {header.strip()!r}")
    return Dataset("fer2013", path, None, lazy=_LazyCSV(path))


def detect_format(path: str | Path) -> str:
    """Recognise the layout of ``path`` (see ``FORMATS``); ``DatasetError`` when nothing fits."""
    path = Path(path)
    if not path.exists():
        raise DatasetError(f"{path}: no such file or folder")
    if path.is_file():
        if path.name.lower().endswith((".csv", ".csv.gz")):
            return "fer2013"
        raise DatasetError(f"{path}: unknown layout (a file that is not a .csv or .csv.gz)")
    entries = [p for p in path.iterdir() if not p.name.startswith(".")]
    if not entries:
        raise DatasetError(f"{path}: empty folder")
    top = [p for p in entries if _is_image(p)]
    if top and sum(bool(JAFFE_RE.match(p.name)) for p in top) >= 0.5 * len(top):
        return "jaffe"
    images = _walk_images(path)
    if images and sum(bool(KDEF_RE.match(p.name)) for p in images) >= 0.5 * len(images):
        return "kdef"
    dirs = _class_dirs(path)
    nested = [p for p in images if p.parent != path]
    if dirs and nested:
        if sum(bool(CKPLUS_RE.match(p.name)) for p in nested) >= 0.5 * len(nested):
            return "ckplus"
        return "folder"
    if dirs:
        raise DatasetError(f"{path}: class folders hold no images")
    raise DatasetError(f"{path}: unknown layout (no class sub-folders and no JAFFE/CK+/KDEF file names)")


def load_dataset(path: str | Path, format: str = "auto", *, frontal_only: bool = False) -> Dataset:
    """Load a dataset's records; ``format='auto'`` recognises the layout."""
    if format not in FORMATS:
        raise DatasetError(f"unknown format {format!r}; use one of {', '.join(FORMATS)}")
    path = Path(path)
    if not path.exists():
        raise DatasetError(f"{path}: no such file or folder")
    fmt = detect_format(path) if format == "auto" else format
    if fmt == "fer2013":
        if not path.is_file():
            raise DatasetError(f"{path}: format fer2013 needs a .csv or .csv.gz file")
        return _load_fer2013(path)
    if not path.is_dir():
        raise DatasetError(f"{path}: format {fmt} needs a folder")
    if not any(True for _ in path.iterdir()):
        raise DatasetError(f"{path}: empty folder")
    loaders = {"folder": _load_folder, "jaffe": _load_jaffe, "ckplus": _load_ckplus,
               "kdef": lambda r: _load_kdef(r, frontal_only)}
    recs = loaders[fmt](path)
    opts = {"frontal_only": True} if (fmt == "kdef" and frontal_only) else {}
    return Dataset(fmt, path, recs, options=opts)
