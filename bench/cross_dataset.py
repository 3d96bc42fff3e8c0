"""Cross-dataset generalisation: train on all of dataset A, test on all of dataset B (default features).

    python bench/cross_dataset.py [--data-root ../shared/datasets] [--clf linear_svm] [--pairs A:B,...]
                                  [--out bench/results/cross_dataset.md]

Every dataset is extracted with the package's DEFAULT features (``extract_dataset(path)`` with no options:
Haar crop, efficientnet_lite0 block4c_add grid7, flip average, 224 px) into the default ``./cache`` (a
re-run is a cache hit, an interrupted extraction resumes). FER2013 is used by split, each a ``Dataset``
subset extracted through the API: ``Training`` as a training set, ``PrivateTest`` as a test set.
Classes are aligned by their canonical names (``fer_features.cross_dataset``): a class on one side only is
dropped and listed with its counts. Writes the markdown table and a JSON of every result beside it.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from _common import acc_ci, machine_info, md_row, md_table, pct, run_seconds, save_report, start_run

DATASETS = {  # name -> (path below the data root, FER2013 split or None)
    "jaffe": ("jaffe", None),
    "ckplus48": ("ckplus48", None),
    "fer2013-training": ("fer2013/fer2013.csv.gz", "Training"),
    "fer2013-privatetest": ("fer2013/fer2013.csv.gz", "PrivateTest"),
}
CLASSES = ("angry", "contempt", "disgust", "fear", "happy", "neutral", "sad", "surprise")
SHOWN = {"jaffe": "JAFFE", "ckplus48": "CK+48", "fer2013-training": "FER2013 Training",
         "fer2013-privatetest": "FER2013 PrivateTest"}
PAIRS = [("ckplus48", "jaffe"), ("jaffe", "ckplus48"), ("fer2013-training", "jaffe"),
         ("fer2013-training", "ckplus48"), ("jaffe", "fer2013-privatetest"), ("ckplus48", "fer2013-privatetest")]


def extract(name: str, data_root: Path, cache_dir) -> tuple[Path, float]:
    """The default-feature cache of one dataset (a FER2013 split: a subset of the CSV); (path, seconds)."""
    import numpy as np

    from fer_features.data.formats import load_dataset
    from fer_features.features.extract import extract_dataset

    rel, split = DATASETS[name]
    t = time.perf_counter()
    data = load_dataset(data_root / rel)
    if split is not None:
        data = data.subset(np.array([r.split == split for r in data.records]))
    path = extract_dataset(data, cache_dir=cache_dir, progress=False)
    return path, time.perf_counter() - t


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-root", default="../shared/datasets")
    ap.add_argument("--clf", default="linear_svm", help="the one classifier every row uses")
    ap.add_argument("--engine", default="sklearnex")
    ap.add_argument("--cache-dir", default=None, help="default: ./cache")
    ap.add_argument("--pairs", default=None,
                    help="comma-separated TRAIN:TEST pairs to run (default: all six), names among "
                    + ", ".join(DATASETS))
    ap.add_argument("--out", default="bench/results/cross_dataset.md")
    a = ap.parse_args(argv)

    import numpy as np

    from fer_features import evaluation as ev
    from fer_features.features.cache import load_cache

    pairs = PAIRS if not a.pairs else [tuple(p.split(":")) for p in a.pairs.split(",")]
    for p in pairs:
        if len(p) != 2 or not set(p) <= set(DATASETS):
            ap.error(f"bad pair {':'.join(p)!r}: TRAIN:TEST with names among {', '.join(DATASETS)}")
    t_all = start_run()
    caches, extract_s = {}, {}
    # the small ones first: the rows that need only them are ready early
    for name in sorted({n for p in pairs for n in p}, key=list(DATASETS).index):
        path, extract_s[name] = extract(name, Path(a.data_root), a.cache_dir)
        caches[name] = load_cache(path)
        print(f"{name}: {len(caches[name])} images, {caches[name].path.name} ({extract_s[name]:.0f} s)", flush=True)
    rows = []
    for tr, te in pairs:
        t = time.perf_counter()
        res, notes = ev.run(caches[tr], [a.clf], engine=a.engine, test_cache=caches[te], progress=False)
        r = res[0]
        r["run_seconds"] = time.perf_counter() - t
        r["train_set"], r["test_set"] = SHOWN[tr], SHOWN[te]
        if caches[tr].has_subjects and caches[te].has_subjects:  # identity normalisation, each set by its own
            c = ev.run(caches[tr], [a.clf], engine=a.engine, test_cache=caches[te], subject_norm="center",
                       progress=False)[0][0]
            r["center"] = {k: c[k] for k in ("accuracy", "accuracy_ci", "macro_f1", "per_class_accuracy",
                                             "subject_norm_note")}
        rows.append(r)
        for n in notes:
            print(n, flush=True)
        print(f"{SHOWN[tr]} -> {SHOWN[te]}: {100 * r['accuracy']:.1f} % (macro-F1 {100 * r['macro_f1']:.1f}), "
              f"n_train {r['n_train']}, n_test {r['n_test']} ({r['run_seconds']:.0f} s)"
              + (f"; center {100 * r['center']['accuracy']:.1f} %" if "center" in r else ""), flush=True)
    wall = run_seconds(t_all)

    cmd = "python bench/cross_dataset.py" + (f" --clf {a.clf}" if a.clf != "linear_svm" else "") + (
        f" --pairs {a.pairs}" if a.pairs else "")
    not_run = [p for p in PAIRS if p not in pairs]
    md = ["# Cross-dataset generalisation: train on all of A, test on all of B", "",
          f"Command: `{cmd}` (from a clean clone, `../shared/datasets` beside it)",
          f"Machine: {machine_info([('tensorflow', 'TensorFlow'), ('sklearn', 'scikit-learn'), ('numpy', 'numpy')])}.",
          f"Run time: {wall / 60:.1f} min for everything below (extraction included: "
          + ", ".join(f"{SHOWN[n]} {s:.0f} s" for n, s in extract_s.items()) + "; a re-run hits the cache).",
          "Extraction as recorded in each cache (its last, possibly resumed, session): " + ", ".join(
              f"{SHOWN[n]} {float(c.attrs.get('extract_seconds', 0)):.0f} s "
              f"({float(c.attrs.get('images_per_second', 0)):.1f} img/s)" for n, c in caches.items()) + ".",
          f"Classifier: `{a.clf}` (engine {a.engine}), standardised features, fitted on every image of the "
          "training set, scored on every image of the test set (protocol `cross-dataset`, one split).",
          "Features: the package DEFAULT (`extract_dataset(path)` with no options): Haar crop (the box itself), "
          "efficientnet_lite0 ImageNet, block4c_add grid7, flip average, 224 px; the same settings on both sides "
          "(checked). FER2013: the `Training` rows as a training set, the `PrivateTest` rows as a test set "
          "(each a `Dataset.subset` of the CSV, extracted through the API).",
          "Accuracy = correct / all test images (pooled); macro-F1 over the classes used. Classes are aligned by "
          "canonical name; a class on one side only is dropped from both (counts: train / test images).",
          "No augmentation. Accuracy with its 95 % interval: "
          + (rows[0].get("accuracy_ci_method", "") if rows else "") + " (over the test set's subjects where it has "
          "ids, over its images otherwise).",
          "`center` columns: `--subject-norm center`, each subject's mean feature subtracted, the training set's "
          "subjects from its own rows and the test set's from its own (transductive: it uses the test people's "
          "unlabelled test images); only where both sets have subject ids (FER2013 has none: `n/a`).",
          ""]
    if not_run:
        md += ["Not in this file: " + "; ".join(f"{SHOWN[x]} -> {SHOWN[y]}" for x, y in not_run)
               + " (not run by this command; run it without --pairs for all six).", ""]
    md += md_table(["train set", "test set", "classes used", "dropped (train / test images)", "n_train", "n_test",
                    "accuracy %", "macro-F1 %", "accuracy % center", "macro-F1 % center", "fit + predict s"],
                   "llll" + "r" * 7,
                   ([r["train_set"], r["test_set"], ", ".join(r["labels"]),
                     ", ".join(f"{n} ({c['train']} / {c['test']})" for n, c in r["dropped_classes"].items()) or "-",
                     r["n_train"], r["n_test"], acc_ci(r), pct(r["macro_f1"]),
                     *((acc_ci(r["center"]), pct(r["center"]["macro_f1"])) if "center" in r else ("n/a", "n/a")),
                     f"{r['fit_seconds'] + r['predict_seconds']:.1f}"] for r in rows))
    md += ["", "Most predicted classes: the shares of the test images given the two classes the classifier predicts most "
           "(a model that collapses onto one or two classes under the change of dataset shows here; the full "
           "confusion matrices are in the JSON):", ""]
    for r in rows:
        pred = np.asarray(r["confusion_matrix"]).sum(axis=0)
        top = np.argsort(pred)[::-1][:2]
        md.append(f"- {r['train_set']} -> {r['test_set']}: " + ", ".join(
            f"{r['labels'][k]} {100 * pred[k] / pred.sum():.0f} %" for k in top))
    md += ["", "Per-class accuracy % (test images of each class predicted right):", "",
           *md_table(["train -> test", *CLASSES], "l" + "r" * len(CLASSES))]
    for r in rows:
        pc = r["per_class_accuracy"]
        md.append(md_row([f"{r['train_set']} -> {r['test_set']}",
                          *("" if pc.get(n) is None else pct(pc[n], 0) for n in CLASSES)]))
    md += ["", "Caches (in `./cache`): " + "; ".join(f"{SHOWN[n]} `{c.path.name}` ({len(c)} images)"
                                                     for n, c in caches.items()), ""]
    out = save_report(a.out, md, {"command": cmd, "wall_seconds": wall, "extract_seconds": extract_s,
                                  "results": [{k: v for k, v in r.items() if k != "predictions"} for r in rows]},
                      end="", echo=False)
    print(f"wrote {out} and {out.with_suffix('.json')}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
