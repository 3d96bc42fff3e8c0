"""Labels are checked, not invented: a dataset's own names are mapped onto :data:`CANONICAL_LABELS` (with their
aliases, ``canonical_label``), a user's label map (``--label-map``) applied, and an unknown name among expression
names (a typo: ``suprise``) is an error naming it, unless mapped or allowed (``--allow-new-labels``).

"Mostly expression names": at least half of the distinct labels, or labels carrying at least half of the images,
are known names (or labels the map gave). Then every other label is an error. A dataset with no known name at all
(engagement levels, pain scores) is taken as it is, and with a few known ones among mostly its own too; either is
said once in the dataset's notes.
"""
from __future__ import annotations

import csv
import dataclasses
import difflib
import io
import os
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path

from fer_features.data.datasets import _ALIASES, CANONICAL_LABELS, Dataset, canonical_label
from fer_features.errors import DatasetError

__all__ = ["LabelMapSpec", "check_labels", "parse_label_map"]

#: ``{"suprise": "surprise"}``, ``"suprise=surprise,grumpy=angry"``, a CSV file of from,to rows, or a list of these.
LabelMapSpec = Mapping[str, str] | str | os.PathLike | Sequence[str | os.PathLike] | None

_SHOW = 10  # labels named in a note before "..."
_NOTE_PREFIXES = ("labels ", "new labels ")


def _fail(shown: object, problem: str) -> DatasetError:
    return DatasetError(" ".join(f"{shown}: {problem}".split()))


def _key(name: str) -> str:
    return name.strip().lower()


def _add(out: dict[str, str], src: str, dst: str, where: str) -> None:
    src, dst = src.strip(), dst.strip()
    if not src or not dst:
        raise DatasetError(f"--label-map {where}: expected FROM=TO (e.g. suprise=surprise) or a CSV file of "
                           "from,to rows")
    k, v = _key(src), canonical_label(dst)
    if out.get(k, v) != v:
        raise DatasetError(f"--label-map {where}: {src!r} mapped twice ({out[k]!r} and {v!r})")
    out[k] = v


def _read_map_file(path: Path, out: dict[str, str]) -> None:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(f"--label-map {path}: cannot read it ({exc})") from None
    rows = csv.reader(io.StringIO(text, newline=""))
    for row in rows:
        if not any(c.strip() for c in row):
            continue
        if len(row) != 2:
            raise DatasetError(f"--label-map {path}: line {rows.line_num}: {len(row)} fields (expected two: from,to)")
        if rows.line_num == 1 and [_key(c) for c in row] == ["from", "to"]:
            continue  # the header
        _add(out, row[0], row[1], f"{path}: line {rows.line_num}")


def parse_label_map(spec: LabelMapSpec) -> dict[str, str]:
    """``{raw name, lower-cased: canonical target}`` from a mapping, ``FROM=TO[,FROM=TO...]`` strings, CSV files
    of ``from,to`` rows (an optional ``from,to`` header), or a list of these; ``{}`` for None. Targets go through
    :func:`canonical_label` (``Surprised`` -> ``surprise``). Raises :class:`DatasetError`."""
    out: dict[str, str] = {}
    if spec is None:
        return out
    if isinstance(spec, Mapping):
        for src, dst in spec.items():
            _add(out, str(src), str(dst), f"{src}={dst}")
        return out
    for item in [spec] if isinstance(spec, (str, os.PathLike)) else list(spec):
        text = str(item)
        if "=" in text:
            for pair in text.split(","):
                if pair.strip():
                    src, _, dst = pair.partition("=")
                    _add(out, src, dst, repr(pair.strip()))
        elif Path(text).expanduser().is_file():
            _read_map_file(Path(text).expanduser(), out)
        else:
            raise DatasetError(f"--label-map {text!r}: expected FROM=TO (e.g. suprise=surprise) or a CSV file of "
                               "from,to rows, and there is no such file")
    return out


def _listed(names: Sequence[str]) -> str:
    return ", ".join(names[:_SHOW]) + (", ..." if len(names) > _SHOW else "")


def _images(n: int) -> str:
    return f"{n} image{'' if n == 1 else 's'}"


def _suggestion(name: str) -> str | None:
    """The closest known name (canonical), or None."""
    words = [w for w in _ALIASES if len(w) > 2]  # not the two-letter codes
    close = difflib.get_close_matches(name, words, n=1, cutoff=0.6)
    return _ALIASES[close[0]] if close else None


def _unknown_error(shown: object, unknown: Sequence[str], counts: Counter) -> DatasetError:
    parts, pairs = [], []
    for name in unknown:
        guess = _suggestion(name)
        hint = f"; did you mean {guess!r}?" if guess else ""
        parts.append(f"unknown label {name!r} ({_images(counts[name])}{hint})")
        if guess:
            pairs.append(f"{name}={guess}")
    example = f" (e.g. --label-map {','.join(pairs)})" if pairs else ""
    return _fail(shown, f"{', '.join(parts)}: the other labels are expression names. Map them with --label-map "
                        f"FROM=TO{example} or a CSV file of from,to rows, or keep them as classes of their own "
                        "with --allow-new-labels")


def check_labels(ds: Dataset, label_map: LabelMapSpec = None, allow_new_labels: bool = False,
                 shown: object = None) -> Dataset:
    """``ds`` with its labels mapped by ``label_map`` and checked (see the module's docstring).

    A map goes into ``options`` (so the fingerprint, the cache key, and a reload of the dataset see it) as
    ``{from: to}`` of the entries used; a map entry that names no label of ``ds`` is an error. Without a map the
    records and options are unchanged (the fingerprint of a dataset whose labels are all known does not move).
    Raises :class:`DatasetError` (the CLI: exit 2, one line).
    """
    shown = ds.root if shown is None else shown
    mapping = parse_label_map(label_map)
    if ds.format == "fer2013":  # its labels are codes, all known; listing its records would parse the CSV
        if mapping:
            raise _fail(shown, "--label-map: a FER2013 CSV's labels are its emotion codes 0-6, all known "
                               "(use a manifest CSV to relabel images)")
        return ds
    records, used, moved = ds.records, {}, Counter()
    if mapping:
        new = []
        for r in records:
            k = _key(r.raw_label) if _key(r.raw_label) in mapping else r.label
            if k in mapping:
                used[k] = mapping[k]
                moved[k] += 1
                r = dataclasses.replace(r, label=mapping[k])
            new.append(r)
        unused = sorted(set(mapping) - set(used))
        if unused:
            raise _fail(shown, f"--label-map: {unused[0]!r} is no label of this dataset (its labels: "
                               f"{_listed(sorted({_key(r.raw_label) for r in records}))})")
        records = new
    counts = Counter(r.label for r in records)
    known = set(CANONICAL_LABELS) | set(used.values())
    unknown = sorted(n for n in counts if n not in known)
    notes = [n for n in ds.notes if not n.startswith(_NOTE_PREFIXES)]
    if used:
        notes.append("labels mapped (--label-map): " + ", ".join(
            f"{k} -> {v} ({_images(moved[k])})" for k, v in sorted(used.items())))
    if unknown:
        n_known = len(counts) - len(unknown)
        images_known = sum(c for n, c in counts.items() if n in known)
        mostly = 2 * n_known >= len(counts) or 2 * images_known >= len(records)
        if n_known == 0:
            notes.append(f"labels are not expression names ({_listed(unknown)}): used as they are")
        elif not mostly:
            notes.append(f"labels are mostly not expression names ({_listed(unknown)}): used as they are")
        elif allow_new_labels:
            notes.append("new labels kept (--allow-new-labels): "
                         + ", ".join(f"{n} ({_images(counts[n])})" for n in unknown))
        else:
            raise _unknown_error(shown, unknown, counts)
    options = {**ds.options, "label_map": dict(sorted(used.items()))} if used else ds.options
    if not used and notes == ds.notes:
        return ds
    return Dataset(ds.format, ds.root, records, options=options, ignored=ds.ignored, notes=notes)
