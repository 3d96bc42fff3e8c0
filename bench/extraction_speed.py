"""Extraction overhead: the raw network forward on ready tensors vs the whole `extract` pipeline.

    python bench/extraction_speed.py [--data ../shared/datasets/jaffe] [--n 160] [--out bench/results/extraction_speed.md]

For each backbone and input size, in a fresh process each (so peak memory is that configuration's):
1. raw: ``FeatureExtractor.embed`` on already decoded, preprocessed uint8 tensors (the network alone, with the
   extractor's own batching), after one warm-up batch;
2. pipeline: ``extract_dataset`` on the same images (decode, preprocess, forward, HDF5 write), its
   ``extract_seconds`` (model build reported apart);
3. cached re-run: the identical ``extract_dataset`` call again (a cache hit: no model is built).
Random weights for the Keras backbones (timing does not depend on them); ImageNet for the offline default.
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

from _common import best_of, machine_info, md_table, run_seconds, save_report, start_run

BACKBONES = [("efficientnet_lite0", "imagenet"), ("mobilenet_v2", "random"), ("resnet50", "random")]
SIZES = [96, 160, 224]


def _one(args) -> dict:
    name, weights, size, data, n, batch, product_defaults = args
    # plain: the network's input path alone (no face detection, one forward pass per image); the product's
    # defaults add the Haar face crop and the flip average (two forward passes) to both raw and pipeline
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

    from fer_features.data.formats import load_dataset
    from fer_features.features.extractor import WHOLE_IMAGE, FeatureExtractor
    from fer_features.features.extract import extract_dataset

    opts = {} if product_defaults else WHOLE_IMAGE

    ds = load_dataset(data)
    ds = ds.subset(range(min(n, len(ds))))
    fx = FeatureExtractor(backbone=name, weights=weights, image_size=size, batch_size=batch, **opts)
    t = time.perf_counter()
    fx.fit()
    build = time.perf_counter() - t
    ready, _ = fx.prepare([ds.load_image(i) for i in range(len(ds))])
    fx.embed(ready[:batch])  # warm-up (graph tracing)
    raw = best_of(lambda: fx.embed(ready), 3, warmup=False)  # best of 3: short runs on 2 shared cores are noisy
    import h5py

    pipe, pipe_build, pipe_wall = float("inf"), 0.0, 0.0
    for _ in range(2):  # best of 2, each into an empty cache folder
        with tempfile.TemporaryDirectory() as tmp:
            t = time.perf_counter()
            path = extract_dataset(ds, cache_dir=tmp, backbone=name, weights=weights, image_size=size,
                                   batch_size=batch, progress=False, log=lambda m: None, **opts)
            wall = time.perf_counter() - t
            with h5py.File(path) as f:
                if float(f.attrs["extract_seconds"]) < pipe:
                    pipe, pipe_build, pipe_wall = (float(f.attrs["extract_seconds"]),
                                                   float(f.attrs["model_build_seconds"]), wall)
            t = time.perf_counter()
            extract_dataset(ds, cache_dir=tmp, backbone=name, weights=weights, image_size=size,
                            batch_size=batch, progress=False, log=lambda m: None, **opts)
            hit = time.perf_counter() - t
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # MiB (Linux reports KiB)
    k = len(ds)
    return {"backbone": name, "weights": weights, "size": size, "n": k, "dim": fx.n_features_out_,
            "product_defaults": product_defaults, "settings": f"{fx.settings()['layer']}@{fx.settings()['pooling']}"
                        + (", Haar crop + flip average" if product_defaults else ""),
            "raw_ips": k / raw, "pipeline_ips": k / pipe, "ratio": raw / pipe, "pipeline_wall_s": pipe_wall,
            "model_build_s": pipe_build, "first_build_s": build, "cache_hit_s": hit, "peak_rss_mib": peak}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="../shared/datasets/jaffe")
    ap.add_argument("--n", type=int, default=160, help="images per configuration")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--backbones", default=",".join(b for b, _ in BACKBONES))
    ap.add_argument("--sizes", default=",".join(map(str, SIZES)))
    ap.add_argument("--no-defaults-row", action="store_true",
                    help="skip the extra row with the product's default Haar crop and flip average")
    ap.add_argument("--out", default="bench/results/extraction_speed.md")
    a = ap.parse_args(argv)

    weights = dict(BACKBONES)
    jobs = [(b, weights.get(b, "random"), int(s), a.data, a.n, a.batch_size, False)
            for b in a.backbones.split(",") for s in a.sizes.split(",")]
    if not a.no_defaults_row:  # the product's default extraction, default backbone and size
        jobs.append((BACKBONES[0][0], BACKBONES[0][1], 224, a.data, a.n, a.batch_size, True))
    t0 = start_run()
    rows = []
    ctx = mp.get_context("spawn")
    for job in jobs:
        with ctx.Pool(1) as pool:  # fresh process: clean TF state and a per-configuration peak memory
            r = pool.apply(_one, (job,))
        rows.append(r)
        print(f"{r['backbone']:<18} {r['size']:>4}px  raw {r['raw_ips']:7.1f} img/s  pipeline {r['pipeline_ips']:7.1f} "
              f"img/s  ({100 * r['ratio']:.0f} % of raw)  hit {r['cache_hit_s']:.3f} s  peak {r['peak_rss_mib']:.0f} MiB",
              flush=True)
    wall = run_seconds(t0)
    md = ["# Extraction speed: raw network forward vs the full `extract` pipeline", "",
          f"Command: `python bench/extraction_speed.py --n {a.n}` ({Path(a.data).name} images; run time {wall:.0f} s)",
          f"Machine: {machine_info([('tensorflow', 'TensorFlow')])}; TF intra-op threads: default ({os.cpu_count()}).",
          "raw = `FeatureExtractor.embed` on ready uint8 tensors (the network alone; best of 3 passes); pipeline = "
          "`extract_dataset` (decode, preprocess, forward, HDF5 write; best of 2 runs; model build excluded, shown "
          "apart); features = each backbone's default layer@pooling, whole image, one forward pass per image "
          "(no face crop, no flip average), so the ratio is the input path's overhead. The last row is the "
          "product's default extraction (Haar face crop + flip average): its raw rate includes both forward "
          "passes, its pipeline the face detection. Cached re-run: the identical call again, "
          "wall time (it loads no model).", "",
          *md_table(["backbone", "input", "features", "raw img/s", "pipeline img/s", "pipeline / raw", "model build s",
                     "cached re-run s", "peak RSS MiB"], "lrlrrrrrr",
                    ([f"{r['backbone']} ({r['weights']})", r["size"], f"{r['settings']} ({r['dim']}-d)",
                      f"{r['raw_ips']:.1f}", f"{r['pipeline_ips']:.1f}", f"{100 * r['ratio']:.0f} %",
                      f"{r['model_build_s']:.1f}", f"{r['cache_hit_s']:.3f}", f"{r['peak_rss_mib']:.0f}"]
                     for r in rows))]
    worst = min((r for r in rows if not r["product_defaults"]), key=lambda r: r["ratio"])
    md += ["", f"Lowest pipeline/raw ratio: {worst['backbone']} at {worst['size']} px, {100 * worst['ratio']:.0f} %."]
    save_report(a.out, md, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
