"""The FER2013 CSV (plain or gzip): read once per process (keyed by its bytes' digest), pixels parsed
vectorised into one uint8 array, rows exposed lazily as a Dataset."""
from __future__ import annotations

import gzip
import hashlib
import io
import math
import threading
import zlib
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from fer_features.data.datasets import FER2013_LABELS, Dataset, Record
from fer_features.data.images import _err


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


_TABLES_LOCK = threading.Lock()


def _csv_table(path: Path, shown: object) -> tuple[np.ndarray, dict[int, str], list[str], list[str]]:
    """(pixels, bad rows, emotion codes, usages) of the CSV. The last file read is remembered by its bytes'
    digest (~30 ms for FER2013's file): loading the same CSV again in one process (augmenting a cache of it
    does, on every call) does not parse its 35,887 rows again (~10 s)."""
    import pandas as pd  # heavy: only where a table is built

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


_TABLES: dict[str, tuple] = {}  # the last CSV read, by the digest of its bytes: a re-load reuses it
