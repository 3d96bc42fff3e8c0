"""Dataset layouts: detection (folder, JAFFE, CK+, KDEF, FER2013 CSV, manifest) and one loader each;
``load_dataset`` is the door."""
from __future__ import annotations

import os
import re
from pathlib import Path

from fer_features.data.datasets import FORMATS, JAFFE_CODES, Dataset, Record, canonical_label
from fer_features.data.fer2013 import _csv_header, _load_fer2013
from fer_features.data.images import IMAGE_EXTENSIONS, _err
from fer_features.data.labels import LabelMapSpec, check_labels
from fer_features.data.manifest import load_manifest
from fer_features.data.subjects import apply_subject_pattern

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


def as_dataset(data, format: str = "auto", *, frontal_only: bool = False, subject_pattern: str | None = None,
               label_map: LabelMapSpec = None, allow_new_labels: bool = False) -> Dataset:
    """``data`` as a listed ``Dataset``: a path is loaded (``load_dataset``); a ``Dataset`` gets the label map and
    the subject pattern applied, as loading would."""
    if not isinstance(data, Dataset):
        return load_dataset(data, format, frontal_only=frontal_only, subject_pattern=subject_pattern,
                            label_map=label_map, allow_new_labels=allow_new_labels)
    ds = check_labels(data, label_map, allow_new_labels) if label_map else data
    return apply_subject_pattern(ds, subject_pattern, ds.root) if subject_pattern else ds


def load_dataset(path: str | os.PathLike, format: str = "auto", *,
                 frontal_only: bool = False, subject_pattern: str | None = None,
                 label_map: LabelMapSpec = None, allow_new_labels: bool = False) -> Dataset:
    """List a dataset (no image is decoded).

    ``format`` is one of :data:`FORMATS`; ``auto`` uses :func:`detect_format`.
    ``frontal_only`` keeps only straight (``S``) KDEF views.  ``subject_pattern``
    (a regex, see :mod:`fer_features.subjects`) sets every image's subject id,
    overriding the layout's own; it is kept in ``options`` (the cache key).
    ``label_map`` (``{"suprise": "surprise"}``, ``"suprise=surprise,..."``, a from,to CSV file) renames labels
    and joins ``options``; an unknown label among mostly expression names is an error unless mapped or
    ``allow_new_labels`` (see :mod:`fer_features.data.labels`).
    A FER2013 CSV is checked for its columns now and parsed on first use of the
    records or images (a few seconds for the full 35,887 rows).
    Raises :class:`DatasetError` naming the path for unusable input,
    including an explicit format that the files do not match.
    """
    ds = check_labels(_load(path, format, frontal_only, guess=not subject_pattern), label_map, allow_new_labels, path)
    if subject_pattern:
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
