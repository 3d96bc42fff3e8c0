"""Extract once, describe many times: a full extraction against re-descriptions of the same images.

    python bench/reuse.py [--root ../shared/datasets] [--sets kdef,ckplus48] [--fer-n 512]
                          [--out bench/results/reuse.md]

For each set, in one run, in a fresh cache folder: the default `extract` (one `python -m fer_features extract`
process, timed from start to exit, and its own `extract_seconds`), then three re-descriptions of the same
images, each a new cache file whose rows are reused (no network): a new `--subject-pattern`; the same images as
a manifest CSV (absolute paths, written in a temporary folder); a renamed copy (a folder per class, new file
names, subjects from a pattern). FER2013: its rows embedded once per distinct image (content id), and the time
that saves, from the default features' per-image cost measured at 112 px on ``--fer-n`` random rows.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from _common import load_average, machine_info, md_table, save_report

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
PATTERNS = {"ckplus48": r"^(S\d+)_", "kdef": r"^([AB][FM]\d+)"}  # another description than the layout's own


def extract(args: list[str]) -> tuple[float, Path, float, int]:
    """(process seconds, cache, the cache's extract_seconds, rows the network ran on) of one extract process."""
    from fer_features.features.cache import read_attrs

    t = time.perf_counter()
    p = subprocess.run([sys.executable, "-m", "fer_features", "extract", "--no-progress", *args],
                       capture_output=True, text=True)
    wall = time.perf_counter() - t
    if p.returncode:
        raise SystemExit(p.stderr)
    path = Path(p.stdout.strip().splitlines()[-1])
    attrs = read_attrs(path)
    return wall, path, float(attrs.get("extract_seconds", 0.0)), int(attrs.get("computed_rows", -1))


def renamed_copy(ds, dst: Path) -> Path:
    """The images copied into a folder per class with new names ``<subject>~<k>.<ext>``."""
    for k, r in enumerate(ds.records):
        d = dst / r.label
        d.mkdir(parents=True, exist_ok=True)
        shutil.copy(r.path, d / f"{r.subject}~{k}{Path(r.path).suffix.lower()}")
    return dst


def one_set(root: Path, name: str, tmp: Path) -> list[list]:
    from fer_features.data import load_dataset

    data, cache = root / name, tmp / "cache"
    ds = load_dataset(data)
    full = extract(["--data", str(data), "--cache-dir", str(cache)])
    rows = [[name, "full extraction", len(ds), full[0], full[2], full[3], "1.00"]]
    manifest = tmp / f"{name}.csv"
    manifest.write_text("path,label,subject\n" + "".join(f"{r.path},{r.label},{r.subject}\n" for r in ds.records))
    copy = renamed_copy(ds, tmp / f"{name}-copy")
    for what, args in (("new --subject-pattern", ["--data", str(data), "--subject-pattern", PATTERNS[name]]),
                       ("the same images as a manifest", ["--data", str(manifest)]),
                       ("a renamed copy (folder per class)", ["--data", str(copy), "--format", "folder",
                                                              "--subject-pattern", r"^([^~]+)~"])):
        r = extract([*args, "--cache-dir", str(cache)])
        rows.append([name, what, len(ds), r[0], r[2], r[3], f"{r[0] / full[0]:.3f}"])
        print(f"{name}: {what}: {r[0]:.1f} s (full {full[0]:.1f} s), network on {r[3]} rows", flush=True)
    return rows


def fer2013(root: Path, n: int, tmp: Path) -> dict:
    from fer_features.data import load_dataset
    from fer_features.features.cache import load_cache
    from fer_features.features.extract import extract_dataset

    ds = load_dataset(root / "fer2013" / "fer2013.csv.gz")
    content = ds.content_ids()
    distinct = len(set(c for c in content if not c.startswith("bad:")))
    sub = ds.subset(sorted(np.random.default_rng(0).choice(len(ds), n, replace=False)))  # rows are sorted by class
    path = extract_dataset(sub, cache_dir=tmp / "fer", image_size=112, progress=False, log=lambda m: None)
    attrs = load_cache(path).attrs
    per_image = float(attrs["extract_seconds"]) / max(1, int(attrs["computed_rows"]))
    return {"rows": len(ds), "distinct": distinct, "bad": sum(c.startswith("bad:") for c in content),
            "copies": len(ds) - distinct, "per_image_s": per_image, "n_measured": n,
            "saved_s": (len(ds) - distinct) * per_image, "full_s": len(ds) * per_image}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", default="../shared/datasets")
    ap.add_argument("--sets", default="kdef,ckplus48")
    ap.add_argument("--fer-n", type=int, default=512, help="FER2013 rows extracted to measure the per-image cost")
    ap.add_argument("--out", default="bench/results/reuse.md")
    a = ap.parse_args(argv)
    root = Path(a.root)
    before = load_average("before")
    t0 = time.perf_counter()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in a.sets.split(","):
            rows += one_set(root, name, Path(tmp) / name)
        fer = fer2013(root, a.fer_n, Path(tmp))
    after = load_average("after")
    md = ["# Extract once, describe many times", "",
          f"Command: `python bench/reuse.py --sets {a.sets} --fer-n {a.fer_n}` ({time.perf_counter() - t0:.0f} s)",
          f"Machine: {machine_info([('tensorflow', 'TensorFlow')])}; load average before "
          f"{before[0]:.2f}, after {after[0]:.2f} (1 min).", "",
          "Each row is one `python -m fer_features extract` process in the same cache folder, timed from start to "
          "exit (imports and, for the full run, the model build included); `extract s` is the cache's own "
          "`extract_seconds`; `network rows` the images the network ran on. Default features (Haar box crop, "
          "efficientnet_lite0 block4c_add grid7, flip average).", ""]
    md += md_table(["set", "run", "images", "process s", "extract s", "network rows", "share of full"], "lllrrrr",
                   [[r[0], r[1], r[2], f"{r[3]:.1f}", f"{r[4]:.2f}", r[5], r[6]] for r in rows])
    bad = f", {fer['bad']} unreadable" if fer["bad"] else ""
    md += ["", "## FER2013: each distinct image embedded once", "",
           f"{fer['rows']} rows, {fer['distinct']} distinct images ({fer['copies']} rows are pixel-identical copies "
           f"of another row{bad}). "
           f"The default features at 112 px cost {1000 * fer['per_image_s']:.1f} ms per image here (measured on "
           f"{fer['n_measured']} random rows), so a full extraction embeds {fer['copies']} fewer images: about "
           f"{fer['saved_s'] / 60:.1f} of {fer['full_s'] / 60:.1f} minutes saved (arithmetic from that measured "
           "rate, not a timed full run)."]
    save_report(a.out, md, {"rows": rows, "fer2013": fer})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
