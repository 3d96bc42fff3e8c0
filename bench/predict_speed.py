"""predict on real material: faces/s on JAFFE images, frames/s on generated videos, against extract and a naive loop.

    python bench/predict_speed.py [--jaffe ../shared/datasets/jaffe] [--n 96] [--naive-n 24] [--rounds 3] [--long-s 300]

Model: the product's default extraction (efficientnet_lite0, 224 px, Haar crop, flip average) of JAFFE (a cache in
``--cache-dir``, extracted first if absent) with a linear_svm trained on all 213 images through the API (the
speeds do not depend on what it learnt). Model build (network load + graph trace) is excluded everywhere.

* extract: ``extract_dataset`` on a folder of the same N images (fresh cache; decode, detect, crop, forward x2
  for the flip average, HDF5 write), its own ``extract_seconds``;
* predict (batched): ``inference.run`` over the same N files (decode, detect every face, crop, batches of 32
  faces across images, classifier);
* naive loop: per image, detect, then one call of the model per face (a ``FaceClassifier`` with batch size 1, so
  each call is one face, not a zero-padded batch of 32) on ``--naive-n`` of the images; and the same loop with
  the default batch size (every call zero-padded to 32 faces, as ``FeatureExtractor`` does) on one per round;
* the three run in ``--rounds`` interleaved rounds over chunks of the images (the machine is shared);
* videos: 640x480 at 25 fps, 10 s, JAFFE faces pasted on a grey canvas (one, or three side by side), the face
  changing each second; predict every 5th frame (5 sampled frames/s of video);
* memory: peak RSS (``ru_maxrss``) of a fresh process predicting a 10 s and a ``--long-s`` video (10 fps, three
  faces) at ``--fps 0.5``, same model.

Writes bench/results/predict_speed.md (+ .json).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from _common import md_row, md_table, run_seconds, save_report, start_run

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "results"


def make_model(jaffe: Path, cache_dir: Path, path: Path) -> Path:
    from fer_features.features.cache import load_cache
    from fer_features.classify.presets import make_classifier
    from fer_features.features.extract import extract_dataset
    from fer_features.features.spec import cache_options
    from fer_features.apply.models import save_model

    cache = load_cache(extract_dataset(jaffe, cache_dir=cache_dir, progress=False, log=lambda m: None))
    pipe = make_classifier("linear_svm", engine="sklearn", probability=True).fit(cache.features, cache.labels)
    return save_model(path, pipe, cache.label_names, cache_options(cache), {"bench": "predict_speed"})


def make_video(path: Path, jaffe_files, seconds: float, fps: float, n_faces: int) -> Path:
    import cv2

    from fer_features.data.images import read_image

    faces = [cv2.resize(read_image(f), (180, 180)) for f in jaffe_files[:30]]
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (640, 480))
    for i in range(int(round(seconds * fps))):
        frame = np.full((480, 640), 120, np.uint8)
        k = int(i / fps)
        for j in range(n_faces):
            x = 20 + j * 210 if n_faces > 1 else 230
            frame[150:330, x:x + 180] = faces[(k * n_faces + j) % len(faces)]
        w.write(cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR))
    w.release()
    return path


def timed_run(clf, paths, **kw):
    from fer_features.apply.predict import item_rows, run

    t = time.perf_counter()
    items = list(run(clf, paths, progress=False, **kw))
    dt = time.perf_counter() - t
    n_faces = sum(len(r) for r in (item_rows(it, clf.labels) for it in items) if r and r[0]["face"] is not None)
    return dt, len(items), n_faces


def naive(clf1, paths):
    """Per image: read, detect, then the model once per face."""
    from fer_features.data.images import read_image

    t = time.perf_counter()
    n = 0
    for p in paths:
        img = read_image(p)
        boxes, batch, _ = clf1.faces(img)
        for k in range(len(batch)):
            clf1.proba(batch[k:k + 1])
            n += 1
    return time.perf_counter() - t, n


def memory_child(model: str, video: str, fps: float) -> None:
    from fer_features.apply.predict import predict

    t = time.perf_counter()
    df = predict(model, [video], fps=fps, progress=False)
    print(json.dumps({"rows": len(df), "seconds": time.perf_counter() - t,
                      "maxrss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--jaffe", default=str(ROOT.parent / "shared" / "datasets" / "jaffe"))
    ap.add_argument("--cache-dir", default="/tmp/wtpred_cache")
    ap.add_argument("--n", type=int, default=96)
    ap.add_argument("--naive-n", type=int, default=24)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--long-s", type=float, default=300)
    ap.add_argument("--memory-child", nargs=3, metavar=("MODEL", "VIDEO", "FPS"))
    a = ap.parse_args()
    if a.memory_child:
        memory_child(a.memory_child[0], a.memory_child[1], float(a.memory_child[2]))
        return
    from fer_features.features.extract import extract_dataset
    from fer_features.apply.predict import FaceClassifier
    from fer_features.apply.models import load_model

    t_all = start_run()
    jaffe = Path(a.jaffe)
    files = sorted(jaffe.glob("*.tiff"))[: a.n]
    tmp = Path(tempfile.mkdtemp(prefix="predict_speed_", dir="/tmp"))
    model_path = make_model(jaffe, Path(a.cache_dir), tmp / "default.skops")
    bundle = load_model(model_path)
    res: dict = {"n_images": len(files), "rounds": a.rounds,
                 "model": "efficientnet_lite0 224 px (default extraction) + linear_svm"}
    clf = FaceClassifier(bundle, batch_size=32)
    clf1 = FaceClassifier(bundle, batch_size=1)
    timed_run(clf, files[:8])  # warm-up (first-call costs)
    naive(clf1, files[:4])
    # the machine is shared: the three ways run in interleaved rounds (a chunk of images each), so that a change
    # of load hits all of them alike; totals over the rounds
    import h5py
    tot = dict(extract_s=0.0, predict_s=0.0, predict_items=0, predict_faces=0, naive_s=0.0, naive_faces=0,
               naive32_s=0.0, naive32_faces=0)
    chunk = -(-len(files) // a.rounds)
    for r in range(a.rounds):
        part = files[r * chunk:(r + 1) * chunk]
        sub = tmp / f"jaffe{r}"
        sub.mkdir()
        for f in part:
            (sub / f.name).symlink_to(f)
        c = extract_dataset(sub, cache_dir=tmp / f"cache{r}", progress=False, log=lambda m: None)
        with h5py.File(c, "r") as f:
            tot["extract_s"] += float(f.attrs["extract_seconds"])
        dt, n_items, n_faces = timed_run(clf, part)
        tot["predict_s"] += dt
        tot["predict_items"] += n_items
        tot["predict_faces"] += n_faces
        dt, nf = naive(clf1, part[: max(1, a.naive_n // a.rounds)])
        tot["naive_s"] += dt
        tot["naive_faces"] += nf
        dt, nf = naive(clf, part[:1])  # the default batch size: each call a padded batch of 32
        tot["naive32_s"] += dt
        tot["naive32_faces"] += nf
    res.update(tot)

    for n_faces in (1, 3):
        v = make_video(tmp / f"v{n_faces}.mp4", files, 10, 25.0, n_faces)
        dt, n_items, nf = timed_run(clf, [v], every=5)
        res[f"video{n_faces}"] = {"seconds": dt, "frames": n_items, "faces": nf}

    short = make_video(tmp / "short.mp4", files, 10, 10.0, 3)
    t = time.perf_counter()
    long_ = make_video(tmp / "long.mp4", files, a.long_s, 10.0, 3)
    res["long_video_write_s"] = time.perf_counter() - t
    for name, v in (("short", short), ("long", long_)):
        p = subprocess.run([sys.executable, __file__, "--memory-child", str(model_path), str(v), "0.5"],
                           capture_output=True, text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
        res[f"mem_{name}"] = json.loads(p.stdout.strip().splitlines()[-1]) if p.returncode == 0 else p.stderr[-500:]
    res["long_s"] = a.long_s
    res["run_s"] = run_seconds(t_all)
    print(save_report(OUT / "predict_speed.md", markdown(res, a), res, echo=False).read_text())


def markdown(r: dict, a) -> list[str]:
    n = r["n_images"]
    ext_per = r["extract_s"] / n
    pred_per = r["predict_s"] / r["predict_items"]
    naive_per_face = r["naive_s"] / r["naive_faces"]
    pred_per_face = r["predict_s"] / r["predict_faces"]
    speedup = naive_per_face / pred_per_face
    ratio = pred_per / ext_per
    ms, ml = r["mem_short"], r["mem_long"]
    lines = [
        "# predict on real material: speed and memory",
        "",
        f"Command: `python bench/predict_speed.py --n {a.n} --naive-n {a.naive_n} --rounds {a.rounds} "
        f"--long-s {a.long_s:g}` "
        f"(run time {r['run_s']:.0f} s). Machine: 2 shared cores (other jobs running: absolute rates are noisy; "
        "extract, batched predict and the naive loops ran in interleaved rounds over chunks of the images, so "
        "that load changes hit them alike; totals over the rounds).",
        f"Model: {r['model']}, trained on all of JAFFE through the API. Model build excluded everywhere.",
        "",
        *md_table(["what", "items", "faces", "seconds", "per image / frame", "faces/s"], "lrrrrr", [
            [f"extract (same {n} JAFFE images, fresh cache)", n, n, f"{r['extract_s']:.1f}", f"{1000 * ext_per:.1f} ms",
             f"{n / r['extract_s']:.1f}"],
            ["predict, batched (32 faces a batch)", r["predict_items"], r["predict_faces"], f"{r['predict_s']:.1f}",
             f"{1000 * pred_per:.1f} ms", f"{r['predict_faces'] / r['predict_s']:.1f}"],
            ["naive loop: the model once per face", r["naive_faces"], r["naive_faces"], f"{r['naive_s']:.1f}",
             f"{1000 * naive_per_face:.1f} ms", f"{r['naive_faces'] / r['naive_s']:.1f}"],
            ["naive loop with the default batch size (each call zero-padded to 32)", r["naive32_faces"],
             r["naive32_faces"], f"{r['naive32_s']:.1f}", f"{1000 * r['naive32_s'] / r['naive32_faces']:.1f} ms",
             f"{r['naive32_faces'] / r['naive32_s']:.1f}"],
        ]),
    ]
    for k in (1, 3):
        v = r[f"video{k}"]
        lines.append(md_row([f"video 640x480, {k} face(s)/frame, every 5th of 250 frames", f"{v['frames']} frames",
                             v["faces"], f"{v['seconds']:.1f}", f"{1000 * v['seconds'] / v['frames']:.1f} ms/frame "
                             f"({v['frames'] / v['seconds']:.1f} frames/s)", f"{v['faces'] / v['seconds']:.1f}"]))
    lines += ["", *md_table(["memory: fresh process, `--fps 0.5`, three faces a frame", "video", "rows (faces)",
                             "seconds", "peak RSS MiB"], "llrrr")]
    for name, m, dur in (("short", ms, 10), ("long", ml, r["long_s"])):
        if isinstance(m, dict):
            lines.append(md_row([name, f"{dur:g} s at 10 fps", m["rows"], f"{m['seconds']:.1f}",
                                 f"{m['maxrss_mib']:.0f}"]))
        else:
            lines.append(f"| {name} | {dur:g} s | failed: {m!r} | | |")
    ok_mem = isinstance(ms, dict) and isinstance(ml, dict) and ml["maxrss_mib"] <= ms["maxrss_mib"] * 1.05
    lines += [
        "",
        "Targets:",
        f"- batched >= 3x the per-face loop (batch size 1): {speedup:.1f}x per face -> "
        f"{'met' if speedup >= 3 else 'MISSED'}; against the loop at the default batch size: "
        f"{(r['naive32_s'] / r['naive32_faces']) / pred_per_face:.1f}x",
        f"- within 1.25x of extract's per-image cost: {ratio:.2f}x -> {'met' if ratio <= 1.25 else 'MISSED'}",
        "- peak memory on the long video no higher than on the short one (5 % tolerance for allocator noise): "
        + ("met" if ok_mem else "MISSED")
        + (f" ({ml['maxrss_mib']:.0f} vs {ms['maxrss_mib']:.0f} MiB)" if isinstance(ml, dict) and isinstance(ms, dict)
           else ""),
    ]
    lines += [
        "",
        "Why batching cannot give 3x here: on this 2-core CPU the network's cost per face is about the same at batch "
        "size 1 and 32 (the convolutions are compute-bound; a batch only saves the per-call overhead, a few ms), "
        "and the Haar detection, the crop and the flip average (two forward passes) are per face whatever the "
        "batching. Batching matters against a loop that calls an extractor with its default batch size, since "
        "each call then pads one face to 32 (the last row of the first table). The long video's frames are read "
        "and decoded one at a time (skipped frames grabbed, not kept), so its peak RSS is the model's and one "
        "batch's, like the short video's.",
    ]
    return lines


if __name__ == "__main__":
    main()
