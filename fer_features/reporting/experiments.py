"""The seed papers' experiments, each beside its leak-free version: ``python -m fer_features experiment NAME``.

* ``seed-linear-baseline``: every preset on frozen features, CK+48 (subject-grouped 10-fold) and JAFFE (LOSO).
* ``seed-jaffe``: JAFFE heavily augmented; the seed's augment-then-split 90/10 against leave-one-subject-out
  with copies of training images only (and the two un-augmented protocols in between).
* ``seed-resnet-svm``: FER2013 happy/sad/surprise, DS1 original, DS2 balanced, DS3 2,000/class, DS4 5,000/class,
  with and without BBHE, seven classifiers; each setting once augment-then-split (leaky), once leak-free.

Each writes ``<out>/<name>.md`` (+ ``.json``) stating the backbone, preprocessing, protocol and engine of
every number, the command and its run time.
"""
from __future__ import annotations

import contextvars
import json
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
from sklearn.model_selection import train_test_split

from fer_features import backbones as bb
from fer_features import evaluation as ev
from fer_features.classify import presets as C
from fer_features.data.formats import load_dataset
from fer_features.distributed.extract import on_cluster
from fer_features.features.augment import AugmentConfig
from fer_features.features.cache import load_cache
from fer_features.features.extract import extract_dataset
from fer_features.features.extractor import WHOLE_IMAGE
from fer_features.reporting.machine import machine_info


def default_backbones() -> list[str]:
    """The offline default plus every Keras backbone whose ImageNet weights Keras has cached here."""
    return [bb.DEFAULT_BACKBONE] + [c.name for c in bb.list_backbones()
                                    if c.keras_fn and bb.cached_imagenet_weights(c.name)]


def _pct(r: dict, std: bool = False) -> str:
    return f"{100 * r['accuracy']:.1f}" + (f" ± {100 * r['accuracy_std']:.1f}" if std else "")


def _features_line(cache) -> str:
    s = cache.settings
    return (f"{s.get('backbone')} ({s.get('weights')}), {s.get('image_size')} px, layer {s.get('layer') or 'last'}, "
            f"pooling {s.get('pooling')}, preprocess {s.get('preprocess')}, face crop {s.get('face_crop')}")


def _without_predictions(obj):
    """The results without their per-image ``predictions`` (they would make the committed reports megabytes)."""
    if isinstance(obj, dict):
        return {k: _without_predictions(v) for k, v in obj.items() if k != "predictions"}
    if isinstance(obj, (list, tuple)):
        return [_without_predictions(v) for v in obj]
    return obj


def _header(title: str, command: str, seconds: float, extra: list[str]) -> list[str]:
    return [f"# {title}", "", f"Command: `{command}` ({seconds / 60:.1f} min on this machine)",
            f"Machine: {machine_info([('sklearn', 'scikit-learn'), ('sklearnex', 'scikit-learn-intelex'), ('tensorflow', 'TensorFlow')])}.",
            f"Engine: {C.DEFAULT_ENGINE} for the SVMs, the one-pass numba loss for the 10-unit neural networks, "
            "scikit-learn for the rest.", *extra, ""]


# the Dask cluster of the running experiment (``run_experiment(cluster=...)``), None: this process alone
_CLUSTER: contextvars.ContextVar = contextvars.ContextVar("fer_features_experiment_cluster", default=None)


def _extract(data, log, **kw):
    kw = {**WHOLE_IMAGE, **kw}  # the seed studies fed whole images
    if (cluster := _CLUSTER.get()) is not None:
        kw["runner"] = on_cluster(cluster)
    return load_cache(extract_dataset(data, progress=sys.stderr.isatty(), log=log, **kw))


def _run(*args, **kw):
    """``evaluation.run`` on the experiment's cluster, if it has one."""
    return ev.run(*args, cluster=_CLUSTER.get(), **kw)


# -- seed-linear-baseline ---------------------------------------------------------------------------------
def seed_linear_baseline(data_root: Path, backbones: list[str], classifiers: list[str], log) -> tuple[list, dict]:
    md, payload = [], {}
    for name in backbones:
        res = {}
        for ds, protocol in (("ckplus48", "group-kfold"), ("jaffe", "loso")):
            cache = _extract(data_root / ds, log, backbone=name)
            res[ds], _ = _run(cache, classifiers, protocol, progress=False)
            log(f"{name} {ds}: done")
        payload[name] = res
        ck, jf = ({r["classifier"]: r for r in res[d]} for d in ("ckplus48", "jaffe"))
        rank = lambda rows, n: 1 + sorted((-r["accuracy"] for r in rows.values())).index(-rows[n]["accuracy"])  # noqa: E731
        md += [f"## {name}", "", f"Features: {_features_line(cache)} (the backbone's defaults).",
               f"Protocols: CK+48 {res['ckplus48'][0]['protocol_description']}; JAFFE "
               f"{res['jaffe'][0]['protocol_description']}. Accuracy: pooled over folds (correct / all test images) ± std of the fold accuracies.", "",
               "| classifier | CK+48 acc % | JAFFE acc % | mean | CK+48 fit s | JAFFE fit s |",
               "|---|---:|---:|---:|---:|---:|"]
        for n in sorted(classifiers, key=lambda n: -(ck[n]["accuracy"] + jf[n]["accuracy"])):
            b = "**" if n == "linear_svm" else ""
            md.append(f"| {b}{n}{b} | {_pct(ck[n], True)} | {_pct(jf[n], True)} | "
                      f"{50 * (ck[n]['accuracy'] + jf[n]['accuracy']):.1f} | {ck[n]['fit_seconds']:.1f} | "
                      f"{jf[n]['fit_seconds']:.1f} |")
        if "linear_svm" in classifiers:
            md += ["", f"linear_svm ranks {rank(ck, 'linear_svm')} of {len(ck)} on CK+48 and "
                       f"{rank(jf, 'linear_svm')} of {len(jf)} on JAFFE."]
        md.append("")
    return md, payload


# -- seed-jaffe ------------------------------------------------------------------------------------------
def seed_jaffe(data_root: Path, backbones: list[str], classifiers: list[str], log, copies: int = 30) -> tuple[list, dict]:
    md, payload = [], {}
    cfg = AugmentConfig()
    rows = [(ev.LEAKY_PROTOCOL, copies, "LEAKY: every image augmented, then a random 90/10 split (the seed's)"),
            ("holdout", 0, "leaky: random 90/10 split by image, no augmentation (same people in train and test)"),
            ("loso", 0, "leave-one-subject-out, no augmentation"),
            ("loso", copies, f"leave-one-subject-out, {copies} copies of each TRAINING image")]
    for name in backbones:
        cache = _extract(data_root / "jaffe", log, backbone=name)
        out = []
        for protocol, k, label in rows:
            res, _ = _run(cache, classifiers, protocol, copies=k, augment=cfg, test_size=0.1, progress=False)
            out.append((label, protocol, k, res))
            log(f"{name} {label}: " + ", ".join(f"{r['classifier']} {_pct(r)}" for r in res))
        payload[name] = [{"setting": label, "protocol": p, "copies": k, "results": res} for label, p, k, res in out]
        md += [f"## {name}", "", f"Features: {_features_line(cache)}. Augmentation: "
               + ", ".join(f"{k} {v}" for k, v in cfg.to_dict().items()) + ".", "",
               "| setting | protocol | leaky? | training rows | " + " | ".join(f"{c} acc %" for c in classifiers)
               + " | fit s |", "|---|---|---|---:|" + "---:|" * len(classifiers) + "---:|"]
        for label, protocol, k, res in out:
            md.append(f"| {label} | {protocol} | {'**yes**' if res[0]['leaky'] or protocol == 'holdout' else 'no'} | "
                      f"{res[0]['n_train']:,} | " + " | ".join(_pct(r, len(r['fold_accuracies']) > 1) for r in res)
                      + f" | {sum(r['fit_seconds'] for r in res):.1f} |")
        md.append("")
    return md, payload


# -- seed-resnet-svm --------------------------------------------------------------------------------------
def fer_three_classes(csv: Path, n_images: int, seed: int = 0):
    """A stratified sample of FER2013's happy, sad and surprise images (all usages), as a Dataset."""

    ds = load_dataset(csv)
    labels = np.array([r.label for r in ds.records])
    idx = np.flatnonzero(np.isin(labels, ["happy", "sad", "surprise"]))
    if n_images < len(idx):
        idx, _ = train_test_split(idx, train_size=n_images, stratify=labels[idx], random_state=seed)
    return ds.subset(np.sort(idx))


def seed_resnet_svm(data_root: Path, backbones: list[str], classifiers: list[str], log,
                    n_images: int = 3000, per_class: tuple[int, int] = (2000, 5000)) -> tuple[list, dict]:
    md, payload = [], {}
    cfg = AugmentConfig()
    settings = [("DS1", None, "original (imbalanced)"), ("DS2", "max", "balanced to the largest class"),
                ("DS3", per_class[0], f"{per_class[0]:,} per class"), ("DS4", per_class[1], f"{per_class[1]:,} per class")]
    ds = fer_three_classes(data_root / "fer2013" / "fer2013.csv.gz", n_images)
    for name in backbones:
        tables = {}
        for prep in ("none", "bbhe"):
            # the seed's feature type: one global-pooled vector from the last layer, FER's 48 px faces at 112 px
            taps = {} if bb.is_classical(name) else {"layer": "last", "pooling": "avg"}
            cache = _extract(ds, log, backbone=name, image_size=112, preprocess=prep, **taps)
            for ds_name, balance, _ in settings:
                for leaky in (True, False):
                    if balance is None and leaky:
                        continue  # nothing to augment: DS1 has one protocol (holdout)
                    protocol = ev.LEAKY_PROTOCOL if leaky else "holdout"
                    res, _ = _run(cache, classifiers, protocol, balance=balance, augment=cfg, test_size=0.1,
                                    progress=False)
                    tables[(prep, ds_name, leaky)] = res
                    log(f"{name} {prep} {ds_name} {'leaky' if leaky else 'leak-free'}: n_train {res[0]['n_train']}, "
                        + ", ".join(f"{r['classifier']} {_pct(r)}" for r in res))
        payload[name] = [{"preprocess": p, "ds": d, "leaky": lk, "results": r} for (p, d, lk), r in tables.items()]
        md += [f"## {name}", "", f"Features: {_features_line(cache).replace('preprocess bbhe', 'preprocess none|bbhe')}"
               f"; {len(ds):,} FER2013 images (happy/sad/surprise, stratified sample of all usages).",
               "Leak-free: a stratified 90/10 holdout of the originals, then the training part grown by "
               "augmented copies of training images; tested on original held-out images only. Leaky: every "
               "image grown first, then a random 90/10 split of the pool (augmented copies of a test image "
               "train the model). FER2013 has no subject ids, so neither is subject-independent.", ""]
        for prep in ("none", "bbhe"):
            cols = [(d, lk) for d, b, _ in settings for lk in ((False,) if b is None else (True, False))]
            md += [f"### Accuracy %, preprocessing {prep}", "",
                   "| classifier | " + " | ".join(f"{d} {'leaky' if lk else 'leak-free'}" for d, lk in cols) + " |",
                   "|---|" + "---:|" * len(cols),
                   "| training rows | " + " | ".join(f"{tables[(prep, d, lk)][0]['n_train']:,}" for d, lk in cols) + " |"]
            for i, c in enumerate(classifiers):
                md.append(f"| {c} | " + " | ".join(_pct(tables[(prep, d, lk)][i]) for d, lk in cols) + " |")
            md.append("")
        md += [f"### DS4 ({settings[3][2]}) fit + predict seconds, preprocessing none", "",
               "| classifier | leaky fit s | leaky predict s | leak-free fit s | leak-free predict s |",
               "|---|---:|---:|---:|---:|"]
        for i, c in enumerate(classifiers):
            lk, ok = tables[("none", "DS4", True)][i], tables[("none", "DS4", False)][i]
            md.append(f"| {c} | {lk['fit_seconds']:.1f} | {lk['predict_seconds']:.2f} | {ok['fit_seconds']:.1f} | "
                      f"{ok['predict_seconds']:.2f} |")
        md += ["", "Times: two classifiers at a time on the two cores, one BLAS thread each (one split, so the "
                   "classifiers run in parallel rather than the folds).", ""]
    return md, payload


EXPERIMENTS: dict[str, tuple[Callable, str, list[str]]] = {
    "seed-linear-baseline": (seed_linear_baseline, "Linear SVM on frozen features vs every other preset, "
                             "subject-independent (CK+48 and JAFFE)", list(C.PRESETS)),
    "seed-jaffe": (seed_jaffe, "JAFFE with heavy augmentation: the seed's augment-then-split 90/10 vs "
                   "leave-one-subject-out", ["linear_svm", "cubic_svm"]),
    "seed-resnet-svm": (seed_resnet_svm, "FER2013 happy/sad/surprise: DS1-DS4 with and without BBHE, seven "
                        "classifiers, leaky vs leak-free", list(C.SEED_CLASSIFIERS)),
}


DEFAULT_OUT = "fer_results"  # relative to the current directory; bench/results holds the committed reports


def run_experiment(name: str, *, data_root: str | Path = "../shared/datasets", out_dir: str | Path = DEFAULT_OUT,
                   backbones: list[str] | None = None, classifiers: list[str] | None = None,
                   command: str | None = None, log=None, cluster=None, **options: Any) -> Path:
    """Run experiment ``name``; write ``<out_dir>/<name>.md`` and ``.json``; return the markdown path.

    ``cluster``: a ``cluster.Cluster`` for its extractions (shards) and evaluations (classifiers x folds)."""
    if name not in EXPERIMENTS:
        raise ValueError(f"unknown experiment {name!r}; known: {', '.join(EXPERIMENTS)}")
    fn, title, default_clfs = EXPERIMENTS[name]
    log = log or (lambda m: print(m, file=sys.stderr))
    backbones = backbones or default_backbones()
    for b in backbones:
        bb.get_config(b)
    classifiers = classifiers or default_clfs
    for c in classifiers:
        C.get_preset(c)
    t = time.perf_counter()
    token = _CLUSTER.set(cluster)
    try:
        body, payload = fn(Path(data_root), backbones, classifiers, log, **options)
    finally:
        _CLUSTER.reset(token)
    seconds = time.perf_counter() - t
    skipped = [c.name for c in bb.list_backbones() if c.keras_fn and c.name not in backbones]
    extra = [f"Backbones: {', '.join(backbones)}" + (f" (no cached ImageNet weights here for the Keras backbones "
                                                      f"{', '.join(skipped)})" if skipped else "") + "."]
    md = _header(title, command or f"python -m fer_features experiment {name} --out {out_dir}", seconds, extra) + body
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{name}.md"
    tmp = path.with_suffix(".md.tmp")
    tmp.write_text("\n".join(md) + "\n")
    (out / f"{name}.json").write_text(json.dumps({"experiment": name, "seconds": seconds, "options": options,
                                                  "results": _without_predictions(payload)}, indent=1, default=str))
    tmp.replace(path)
    return path
