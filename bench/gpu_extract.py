"""Extraction images/s on the device the Keras backend computes on (a GPU where it sees one), end to end and
network only, at batch sizes 1, 32 and 256.

    KERAS_BACKEND=jax python bench/gpu_extract.py --data ../shared/datasets/ckplus48 --out bench/results
    python bench/gpu_extract.py --data ../shared/datasets/ckplus48 --limit 64 --out /tmp/cpu   # TensorFlow, CPU

Two configurations, both with extract's default preparation (OpenCV Haar face crop, margin 0, flip average:
two forward passes per image), 224 px:
  default   efficientnet_lite0, ImageNet weights, block4c_add@grid7 (3,920 values): the product's default features
  resnet50  random weights (speed does not depend on them), last layer, global average (2,048 values)
For each:
  1. network only: ``FeatureExtractor.embed`` on ready 224x224 crops (the network, pooling and flip average),
     at batch sizes 1, 32 and 256, each after one warm-up call at that size (graph compilation excluded);
     batch 1 is one face per call, the way a per-face loop calls a model (on --single-limit crops); with fewer
     crops than a batch, they are repeated to fill one batch;
  2. end to end: ``extract_dataset`` into an empty cache folder (decode, Haar, resize, network, pooling, HDF5
     write), its ``extract_seconds`` (model build and compilation excluded, reported apart); at extract's
     defaults (batch 32, 2 loader threads) and at batch 256 with one loader thread per core;
  3. where ``--reference`` names a cache of the same images made elsewhere (e.g. TensorFlow on a CPU), the
     largest difference between its features and this run's.
With the JAX backend, compiled programs are kept in a temporary persistent cache, so a second model of the
same architecture (the end-to-end runs build their own) does not compile again.
Writes gpu_extract.md and gpu_extract.json into --out (after every step, so a run cut short keeps its rows).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import cpu_model, load_average, md_table, save_report

CONFIGS = {
    "default": dict(backbone="efficientnet_lite0", weights="imagenet"),
    "resnet50": dict(backbone="resnet50", weights="random", layer="last", pooling="avg"),
}
BATCH_SIZES = (1, 32, 256)


def _setup_jax_cache(folder: str) -> None:
    """Persistent compilation cache (before any compilation): equal programs compile once per run."""
    import jax

    try:
        jax.config.update("jax_compilation_cache_dir", folder)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
        jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)
    except (AttributeError, KeyError, ValueError) as exc:  # another JAX version: only slower builds
        print(f"no persistent compilation cache: {exc}", flush=True)


def _machine() -> dict:
    from importlib import metadata

    from fer_features.backbones import device

    info = {"keras_backend": device.keras_backend(), "device": device.describe(), "python": platform.python_version(),
            "cpu_count": os.cpu_count(), "cpu": cpu_model("unknown")}
    for pkg in ("keras", "jax", "jaxlib", "tensorflow", "tensorflow-cpu", "torch", "numpy", "opencv-python-headless"):
        try:
            info[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            pass
    if info["keras_backend"] == "jax":
        import jax

        info["jax_devices"] = [str(d) for d in jax.devices()]
    if shutil.which("nvidia-smi"):
        q = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
                           capture_output=True, text=True, timeout=30)
        info["nvidia_smi"] = q.stdout.strip() or q.stderr.strip()
    return info


def _timed_embed(fx, crops, batch_size: int) -> dict:
    """images/s of ``fx.embed`` at ``batch_size`` on ``crops``, after one warm-up call (compilation)."""
    fx.set_params(batch_size=batch_size)
    t = time.perf_counter()
    fx.embed(crops[:batch_size])
    warm = time.perf_counter() - t
    best = float("inf")
    for _ in range(2):  # best of 2
        t = time.perf_counter()
        fx.embed(crops)
        best = min(best, time.perf_counter() - t)
    passes = 2 if fx.flip_average else 1
    return {"batch_size": batch_size, "n": len(crops), "seconds": best, "images_per_s": len(crops) / best,
            "forward_passes_per_s": passes * len(crops) / best, "warmup_s": warm}


def _end_to_end(ds, cfg: dict, batch_size: int, workers: int, reference: str | None) -> dict:
    import h5py
    import numpy as np

    from fer_features.features.cache import load_cache
    from fer_features.features.extract import extract_dataset

    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        path = extract_dataset(ds, cache_dir=tmp, batch_size=batch_size, workers=workers, progress=False,
                               log=lambda m: None, **cfg)
        wall = time.perf_counter() - t
        with h5py.File(path) as f:
            extract_s, build_s = float(f.attrs["extract_seconds"]), float(f.attrs["model_build_seconds"])
            on = str(f.attrs.get("compute_device", "?"))
        row = {"batch_size": batch_size, "workers": workers, "n": len(ds), "seconds": extract_s,
               "images_per_s": len(ds) / extract_s, "model_build_s": build_s, "wall_s": wall, "compute_device": on}
        if reference:
            ours, ref = load_cache(path), load_cache(reference)
            where = {p: i for i, p in enumerate(ref.paths)}
            common = [(i, where[p]) for i, p in enumerate(ours.paths) if p in where]
            if common:
                a = ours.features[[i for i, _ in common]]
                b = ref.features[[j for _, j in common]]
                diff = np.abs(a - b)
                cos = np.sum(a * b, 1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1) + 1e-12)
                row["vs_reference"] = {"rows": len(common), "max_abs_diff": float(diff.max()),
                                       "max_abs_value": float(np.abs(b).max()),
                                       "max_rel_diff": float(diff.max() / max(np.abs(b).max(), 1e-12)),
                                       "mean_abs_diff": float(diff.mean()), "min_cosine": float(cos.min()),
                                       "allclose_1e-4": bool(np.allclose(a, b, rtol=1e-4, atol=1e-4)),
                                       "allclose_1e-2": bool(np.allclose(a, b, rtol=1e-2, atol=1e-2))}
    return row


def _markdown(res: dict) -> str:
    m = res["machine"]
    lines = ["# Extraction speed on " + m["device"], "",
             f"Command: `{res['command']}` (run time {res.get('wall_s', 0):.0f} s).",
             f"Machine: {m['cpu']}, {m['cpu_count']} cores; " + (f"GPU: {m['nvidia_smi']}; " if "nvidia_smi" in m else "")
             + f"Python {m['python']}, Keras {m.get('keras', '?')} on {m['keras_backend']}"
             + (f" {m.get('jax', '')}" if m["keras_backend"] == "jax" else "") + ".",
             f"Images: {res['n']} from `{res['data']}`. Both configurations use extract's default preparation: "
             + ("no face crop (see the note), " if res.get("note") else "Haar face crop (margin 0), ")
             + "224 px, flip average (two forward passes per image; images/s counts images).",
             "Network only = `FeatureExtractor.embed` on ready crops (best of 2, after a warm-up call at that batch "
             "size: compilation excluded). End to end = `extract_dataset` into an empty cache (decode, Haar, "
             "resize, network, pooling, HDF5 write; model build and compilation excluded, shown apart).", ""]
    for name, r in res["configs"].items():
        lines += [f"## {name}: {r['label']}", "", f"Model build (incl. first compilation): {r.get('build_s', 0):.1f} s; "
                  f"preparation alone ({'no face crop' if res.get('note') else 'Haar'} + resize of decoded images, one thread): "
                  f"{r.get('prep_images_per_s', 0):.0f} img/s.",
                  "", *md_table(["route", "batch", "loader threads", "images", "images/s", "forward passes/s",
                                 "vs network batch 1"], "lrrrrrr")]
        one = next((x["images_per_s"] for x in r.get("network", []) if x["batch_size"] == 1), None)
        for route, xs in (("network only", r.get("network", [])), ("end to end", r.get("end_to_end", []))):
            for x in xs:  # network only: no loader threads; end to end: no forward passes/s (an empty cell)
                e2e = route == "end to end"
                passes = "" if e2e else f"{x['forward_passes_per_s']:.1f} "
                rel = f"{x['images_per_s'] / one:.1f}x" if one else ""
                lines.append(f"| {route} | {x['batch_size']} | {x['workers'] if e2e else '-'} | {x['n']} | "
                             f"{x['images_per_s']:.1f} | {passes}| {rel} |")
        for x in r.get("end_to_end", []):
            v = x.get("vs_reference")
            if v:
                lines += ["", f"Features vs the reference cache ({v['rows']} rows, batch {x['batch_size']}): largest "
                          f"difference {v['max_abs_diff']:.2e} (values up to {v['max_abs_value']:.1f}: relative "
                          f"{v['max_rel_diff']:.1e}), mean {v['mean_abs_diff']:.1e}, lowest cosine "
                          f"{v['min_cosine']:.6f}; equal at rtol=atol=1e-4: {v['allclose_1e-4']}, "
                          f"at 1e-2: {v['allclose_1e-2']}."]
        lines.append("")
    if res.get("note"):
        lines += ["Note: " + res["note"] + ".", ""]
    if res.get("skipped"):
        lines += ["Skipped (time budget): " + ", ".join(res["skipped"]), ""]
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="../shared/datasets/ckplus48", help="a dataset extract reads (all images)")
    ap.add_argument("--limit", type=int, default=0, help="use N images, evenly spaced over the dataset (0: all)")
    ap.add_argument("--single-limit", type=int, default=256,
                    help="images for the batch-1 timing (one call per face is slow on a CPU)")
    ap.add_argument("--batch-sizes", default=",".join(map(str, BATCH_SIZES)), help="network-only batch sizes")
    ap.add_argument("--e2e-batch-sizes", default="32,256",
                    help="end-to-end batch sizes: the first with extract's 2 loader threads, the others with one "
                         "thread per core")
    ap.add_argument("--configs", default=",".join(CONFIGS), help=f"of {', '.join(CONFIGS)}")
    ap.add_argument("--reference", default=None, help="a cache of the default features of the same images")
    ap.add_argument("--budget-s", type=float, default=210, help="skip the remaining steps past this many seconds")
    ap.add_argument("--out", default="bench/results", help="folder for gpu_extract.md / .json")
    a = ap.parse_args(argv)
    load_average("before")
    t_start = time.perf_counter()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

    from fer_features.backbones.device import keras_backend

    jax_cache = tempfile.mkdtemp(prefix="jax-cache-")
    if keras_backend() == "jax":
        _setup_jax_cache(jax_cache)
    import numpy as np

    from fer_features.data.formats import load_dataset
    from fer_features.features.extractor import FeatureExtractor

    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    ds = load_dataset(a.data)
    if a.limit and a.limit < len(ds):  # evenly spaced, so that every class is there (a folder per class)
        ds = ds.subset(sorted({int(i) for i in np.linspace(0, len(ds) - 1, a.limit)}))
    res = {"command": " ".join(["python", *sys.argv]), "data": a.data, "n": len(ds), "machine": _machine(),
           "configs": {}, "skipped": []}
    print(json.dumps(res["machine"]), flush=True)

    def save():
        res["wall_s"] = time.perf_counter() - t_start
        save_report(out / "gpu_extract.md", _markdown(res), res, end="", echo=False)

    def over(step: str) -> bool:
        if time.perf_counter() - t_start > a.budget_s:
            res["skipped"].append(step)
            print(f"skipped (budget): {step}", flush=True)
            return True
        return False

    import cv2

    if not hasattr(cv2, "CascadeClassifier"):  # OpenCV 5: no Haar cascades (the package requires opencv<5)
        res["note"] = (f"OpenCV {cv2.__version__} here has no Haar cascades (OpenCV 5 removed them; fer_features "
                       "requires opencv<5): face crop off (--face-crop none), so end to end lacks the Haar step; "
                       "network-only rates are unaffected (same 224 px input)")
        print(res["note"], flush=True)
        for cfg in CONFIGS.values():
            cfg["face_crop"] = "none"
    images = [ds.load_image(i) for i in range(len(ds))]
    cores = os.cpu_count() or 2
    for name in a.configs.split(","):
        cfg = CONFIGS[name]
        if over(f"{name}: all"):
            continue
        r = res["configs"][name] = {"label": ", ".join(f"{k}={v}" for k, v in cfg.items())}
        t = time.perf_counter()
        fx = FeatureExtractor(batch_size=32, **cfg).fit()
        r["build_s"] = time.perf_counter() - t
        r["features"] = int(fx.n_features_out_)
        t = time.perf_counter()
        crops, _ = fx.prepare(images)
        r["prep_images_per_s"] = len(images) / (time.perf_counter() - t)
        r["network"], r["end_to_end"] = [], []
        sizes = [int(b) for b in a.batch_sizes.split(",")]
        for bs in sorted(sizes, key=lambda b: (b == 1, b)):  # batch 1 (the slowest) last
            if over(f"{name}: network batch {bs}"):
                continue
            # a full batch at least (crops repeated where fewer), so that no timing is of zero padding
            sub = crops[:a.single_limit] if bs == 1 else np.resize(crops, (max(len(crops), bs), *crops.shape[1:]))
            x = _timed_embed(fx, sub, bs)
            r["network"].append(x)
            print(f"{name} network batch {bs}: {x['images_per_s']:.1f} img/s", flush=True)
            save()
        r["network"].sort(key=lambda x: x["batch_size"])
        del fx
        e2e = [int(b) for b in a.e2e_batch_sizes.split(",") if b]
        for bs, workers in [(b, 2 if i == 0 else cores) for i, b in enumerate(e2e)]:
            if over(f"{name}: end to end batch {bs}"):
                continue
            x = _end_to_end(ds, cfg, bs, workers, a.reference if name == "default" and "note" not in res else None)
            r["end_to_end"].append(x)
            print(f"{name} end to end batch {bs}, {workers} threads: {x['images_per_s']:.1f} img/s"
                  + (f"; vs reference {x['vs_reference']}" if "vs_reference" in x else ""), flush=True)
            save()
    load_average("after")
    save()
    shutil.rmtree(jax_cache, ignore_errors=True)
    print((out / "gpu_extract.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
