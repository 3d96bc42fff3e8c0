"""Subject ids from a regular expression (``extract --subject-pattern``), for any layout or manifest.

The pattern is searched (``re.search``) in each image's file name or, when it contains a ``/``, in its
path relative to the dataset root (posix; as gitignore treats patterns with a slash).  The named group
``subject``, else group 1, else the whole match is the id.  Every image must give a non-empty id and the
data at least two subjects: anything else is a one-line :class:`~fer_features.datasets.DatasetError`.
"""
from __future__ import annotations

import dataclasses
import re
import shlex
from typing import Sequence

from fer_features.data.datasets import Dataset, Record
from fer_features.errors import DatasetError

__all__ = ["compile_subject_pattern", "subject_of", "apply_subject_pattern"]

SHOW_FAILURES = 3  # paths named in a no-match error


def _shown(pattern: str) -> str:
    """The pattern as the user typed it in a shell (quoted where it needs quotes), not its repr (which doubles
    every backslash)."""
    return shlex.quote(pattern)


def compile_subject_pattern(pattern: str, shown: object = "--subject-pattern") -> re.Pattern:
    """Compile ``pattern``; a bad regex is a one-line :class:`DatasetError`."""
    try:
        return re.compile(pattern)
    except re.error as exc:
        raise DatasetError(f"{shown}: --subject-pattern {_shown(pattern)} is not a valid regular expression "
                           f"({exc})") from None


def subject_of(rx: re.Pattern, rel: str) -> str:
    """The subject id ``rx`` gives the relative posix path ``rel`` ('' when it does not match)."""
    target = rel if "/" in rx.pattern else rel.rsplit("/", 1)[-1]
    m = rx.search(target)
    if m is None:
        return ""
    if "subject" in rx.groupindex:
        return m.group("subject") or ""
    return (m.group(1) if rx.groups else m.group(0)) or ""


def subject_ids(pattern: str, rels: Sequence[str], shown: object) -> list[str]:
    """One id per relative path; raises when one gives none or all give the same."""
    rx = compile_subject_pattern(pattern, shown)
    ids = [subject_of(rx, r) for r in rels]
    bad = [r for r, s in zip(rels, ids) if not s]
    if bad:
        where = "path relative to the dataset root" if "/" in pattern else "file name"
        more = ", ..." if len(bad) > SHOW_FAILURES else ""
        raise DatasetError(
            f"{shown}: {len(bad)} of {len(rels)} images give no subject id with --subject-pattern {_shown(pattern)} "
            f"(searched in each {where}): {', '.join(bad[:SHOW_FAILURES])}{more}")
    distinct = sorted(set(ids))
    if len(distinct) < 2:
        raise DatasetError(f"{shown}: --subject-pattern {_shown(pattern)} gives one subject "
                           f"({distinct[0] if distinct else ''}) for all {len(ids)} images; subject-independent "
                           "folds need at least 2")
    return ids


def apply_subject_pattern(ds: Dataset, pattern: str, shown: object) -> Dataset:
    """``ds`` with every record's subject from ``pattern`` (overriding the layout's own ids).

    The pattern joins ``ds.options`` (so the cache key), and a note says how many subjects it gave.
    """
    if ds.format == "fer2013":
        raise DatasetError(f"{shown}: --subject-pattern needs image files; a FER2013 CSV has none "
                           "(use a manifest CSV with path,label,subject columns)")
    if ds.format == "manifest" and ds.subjects:
        raise DatasetError(f"{shown}: the manifest has a subject column; --subject-pattern would override it "
                           "(drop one of them)")
    ids = subject_ids(pattern, ds.rel_paths(), shown)
    records: list[Record] = [dataclasses.replace(r, subject=s) for r, s in zip(ds.records, ids)]
    notes = [n for n in ds.notes if not n.startswith(("subjects ", "no subject"))]
    notes.append(f"subjects from --subject-pattern {_shown(pattern)}: {len(set(ids))} subjects")
    return Dataset(ds.format, ds.root, records, options={**ds.options, "subject_pattern": pattern},
                   ignored=ds.ignored, notes=notes)
