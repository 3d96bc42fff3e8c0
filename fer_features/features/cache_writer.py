"""Writing a cache: finished chunks as files of a ``<name>.h5.part/`` folder (each written under a temporary
name, then renamed), so an interrupted run resumes; the finished run joined into one HDF5 file."""
from __future__ import annotations

import io
import json
import os
import re
import shutil
import uuid
from pathlib import Path
from typing import Any, Iterable

import h5py
import numpy as np

from fer_features.errors import CacheError
from fer_features.features.cache import _STR, CACHE_FORMAT

_CHUNK_RE = re.compile(r"^chunk-(\d{10})\.npz$")


_ROW_COLUMNS = ("features", "labels", "face_found", "subjects", "split", "paths", "raw_labels")


class CacheWriter:
    """Append-only writer of one cache file that any kill can interrupt without losing finished work.

    Work in progress is a folder ``<final>.part/``: ``meta.json`` (key, width) and one ``chunk-N.npz`` per
    appended chunk (N = source records handled before it), each written under a temporary name and renamed
    when complete, so SIGKILL, SIGTERM, a crash or a power cut leaves only whole chunks. ``open`` resumes
    after the last whole chunk; ``finish`` joins the chunks into ``<final>`` (written as ``<final>.tmp``,
    marked complete, renamed) and removes the folder. Hold :func:`cache_lock` around the whole run.
    """

    def __init__(self, final_path: str | Path, key: str, dim: int, label_names: list[str],
                 attrs: dict[str, Any], log=None):
        self.final_path = Path(final_path)
        self.part_path = self.final_path.with_name(self.final_path.name + ".part")
        self.key, self.dim, self.label_names, self.attrs = key, dim, label_names, attrs
        self.log = log or (lambda msg: None)
        self.resumed_from = 0
        # start record -> (end record, file, rows, rows without a face, skipped (path, reason) pairs)
        self._chunks: dict[int, tuple[int, Path, int, int, list[tuple[str, str]]]] = {}
        self._end = 0  # the end of the last chunk (ordered: where the next one starts)
        self._open = False

    @property
    def n_processed(self) -> int:
        """Source records handled by the chunks written so far (read, or found unreadable)."""
        return sum(end - start for start, (end, *_) in self._chunks.items())

    @property
    def n_rows(self) -> int:
        return sum(c[2] for c in self._chunks.values())

    @property
    def n_no_face(self) -> int:
        return sum(c[3] for c in self._chunks.values())

    @property
    def skipped(self) -> list[tuple[str, str]]:
        """Unreadable images, in record order."""
        return [s for start in sorted(self._chunks) for s in self._chunks[start][4]]

    @property
    def n_skipped(self) -> int:
        return len(self.skipped)

    # -- lifecycle -----------------------------------------------------------------------------
    def open(self, ordered: bool = True) -> int:
        """Start, or resume the part folder; return how many source records are already done.

        ``ordered`` (one process appending in record order): resume after the last chunk that follows
        on from record 0, deleting any later one. ``ordered=False`` (shards written by several processes,
        see ``distributed_extract``): keep every whole chunk that overlaps no other; :meth:`missing` lists
        the record ranges still to do."""
        self.final_path.parent.mkdir(parents=True, exist_ok=True)
        part = self.part_path
        if part.is_file():  # a single-file part from an older version: HDF5 cannot be trusted after a kill
            self.log(f"{part}: a partial file of an older fer_features cannot be resumed; starting over")
            part.unlink()
        if part.is_dir() and not self._resume(ordered):
            shutil.rmtree(part)
        if not part.is_dir():
            part.mkdir()
            _write_atomic(part / "meta.json", json.dumps({"key": self.key, "dim": self.dim,
                                                          "format": CACHE_FORMAT}).encode())
        self._open = True
        self.resumed_from = self.n_processed
        return self.n_processed

    def _resume(self, ordered: bool = True) -> bool:
        part = self.part_path
        try:
            meta = json.loads((part / "meta.json").read_text())
        except (OSError, ValueError):
            self.log(f"{part}: no readable meta.json; starting over")
            return False
        if meta.get("key") != self.key or meta.get("dim") != self.dim:
            self.log(f"{part}: made for other settings; starting over")
            return False
        for f in part.glob("*.tmp"):  # a chunk the kill caught half-written
            f.unlink()
        chunks = sorted((int(m.group(1)), part / name) for name in os.listdir(part)
                        if (m := _CHUNK_RE.match(name)))
        kept: list[int] = []
        for start, path in chunks:
            if ordered and start != self._end:
                self.log(f"{path.name}: does not follow record {self._end}; redoing from there")
                break
            try:
                c = _read_chunk(path)
                end = int(c["n_processed"])
                if end <= start or c["features"].shape[1:] != (self.dim,):
                    raise ValueError("bad range or width")
            except Exception as exc:  # noqa: BLE001 - torn zip, bad array, missing key: redo the chunk
                self.log(f"{path}: unusable ({type(exc).__name__}); redoing from record {start}")
                if ordered:
                    break
                path.unlink(missing_ok=True)
                continue
            if not ordered and any(s0 < end and start < self._chunks[s0][0] for s0 in kept[-1:]):
                self.log(f"{path.name}: overlaps an earlier chunk; redoing its records")
                path.unlink(missing_ok=True)
                continue
            self._add(start, end, path, c)
            kept.append(start)
        if ordered:
            for start, path in chunks[len(kept):]:
                path.unlink(missing_ok=True)
        return True

    def _add(self, start: int, end: int, path: Path, c: dict) -> None:
        skipped = list(zip(c["skipped_paths"].tolist(), c["skipped_reasons"].tolist()))
        self._chunks[start] = (end, path, len(c["labels"]), int(np.sum(c["face_found"] == 0)), skipped)
        self._end = max(self._end, end)

    def add_chunk(self, start: int, path: str | Path, summary: dict) -> None:
        """Count a chunk file another process wrote into the part folder (``summary``: see ``encode_chunk``)."""
        assert self._open, "call open() first"
        self._chunks[int(start)] = (int(summary["n_processed"]), Path(path), int(summary["n_rows"]),
                                    int(summary["n_no_face"]), [tuple(x) for x in summary["skipped"]])
        self._end = max(self._end, int(summary["n_processed"]))

    def chunk_path(self, start: int) -> Path:
        """Where the chunk beginning at record ``start`` lives."""
        return self.part_path / chunk_name(start)

    def missing(self, n_records: int) -> list[tuple[int, int]]:
        """Record ranges ``[start, end)`` of ``0..n_records`` that no chunk covers yet, in order."""
        out, at = [], 0
        for start in sorted(self._chunks):
            if start > at:
                out.append((at, start))
            at = max(at, self._chunks[start][0])
        if at < n_records:
            out.append((at, n_records))
        return out

    def append(self, features: np.ndarray, labels: Iterable[int], subjects: Iterable[str],
               split: Iterable[str], paths: Iterable[str], raw_labels: Iterable[str],
               face_found: Iterable[int], n_processed: int,
               skipped: Iterable[tuple[str, str]] = (), content: Iterable[str] | None = None) -> None:
        """Write one chunk of rows; ``n_processed`` is the total number of source records handled so far;
        ``content``: each row's image content id (``Dataset.content_ids``), what other extractions reuse."""
        assert self._open, "call open() first"
        data, summary = encode_chunk(self.dim, features, labels, subjects, split, paths, raw_labels, face_found,
                                     n_processed, skipped, content)
        path = self.chunk_path(start := self._end)
        _write_atomic(path, data)
        self.add_chunk(start, path, summary)

    def finish(self, extra_attrs: dict[str, Any] | None = None) -> Path:
        """Join the chunks into the final file, mark it complete and rename it into place."""
        assert self._open, "call open() first"
        tmp = self.final_path.with_name(self.final_path.name + ".tmp")
        n = self.n_rows
        try:
            with h5py.File(tmp, "w") as f:
                for k, v in {**self.attrs, **(extra_attrs or {})}.items():
                    f.attrs[k] = v
                f.attrs.update(key=self.key, n_rows=n, n_processed=self.n_processed, n_no_face=self.n_no_face,
                               n_skipped=self.n_skipped, complete=False,
                               skipped_paths=json.dumps([p for p, _ in self.skipped]),
                               skipped_reasons=json.dumps([r for _, r in self.skipped]))
                rows = max(1, min(256, (1 << 20) // (4 * max(self.dim, 1))))
                f.create_dataset("features", (n, self.dim), dtype="float32", chunks=(min(rows, n), self.dim) if n else None)
                f.create_dataset("labels", (n,), dtype="int32")
                f.create_dataset("face_found", (n,), dtype="int8")
                for name in ("subjects", "split", "paths", "raw_labels"):
                    f.create_dataset(name, (n,), dtype=_STR)
                f.create_dataset("label_names", data=np.array(self.label_names, dtype=object), dtype=_STR)
                chunks = [_read_chunk(self._chunks[start][1]) for start in sorted(self._chunks)]
                if chunks and all("content" in c for c in chunks):  # every row's image content id
                    f.create_dataset("content", data=np.concatenate([c["content"] for c in chunks]).astype(object),
                                     dtype=_STR)
                at = expected = 0
                for start, c in zip(sorted(self._chunks), chunks):
                    if start != expected:
                        raise CacheError(f"{self.part_path}: records {expected}-{start - 1} were never written")
                    expected = int(c["n_processed"])
                    k = len(c["labels"])
                    for name in _ROW_COLUMNS:
                        data = c[name]
                        f[name][at:at + k] = data.astype(object) if data.dtype.kind == "U" else data
                    at += k
                f.attrs["complete"] = True
            os.replace(tmp, self.final_path)
        finally:
            tmp.unlink(missing_ok=True)
        shutil.rmtree(self.part_path, ignore_errors=True)
        self._open = False
        return self.final_path

    def close(self) -> None:
        """Stop without finishing: the part folder stays for a later resume."""
        self._open = False

    def discard(self) -> None:
        """Delete the part folder (nothing half-written stays behind)."""
        self._open = False
        shutil.rmtree(self.part_path, ignore_errors=True)


def chunk_name(start: int) -> str:
    """File name of the chunk (or shard) whose first source record is ``start``."""
    return f"chunk-{int(start):010d}.npz"


def encode_chunk(dim: int, features: np.ndarray, labels: Iterable[int], subjects: Iterable[str],
                 split: Iterable[str], paths: Iterable[str], raw_labels: Iterable[str], face_found: Iterable[int],
                 n_processed: int, skipped: Iterable[tuple[str, str]] = (),
                 content: Iterable[str] | None = None) -> tuple[bytes, dict]:
    """One chunk file's bytes (``.npz``, no pickles) and its summary (``n_processed``: the record after its
    last; ``n_rows``, ``n_no_face``, ``skipped``): what :meth:`CacheWriter.append` and a cluster worker write."""
    skipped = [(str(p), str(r)) for p, r in skipped]
    c = {
        "features": np.asarray(features, dtype=np.float32).reshape(-1, dim),
        "labels": np.asarray(list(labels), dtype=np.int32),
        "face_found": np.asarray(list(face_found), dtype=np.int8),
        "subjects": _ustr(subjects), "split": _ustr(split), "paths": _ustr(paths),
        "raw_labels": _ustr(raw_labels),
        "skipped_paths": _ustr(p for p, _ in skipped), "skipped_reasons": _ustr(r for _, r in skipped),
        "n_processed": np.int64(n_processed),
        **({"content": _ustr(content)} if content is not None else {}),
    }
    n_new = len(c["features"])
    if any(len(c[k]) != n_new for k in (*_ROW_COLUMNS, *(("content",) if content is not None else ()))):
        raise ValueError("columns of one chunk differ in length")
    buf = io.BytesIO()
    np.savez(buf, **c)
    summary = {"n_processed": int(n_processed), "n_rows": n_new,
               "n_no_face": int(np.sum(c["face_found"] == 0)), "skipped": skipped}
    return buf.getvalue(), summary


def _ustr(values: Iterable[str]) -> np.ndarray:
    """Strings as a fixed-width unicode array: stored by ``np.savez`` without pickling."""
    return np.array([str(v) for v in values], dtype=np.str_)


def _read_chunk(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def _write_atomic(path: Path, data: bytes) -> None:
    """Write ``path`` under a temporary name, flush it to disk, then rename: readers see all or nothing."""
    tmp = path.with_name(f"{path.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp")  # unique: shards of
    # one chunk name may be written by two workers at once (a task re-run while the first is still alive)
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
