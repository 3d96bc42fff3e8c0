"""Fine-tuned vs frozen efficientnet_lite0 on JAFFE, subject-grouped folds, one table.

    python bench/finetune_jaffe.py [--image-size 112] [--folds 5] [--epochs 40] [--patience 8]

Rows, all on the same subject-grouped folds (StratifiedGroupKFold, seed 0):
* frozen efficientnet_lite0 + cubic SVM: default features (224 px, block4c_add@grid7) and the same at the
  fine-tuning input size;
* fine-tuned efficientnet_lite0, mode ``top`` (head, then the last stage at the fine learning rate), Adam,
  batch 32, on-the-fly augmentation of training images, early stopping on a subject-held-out validation part.
Writes bench/results/finetune_jaffe.md (+ .json) with the command, the machine and the run time, and what a
full-size run (224 px, FER2013's 28,709 training images) would cost here, from the measured epoch times.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from _common import machine_info, md_table, pct, run_seconds, save_report, start_run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="../shared/datasets/jaffe")
    ap.add_argument("--image-size", type=int, default=112)
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--epochs", type=int, default=40, help="most epochs per phase")
    ap.add_argument("--patience", type=int, default=8, help="early-stopping patience (epochs)")
    ap.add_argument("--out", default="bench/results/finetune_jaffe")
    a = ap.parse_args()

    from fer_features import evaluation as ev
    from fer_features.finetune import training as F
    from fer_features.features.cache import load_cache
    from fer_features.features.extractor import WHOLE_IMAGE
    from fer_features.features.extract import extract_dataset

    t_all = start_run()
    rows = []
    for size in (224, a.image_size):
        cache = load_cache(extract_dataset(a.data, image_size=size, progress=False, **WHOLE_IMAGE))
        splits, info = ev.make_splits("group-kfold", cache.labels, cache.subjects, folds=a.folds)
        r = ev.evaluate(np.asarray(cache.features, np.float32), cache.labels, cache.label_names, "cubic_svm",
                        splits, info)
        s = cache.settings
        rows.append((f"frozen efficientnet_lite0 ({s['layer']}@{s['pooling']}, {size} px) + cubic SVM", r,
                     f"extraction {float(cache.attrs.get('extract_seconds', 0)):.0f} s + fit {r['fit_seconds']:.1f} s"))
        print(rows[-1][0], f"{100 * r['accuracy']:.1f} %", flush=True)
        frozen_paths = list(cache.paths)

    # the whole image, as the frozen rows (WHOLE_IMAGE) and as the committed report was made
    cfg = F.FinetuneConfig(mode="top", image_size=a.image_size, epochs=a.epochs, patience=a.patience,
                           face_crop="none", face_margin=0.2)
    t = time.perf_counter()
    ft = F.run(a.data, cfg, "group-kfold", folds=a.folds, progress=False)
    ft_wall = time.perf_counter() - t
    from fer_features.data.formats import load_dataset

    assert load_dataset(a.data).rel_paths() == [str(p) for p in frozen_paths], "row order differs"
    rows.append((f"fine-tuned efficientnet_lite0, mode top, {a.image_size} px", ft, f"{ft_wall:.0f} s in all"))
    print(rows[-1][0], f"{100 * ft['accuracy']:.1f} %", flush=True)

    # cost model: seconds per training image per epoch, measured over all folds and phases
    epochs = [[p["epochs_run"] for p in h["phases"]] for h in ft["training_history"]]
    img_epochs = sum(h["n_train"] * sum(e) for h, e in zip(ft["training_history"], epochs))
    per_img_epoch = ft["fit_seconds"] / img_epochs
    full = per_img_epoch * (224 / a.image_size) ** 2 * 28709 * 2 * a.epochs
    total = run_seconds(t_all)

    md = ["# Fine-tuned vs frozen efficientnet_lite0 on JAFFE (subject-grouped folds)", "",
          f"Command: `python bench/finetune_jaffe.py --image-size {a.image_size} --folds {a.folds} "
          f"--epochs {a.epochs} --patience {a.patience}` ({total / 60:.1f} min in all)",
          f"Machine: {machine_info([('tensorflow', 'TensorFlow'), ('keras', 'Keras'), ('sklearn', 'scikit-learn')])}.",
          f"Protocol: {ft['protocol_description']} (StratifiedGroupKFold, seed 0; the same folds for every row).",
          f"Fine-tuning: Adam lr {cfg.lr} for the new head, then the last stage unfrozen at {cfg.fine_lr}; batch "
          f"{cfg.batch_size}; up to {cfg.epochs} epochs per phase, early stopping (patience {cfg.patience}) on "
          "val accuracy of a subject-held-out 15 % of each fold's training part, best weights restored; "
          "augmentation on the fly (rotation 10°, shift 0.1, zoom 0.1, flip), training images only.", "",
          *md_table(["model", "accuracy % (pooled over folds ± fold std)", "macro-F1 %", "time"], "lrrl",
                    ([name, f"{pct(r['accuracy'])} ± {pct(r['accuracy_std'])}", pct(r["macro_f1"]), when]
                     for name, r, when in rows))]
    md += ["", f"Epochs run per fold (head, top): {epochs}.",
           f"Measured fine-tuning cost here: {1000 * per_img_epoch:.1f} ms per training image per epoch at "
           f"{a.image_size} px (both phases, 2 CPU cores).",
           f"A full-size run, 224 px on FER2013's 28,709 training images, {a.epochs} + {a.epochs} epochs, would "
           f"take about {full / 3600:.1f} h on this machine (pixels scale the cost by (224/{a.image_size})^2; "
           "an estimate from the measured rate, not a measurement)."]
    save_report(Path(a.out).with_suffix(".md"), md, {
        "rows": [{"model": n, "result": {k: v for k, v in r.items() if k != "training_history"}, "time": w}
                 for n, r, w in rows],
        "epochs_run": epochs, "seconds_per_image_epoch": per_img_epoch, "full_size_estimate_hours": full / 3600,
        "seconds": total})


if __name__ == "__main__":
    main()
