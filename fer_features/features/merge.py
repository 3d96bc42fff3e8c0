"""Join two feature caches of the same images into one whose features are the two concatenated.

The rows must be the same images: same dataset content (fingerprint), the same relative paths (matched by
path when the order differs), and per row the same label, subject and split; anything else is a
``CacheError`` naming both files and the first difference. The result is an ordinary complete cache
(``classify``, ``compare``, ``info`` read it like any other) that describes itself: every extraction setting
the two share keeps its value, one that differs reads ``A+B`` (e.g. backbone
``efficientnet_lite0+keras:finetune_efficientnet_lite0_full:...``), and ``sources`` in its settings holds both
sources' full settings. It is written as ``<out>.tmp`` and renamed, so it exists whole or not at all.

A merged cache cannot be re-extracted as one network: augmentation (``--copies``/``--balance``) and
``classify --save`` (which need to embed new images) refuse it with a clear error.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from fer_features.errors import CacheError
from fer_features.features.cache import (
    CACHE_FORMAT,
    _strs,
    is_complete,
    package_versions,
    read_attrs,
    require_complete,
)

MERGE_FORMAT = 1
_ROW_STRS = ("subjects", "split", "paths", "raw_labels")


def _meta(path: Path) -> dict[str, Any]:
    """A cache's attributes and row columns, features left on disk."""
    require_complete(path)
    attrs = read_attrs(path)
    with h5py.File(path, "r") as f:
        cols = {k: _strs(f[k]) for k in _ROW_STRS}
        cols["labels"] = f["labels"][()]
        cols["face_found"] = f["face_found"][()]
        cols["label_names"] = list(_strs(f["label_names"]))
        cols["dim"] = int(f["features"].shape[1])
        cols["content"] = _strs(f["content"]) if "content" in f else None
    return {"path": path, "attrs": attrs, **cols}


def _settings(m: dict) -> dict[str, Any]:
    return json.loads(m["attrs"].get("settings_json", "{}"))


def _join(a: Any, b: Any) -> Any:
    """One setting of the merged cache: the shared value, or ``'A+B'`` where the sources differ."""
    if a == b:
        return a
    show = lambda v: "none" if v is None else (json.dumps(v, sort_keys=True) if isinstance(v, (dict, list)) else str(v))  # noqa: E731
    return f"{show(a)}+{show(b)}"


def merged_settings(sa: dict[str, Any], sb: dict[str, Any]) -> dict[str, Any]:
    """Settings of the merged cache (see the module docstring); ``sources`` lists both sources' own."""
    out = {k: (sa.get(k) if k.startswith("dataset") else _join(sa.get(k), sb.get(k)))
           for k in sorted(set(sa) | set(sb)) if k != "sources"}
    own = lambda s: s.get("sources") or [{k: v for k, v in s.items() if not k.startswith("dataset")}]  # noqa: E731
    out["sources"] = own(sa) + own(sb)  # a merge of merges lists every extraction once
    return out


def _row_order(a: dict, b: dict) -> np.ndarray:
    """Index into B's rows for each of A's rows (identity when the orders agree); ``CacheError`` otherwise."""
    pa, pb = a["paths"], b["paths"]
    if len(pa) == len(pb) and np.array_equal(pa, pb):
        return np.arange(len(pa))
    index = {p: i for i, p in enumerate(pb.tolist())}
    if len(index) != len(pb) or len(set(pa.tolist())) != len(pa):
        raise CacheError(f"{a['path'].name} / {b['path'].name}: rows in different orders and repeated paths: "
                         "cannot match them")
    only_a = [p for p in pa.tolist() if p not in index]
    only_b = sorted(set(index) - set(pa.tolist()))
    if only_a or only_b:
        ex = (f"{only_a[0]!r} only in {a['path'].name}" if only_a else f"{only_b[0]!r} only in {b['path'].name}")
        raise CacheError(f"{a['path'].name} has {len(pa)} rows, {b['path'].name} {len(pb)}: not the same images "
                         f"({len(only_a)} only in the first, {len(only_b)} only in the second; e.g. {ex})")
    return np.array([index[p] for p in pa.tolist()], dtype=np.int64)


def _content_order(a: dict, b: dict) -> np.ndarray:
    """Index into B's rows for each of A's rows, matched by image content id; ``CacheError`` unless both hold
    the same images once each."""
    ca, cb = a["content"].tolist(), b["content"].tolist()
    index = {c: i for i, c in enumerate(cb)}
    if len(index) != len(cb) or len(set(ca)) != len(ca) or set(ca) != set(index):
        only_a, only_b = len(set(ca) - set(index)), len(set(index) - set(ca))
        raise CacheError(f"{a['path'].name} and {b['path'].name} are not the same images ({len(ca)} and {len(cb)} "
                         f"rows; {only_a} image(s) only in the first, {only_b} only in the second, or repeated)")
    return np.array([index[c] for c in ca], dtype=np.int64)


def check_same_rows(a: dict, b: dict) -> np.ndarray:
    """B's row for each of A's rows, after checking dataset, labels, subjects and splits agree. The same images
    described otherwise (renamed, moved, a manifest instead of folders) match by their content ids."""
    na, nb = a["path"].name, b["path"].name
    fa, fb = a["attrs"].get("dataset_fingerprint"), b["attrs"].get("dataset_fingerprint")
    if fa and fa == fb:
        if _settings(a).get("dataset_format") != _settings(b).get("dataset_format"):
            raise CacheError(f"{na} and {nb} read the dataset as different formats")
        order = _row_order(a, b)
    elif a.get("content") is not None and b.get("content") is not None:
        order = _content_order(a, b)
    else:
        raise CacheError(f"{na} and {nb} were made from different datasets (content fingerprints "
                         f"{str(fa)[:12]} and {str(fb)[:12]}), and one of them stores no image content ids (made "
                         "before 0.2): only caches of the same images can be merged")
    la = np.asarray(a["label_names"], dtype=object)[a["labels"]]
    lb = np.asarray(b["label_names"], dtype=object)[b["labels"]][order]
    for what, ca, cb in (("label", la, lb), ("subject", a["subjects"], b["subjects"][order]),
                         ("split", a["split"], b["split"][order])):
        bad = np.flatnonzero(np.asarray(ca) != np.asarray(cb))
        if len(bad):
            i = int(bad[0])
            raise CacheError(f"{na} and {nb} disagree on the {what} of {len(bad)} row(s), e.g. "
                             f"{a['paths'][i]!r}: {ca[i]!r} vs {cb[i]!r}")
    return order


def _slug(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9.+-]+", "-", s).strip("-")


def default_output(a: Path, b: Path, key: str) -> Path:
    """``<dataset>__<A's settings part>+<B's settings part>__<key12>.h5`` beside A (cache file names are
    ``<dataset>__<settings>__<key12>.h5``; other names are used whole)."""
    pa, pb = a.stem.split("__"), b.stem.split("__")
    dataset = pa[0] if len(pa) == 3 else "merged"
    part = lambda p, s: p[1] if len(p) == 3 else _slug(s)  # noqa: E731
    middle = f"{part(pa, a.stem)}+{part(pb, b.stem)}"
    if len(middle) > 180:  # file names stop at 255 bytes
        middle = middle[:180].rstrip("-+_")
    return a.parent / f"{dataset}__{middle}__{key[:12]}.h5"


def merge_caches(a: str | Path, b: str | Path, out: str | Path | None = None, *, out_dir: str | Path | None = None,
                 block_rows: int = 4096, log=None) -> Path:
    """Write the cache of A's rows with A's features followed by B's (B's rows matched to A's); return its path.

    ``out``: the file (default: :func:`default_output` in ``out_dir``, else beside A). An existing complete
    file there made from the same two caches is returned as is (a hit).
    """
    log = log or (lambda msg: None)
    ma, mb = _meta(Path(a)), _meta(Path(b))
    order = check_same_rows(ma, mb)
    ka, kb = ma["attrs"].get("key", ""), mb["attrs"].get("key", "")
    key = hashlib.sha256(json.dumps({"merge": [ka, kb], "format": CACHE_FORMAT, "merge_format": MERGE_FORMAT})
                         .encode()).hexdigest()
    if not out:
        out = default_output(ma["path"], mb["path"], key)
        out = Path(out_dir) / out.name if out_dir else out
    out = Path(out)
    if out.suffix != ".h5":
        raise CacheError(f"{out}: a cache file name ends in .h5")
    if is_complete(out):
        if read_attrs(out).get("key") == key:
            log(f"already merged: {out}")
            return out
        raise CacheError(f"{out}: exists and is another cache; choose another -o or delete it")
    sa, sb = _settings(ma), _settings(mb)
    settings = merged_settings(sa, sb)
    n, da, db = len(ma["labels"]), ma["dim"], mb["dim"]

    def source(m: dict, s: dict) -> dict[str, Any]:
        keep = ("key", "weights_spec", "backbone_spec", "n_no_face", "extract_seconds", "images_per_second")
        return {"path": str(m["path"].resolve()), "dim": m["dim"], "settings": s,
                **{k: m["attrs"][k] for k in keep if k in m["attrs"]}}

    attrs: dict[str, Any] = {
        **{k: (v if isinstance(v, (str, int, float, bool)) else json.dumps(v, sort_keys=True))
           for k, v in settings.items() if k != "sources"},
        "settings_json": json.dumps(settings, sort_keys=True),
        "versions_json": json.dumps(package_versions(), sort_keys=True),
        "sources_json": json.dumps([source(ma, sa), source(mb, sb)], sort_keys=True),
        "dataset_fingerprint": ma["attrs"]["dataset_fingerprint"],
        "dataset_root": str(ma["attrs"].get("dataset_root", "")),
        "n_records": int(ma["attrs"].get("n_records", n)),
        "key": key, "n_rows": n, "n_processed": int(ma["attrs"].get("n_processed", n)),
        "n_no_face": int(ma["attrs"].get("n_no_face", 0)), "n_skipped": int(ma["attrs"].get("n_skipped", 0)),
        "skipped_paths": ma["attrs"].get("skipped_paths", "[]"),
        "skipped_reasons": ma["attrs"].get("skipped_reasons", "[]"),
        "extract_seconds": float(ma["attrs"].get("extract_seconds", 0.0) or 0.0)
        + float(mb["attrs"].get("extract_seconds", 0.0) or 0.0),
        "complete": False,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    dim = da + db
    try:
        with h5py.File(tmp, "w") as f, h5py.File(ma["path"], "r") as fa, h5py.File(mb["path"], "r") as fb:
            for k, v in attrs.items():
                f.attrs[k] = v
            rows = max(1, min(256, (1 << 20) // (4 * dim)))
            feats = f.create_dataset("features", (n, dim), dtype="float32", chunks=(min(rows, n), dim) if n else None)
            str_t = h5py.string_dtype("utf-8")
            f.create_dataset("labels", data=ma["labels"].astype(np.int32))
            f.create_dataset("face_found", data=ma["face_found"].astype(np.int8))  # A's (B's: in sources_json)
            for name in _ROW_STRS:
                f.create_dataset(name, data=ma[name].astype(object), dtype=str_t)
            f.create_dataset("label_names", data=np.array(ma["label_names"], dtype=object), dtype=str_t)
            if ma["content"] is not None:
                f.create_dataset("content", data=ma["content"].astype(object), dtype=str_t)
            identity = np.array_equal(order, np.arange(n))
            for s in range(0, n, block_rows):
                e = min(n, s + block_rows)
                idx = order[s:e]
                if identity:
                    xb = fb["features"][s:e]
                else:  # h5py reads increasing indices only
                    srt = np.argsort(idx)
                    xb = np.empty((e - s, db), np.float32)
                    xb[srt] = fb["features"][idx[srt]]
                feats[s:e] = np.concatenate([fa["features"][s:e], xb], axis=1)
            f.attrs["complete"] = True
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    log(f"merged {n} rows: {da} + {db} = {dim} features")
    return out


def is_merged(cache) -> bool:
    """True for a cache written by :func:`merge_caches`."""
    return bool(cache.attrs.get("sources_json"))


__all__ = ["merge_caches", "merged_settings", "check_same_rows", "default_output", "is_merged"]
