"""FER2013 at full scale, in parts: frozen features, fine-tuning, and a FER2013-tuned network as a frozen backbone.

    python bench/fer2013.py --part frozen   [--image-size 112] [--clf cubic_svm,...] [--cache-dir cache]
    python bench/fer2013.py --part finetune --mode head --image-size 48 [--epochs 30] [--patience 5] [--limit N]
    python bench/fer2013.py --part transfer [--model cache/fer2013-models/fer2013_full-96px-none.keras] [--sets jaffe]
    python bench/fer2013.py --part report   # rewrite the markdown from the JSON only

The committed results were made with (in this order; each line resumes if stopped):

    python bench/fer2013.py --part frozen --image-size 112
    python bench/fer2013.py --part finetune --mode full --image-size 96 --head-epochs 2 --epochs 7 --patience 3
    python bench/fer2013.py --part transfer
    python bench/fer2013.py --part finetune --mode head --image-size 96 --epochs 2 --patience 3
    python bench/fer2013.py --part finetune --mode top --image-size 96 --head-epochs 2 --epochs 2 --patience 3

Each part adds its result to bench/results/fer2013.json (keyed by its settings) and rewrites
bench/results/fer2013.md from the whole JSON. A part whose result is already there is skipped (``--force``
redoes it). Long parts resume: extraction after its last finished chunk (the cache), the frozen part after
its last finished classifier (one file per classifier under ``<cache-dir>/bench-fer2013/``), fine-tuning after
its last finished epoch (``--checkpoint-dir``, default ``<cache-dir>/finetune-checkpoints``). To resume, run
the same command again.

frozen: ``compare --protocol official`` (train Training, test PrivateTest; PublicTest unused) on FER2013 with the
default features at ``--image-size`` (block4c_add@grid7, flip average), Haar crop (the default) and whole image
(``--face-crop none``, everything else the same), for the SVMs, the networks and logistic regression; every
accuracy with its 95 % interval, the rows of one feature set tested against the best (paired, exact McNemar),
each Haar row against its whole-image row, and the accuracy on PrivateTest without the images that have a
pixel-identical copy in Training (``fer_features.duplicates``). Also regenerates
bench/results/compare_fer2013_official (the report ``compare --report-dir`` writes) with these results.

finetune: ``finetune --protocol official`` (train Training, early stopping and model choice on PublicTest, test
PrivateTest) for one ``--mode`` and ``--image-size`` (whole 48x48 faces by default: FER2013's faces are already
cropped); accuracy, training time (all sessions of a resumed run), time per image; the tested model is kept
(``<cache-dir>/fer2013-models/``) for the transfer part. ``--limit N`` takes N random images (seed 0) of each split
(a quick check of the pipeline, reported as such).

transfer: JAFFE (leave-one-subject-out) and CK+48 (subject-grouped 10-fold, seed 0) with the default features,
the FER2013-tuned network as a frozen backbone (``extract --backbone MODEL.keras``, last layer, average pooled)
and both concatenated (``merge``), on the same folds; intervals, and paired cluster-bootstrap tests against the
default.
"""
from __future__ import annotations

import argparse
import gzip
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from _common import acc_ci, diff_ci, load_average, machine_info, md_row, md_table, pct, save_report

RESULTS = Path("bench/results/fer2013")
FROZEN_CLF = ["cubic_svm", "quadratic_svm", "linear_svm", "narrow_nn", "medium_nn", "wide_nn", "bilayered_nn",
              "trilayered_nn", "logreg"]
TRANSFER_CLF = ["cubic_svm", "linear_svm", "logreg"]
NOTE_CORES = ("The machine's 2 cores were shared with other jobs during these runs: seconds are indicative, "
              "ratios within one run are fairer than across runs")


# -- the results file ------------------------------------------------------------------------------------
def load_results(path: Path = RESULTS) -> dict[str, Any]:
    p = path.with_suffix(".json")
    return json.loads(p.read_text()) if p.exists() else {"frozen": {}, "finetune": {}, "transfer": {}}


def save_results(res: dict[str, Any], path: Path = RESULTS) -> None:
    """Write the JSON (atomically) and the markdown made from it."""
    save_report(path.with_suffix(".md"), markdown(res), res, end="", echo=False)


def command() -> str:
    return "python bench/fer2013.py " + " ".join(sys.argv[1:])


def _machine() -> str:
    return machine_info([("tensorflow", "TensorFlow"), ("keras", "Keras"), ("sklearn", "scikit-learn")])


def summary(r: dict) -> dict[str, Any]:
    """What the bench keeps of a result (no per-image predictions)."""
    keep = ("classifier", "protocol", "protocol_description", "accuracy", "accuracy_ci", "macro_f1", "fit_seconds",
            "predict_seconds", "n_train", "n_test", "n_folds", "engine", "backbone", "features", "cache",
            "vs_best", "test_rows_duplicated_in_train", "duplicate_rows", "epochs_run", "validation_split",
            "n_validation", "saved_model")
    return {k: r[k] for k in keep if k in r}


def _test_line(t: dict | None) -> str:
    return f"{diff_ci(t)}, p {t['p']:.3g}" if t else "-"


def _done(a, part: str, key: str, done: bool) -> bool:
    """Whether the part's result is there already (and no --force): then say so."""
    if done and not a.force:
        print(f"{part} {key}: done (in {RESULTS}.json); --force to redo", file=sys.stderr)
    return done and not a.force


# -- frozen -----------------------------------------------------------------------------------------------
def frozen_setups(image_size: int) -> list[tuple[str, dict]]:
    """(label, extract options): the default features (Haar crop) and the same on the whole image."""
    return [("Haar crop (default)", {"image_size": image_size}),
            ("whole image", {"image_size": image_size, "face_crop": "none"})]


def _clf_file(folder: Path, cache: Path, clf: str) -> Path:
    return folder / f"{cache.stem}__{clf}.json.gz"


def kept_results(cache, path: Path, clfs: list[str], protocol: str, folder: Path, *, folds: int = 10,
                 label: str = "") -> list[dict]:
    """``evaluation.run`` of ``clfs`` on ``cache``, each result (with its per-image predictions) kept in
    ``folder`` as it ends and read back on a re-run, so a stopped part resumes after its last classifier."""
    from fer_features import evaluation as ev

    folder.mkdir(parents=True, exist_ok=True)

    def keep(r):
        f = _clf_file(folder, path, r["classifier"])
        tmp = f.with_suffix(".tmp")
        tmp.write_bytes(gzip.compress(json.dumps(r).encode()))
        tmp.replace(f)
        print(f"{label}: {r['classifier']} {100 * r['accuracy']:.1f} % (fit {r['fit_seconds']:.0f} s)",
              file=sys.stderr)

    todo = [c for c in clfs if not _clf_file(folder, path, c).exists()]
    if todo:
        ev.run(cache, todo, protocol, folds=folds, seed=0, progress=False, on_result=keep)
    return [json.loads(gzip.decompress(_clf_file(folder, path, c).read_bytes())) for c in clfs]


def part_frozen(a, res: dict) -> None:
    from fer_features.features.cache import load_cache
    from fer_features.data.formats import load_dataset
    from fer_features.evaluation.leakage import accuracy_without
    from fer_features.data.duplicates import find_duplicates
    from fer_features.features.extract import extract_dataset
    from fer_features.reporting.tables import write_report
    from fer_features.evaluation.stats import mark_vs_best, paired_test

    key = f"{a.image_size}px"
    if _done(a, "frozen", key, key in res["frozen"]):
        return
    t0 = time.perf_counter()
    clfs = [c.strip() for c in a.clf.split(",")] if a.clf else FROZEN_CLF
    ds = load_dataset(a.data)
    t = time.perf_counter()
    dup = find_duplicates(ds, progress=True)
    dup_s = time.perf_counter() - t
    print(dup.summary(), file=sys.stderr)
    folder = Path(a.cache_dir) / "bench-fer2013" / "frozen"
    folder.mkdir(parents=True, exist_ok=True)
    all_results, setups = [], []
    for label, opts in frozen_setups(a.image_size):
        path = extract_dataset(ds, cache_dir=a.cache_dir, **opts)
        cache = load_cache(path)
        results = kept_results(cache, path, clfs, "official", folder, label=label)
        for r in results:
            r["setup"] = label
            r["without_train_copies"] = accuracy_without(r, dup.test_with_train_copy)
        mark_vs_best(results)
        all_results += results
        setups.append({"label": label, "options": opts, "cache": path.name, "dim": int(cache.features.shape[1]),
                       "n_no_face": int(cache.attrs.get("n_no_face", 0)), "n_images": len(cache),
                       "extract_seconds": float(cache.attrs.get("extract_seconds") or 0.0),
                       "images_per_second": float(cache.attrs.get("images_per_second") or 0.0),
                       "resumed_at_record": int(cache.attrs.get("resumed_at_record", 0))})
    by = {(r["setup"], r["classifier"]): r for r in all_results}
    haar, whole = (s["label"] for s in setups)
    crop_tests = {c: paired_test(by[(haar, c)], by[(whole, c)]) for c in clfs}
    # the committed compare report, regenerated; without the per-image predictions (megabytes for 18 rows of
    # 3,589 images: they stay in <cache-dir>/bench-fer2013/frozen/, one gzipped result per classifier)
    compare = Path(a.compare_dir)
    if compare.is_dir():  # files of an earlier report (other classifiers, other names) would linger
        for f in [*compare.glob("*.png"), *compare.glob("*.csv"), compare / "report.md", compare / "results.json"]:
            f.unlink(missing_ok=True)
    write_report([{k: v for k, v in r.items() if k != "predictions"} for r in all_results], compare,
                 title=f"Classifier comparison on FER2013, official protocol, {a.image_size} px: default features "
                       "(Haar crop) and whole image")
    res["frozen"][key] = {
        "command": command(), "machine": _machine(), "seconds": time.perf_counter() - t0,
        "duplicates": {**dup.to_dict(), "seconds": dup_s}, "setups": setups,
        "rows": [{**summary(r), "setup": r["setup"], "without_train_copies": r["without_train_copies"]}
                 for r in all_results],
        "haar_vs_whole": {c: {k: v for k, v in t.items() if k != "identical"} for c, t in crop_tests.items()},
    }


# -- finetune ---------------------------------------------------------------------------------------------
def _limited(ds, limit: int):
    """``limit`` images drawn at random (seed 0) from each split: a quick check of the pipeline (the CSV is
    ordered by class, so its first rows would be one class)."""
    rng = np.random.default_rng(0)
    split = np.array([r.split for r in ds.records], dtype=object)
    idx = [rng.choice(np.flatnonzero(split == s), min(limit, int(np.sum(split == s))), replace=False)
           for s in dict.fromkeys(split.tolist())]
    return ds.subset(np.sort(np.concatenate(idx)))


def finetune_key(a) -> str:
    return f"{a.mode}-{a.image_size}px-{a.face_crop}" + (f"-limit{a.limit}" if a.limit else "")


def part_finetune(a, res: dict) -> None:
    from fer_features.finetune import training as F
    from fer_features.features.augment import parse_augment
    from fer_features.data.formats import load_dataset

    key = finetune_key(a)
    if _done(a, "finetune", key, key in res["finetune"]):
        return
    t0 = time.perf_counter()
    ds = load_dataset(a.data)
    if a.limit:
        ds = _limited(ds, a.limit)
    cfg = F.FinetuneConfig(mode=a.mode, image_size=a.image_size, epochs=a.epochs, head_epochs=a.head_epochs,
                           patience=a.patience,
                           batch_size=a.batch_size, lr=a.lr, fine_lr=a.fine_lr, face_crop=a.face_crop,
                           augment=None if a.augment == "none" else parse_augment(a.augment, seed=0))
    model = Path(a.cache_dir) / "fer2013-models" / f"fer2013_{key}.keras"
    r = F.run(ds, cfg, "official", checkpoint_dir=a.checkpoint_dir or Path(a.cache_dir) / "finetune-checkpoints",
              save_model=model)
    hist = r["training_history"][0]
    train_s = sum(p["train_seconds"] for p in hist["phases"])
    img_epochs = sum(hist["n_train"] * p["epochs_run"] for p in hist["phases"])
    res["finetune"][key] = {
        "command": command(), "machine": _machine(), "seconds_this_session": time.perf_counter() - t0,
        "config": cfg.to_dict(), "limit": a.limit, "result": summary(r),
        "train_seconds": train_s, "fit_seconds": r["fit_seconds"],
        "ms_per_train_image_epoch": 1000 * train_s / max(img_epochs, 1),
        "ms_per_test_image": 1000 * r["predict_seconds"] / max(r["n_test"], 1),
        "phases": [{k: p[k] for k in ("phase", "epochs_run", "best_epoch", "stopped_early", "train_seconds")}
                   | {"best_val_accuracy": max(p.get("val_accuracy") or [float("nan")])} for p in hist["phases"]],
        "n_train": hist["n_train"], "n_val": hist["n_val"], "model": str(model),
    }


# -- transfer ---------------------------------------------------------------------------------------------
# (name, path under --data-root, protocol, folds, default features' extract options, the tuned backbone's
# extract options, classifiers): JAFFE and CK+48 with the default features as they are everywhere else; FER2013
# itself (official protocol) with the frozen part's whole-image 112 px features, the faces being cropped already
# (as the network was fine-tuned on them), and the cubic SVM only (each classifier takes 3-10 min there).
TRANSFER_SETS = (("jaffe", "jaffe", "loso", 10, {}, {}, TRANSFER_CLF),
                 ("ckplus48", "ckplus48", "group-kfold", 10, {}, {}, TRANSFER_CLF),
                 ("fer2013", "fer2013/fer2013.csv.gz", "official", 1, {"image_size": 112, "face_crop": "none"},
                  {"face_crop": "none"}, ["cubic_svm"]))


def _best_model(res: dict) -> str | None:
    full = [v for v in res["finetune"].values() if not v.get("limit") and Path(v["model"]).exists()]
    return max(full, key=lambda v: v["result"]["accuracy"])["model"] if full else None


def part_transfer(a, res: dict) -> None:
    from fer_features.features.cache import load_cache
    from fer_features.evaluation.leakage import accuracy_without
    from fer_features.features.extract import extract_dataset
    from fer_features.features.merge import merge_caches
    from fer_features.evaluation.stats import paired_test

    model = a.model or _best_model(res)
    if not model:
        raise SystemExit("transfer: no fine-tuned FER2013 model; run --part finetune first or pass --model")
    from fer_features.backbones.keras_file import describe

    mid = describe(model)["id"]
    done = res["transfer"].get(mid, {}).get("datasets", {})
    sets = [t for t in TRANSFER_SETS if not a.sets or t[0] in a.sets.split(",")]
    if _done(a, "transfer with", mid, all(t[0] in done for t in sets)):
        return
    t0 = time.perf_counter()
    out: dict[str, Any] = res["transfer"].get(mid) or {"model": model, "datasets": {}, "seconds": 0.0}
    out.update(command=command(), machine=_machine())
    for name, rel, protocol, folds, default_opts, tuned_opts, set_clfs in sets:
        if name in out["datasets"] and not a.force:
            continue
        clfs = [c.strip() for c in a.clf.split(",")] if a.clf else set_clfs
        data = Path(a.data_root) / rel
        default = extract_dataset(data, cache_dir=a.cache_dir, **default_opts)
        tuned = extract_dataset(data, cache_dir=a.cache_dir, backbone=model, **tuned_opts)
        merged = merge_caches(default, tuned, out_dir=a.cache_dir)
        feats = {"default (ImageNet)": default, "FER2013-tuned": tuned, "default + FER2013-tuned": merged}
        rows, by = [], {}
        t = time.perf_counter()
        # official = the frozen part's protocol and folder: its results on the same cache are reused
        folder = Path(a.cache_dir) / "bench-fer2013" / ("frozen" if protocol == "official" else protocol)
        copies = None
        if protocol == "official":  # PrivateTest images with a pixel-identical copy in Training
            from fer_features.data.formats import load_dataset
            from fer_features.data.duplicates import find_duplicates

            copies = find_duplicates(load_dataset(data), progress=False).test_with_train_copy
        for label, path in feats.items():
            cache = load_cache(path)
            for r in kept_results(cache, Path(path), clfs, protocol, folder, folds=folds,
                                  label=f"transfer {name}, {label}"):
                by[(label, r["classifier"])] = r
                rows.append({**summary(r), "features_label": label, "dim": int(cache.features.shape[1])})
                if copies is not None:
                    rows[-1]["without_train_copies"] = accuracy_without(r, copies)
        for row in rows:
            if row["features_label"] != "default (ImageNet)":
                test = paired_test(by[(row["features_label"], row["classifier"])],
                                   by[("default (ImageNet)", row["classifier"])])
                row["vs_default"] = {k: v for k, v in test.items() if k != "identical"}
        out["datasets"][name] = {"protocol": protocol, "caches": {k: Path(v).name for k, v in feats.items()},
                                 "extract_options": {"default": default_opts, "tuned": tuned_opts},
                                 "rows": rows, "seconds": time.perf_counter() - t}
        res["transfer"][mid] = out
        save_results(res, RESULTS)  # each dataset as it ends: a stopped run keeps the finished ones
        print(f"transfer {name}: done", file=sys.stderr)
    out["seconds"] = float(out.get("seconds") or 0.0) + time.perf_counter() - t0
    res["transfer"][mid] = out


# -- markdown ---------------------------------------------------------------------------------------------
def _summary(res: dict) -> list[str]:
    """The best PrivateTest accuracy of each path: frozen ImageNet features, fine-tuned network, and the
    fine-tuned network's features reused frozen (alone or joined to the default ones)."""
    frozen = [(r, f"{r['setup']}, {key}") for key, f in res.get("frozen", {}).items() for r in f["rows"]]
    tuned = [(r, f"fine-tuned {key}") for key, f in res.get("finetune", {}).items() if not f.get("limit")
             for r in [f["result"]]]
    reused = [(r, f"{r['features_label']} features, {mid}") for mid, t in res.get("transfer", {}).items()
              for r in t["datasets"].get("fer2013", {}).get("rows", []) if r["features_label"] != "default (ImageNet)"]
    out = []
    for label, rows in (("frozen ImageNet features", frozen), ("fine-tuned network", tuned),
                        ("fine-tuned network reused as a frozen backbone", reused)):
        if rows:
            r, where = max(rows, key=lambda x: x[0]["accuracy"])
            out.append(f"* best {label}: **{acc_ci(r)} %** ({r['classifier']}; {where})")
    return (["## Summary (PrivateTest accuracy, 95 % CI)", "", *out, ""]) if out else []


def markdown(res: dict) -> str:
    md = ["# FER2013 at full scale: frozen features, fine-tuning, and a FER2013-tuned network as a frozen backbone",
          "", "Made by `bench/fer2013.py` in parts (each section gives its command and run time; to resume or add a "
          "part, run its command again: finished parts are skipped, a stopped one resumes). " + NOTE_CORES + ".", ""]
    md += _summary(res)
    for key, f in res.get("frozen", {}).items():
        d = f["duplicates"]
        md += [f"## Frozen features, {key} (official protocol: train Training, test PrivateTest; PublicTest unused)",
               "", f"Command: `{f['command']}` ({f['seconds'] / 60:.0f} min in this session, extraction not "
               "included when it was a cache hit).", f"Machine: {f['machine']}.", ""]
        for s in f["setups"]:
            md.append(f"* {s['label']}: cache `{s['cache']}`, {s['dim']} features"
                      + (f", no face found in {s['n_no_face']} of {s['n_images']} images (whole image kept)"
                         if s["options"].get("face_crop", "haar") != "none" else "")
                      + (f"; extraction {s['extract_seconds'] / 60:.0f} min ({s['images_per_second']:.0f} img/s)"
                         if s["extract_seconds"] else "")
                      + (f" (its last session only: it resumed at record {s['resumed_at_record']}; earlier sessions "
                         "are not timed)" if s.get("resumed_at_record", 0) > 0 else ""))
        md += ["", f"Pixel-identical copies: {d['test_with_train_copy']} of {d['n_test']} PrivateTest images have a "
               f"copy in Training ({d['test_with_train_copy_other_label']} of them labelled differently there); "
               f"{d['duplicate_groups']} groups of identical images in all FER2013 ({d['duplicate_images']} copies "
               f"beyond the first, {d['conflicting_groups']} groups with differing labels).", "",
               *md_table(["features", "classifier", "accuracy % [95 % CI]", "vs best of its features",
                          f"without the {d['test_with_train_copy']} copies % [95 % CI]", "macro-F1 %", "fit s",
                          "predict s"], "llrlrrrr")]
        for r in f["rows"]:
            vb = r.get("vs_best") or {}
            mark = "best" if vb.get("mark") == "best" else (f"{vb.get('mark') or ''} p {vb['p']:.3g}"
                                                           if vb.get("p") is not None else "-")
            w = r["without_train_copies"]
            md.append(md_row([r["setup"], r["classifier"], acc_ci(r), mark, acc_ci(w), pct(r["macro_f1"]),
                              f"{r['fit_seconds']:.0f}", f"{r['predict_seconds']:.1f}"]))
        md += ["", "vs best: paired test against the best classifier on the same features and test images (exact "
               "McNemar); '~' not distinguishable (p >= 0.05). Intervals: bootstrap over test images.", "",
               "Haar crop minus whole image, same classifier (paired, exact McNemar; interval: paired bootstrap):", ""]
        md += [f"* {c}: {_test_line(t)}" for c, t in f["haar_vs_whole"].items()]
        md.append("")
    if res.get("finetune"):
        md += ["## Fine-tuning (official protocol: train Training, early stopping and model choice on PublicTest, "
               "test PrivateTest)", "",
               *md_table(["run", "accuracy % [95 % CI]", "macro-F1 %", "epochs (per phase)", "best val. acc. %",
                          "training", "ms / train image / epoch", "ms / test image", "command"], "lrrlrrrrl")]
        for key, f in res["finetune"].items():
            r, ph = f["result"], f["phases"]
            md.append(md_row([key + (f" (quick check: {f['limit']} random images per split)" if f.get("limit") else ""),
                              acc_ci(r), pct(r["macro_f1"]), ", ".join(f"{p['phase']} {p['epochs_run']}" for p in ph),
                              pct(ph[-1]["best_val_accuracy"]), f"{f['train_seconds'] / 60:.0f} min",
                              f"{f['ms_per_train_image_epoch']:.1f}", f"{f['ms_per_test_image']:.2f}",
                              f"`{f['command']}`"]))
        cfgs = {json.dumps({k: v for k, v in f["config"].items()
                            if k not in ("mode", "image_size", "epochs", "head_epochs", "patience")}, sort_keys=True)
                for f in res["finetune"].values()}
        md += ["", "Settings (besides mode, size, epochs and patience: see the commands): " + "; ".join(sorted(cfgs)), f"Machine: {next(iter(res['finetune'].values()))['machine']}.",
               "Training time counts every session of a resumed run (the sum of its epochs).", ""]
    for mid, t in res.get("transfer", {}).items():
        md += [f"## A FER2013-tuned network as a frozen backbone: `{mid}`", "",
               f"Model: `{t['model']}`; command: `{t['command']}` ({t['seconds'] / 60:.0f} min).", ""]
        for name, d in t["datasets"].items():
            opts = d.get("extract_options") or {}
            md += [f"### {name}: {d['rows'][0]['protocol_description']}", "",
                   "Features: default = the package's " + (", ".join(f"{k} {v}" for k, v in opts["default"].items())
                                                          if opts.get("default") else "defaults")
                   + "; FER2013-tuned = the model's last layer, average pooled, at its input size, with extract's "
                   + (", ".join(f"{k} {v}" for k, v in opts["tuned"].items()) if opts.get("tuned") else "defaults")
                   + "; caches " + ", ".join(f"`{c}`" for c in d["caches"].values())
                   + f". Classifiers: {d.get('seconds', 0):.0f} s (extraction and merge not included).", "",
                   *md_table(["features", "classifier", "dim", "accuracy % [95 % CI]",
                              "minus default, paired [95 % CI], p",
                              "without test images copied in training % [95 % CI]"], "llrrlr",
                             ([r["features_label"], r["classifier"], r["dim"], acc_ci(r),
                               _test_line(r.get("vs_default")), acc_ci(r["without_train_copies"])
                               if r.get("without_train_copies") else "-"] for r in d["rows"]))]
            md.append("")
        md += ["Paired tests on the same folds and test images: cluster bootstrap over subjects where subjects are "
               "known (JAFFE, CK+48), exact McNemar on FER2013's one split.", ""]
    return "\n".join(md) + "\n"


def main(argv=None) -> None:
    global RESULTS
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--part", required=True, choices=("frozen", "finetune", "transfer", "report"))
    ap.add_argument("--data", default="../shared/datasets/fer2013/fer2013.csv.gz")
    ap.add_argument("--data-root", default="../shared/datasets", help="transfer: folder holding jaffe/, ckplus48/")
    ap.add_argument("--cache-dir", default="cache", help="feature caches, classifier results, checkpoints, models")
    ap.add_argument("--image-size", type=int, default=None, help="frozen: 112; finetune: 48")
    ap.add_argument("--clf", default=None, help="comma-separated presets (default: the part's own list)")
    ap.add_argument("--compare-dir", default="bench/results/compare_fer2013_official")
    ap.add_argument("--mode", default="head", choices=("head", "top", "full"))
    ap.add_argument("--epochs", type=int, default=30, help="finetune: most epochs per phase")
    ap.add_argument("--head-epochs", type=int, default=None, help="finetune top/full: epochs of the head phase "
                    "(default: --epochs)")
    ap.add_argument("--patience", type=int, default=5, help="finetune: early-stopping patience on PublicTest")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--fine-lr", type=float, default=1e-4)
    ap.add_argument("--face-crop", default="none", help="finetune: none (FER2013 faces are cropped) or haar")
    ap.add_argument("--augment", default="default", help="finetune: augmentation spec, or none")
    ap.add_argument("--limit", type=int, default=0, help="finetune: N random images (seed 0) of each split (a quick check)")
    ap.add_argument("--checkpoint-dir", default=None)
    ap.add_argument("--sets", default=None, help="transfer: comma-separated subset of jaffe,ckplus48,fer2013")
    ap.add_argument("--model", default=None, help="transfer: the FER2013-tuned .keras (default: the best "
                    "finished finetune run's)")
    ap.add_argument("--out", default=str(RESULTS), help="results file stem (.json and .md)")
    ap.add_argument("--force", action="store_true", help="redo a part whose result exists")
    a = ap.parse_args(argv)
    out = RESULTS = Path(a.out)
    res = load_results(out)
    load_average("before")
    if a.part == "frozen":
        a.image_size = a.image_size or 112
        part_frozen(a, res)
    elif a.part == "finetune":
        a.image_size = a.image_size or 48
        part_finetune(a, res)
    elif a.part == "transfer":
        part_transfer(a, res)
    load_average("after")
    save_results(res, out)
    print(out.with_suffix(".md").read_text())


if __name__ == "__main__":
    main()
