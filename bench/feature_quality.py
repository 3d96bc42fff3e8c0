"""Which frozen features recognise expressions across people? Classical vs CNN, subject-independent.

    python bench/feature_quality.py [--data-root ../shared/datasets] [--clf linear_svm] [--out bench/results/feature_quality.md]

For JAFFE (leave-one-subject-out) and CK+48 (subject-grouped 10-fold), every feature configuration is
extracted into the cache (a re-run is a cache hit) and scored with the SAME classifier on the SAME folds,
without and with identity normalisation (``--subject-norm center``; ``neutral`` on JAFFE, which has
neutral images). Writes a markdown table with the machine, versions and run time. Every accuracy carries its
95 % interval (cluster bootstrap over subjects), and every row is tested against the DEFAULT row on the same
test images (paired cluster bootstrap over subjects): which differences are within noise is computed, not eyed.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from _common import diff_ci, machine_info, md_row, md_table, pct, run_seconds, save_report, start_run, with_ci

from fer_features.features.extractor import WHOLE_IMAGE

# (row label, extract options). The DEFAULT row is what `extract` does with no options; every other row
# spells out its crop and flip so that it keeps its meaning whatever the defaults are.
W = WHOLE_IMAGE                                                   # whole image, one forward pass
C20 = dict(face_crop="haar", face_margin=0.2, flip_average=False)  # Haar box + 20 % margin each side
T0 = dict(face_crop="haar", face_margin=0.0, flip_average=False)   # the Haar box itself
T5 = dict(face_crop="haar", face_margin=-0.05, flip_average=False)  # 5 % inside the box each side
M0A = dict(face_crop="mtcnn", face_margin=0.0, align=True, flip_average=False)  # MTCNN box, eyes levelled
FLIP = dict(flip_average=True)
B4 = dict(layer="block4c_add", pooling="grid7")
B34 = dict(layer="block3b_add@grid7,block4c_add@grid7")
CONFIGS: list[tuple[str, dict]] = [
    ("hog, whole image", dict(backbone="hog", **W)),
    ("hog, Haar crop margin 0.2", dict(backbone="hog", **C20)),
    ("hog, Haar crop margin 0.2, flip-average", dict(backbone="hog", **{**C20, **FLIP})),
    ("hog, Haar crop margin 0", dict(backbone="hog", **T0)),
    ("hog, Haar crop margin 0, flip-average", dict(backbone="hog", **{**T0, **FLIP})),
    ("hog, Haar crop margin -0.05", dict(backbone="hog", **T5)),
    ("hog, Haar crop margin -0.05, flip-average", dict(backbone="hog", **{**T5, **FLIP})),
    ("lbp, Haar crop margin 0.2", dict(backbone="lbp", **C20)),
    ("lbp, Haar crop margin 0, flip-average", dict(backbone="lbp", **{**T0, **FLIP})),
    ("CNN whole image, last layer, avg (naive)", dict(layer="last", pooling="avg", **W)),
    ("CNN crop 0.2, last layer, avg", dict(layer="last", pooling="avg", **C20)),
    ("CNN crop 0.2, last layer, grid2", dict(layer="last", pooling="grid2", **C20)),
    ("CNN crop 0.2, stage-4 (block6a_expand 14x14), grid2", dict(layer="stage-4", pooling="grid2", **C20)),
    ("CNN crop 0.2, block4c_add (14x14), avg", dict(layer="block4c_add", pooling="avg", **C20)),
    ("CNN crop 0.2, block4c_add, grid4", dict(layer="block4c_add", pooling="grid4", **C20)),
    ("CNN crop 0.2, block4c_add, grid7", dict(**B4, **C20)),
    ("CNN crop 0.2, block3b_add (28x28), grid7", dict(layer="block3b_add", pooling="grid7", **C20)),
    ("CNN crop 0.2, block3b_add@grid7 + block4c_add@grid7", dict(**B34, **C20)),
    ("CNN crop 0.2, block4c_add, grid4, flip-average", dict(layer="block4c_add", pooling="grid4", **{**C20, **FLIP})),
    ("CNN crop 0.2, block4c_add, grid7, flip-average", dict(**B4, **{**C20, **FLIP})),
    ("CNN whole image, block4c_add, grid7", dict(**B4, **W)),
    ("CNN whole image, block4c_add, grid7, flip-average", dict(**B4, **{**W, **FLIP})),
    ("CNN whole image, block3b_add@grid7 + block4c_add@grid7", dict(**B34, **W)),
    ("CNN crop 0.1, block4c_add, grid7, flip-average", dict(**B4, face_crop="haar", face_margin=0.1, **FLIP)),
    ("CNN crop 0, block4c_add, grid7", dict(**B4, **T0)),
    ("CNN crop 0, block4c_add, grid7, flip-average (DEFAULT)", dict()),
    ("CNN crop 0, block3b_add@grid7 + block4c_add@grid7, flip-average", dict(**B34, **{**T0, **FLIP})),
    ("CNN crop -0.05, block4c_add, grid7, flip-average", dict(**B4, **{**T5, **FLIP})),
    ("hog, MTCNN crop margin 0, eye-aligned", dict(backbone="hog", **M0A)),
    ("CNN MTCNN crop 0, eye-aligned, block4c_add, grid7, flip-average", dict(**B4, **{**M0A, **FLIP})),
    ("CNN crop 0, CLAHE, block4c_add, grid7, flip-average", dict(**B4, **{**T0, **FLIP}, preprocess="clahe")),
    ("CNN crop 0, 288 px (block4c_add 18x18), grid7, flip-average", dict(**B4, **{**T0, **FLIP}, image_size=288)),
    ("CNN crop 0, block5c_add (14x14, 112 ch), grid7, flip-average",
     dict(layer="block5c_add", pooling="grid7", **{**T0, **FLIP})),
]
DATASETS = [("jaffe", "loso", ("none", "center", "neutral")), ("ckplus48", "group-kfold", ("none", "center"))]


OTHER_CLASSIFIERS = ["linear_svm", "quadratic_svm", "cubic_svm", "logreg", "lda", "medium_nn"]
CROP_KEYS = ("face_crop", "face_margin", "align", "flip_average", "preprocess")


def _best(table, configs, ds, norm, pred) -> tuple[float | None, int | None]:
    """(accuracy, row) of the most accurate row matching ``pred`` on ``ds`` with subject-norm ``norm``."""
    vals = [(table[(i, ds)][norm], i) for i, (label, _) in configs if (i, ds) in table and pred(label)]
    return max(vals) if vals else (None, None)


def _default_row(table, configs, ds) -> int | None:
    """The DEFAULT row's number, if it ran on ``ds``."""
    return next((i for i, (label, _) in configs if "DEFAULT" in label and (i, ds) in table), None)


def _same_crop_row(table, configs, ds, pred) -> int | None:
    """The row (matching ``pred``) whose crop/flip settings are the DEFAULT row's: 'on the same crops'."""
    d = _default_row(table, configs, ds)
    if d is None:
        return None
    want = {k: table[(d, ds)]["settings"].get(k) for k in CROP_KEYS}
    return next((i for i, (label, _) in configs if pred(label) and (i, ds) in table
                 and {k: table[(i, ds)]["settings"].get(k) for k in CROP_KEYS} == want), None)


def _other_classifiers(table, configs, is_hog, engine) -> list[str]:
    """JAFFE LOSO with several classifiers: the default row against the best HOG and LBP rows (by linear SVM)."""
    from fer_features import evaluation as ev
    from fer_features.features.cache import load_cache

    picks = [("default", _default_row(table, configs, "jaffe")),
             ("best HOG", _best(table, configs, "jaffe", "none", is_hog)[1]),
             ("HOG, the default's crop and flip", _same_crop_row(table, configs, "jaffe", is_hog)),
             ("best LBP", _best(table, configs, "jaffe", "none", lambda s: s.startswith("lbp"))[1])]
    picks = [(n, i) for n, i in picks if i is not None]
    if len(picks) < 2:
        return []
    accs = {}
    for _, i in picks:
        cache = load_cache(table[(i, "jaffe")]["path"])
        splits, info = ev.make_splits("loso", cache.labels, cache.subjects)
        for clf in OTHER_CLASSIFIERS:
            r = ev.evaluate(cache.features, cache.labels, cache.label_names, clf, splits, info, engine=engine)
            accs[(i, clf)] = r["accuracy_pooled"]
    out = ["", "## Other classifiers (JAFFE LOSO, no identity normalisation)", "",
           "The same rows with other presets, same folds (rows picked above by `linear_svm`):", "",
           *md_table(["row", *OTHER_CLASSIFIERS], "l" + "r" * len(OTHER_CLASSIFIERS),
                     ([f"{n} (row {i})", *(pct(accs[(i, c)]) for c in OTHER_CLASSIFIERS)] for n, i in picks))]
    d = picks[0][1]
    for n, h in picks[1:]:
        if n.startswith("HOG") or n == "best HOG":
            gaps = [100 * (accs[(d, c)] - accs[(h, c)]) for c in OTHER_CLASSIFIERS]
            out.append(f"\nDefault minus {n} (row {h}), same classifier: {min(gaps):+.1f} to {max(gaps):+.1f} points.")
    return out


def _vs_default(results, table, configs) -> dict[tuple[int, str], dict]:
    """Paired test of every row against the DEFAULT row of its dataset (same images and folds)."""
    from fer_features.evaluation.stats import paired_test

    out = {}
    for ds, _, _ in DATASETS:
        d = _default_row(table, configs, ds)
        if d is None:
            continue
        out[(d, ds)] = {"default": True}
        for i, _ in configs:
            if i != d and (i, ds) in results:
                out[(i, ds)] = paired_test(results[(i, ds)], results[(d, ds)])
    return out


def _p_cell(t: dict | None) -> str:
    if t is None:
        return ""
    if t.get("default"):
        return "default"
    p = "<0.001" if t["p"] < 0.001 else f"{t['p']:.3f}"
    return ("~ " if t["p"] >= 0.05 else "") + p


def _noise_lines(tests, table, configs) -> list[str]:
    """Which rows are within noise of the default, and which differ, per dataset (from the paired tests)."""
    out = ["", "## Which differences are real (paired tests against the default row)", ""]
    labels = dict(configs)
    for ds, name in (("jaffe", "JAFFE LOSO"), ("ckplus48", "CK+48 10-fold")):
        rows = [(i, t) for (i, d), t in sorted(tests.items()) if d == ds and not t.get("default")]
        if not rows:
            continue
        same = [i for i, t in rows if t["p"] >= 0.05]
        better = [i for i, t in rows if t["p"] < 0.05 and t["diff"] > 0]
        worse = [i for i, t in rows if t["p"] < 0.05 and t["diff"] < 0]
        fmt = lambda ids: ", ".join(str(i) for i in ids) or "none"  # noqa: E731
        out.append(f"- {name}: not distinguishable from the default (p >= 0.05): rows {fmt(same)}; "
                   f"significantly better: {fmt(better)}; significantly worse: {fmt(worse)}.")
        for i in better:
            t = tests[(i, ds)]
            out.append(f"  - row {i} ({labels[i]}): {diff_ci(t, 'points')}, p {t['p']:.3f}.")
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-root", default="../shared/datasets")
    ap.add_argument("--clf", default="linear_svm", help="the one classifier every row uses")
    ap.add_argument("--engine", default="sklearnex")
    ap.add_argument("--cache-dir", default=None)
    ap.add_argument("--only", default=None, help="comma-separated row numbers (1-based) to run, for a quick look")
    ap.add_argument("--out", default="bench/results/feature_quality.md")
    a = ap.parse_args(argv)

    from fer_features import evaluation as ev
    from fer_features.features.cache import load_cache
    from fer_features.features.extract import extract_dataset

    t_all = start_run()
    configs = list(enumerate(CONFIGS, 1))
    if a.only:
        keep = {int(x) for x in a.only.split(",")}
        configs = [(i, c) for i, c in configs if i in keep]
    table: dict[tuple[int, str], dict] = {}
    results: dict[tuple[int, str], dict] = {}
    for ds, protocol, norms in DATASETS:
        data = Path(a.data_root) / ds
        for i, (label, opts) in configs:
            t = time.perf_counter()
            path = extract_dataset(data, cache_dir=a.cache_dir, progress=False, log=lambda m: None, **opts)
            cache = load_cache(path)
            ext_s = time.perf_counter() - t
            row = {"dim": cache.features.shape[1], "extract_s": ext_s, "n": int(cache.features.shape[0]),
                   "images_per_second": float(cache.attrs.get("images_per_second", 0.0)),
                   "no_face": int(cache.attrs.get("n_no_face", 0)), "settings": cache.settings, "path": str(path)}
            for norm in norms:
                res, _ = ev.run(cache, [a.clf], protocol, engine=a.engine, subject_norm=norm, progress=False)
                row[norm] = res[0]["accuracy_pooled"]
                row[f"{norm}_ci"] = res[0]["accuracy_ci"]
                row["protocol"] = res[0]["protocol_description"]
                if norm == "none":
                    results[(i, ds)] = res[0]  # with its per-image predictions, for the paired tests
            table[(i, ds)] = row
            print(f"{ds:<9} {i:>2} {label:<58} {row['dim']:>6}-d  " +
                  "  ".join(f"{n} {100 * row[n]:5.1f}" for n in norms) + f"  ({time.perf_counter() - t:.0f} s)",
                  flush=True)
    wall = run_seconds(t_all)

    md = ["# Feature quality: classical descriptors vs frozen CNN features, subject-independent", "",
          f"Command: `python bench/feature_quality.py --clf {a.clf}` (from a clean clone, `../shared/datasets` beside it)",
          f"Machine: {machine_info([('tensorflow', 'TensorFlow'), ('sklearn', 'scikit-learn'), ('numpy', 'numpy')])}.",
          f"Run time: {wall / 60:.1f} min for everything below (extraction included; a re-run hits the cache).",
          f"Classifier for every row: `{a.clf}` (engine {a.engine}), standardised features, same folds per dataset.",
          "Accuracy = correct / all images, pooled over the folds, with its 95 % interval (cluster bootstrap over "
          "subjects, 2000 resamples). `p vs default`: paired cluster bootstrap over subjects of the accuracy "
          "difference against the DEFAULT row on the same images and folds; `~` = not distinguishable from the "
          "default (p >= 0.05).", "",
          "- JAFFE: leave-one-subject-out, 10 subjects, 213 images.",
          "- CK+48: subject-grouped stratified 10-fold, 118 subjects, 981 images.",
          "- `center`: each subject's mean feature subtracted (test subjects: from their unlabelled test images).",
          "- `neutral`: each subject's mean neutral-image feature subtracted (needs a neutral capture at test time).",
          "- CNN = `efficientnet_lite0`, ImageNet weights (offline), 224 px; hog/lbp at 96 px on the same crops.",
          "- crop m: OpenCV Haar box widened by m of its side on each side (0 = the box itself, negative = inside it); "
          "whole image where no face is found. MTCNN: the `mtcnn` package's box; eye-aligned: rotated about the "
          "eyes' midpoint so that MTCNN's eye landmarks are level. flip-average: features averaged with the mirror "
          "image's.", "",
          *md_table(["#", "features", "dim", "JAFFE LOSO", "p vs default", "JAFFE center", "JAFFE neutral",
                     "CK+48 10-fold", "p vs default", "CK+48 center"], "rl" + "r" * 8)]

    def cell(i, ds, norm):
        r = table.get((i, ds))
        return "" if r is None or norm not in r else with_ci(r[norm], r[f"{norm}_ci"])

    tests = _vs_default(results, table, configs)
    for i, (label, _) in configs:
        dim = (table.get((i, "jaffe")) or table.get((i, "ckplus48")) or {}).get("dim", "")
        md.append(md_row([i, label, dim, cell(i, "jaffe", "none"), _p_cell(tests.get((i, "jaffe"))),
                          cell(i, "jaffe", "center"), cell(i, "jaffe", "neutral"), cell(i, "ckplus48", "none"),
                          _p_cell(tests.get((i, "ckplus48"))), cell(i, "ckplus48", "center")]))
    md += _noise_lines(tests, table, configs)

    # goals of issue 4, checked on the numbers above
    def best(ds, norm, pred):
        return _best(table, configs, ds, norm, pred)

    is_cnn = lambda s: s.startswith("CNN")  # noqa: E731
    is_hog = lambda s: s.startswith("hog")  # noqa: E731
    lines = ["", "## Against the goals", ""]
    for norm in ("none", "center", "neutral"):
        c, ci = best("jaffe", norm, is_cnn)
        h, hi = best("jaffe", norm, is_hog)
        if c is not None and h is not None:
            lines.append(f"- JAFFE LOSO, subject-norm {norm}: best CNN {100 * c:.1f} % (row {ci}) vs best HOG "
                         f"{100 * h:.1f} % (row {hi}): {100 * (c - h):+.1f} points.")
    for ds, name in (("jaffe", "JAFFE LOSO"), ("ckplus48", "CK+48 10-fold")):
        d = _default_row(table, configs, ds)
        h = _same_crop_row(table, configs, ds, is_hog)
        if d is not None and h is not None:
            lines.append(f"- {name}, HOG on the same crops as the default (row {h}: same crop, margin and flip "
                         f"average), same classifier: default {100 * table[(d, ds)]['none']:.1f} % vs HOG "
                         f"{100 * table[(h, ds)]['none']:.1f} %: {100 * (table[(d, ds)]['none'] - table[(h, ds)]['none']):+.1f} "
                         f"points ({100 * (table[(d, ds)]['center'] - table[(h, ds)]['center']):+.1f} with center).")
    hn, _ = best("jaffe", "none", is_hog)
    for norm in ("center", "neutral"):
        c, ci = best("jaffe", norm, is_cnn)
        if c is not None and hn is not None:
            lines.append(f"- JAFFE: best CNN with subject-norm {norm} {100 * c:.1f} % (row {ci}) vs HOG without "
                         f"normalisation {100 * hn:.1f} %: {100 * (c - hn):+.1f} points.")
    c, ci = best("ckplus48", "none", is_cnn)
    h, hi = best("ckplus48", "none", is_hog)
    if c is not None:
        lines.append(f"- CK+48 subject-grouped 10-fold: best CNN {100 * c:.1f} % (row {ci}); best HOG "
                     f"{100 * h:.1f} % (row {hi}); goal 95 %: {'met' if c >= 0.95 else 'NOT met'}.")
    dj, dk = _default_row(table, configs, "jaffe"), _default_row(table, configs, "ckplus48")
    hj, hk = best("jaffe", "none", is_hog)[0], best("ckplus48", "none", is_hog)[0]
    if dj is not None and dj == dk and hj is not None and hk is not None:
        j, k = table[(dj, "jaffe")], table[(dk, "ckplus48")]
        lines.append(f"- Default configuration (row {dj}): JAFFE {100 * j['none']:.1f} % "
                     f"({100 * j['center']:.1f} % with center), CK+48 {100 * k['none']:.1f} %; against the "
                     f"best HOG row: JAFFE {100 * (j['none'] - hj):+.1f}, CK+48 {100 * (k['none'] - hk):+.1f} points.")
    faces = [f"{ds} {table[(d, ds)]['no_face']} of {table[(d, ds)]['n']}" for ds, _, _ in DATASETS
             if (d := _default_row(table, configs, ds)) is not None]
    if faces:
        lines.append(f"- Images with no face found by Haar in the default row (whole image kept): {', '.join(faces)}.")
    mtcnn = [f"row {i} {ds} {r['no_face']} of {r['n']}" for (i, ds), r in table.items()
             if r["settings"].get("face_crop") == "mtcnn"]
    if mtcnn:
        lines.append(f"- Images with no face found by MTCNN (whole image kept): {', '.join(mtcnn)}.")
    md += lines
    md += _other_classifiers(table, configs, is_hog, a.engine)
    save_report(a.out, md, {f"{i}:{ds}": r for (i, ds), r in table.items()})
    print(f"\nwrote {a.out} in {wall / 60:.1f} min", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
