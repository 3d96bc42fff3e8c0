"""Manifest CSV: ``path,label[,subject][,split][,...]``, one row per image file.

Paths are relative to the CSV's folder or absolute; column names are case-insensitive; other columns are
kept as metadata (:attr:`Record.extra`).  The dataset's root is the CSV file itself (the cache records it,
augmentation reloads it) and relative paths, in the cache and the fingerprint, start from its folder.
Bad input (no ``path``/``label`` column, an empty cell, a missing or repeated file, one class) is a
one-line :class:`~fer_features.datasets.DatasetError` naming the CSV line.
"""
from __future__ import annotations

import csv
import io
import os
from pathlib import Path

from fer_features.data.datasets import Dataset, Record, _rel_path, canonical_label
from fer_features.data.fer2013 import _read_text_bytes
from fer_features.errors import DatasetError

__all__ = ["MANIFEST_COLUMNS", "load_manifest"]

MANIFEST_COLUMNS = ("path", "label", "subject", "split")  # the columns with a meaning; others are metadata


def _fail(shown: object, problem: str) -> DatasetError:
    return DatasetError(" ".join(f"{shown}: {problem}".split()))


def _header(rows, shown: object) -> tuple[list[str], list[str]]:
    header = next(rows, None)
    if header is None:
        raise _fail(shown, "empty CSV")
    names = [h.strip().lstrip("\ufeff").strip() for h in header]
    lower = [n.lower() for n in names]
    twice = sorted({n for n in lower if lower.count(n) > 1 and n})
    if twice:
        raise _fail(shown, f"column {twice[0]!r} appears twice in the header")
    for need in ("path", "label"):
        if need not in lower:
            raise _fail(shown, f"no {need} column (a manifest has columns path,label[,subject][,split]; "
                               f"found {','.join(names)})")
    return names, lower


def load_manifest(csv_path: Path, shown: object) -> Dataset:
    """List the images a manifest names (each file is checked to exist; nothing is decoded)."""
    try:
        text = _read_text_bytes(csv_path, shown).decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise _fail(shown, f"cannot read CSV: not UTF-8 ({exc})") from None
    rows = csv.reader(io.StringIO(text, newline=""))
    try:
        names, lower = _header(rows, shown)
        base = csv_path.parent
        has_subject, has_split = "subject" in lower, "split" in lower
        records: list[Record] = []
        first_line: dict[str, int] = {}
        missing: list[tuple[int, str]] = []
        for row in rows:
            line = rows.line_num
            if not any(c.strip() for c in row):
                continue  # blank line
            if len(row) != len(names):
                raise _fail(shown, f"line {line}: {len(row)} fields, the header has {len(names)}")
            vals = dict(zip(lower, (c.strip() for c in row)))
            for col in ("path", "label") + (("subject",) if has_subject else ()) + (("split",) if has_split else ()):
                if not vals[col]:
                    raise _fail(shown, f"line {line}: empty {col} (fill every row"
                                       + (" or drop the column)" if col in ("subject", "split") else ")"))
            full = os.path.abspath(base / Path(vals["path"]).expanduser())
            if full in first_line:
                raise _fail(shown, f"line {line}: duplicate path {_rel_path(full, base)} "
                                   f"(first on line {first_line[full]})")
            first_line[full] = line
            if not os.path.isfile(full):
                missing.append((line, vals["path"]))
            extra = tuple((n, vals[k]) for n, k in zip(names, lower) if k not in MANIFEST_COLUMNS)
            label = vals["label"]
            records.append(Record(full, canonical_label(label), label, vals.get("subject", ""),
                                  vals.get("split", ""), extra))
    except csv.Error as exc:
        raise _fail(shown, f"line {rows.line_num}: cannot parse CSV ({exc})") from None
    if missing:
        line, p = missing[0]
        raise _fail(shown, f"line {line}: {p}: no such file ({len(missing)} missing in all; relative paths "
                           f"start at {base})")
    if not records:
        raise _fail(shown, "the manifest lists no images")
    classes = sorted({r.label for r in records})
    if len(classes) < 2:
        raise _fail(shown, f"the label column has one class ({classes[0]}): a classifier needs at least 2")
    n_subj = len({r.subject for r in records}) if has_subject else 0
    note = (f"subjects from the manifest's subject column: {n_subj} subjects" if has_subject else
            "no subject ids: the manifest has no subject column (add one, or give --subject-pattern)")
    return Dataset("manifest", csv_path, records, notes=[note])
