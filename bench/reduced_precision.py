"""bfloat16 (`extract --precision bfloat16`, Keras mixed_bfloat16) vs float32: speed, and downstream accuracy.

    python bench/reduced_precision.py [--data-root ../shared/datasets]

1. Speed: raw forward images/s on ready 224 px tensors (batch 32, best of 3 x 4 batches), each backbone and
   policy in a fresh process: efficientnet_lite0 (ImageNet, default layer), mobilenet_v2 and resnet50 (random
   weights: speed only).
2. Accuracy: efficientnet_lite0's default features of JAFFE and CK+48 computed in float32 and in
   bfloat16 from the same preprocessed images, then cubic SVM (default engine), JAFFE leave-one-subject-out
   and CK+48 subject-grouped 10-fold, same folds; plus the relative feature error.
The rule (issue 5): offer bf16 as an option only if accuracy moves by less than 0.5 points on both.

Writes bench/results/reduced_precision.md (+ .json).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from _common import best_of, machine_info, md_row, md_table, pct, run_seconds, save_report, start_run

SPEED = [("efficientnet_lite0", "imagenet"), ("mobilenet_v2", "random"), ("resnet50", "random")]
POLICIES = ("float32", "bfloat16")


def _build(name, weights, precision, size=224):
    from fer_features.features.extractor import WHOLE_IMAGE, FeatureExtractor

    return FeatureExtractor(backbone=name, weights=weights, image_size=size, precision=precision,
                            **WHOLE_IMAGE).fit()  # the network's own cost


def child_speed(name, weights, policy, size=224) -> dict:
    ext = _build(name, weights, policy, size)
    x = np.random.default_rng(0).uniform(0, 255, (32, size, size, 3)).astype(np.float32)
    ext._forward(x)  # warm-up (graph tracing)
    best = best_of(lambda: [ext._forward(x) for _ in range(4)], 3, warmup=False)
    return {"backbone": name, "weights": weights, "policy": policy, "size": size, "images_per_s": 128 / best,
            "layer": ext.settings_["layer"], "pooling": ext.settings_["pooling"]}


def accuracy_part(data_root: Path) -> list[dict]:
    from fer_features import evaluation as ev
    from fer_features.data.formats import load_dataset

    out = []
    exts = {p: _build("efficientnet_lite0", "imagenet", p) for p in POLICIES}
    for ds_name, protocol in (("jaffe", "loso"), ("ckplus48", "group-kfold")):
        ds = load_dataset(data_root / ds_name)
        images = exts["float32"].prepare([ds.load_image(i) for i in range(len(ds))])[0]
        feats = {p: e.embed(images) for p, e in exts.items()}
        names = ds.label_names
        y = np.array([names.index(r.label) for r in ds.records])
        groups = np.array([r.subject for r in ds.records], dtype=object)
        splits, info = ev.make_splits(protocol, y, groups, folds=10)
        rel = np.linalg.norm(feats["bfloat16"] - feats["float32"]) / np.linalg.norm(feats["float32"])
        row = {"dataset": ds_name, "protocol": info["description"], "relative_feature_error": float(rel)}
        for p in POLICIES:
            r = ev.evaluate(feats[p], y, names, "cubic_svm", splits, info)
            row[p] = {"accuracy": r["accuracy"], "accuracy_pooled": r["accuracy_pooled"], "engine": r["engine"]}
        row["delta_points"] = 100 * (row["bfloat16"]["accuracy_pooled"] - row["float32"]["accuracy_pooled"])
        print(f"{ds_name}: float32 {100 * row['float32']['accuracy_pooled']:.2f} % bf16 "
              f"{100 * row['bfloat16']['accuracy_pooled']:.2f} % (relative feature error {rel:.4f})", flush=True)
        out.append(row)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-root", default="../shared/datasets")
    ap.add_argument("--out", default="bench/results/reduced_precision")
    ap.add_argument("--child", nargs=3, metavar=("BACKBONE", "WEIGHTS", "POLICY"), help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        print("RESULT " + json.dumps(child_speed(*a.child)), flush=True)
        return

    t0 = start_run()
    speed = []
    for name, weights in SPEED:
        for policy in POLICIES:
            p = subprocess.run([sys.executable, __file__, "--child", name, weights, policy], capture_output=True,
                               text=True, check=True)
            r = json.loads(next(line for line in p.stdout.splitlines() if line.startswith("RESULT "))[7:])
            print(f"{name:<20} {policy:<15} {r['images_per_s']:7.1f} img/s", flush=True)
            speed.append(r)
    acc = accuracy_part(Path(a.data_root))
    total = run_seconds(t0)
    ok = all(abs(r["delta_points"]) < 0.5 for r in acc)
    machine = machine_info([("tensorflow", "TensorFlow"), ("keras", "Keras"), ("sklearn", "scikit-learn")])
    with open("/proc/cpuinfo") as f:
        bf16 = "avx512_bf16" in f.read()
    md = ["# Reduced precision: bfloat16 (`extract --precision bfloat16`, Keras mixed_bfloat16) vs float32", "",
          f"Command: `python bench/reduced_precision.py` ({total / 60:.1f} min)",
          f"Machine: {machine}; CPU flag avx512_bf16: {'yes' if bf16 else 'no'}.", "",
          "## Raw forward speed, 224 px, batch 32 (each in a fresh process)", "",
          *md_table(["backbone", "weights", "features", "float32 img/s", "bf16 img/s", "bf16 / float32"], "lllrrr")]
    for name, weights in SPEED:
        f32, b16 = (next(r for r in speed if r["backbone"] == name and r["policy"] == p) for p in POLICIES)
        md.append(md_row([name, weights, f"{f32['layer']}@{f32['pooling']}", f"{f32['images_per_s']:.1f}",
                          f"{b16['images_per_s']:.1f}", f"{b16['images_per_s'] / f32['images_per_s']:.2f}x"]))
    md += ["", "## Downstream accuracy: efficientnet_lite0 default features, cubic SVM, same folds", "",
           *md_table(["dataset", "protocol", "float32 acc %", "bf16 acc %", "change (points)",
                      "relative feature error"], "llrrrr",
                     ([r["dataset"], r["protocol"], pct(r["float32"]["accuracy_pooled"], 2),
                       pct(r["bfloat16"]["accuracy_pooled"], 2), f"{r['delta_points']:+.2f}",
                       f"{r['relative_feature_error']:.4f}"] for r in acc))]
    md += ["", "Accuracy pooled over folds (every image tested once), so a change of one image is "
               f"{100 / 213:.2f} points on JAFFE and {100 / 981:.2f} on CK+48.", "",
           f"**Rule: offer bf16 only if accuracy moves by less than 0.5 points on both: "
           f"{'met' if ok else 'NOT met'}.**"]
    save_report(Path(a.out).with_suffix(".md"), md, {"machine": machine, "speed": speed, "accuracy": acc,
                                                     "rule_met": ok, "seconds": total})


if __name__ == "__main__":
    main()
