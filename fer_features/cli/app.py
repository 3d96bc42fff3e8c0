"""Command line: a thin layer over the Python API. ``python -m fer_features --help``."""
from __future__ import annotations

import argparse

import json
import os
import sys
from typing import Sequence

from fer_features.errors import FerError, RunStopped, Terminated

EXIT_USAGE = 2  # bad input: missing data, unknown layout, bad option
EXIT_FAILED = 1  # the run started and stopped (e.g. --strict on an unreadable image)


class _Fmt(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Appends "(default: X)" to option help, except for None/False defaults (the help says what happens) and
    a default the help already names in quotes (no "'default' (...) (default: default)")."""

    def _get_help_string(self, action: argparse.Action) -> str:
        named = isinstance(action.default, str) and f"'{action.default}'" in (action.help or "")
        if action.default is None or action.default is False or named:
            return action.help or ""
        return super()._get_help_string(action)


def _quiet_tf() -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _one_line_warnings(command: str) -> None:
    """Show this package's warnings once each, as ``fer_features CMD: warning: ...`` lines on stderr."""
    import warnings

    default, pkg, shown = (warnings.showwarning,
                                 os.path.dirname(os.path.dirname(os.path.abspath(__file__))), set())

    def show(message, category, filename, lineno, file=None, line=None):
        if not str(filename).startswith(pkg):
            return default(message, category, filename, lineno, file, line)
        if str(message) not in shown:
            shown.add(str(message))
            print(f"fer_features {command}: warning: {message}", file=sys.stderr)

    warnings.showwarning = show


# -- Dask cluster options (fer_features.cluster) -------------------------------------------------------------
def _add_cluster_options(p, shards: bool = True) -> None:
    from fer_features.distributed.cluster import DEFAULT_SHARD_SIZE, ENV_VAR

    g = p.add_argument_group("Dask cluster (pip install -e '.[cluster]'; see README 'Running on a cluster')")
    g.add_argument("--cluster", default=None, metavar="ADDRESS",
                   help="run on Dask: local:N = N worker processes on this machine for this run (loopback only); "
                   "tcp://HOST:8786 or tls://HOST:8786 = a running scheduler (TLS certificates from Dask's "
                   f"settings). Default: ${ENV_VAR}, else this process alone. Whoever can reach a scheduler can "
                   "run code on its workers")
    if shards:
        g.add_argument("--shard-size", type=int, default=None, metavar="N",
                       help=f"images per cluster task; a killed worker costs at most one shard (default: "
                       f"{DEFAULT_SHARD_SIZE}, or fewer so that each worker gets at least 4)")
        g.add_argument("--gather", action="store_true",
                       help="workers share no filesystem with this machine: images are sent to them and features "
                       "sent back (default: they read the data and write shards into the cache folder themselves)")


def _cluster(a, log=None):
    """A context giving the ``cluster.Cluster`` the options ask for (connected), or None."""
    from fer_features.distributed.cluster import cluster_address, open_cluster

    return open_cluster(cluster_address(getattr(a, "cluster", None)), shard_size=getattr(a, "shard_size", None),
                        gather=getattr(a, "gather", False),
                        log=log or (lambda m: print(m, file=sys.stderr)))


def _cluster_runner(a):
    """``extract_dataset``'s runner for --cluster: the cluster starts only on a cache miss; None without one."""
    from fer_features.distributed.cluster import cluster_address

    if cluster_address(getattr(a, "cluster", None)) is None:
        return None

    def runner(*args, **kw):
        from fer_features.distributed.extract import on_cluster

        with _cluster(a) as cl:
            return on_cluster(cl)(*args, **kw)

    return runner
# -- end of the Dask cluster options ---------------------------------------------------------------------------


def _add_extract(sub) -> None:
    from fer_features.backbones.registry import DEFAULT_BACKBONE, LAYERS_HELP, POOLINGS_HELP
    from fer_features.data.datasets import FORMATS
    from fer_features.features.extract import DEFAULT_FLIP_AVERAGE
    from fer_features.data.preprocess import (
        DEFAULT_FACE_CROP, DEFAULT_FACE_MARGIN, FACE_CROP_METHODS, INTENSITY_METHODS,
    )

    p = sub.add_parser(
        "extract", formatter_class=_Fmt,
        help="embed a labelled face dataset with a frozen CNN into an HDF5 feature cache",
        description=(
            "Read a labelled face dataset, preprocess every image, embed it with a frozen pretrained CNN "
            "and write features, labels, subject ids and splits to an HDF5 cache.\n"
            "The cache file's path is printed as the last line of stdout; progress goes to stderr.\n"
            "An identical earlier run is a cache hit (no model is loaded); an interrupted run resumes."),
        epilog=("examples:\n"
                "  python -m fer_features extract --data ../shared/datasets/jaffe\n"
                "  python -m fer_features extract --data fer2013.csv.gz --image-size 112\n"
                "  python -m fer_features extract --data my_faces/ --subject-pattern '^(?P<subject>[A-Z]{2})_'\n"
                "  python -m fer_features extract --data my_faces/list.csv   # path,label,subject,split\n"
                "  python -m fer_features extract --data KDEF/ --frontal-only --backbone resnet50 "
                "--weights resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"))
    p.add_argument("--data", required=True,
                   help="dataset folder, FER2013 CSV (.csv or .csv.gz) or manifest CSV (path,label[,subject][,split])")
    p.add_argument("--format", default="auto", choices=FORMATS,
                   help="dataset layout; auto recognises JAFFE, CK+, KDEF, FER2013 CSV, a manifest CSV (a path "
                   "column) and folder-per-class")
    p.add_argument("--frontal-only", action="store_true", help="KDEF: keep straight (S) views only")
    p.add_argument("--subject-pattern", default=None, metavar="REGEX",
                   help="subject id of each image: a regex searched in its file name, or in its path relative "
                   "to the dataset root when it contains a '/'; the group 'subject' (else group 1, else the "
                   "match) is the id, e.g. '^(?P<subject>[A-Z]{2})_' or '^[^/]+/(?P<subject>[^/]+)/'; "
                   "overrides the layout's own ids; every image must match"),
    p.add_argument("--backbone", default=DEFAULT_BACKBONE,
                   help="a registered name (see: python -m fer_features backbones) or a saved Keras model file "
                   "PATH.keras (e.g. from finetune --save) used frozen: its input size and preprocessing, layers "
                   "listed by backbones --layers PATH.keras, default layer last@avg; the cache key holds the "
                   "file's content hash")
    p.add_argument("--weights", default="imagenet",
                   help="imagenet, random, or a path to a weights file (e.g. the .h5 Keras would download); "
                   "not for a .keras backbone (it carries its own)")
    p.add_argument("--image-size", type=int, default=None, help="input size (default: the backbone's)")
    p.add_argument("--pooling", default=None, help=POOLINGS_HELP + "; default: the backbone's "
                   "(efficientnet_lite0: grid7; others: avg)")
    p.add_argument("--layer", default=None, help=LAYERS_HELP + "; default: the backbone's (efficientnet_lite0: "
                   "block4c_add, chosen by experiment; others: last). List: python -m fer_features backbones --layers NAME")
    p.add_argument("--preprocess", default="none", choices=INTENSITY_METHODS,
                   help="intensity normalisation; bbhe = Bi-Histogram Equalisation (Kim 1997)")
    p.add_argument("--face-crop", default=DEFAULT_FACE_CROP, choices=FACE_CROP_METHODS,
                   help="crop the face first (OpenCV Haar cascade or MTCNN; none = whole image); no face found: "
                   "whole image kept, and counted")
    p.add_argument("--face-margin", type=float, default=DEFAULT_FACE_MARGIN,
                   help="margin around the detected face, fraction of its size on each side; negative crops "
                   "inside the box; 0 = the detector's box (best in bench/results/feature_quality.md)")
    p.add_argument("--align", action="store_true", help="rotate so the eyes are level (MTCNN landmarks)")
    p.add_argument("--flip-average", action=argparse.BooleanOptionalAction, default=DEFAULT_FLIP_AVERAGE,
                   help="average each image's features with its mirror image's (2x the network time)")
    p.add_argument("--precision", default="float32", choices=("float32", "bfloat16"),
                   help="network arithmetic: bfloat16 = Keras mixed precision; moved accuracy < 0.5 points, "
                   "1.4x faster for resnet50 but slower for efficientnet_lite0/mobilenet_v2 on this CPU "
                   "(bench/results/reduced_precision.md)")
    p.add_argument("--batch-size", type=int, default=32, help="images per forward pass of the network")
    p.add_argument("--workers", type=int, default=2, help="threads decoding and preprocessing images")
    p.add_argument("--cache-dir", default=None, help="cache folder (default: $FER_FEATURES_CACHE or ./cache)")
    p.add_argument("--strict", action="store_true", help="stop (exit 1) on the first unreadable image")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    _add_cluster_options(p)
    p.set_defaults(func=_cmd_extract)


def _cmd_extract(a) -> int:
    from fer_features.features.extract import extract_dataset

    path = extract_dataset(
        a.data, a.format, cache_dir=a.cache_dir, backbone=a.backbone, weights=a.weights,
        image_size=a.image_size, pooling=a.pooling, layer=a.layer, preprocess=a.preprocess,
        face_crop=a.face_crop, face_margin=a.face_margin, align=a.align, flip_average=a.flip_average,
        precision=a.precision, batch_size=a.batch_size,
        frontal_only=a.frontal_only, subject_pattern=a.subject_pattern, strict=a.strict,
        progress=not a.no_progress, workers=a.workers, runner=_cluster_runner(a))
    print(path)
    return 0


def _add_backbones(sub) -> None:
    p = sub.add_parser("backbones", formatter_class=_Fmt, help="list the registered backbones",
                       description="List backbones with feature size, default input size and preprocessing.")
    p.add_argument("--layers", metavar="NAME", default=None,
                   help="list the tappable layers of one backbone (a name, or a saved PATH.keras model)")
    p.add_argument("--image-size", type=int, default=None, help="input size for --layers shapes")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=_cmd_backbones)


def _cmd_backbones(a) -> int:
    from fer_features.backbones import registry as bb

    if a.layers:
        bb.get_config(a.layers)
        rows = bb.tappable_layers(a.layers, a.image_size)
        if not rows:
            print(f"{a.layers} is a classical descriptor: it has no layers")
            return 0
        if a.json:
            print(json.dumps([{"layer": n, "shape": list(s), "stage": st} for n, s, st in rows]))
        else:
            w = max(len(n) for n, _, _ in rows)
            for n, s, st in rows:
                print(f"{n:<{w}}  {'x'.join(str(d) for d in s):<14} {st}")
        return 0
    cfgs = bb.list_backbones()
    if a.json:
        print(json.dumps([c.to_dict() for c in cfgs], indent=1))
        return 0
    head = ("name", "family", "input", "last dim", "default layer@pooling", "preprocessing", "weights")
    rows = [(c.name + (" (default)" if c.name == bb.DEFAULT_BACKBONE else ""), c.family, str(c.default_size),
             str(c.feature_dim), f"{c.default_layer or '-'}@{c.default_pooling}", c.preprocess, c.weights_note)
            for c in cfgs]
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    for r in [head, tuple("-" * w for w in widths), *rows]:
        print("  ".join(f"{v:<{widths[i]}}" for i, v in enumerate(r)).rstrip())
    print("\npreprocessing modes (applied inside each model, input is RGB 0-255):")
    for k, v in bb.PREPROCESS_MODES.items():
        print(f"  {k:<6} {v}")
    return 0


# -- merge (fer_features.merge) ----------------------------------------------------------------------
def _add_merge(sub) -> None:
    p = sub.add_parser(
        "merge", formatter_class=_Fmt, help="join two caches of the same images into one (features side by side)",
        description=("Join two feature caches of the SAME images (e.g. ImageNet features and a fine-tuned "
                     "network's) into one cache whose features are A's followed by B's. Dataset content, paths, "
                     "labels, subjects and splits must agree (rows are matched by path when the orders differ); "
                     "otherwise nothing is written and the exit status is 2. Settings that differ read 'A+B' "
                     "(e.g. backbone), and both sources' settings are kept; classify, compare and info read the "
                     "result like any cache. Augmentation and classify --save refuse a merged cache.\n"
                     "The path of the merged cache is printed as the last line of stdout."),
        epilog="example:\n  python -m fer_features merge cache/jaffe__A__1234.h5 cache/jaffe__B__5678.h5")
    p.add_argument("a", metavar="A.h5", help="first cache (its rows' order is kept)")
    p.add_argument("b", metavar="B.h5", help="second cache of the same images")
    p.add_argument("-o", "--output", default=None, metavar="OUT.h5",
                   help="merged cache (default: beside A, named after both; an existing merge of the same two "
                   "caches is reused)")
    p.set_defaults(func=_cmd_merge)


def _cmd_merge(a) -> int:
    from fer_features.features.merge import merge_caches

    print(merge_caches(a.a, a.b, a.output, log=lambda m: print(m, file=sys.stderr)))
    return 0


# -- duplicates (fer_features.duplicates) ----------------------------------------------------------------
def _add_duplicates(sub) -> None:
    from fer_features.data.datasets import FORMATS

    p = sub.add_parser(
        "duplicates", formatter_class=_Fmt, help="find pixel-identical images in a dataset (and test images "
        "with a copy in training)",
        description=("Hash every image's decoded pixels and report groups of identical images (and those whose "
                     "labels differ); for a dataset with splits, the test images (official protocol: FER2013's "
                     "PrivateTest) that have a pixel-identical copy in a training split."),
        epilog="example:\n  python -m fer_features duplicates --data ../shared/datasets/fer2013/fer2013.csv.gz")
    p.add_argument("--data", required=True, help="dataset folder, FER2013 CSV or manifest CSV (as for extract)")
    p.add_argument("--format", default="auto", choices=FORMATS, help="dataset layout (as for extract)")
    p.add_argument("--test-split", default=None, help="the test split (default PrivateTest / test)")
    p.add_argument("--list", action="store_true", help="also print the test images with a copy in training")
    p.add_argument("--json", action="store_true", help="print ONE JSON object")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_duplicates)


def _cmd_duplicates(a) -> int:
    from fer_features.data.datasets import load_dataset
    from fer_features.data.duplicates import find_duplicates

    r = find_duplicates(load_dataset(a.data, a.format), test_split=a.test_split, progress=not a.no_progress)
    if a.json:
        print(json.dumps({**r.to_dict(), **({"test_with_train_copy_paths": r.test_with_train_copy} if a.list else {})}))
        return 0
    print(r.summary())
    if a.list:
        print("\n".join(r.test_with_train_copy))
    return 0


def _add_info(sub) -> None:
    p = sub.add_parser("info", formatter_class=_Fmt, help="summarise a feature cache",
                       description="Rows, classes, subjects, splits and settings of a cache file.")
    p.add_argument("cache", help="cache file (.h5)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--plot", default=None, metavar="OUT.png",
                   help="also draw a t-SNE map of the features by expression and by subject, with the "
                        "5-nearest-neighbour agreement of each (see fer_features.feature_map)")
    p.set_defaults(func=_cmd_info)


def _cmd_info(a) -> int:
    from collections import Counter

    from fer_features.features.cache import load_cache

    c = load_cache(a.cache)
    counts = Counter(c.label_names[i] for i in c.labels)
    info = {
        "path": str(c.path), "rows": len(c), "dim": int(c.features.shape[1]),
        "classes": {k: counts.get(k, 0) for k in c.label_names},
        "subjects": len(set(c.subjects)) if c.has_subjects else 0,
        "splits": dict(Counter(c.split)) if c.has_split else {},
        "skipped": c.skipped, "no_face": int(c.attrs.get("n_no_face", 0)),
        "settings": c.settings,
        "extract_seconds": c.attrs.get("extract_seconds"),
    }
    if a.json:
        print(json.dumps(info, indent=1))
    else:
        for k, v in info.items():
            if k == "subjects" and not v:
                v = ("0 (no subject ids: protocol auto folds by image; give extract --subject-pattern or a "
                     "manifest with a subject column)")
            print(f"{k}: {v}")
    if a.plot:
        from fer_features.reporting.feature_map import plot_feature_map, summary_line

        print(summary_line(plot_feature_map(c, a.plot)), file=sys.stderr if a.json else sys.stdout)
    return 0


def _add_eval_options(p, default_clf: str) -> None:
    from fer_features.classify.presets import DEFAULT_ENGINE, ENGINES
    from fer_features.evaluation.run import PROTOCOLS

    p.add_argument("--cache", required=True, help="feature cache (.h5) written by extract")
    p.add_argument("--test-cache", default=None, metavar="B.h5",
                   help="cross-dataset: train on all of --cache, test on all of this cache (same extraction "
                   "settings; classes on one side only are dropped); protocol cross-dataset")
    p.add_argument("--clf", default=default_clf, help="classifier preset(s); see: python -m fer_features classifiers (compare: a comma-separated "
                   "list, where all = the fixed presets, seed = the seed study's, optimizable = the four optimizable "
                   "ones, e.g. all,optimizable)")
    p.add_argument("--protocol", default="auto", choices=PROTOCOLS,
                   help="auto = group-kfold with subject ids, else official with a split, else kfold; "
                   "cross-dataset (the only one with --test-cache) = train on --cache, test on --test-cache")
    p.add_argument("--folds", type=int, default=10, help="folds for kfold / group-kfold")
    p.add_argument("--test-size", type=float, default=0.1, help="holdout test fraction")
    p.add_argument("--test-split", default=None, help="official: the test split (default PrivateTest / test)")
    p.add_argument("--seed", type=int, default=0, help="seeds the splits and the augmentation")
    p.add_argument("--engine", default=DEFAULT_ENGINE, choices=ENGINES,
                   help="sklearnex = the accelerated default (Intel extension for the SVMs; a one-pass numba loss for the "
                   "10-unit neural networks, same L-BFGS) or stock sklearn throughout")
    p.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                   help="override a classifier parameter, e.g. --set C=10 --set gamma=0.001")
    p.add_argument("--pca", type=float, default=None,
                   help="PCA after standardising: variance fraction (0-1) or number of components")
    p.add_argument("--subject-norm", default="none", choices=("none", "center", "neutral"),
                   help="identity normalisation: subtract each subject's mean feature (center; uses the test "
                   "subject's unlabelled test images) or its neutral image's (neutral); needs subject ids")
    from fer_features.features.augment import AUGMENT_HELP

    g = p.add_argument_group("augmentation (copies of each fold's TRAINING images only, features cached)")
    g.add_argument("--copies", type=int, default=0, metavar="N", help="augmented copies per training image")
    g.add_argument("--balance", default=None, metavar="N|max",
                   help="grow every class of the training part to N images (max: to the largest class) with "
                   "augmented copies; larger classes are kept whole")
    g.add_argument("--augment", default="default", metavar="SPEC", help=AUGMENT_HELP)
    from fer_features.classify.optimizable import DEFAULT_BUDGET, DEFAULT_INNER_FOLDS

    g = p.add_argument_group("optimizable presets (optimizable_svm|knn|nn|ensemble: a nested search in each outer "
                             "training part only, inner folds by subject where known)")
    g.add_argument("--budget", type=int, default=DEFAULT_BUDGET, metavar="N",
                   help="configurations each search tries (Optuna TPE, seeded with --seed)")
    g.add_argument("--inner-folds", type=int, default=DEFAULT_INNER_FOLDS, metavar="K",
                   help="inner folds of the search (leave-one-subject-out when the training part has <= K subjects)")
    p.add_argument("--n-jobs", type=int, default=None, help="folds in parallel (default: up to 2)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (classifiers x folds, on stderr)")
    p.add_argument("--json", action="store_true", help="print ONE JSON object as the last line of stdout")
    _add_cluster_options(p, shards=False)


def _augment_kwargs(a) -> dict:
    """The augmentation arguments of ``evaluation.run`` from the parsed options."""
    from fer_features.errors import AugmentError
    from fer_features.features.augment import parse_augment

    balance = a.balance
    if balance not in (None, "max"):
        try:
            balance = int(balance)
        except ValueError:
            raise AugmentError(f"--balance takes a number of images or 'max', got {balance!r}") from None
    return {"augment": parse_augment(a.augment, seed=a.seed), "copies": int(a.copies), "balance": balance}


def _pca_arg(v: float | None) -> float | int | None:
    """--pca as make_classifier takes it: a variance fraction below 1 or a number of components."""
    if v is None:
        return None
    if v <= 0:
        raise ValueError(f"--pca must be > 0 (a variance fraction below 1 or a number of components), got {v:g}")
    return int(v) if v >= 1 else float(v)


def _search_kwargs(a) -> dict:
    """The optimizable presets' search settings of ``evaluation.run`` from the parsed options."""
    if a.budget < 1 or a.inner_folds < 2:
        raise ValueError(f"--budget must be >= 1 and --inner-folds >= 2, got {a.budget} and {a.inner_folds}")
    return {"budget": a.budget, "inner_folds": a.inner_folds}


def _print_searches(results) -> None:
    """The chosen hyper-parameters per outer fold of every optimizable result."""
    from fer_features.classify.optimizable import search_table

    for r in results:
        if r.get("search"):
            print()
            print(search_table(r))


def _print_result(r: dict) -> None:
    from fer_features.reporting.tables import protocol_header, text_table

    print(protocol_header([r]))
    for w in r.get("warnings", []):
        print(w)
    print()
    print(text_table([r]))
    print("\nper-class accuracy:")
    for lab, acc in r["per_class_accuracy"].items():
        print(f"  {lab:<10} {'-' if acc is None else f'{100 * acc:5.1f} %'}")
    print("\nconfusion matrix (rows: true, columns: predicted; summed over folds):")
    labels = r["labels"]
    w = max(6, max(len(x) for x in labels))
    print(" " * (w + 1) + " ".join(f"{x[:w]:>{w}}" for x in labels))
    for lab, row in zip(labels, r["confusion_matrix"]):
        print(f"{lab:<{w}} " + " ".join(f"{v:>{w}}" for v in row))
    _print_searches([r])


def _add_classify(sub) -> None:
    p = sub.add_parser(
        "classify", formatter_class=_Fmt, help="train and evaluate one classifier on a feature cache",
        description=("Evaluate a classifier preset on a feature cache with an explicit protocol, printing "
                     "accuracy, macro-F1, per-class accuracy, the confusion matrix and fit/predict times.\n"
                     "--save trains on all data (or the training split) and writes a skops model for predict."),
        epilog=("examples:\n"
                "  python -m fer_features classify --cache cache/jaffe__...h5 --clf cubic_svm --protocol loso --json\n"
                "  python -m fer_features classify --cache cache/fer2013__...h5 --clf linear_svm --protocol official\n"
                "  python -m fer_features classify --cache C.h5 --clf cubic_svm --set C=10 --save model.skops"))
    _add_eval_options(p, "cubic_svm")
    p.add_argument("--save", default=None, metavar="MODEL.skops", help="save the trained model (skops format)")
    p.add_argument("--report-dir", default=None, help="also write the report files (markdown, CSV, JSON, PNG)")
    p.set_defaults(func=_cmd_classify)


def _cmd_classify(a) -> int:

    from fer_features.evaluation import run as ev
    from fer_features.features.cache import load_cache
    from fer_features.classify.presets import parse_overrides

    cache = load_cache(a.cache)
    test_cache = _test_cache(a)
    overrides = parse_overrides(a.set)
    if a.save and test_cache is not None:
        raise ev.ProtocolError("--save cannot be combined with --test-cache: a cross-dataset run only evaluates "
                               "(save a model trained on all of A with: classify --cache A.h5 --save M.skops)")
    if a.save and a.subject_norm != "none":
        raise ev.ProtocolError("--save cannot be combined with --subject-norm: a saved model predicts single "
                               "images and has no subject to normalise by")
    aug = _augment_kwargs(a)
    if a.save and a.protocol == ev.LEAKY_PROTOCOL:
        raise ev.ProtocolError(f"--save cannot be combined with the leaky protocol {ev.LEAKY_PROTOCOL}")
    with _cluster(a) as cl:
        results, _ = ev.run(cache, [a.clf], a.protocol, folds=a.folds, test_size=a.test_size,
                            test_split=a.test_split, seed=a.seed, engine=a.engine, overrides=overrides,
                            pca=_pca_arg(a.pca), n_jobs=a.n_jobs, subject_norm=a.subject_norm,
                            progress=not a.no_progress, test_cache=test_cache, search=_search_kwargs(a),
                            cluster=cl, **aug)
    r = results[0]
    if a.save:
        path, trained_on = _save(cache, a, overrides, aug)
        r["saved_model"], r["saved_model_trained_on"] = str(path), trained_on
    if a.report_dir:
        from fer_features.reporting.tables import write_report

        write_report(results, a.report_dir, title=f"{a.clf} on {_on(cache, test_cache)}")
    _print_result(r)
    if a.save:
        print(f"\nmodel saved: {r['saved_model']} (trained on {r['saved_model_trained_on']})")
    if a.json:
        print(json.dumps(r))
    return 0


def _test_cache(a):
    """The --test-cache, loaded (None without one)."""
    from fer_features.features.cache import load_cache

    return load_cache(a.test_cache) if a.test_cache else None


def _on(cache, test_cache) -> str:
    """'A.h5', or 'A.h5 -> B.h5' for a cross-dataset run (report titles)."""
    return cache.path.name + (f" -> {test_cache.path.name}" if test_cache is not None else "")


def _save(cache, a, overrides, aug) -> tuple:
    """Train the preset on all images (or the training split) and save it; returns (path, trained on)."""
    import numpy as np

    from fer_features.features.augment import augment_splits, augments
    from fer_features.classify.presets import make_classifier
    from fer_features.apply.models import extraction_settings, save_model

    idx = np.arange(len(cache))
    trained_on = "all images"
    if cache.has_split and a.protocol in ("auto", "official") and not cache.has_subjects:
        from fer_features.evaluation.run import make_splits

        (tr, _te), = make_splits("official", cache.labels, None, cache.split, test_split=a.test_split)[0]
        idx = tr
        trained_on = "the training split"
    from fer_features.classify.optimizable import is_optimizable, make_optimizable

    # saved models use stock scikit-learn: skops stores its estimators safely (sklearnex holds native state)
    if is_optimizable(a.clf):  # the search runs on the rows the model is trained on; its refit is stock sklearn
        pipe = make_optimizable(a.clf, overrides, engine=a.engine, pca=_pca_arg(a.pca), seed=a.seed,
                                refit_engine="sklearn", probability=True, progress=not a.no_progress,
                                **_search_kwargs(a))
    else:
        pipe = make_classifier(a.clf, overrides, engine="sklearn", probability=True, pca=_pca_arg(a.pca))
    X, y = cache.features, cache.labels
    groups = cache.subjects if cache.has_subjects else None
    split = cache.split if cache.has_split else None
    if augments(aug["copies"], aug["balance"]):
        d = augment_splits(cache, [(idx, np.array([], dtype=np.int64))], aug["augment"], copies=aug["copies"],
                           balance=aug["balance"])
        (idx, _), = d.splits
        X, y, groups, split = d.X, d.y, d.groups, None
        trained_on += f" + {d.info['augmented_train_rows']} augmented copies"
    fit_kw = {}
    if getattr(pipe, "accepts_groups", False):
        fit_kw = {"groups": None if groups is None else np.asarray(groups)[idx],
                  "split": None if split is None else np.asarray(split)[idx], "row_ids": idx}
    pipe.fit(X[idx], y[idx], **fit_kw)
    info = {"classifier": a.clf, "engine": "sklearn", "overrides": overrides, "trained_on": trained_on,
            "n_train": int(len(idx)), "cache": str(cache.path)}
    if hasattr(pipe, "search_record"):
        info["search"] = pipe.search_record(inner_splits=False)
    return save_model(a.save, pipe, cache.label_names, extraction_settings(cache), info), trained_on


def _add_compare(sub) -> None:
    p = sub.add_parser(
        "compare", formatter_class=_Fmt, help="run several classifier presets on the same folds",
        description="Run presets on the same folds, print a table, and write markdown/CSV/JSON/PNG reports.")
    _add_eval_options(p, "all")
    p.add_argument("--report-dir", default=None, help="folder for report.md, results.csv/json and PNGs")
    p.add_argument("--include", action="append", default=[], metavar="RESULTS.json",
                   help="add results from other runs (e.g. a fine-tuned model) to the table")
    p.set_defaults(func=_cmd_compare)


def _cmd_compare(a) -> int:

    from fer_features.classify import presets as C
    from fer_features.evaluation import run as ev
    from fer_features.features.cache import load_cache
    from fer_features.reporting.tables import load_results, protocol_header, text_table, write_report

    included = [r for inc in a.include for r in load_results(inc)]  # a bad file fails before the long run
    from fer_features.classify.optimizable import PRESETS as OPTIMIZABLE

    groups = {"all": list(C.PRESETS), "seed": C.SEED_CLASSIFIERS, "optimizable": list(OPTIMIZABLE)}
    tokens = [n.strip() for n in a.clf.split(",") if n.strip()] or ["all"]  # e.g. all,optimizable: every preset
    names = list(dict.fromkeys(n for t in tokens for n in groups.get(t, [t])))
    cache = load_cache(a.cache)
    test_cache = _test_cache(a)
    done = []

    def finished(r):
        from tqdm import tqdm

        done.append(r)
        tqdm.write(f"[{len(done)}/{len(names)}] {r['classifier']}: {100 * r['accuracy']:.1f} % pooled "
                   f"(fit {r['fit_seconds']:.2f} s in all)", file=sys.stderr)

    with _cluster(a) as cl:
        results, notes = ev.run(cache, names, a.protocol, folds=a.folds, test_size=a.test_size,
                                test_split=a.test_split, seed=a.seed, engine=a.engine,
                                overrides=C.parse_overrides(a.set), pca=_pca_arg(a.pca), n_jobs=a.n_jobs,
                                subject_norm=a.subject_norm, progress=not a.no_progress, on_result=finished,
                                test_cache=test_cache, search=_search_kwargs(a), cluster=cl, **_augment_kwargs(a))
    results += included
    from fer_features.evaluation.stats import mark_vs_best

    mark_vs_best(results)  # every row against the best on the same test images
    print(protocol_header(results))
    for w in notes:
        print(w)
    print()
    print(text_table(results))
    _print_searches(results)
    if a.report_dir:
        md = write_report(results, a.report_dir, title=f"Classifier comparison on {_on(cache, test_cache)}")
        print(f"\nreport: {md}")
        from fer_features.reporting.feature_map import add_to_report, summary_line

        print(summary_line(add_to_report(cache, a.report_dir)))
    if a.json:
        print(json.dumps(results))
    return 0


def _add_significance(sub) -> None:
    p = sub.add_parser(
        "significance", formatter_class=_Fmt, help="paired test of two results made on the same test images",
        description=("Compare two results (classify --json's line saved to a file, or compare's results.json "
                     "with FILE#NAME or --a-classifier/--b-classifier) made on the same test images and folds, "
                     "e.g. two feature settings: both accuracies with 95 % intervals, the difference with its "
                     "interval and a paired p (cluster bootstrap over subjects where known; exact McNemar for "
                     "one split without subjects; paired bootstrap over images otherwise). Results on "
                     "different images or folds are refused (exit 2)."),
        epilog="example:\n  python -m fer_features significance default.json margin02.json\n"
               "  python -m fer_features significance rep/results.json#lda rep/results.json#cubic_svm")
    p.add_argument("a", metavar="A.json", help="first result (FILE or FILE#CLASSIFIER)")
    p.add_argument("b", metavar="B.json", help="second result (FILE or FILE#CLASSIFIER)")
    p.add_argument("--a-classifier", default=None, metavar="NAME", help="entry of A's results.json")
    p.add_argument("--b-classifier", default=None, metavar="NAME", help="entry of B's results.json")
    p.add_argument("--resamples", type=int, default=2000, help="bootstrap resamples")
    p.add_argument("--seed", type=int, default=0, help="seeds the bootstrap")
    p.add_argument("--json", action="store_true", help="print ONE JSON object")
    p.set_defaults(func=_cmd_significance)


def _cmd_significance(a) -> int:
    from fer_features.reporting import significance as sig

    if a.resamples < 100:
        raise ValueError(f"--resamples must be at least 100, got {a.resamples}")
    ra, rb = sig.load_result(a.a, a.a_classifier), sig.load_result(a.b, a.b_classifier)
    d = sig.significance(ra, rb, n_resamples=a.resamples, seed=a.seed)
    if a.json:
        print(json.dumps({**d, "files": [a.a, a.b]}))
    else:
        print(sig.format_significance(d, (a.a, a.b)))
    return 0


def _add_experiment(sub) -> None:
    from fer_features.reporting.experiments import DEFAULT_OUT, EXPERIMENTS

    p = sub.add_parser(
        "experiment", formatter_class=_Fmt, help="run a seed paper's experiment beside its leak-free version",
        description="Reproduce a seed paper's experiment and its honest counterpart; writes <out>/<NAME>.md and "
                    ".json with the backbone, preprocessing, protocol and engine of every number.\n"
                    + "\n".join(f"  {n}: {d}" for n, (_, d, _) in EXPERIMENTS.items()),
        epilog="example:\n  python -m fer_features experiment seed-jaffe --copies 30")
    p.add_argument("name", choices=list(EXPERIMENTS), metavar="NAME", help=", ".join(EXPERIMENTS))
    p.add_argument("--data-root", default="../shared/datasets", help="folder holding jaffe/, ckplus48/, fer2013/")
    p.add_argument("--out", default=DEFAULT_OUT,
                   help="folder for NAME.md and NAME.json, relative to the current directory (the committed "
                   "reports are regenerated with --out bench/results)")
    p.add_argument("--backbone", default=None,
                   help="comma-separated backbones (default: the offline default plus every Keras backbone whose "
                   "ImageNet weights are cached here)")
    p.add_argument("--clf", default=None, help="comma-separated presets (default: the experiment's own)")
    p.add_argument("--copies", type=int, default=30, help="seed-jaffe: augmented copies per image")
    p.add_argument("--images", type=int, default=3000,
                   help="seed-resnet-svm: FER2013 happy/sad/surprise images sampled (DS1)")
    _add_cluster_options(p)
    p.set_defaults(func=_cmd_experiment)


def _cmd_experiment(a) -> int:
    from fer_features.reporting.experiments import run_experiment

    opts = {"seed-jaffe": {"copies": a.copies}, "seed-resnet-svm": {"n_images": a.images}}.get(a.name, {})
    split = lambda v: [x.strip() for x in v.split(",") if x.strip()] if v else None  # noqa: E731
    cmd = "python -m fer_features " + " ".join(sys.argv[1:]) if sys.argv[1:2] == ["experiment"] else None
    if cmd and not any(x == "--out" or x.startswith("--out=") for x in sys.argv):
        cmd += f" --out {a.out}"  # the record says where it wrote, whatever the default is later
    with _cluster(a) as cl:
        path = run_experiment(a.name, data_root=a.data_root, out_dir=a.out, backbones=split(a.backbone),
                              classifiers=split(a.clf), command=cmd, cluster=cl, **opts)
    print(path.read_text())
    print(f"written: {path}")
    return 0


def _add_finetune(sub) -> None:
    from fer_features.features.augment import AUGMENT_HELP
    from fer_features.backbones.registry import DEFAULT_BACKBONE
    from fer_features.evaluation.run import LEAKY_PROTOCOL, PROTOCOLS
    from fer_features.finetune.train import MODES
    from fer_features.data.datasets import FORMATS
    from fer_features.data.preprocess import (
        DEFAULT_FACE_CROP, DEFAULT_FACE_MARGIN, FACE_CROP_METHODS, INTENSITY_METHODS,
    )

    p = sub.add_parser(
        "finetune", formatter_class=_Fmt, help="fine-tune a backbone end to end, with the same protocols",
        description=("Train a backbone with a new classifier head end to end and evaluate it with the same "
                     "protocols and result keys as classify (so compare --include can table both paths).\n"
                     "modes: head = backbone frozen; top = head, then the last stage unfrozen at --fine-lr; "
                     "full = head, then everything at --fine-lr; scratch = random weights, all trained.\n"
                     "Augmentation is applied on the fly to training images only; a validation part of each "
                     "fold's training part (by subject where ids exist) drives early stopping and model choice "
                     "(the best validation epoch's weights are kept); with protocol official on a dataset with a "
                     "validation split (FER2013: train Training, test PrivateTest) that split (PublicTest) does, "
                     "and it is never trained on."),
        epilog=("example:\n  python -m fer_features finetune --data ../shared/datasets/jaffe --mode top "
                "--image-size 112 --protocol group-kfold --folds 5 --json"))
    p.add_argument("--data", required=True, help="dataset folder or FER2013 CSV (as for extract)")
    p.add_argument("--format", default="auto", choices=FORMATS, help="dataset layout (as for extract)")
    p.add_argument("--subject-pattern", default=None, metavar="REGEX",
                   help="subject id of each image from its file name or relative path (as for extract): "
                   "makes protocol auto subject-grouped on data of your own")
    p.add_argument("--backbone", default=DEFAULT_BACKBONE, help="see: python -m fer_features backbones")
    p.add_argument("--weights", default="imagenet", help="imagenet or a weights file (scratch ignores it)")
    p.add_argument("--mode", default="top", choices=MODES, help="what is trained: see modes above")
    p.add_argument("--epochs", type=int, default=10, help="epochs per phase (head, then fine)")
    p.add_argument("--head-epochs", type=int, default=None,
                   help="top/full: epochs of the head phase before the fine one (default: --epochs)")
    p.add_argument("--batch-size", type=int, default=32, help="images per training step")
    p.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate of the head (and of scratch)")
    p.add_argument("--fine-lr", type=float, default=1e-4, help="Adam learning rate once layers are unfrozen")
    p.add_argument("--hidden", type=int, default=0, help="units of a dense hidden layer in the head (0: none)")
    p.add_argument("--dropout", type=float, default=0.2, help="dropout before the classifier layer")
    p.add_argument("--patience", type=int, default=3, help="early-stopping patience (epochs) on val accuracy")
    p.add_argument("--image-size", type=int, default=None, help="input size (default: the backbone's)")
    p.add_argument("--augment", default="default", metavar="SPEC", help=AUGMENT_HELP + "; 'none' to switch off")
    p.add_argument("--preprocess", default="none", choices=INTENSITY_METHODS,
                   help="intensity normalisation (as for extract)")
    p.add_argument("--face-crop", default=DEFAULT_FACE_CROP, choices=FACE_CROP_METHODS,
                   help="crop the face first (as for extract; none = whole image)")
    p.add_argument("--face-margin", type=float, default=DEFAULT_FACE_MARGIN,
                   help="margin around the detected face, fraction of its size on each side (as for extract)")
    p.add_argument("--align", action="store_true", help="rotate so the eyes are level (MTCNN landmarks)")
    p.add_argument("--protocol", default="auto", choices=[x for x in PROTOCOLS if x not in (LEAKY_PROTOCOL, "cross-dataset")],
                   help="auto = group-kfold with subject ids, else official with a split, else kfold")
    p.add_argument("--folds", type=int, default=10, help="folds for kfold / group-kfold")
    p.add_argument("--test-size", type=float, default=0.1, help="holdout test fraction")
    p.add_argument("--test-split", default=None, help="official: the test split (default PrivateTest / test)")
    p.add_argument("--seed", type=int, default=0, help="seeds Keras, the splits and the augmentation")
    p.add_argument("--json", action="store_true", help="print ONE JSON object as the last line of stdout")
    p.add_argument("--report-dir", default=None, help="also write the report files (markdown, CSV, JSON, PNG)")
    p.add_argument("--save", default=None, metavar="MODEL.keras",
                   help="instead of evaluating, train on all images (or the training split; a validation split "
                   "such as FER2013's PublicTest drives early stopping) and save the model")
    p.add_argument("--keep-model", default=None, metavar="MODEL.keras",
                   help="protocol official or holdout: also save the model that was tested (reusable as a frozen "
                   "backbone: extract --backbone MODEL.keras)")
    p.add_argument("--checkpoint-dir", default=None, metavar="DIR",
                   help="checkpoint every epoch (model, optimizer, early-stopping state) and every finished fold "
                   "under DIR/<name>-<run|save>-<key>/; the same command again resumes where it stopped "
                   "(--epochs may be raised to train longer; other settings make another checkpoint)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_finetune)


def _cmd_finetune(a) -> int:
    from fer_features.finetune import train as F
    from fer_features.features.augment import parse_augment

    aug = None if a.augment == "none" else parse_augment(a.augment, seed=a.seed)
    cfg = F.FinetuneConfig(backbone=a.backbone, mode=a.mode, weights=a.weights, image_size=a.image_size,
                           epochs=a.epochs, head_epochs=a.head_epochs, batch_size=a.batch_size, lr=a.lr,
                           fine_lr=a.fine_lr, hidden=a.hidden,
                           dropout=a.dropout, patience=a.patience, augment=aug, preprocess=a.preprocess,
                           face_crop=a.face_crop, face_margin=a.face_margin, align=a.align, seed=a.seed)
    if a.save:
        path = F.save(a.save, a.data, cfg, format=a.format, progress=not a.no_progress,
                      subject_pattern=a.subject_pattern, checkpoint_dir=a.checkpoint_dir)
        print(f"model saved: {path}")
        return 0
    r = F.run(a.data, cfg, a.protocol, format=a.format, folds=a.folds, test_size=a.test_size,
              subject_pattern=a.subject_pattern, checkpoint_dir=a.checkpoint_dir, save_model=a.keep_model,
              test_split=a.test_split, progress=not a.no_progress)
    if a.report_dir:
        from fer_features.reporting.tables import write_report

        write_report([r], a.report_dir, title=f"{r['classifier']} on {a.data}")
    _print_result(r)
    if a.json:
        print(json.dumps({k: v for k, v in r.items() if k != "training_history"}))
    return 0


def _add_classifiers(sub) -> None:
    p = sub.add_parser("classifiers", formatter_class=_Fmt, help="list the classifier presets",
                       description="Classifier presets (MATLAB Classification Learner names) and their definitions.")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=_cmd_classifiers)


def _cmd_classifiers(a) -> int:

    from fer_features.classify import presets as C
    from fer_features.classify import optimizable as O

    rows = [C.describe(n) for n in C.PRESETS] + [O.describe(n) for n in O.PRESETS]
    if a.json:
        print(json.dumps(rows, indent=1))
        return 0
    w = max(len(r["name"]) for r in rows)
    for r in rows:
        params = ", ".join(f"{k}={v}" for k, v in r["params"].items())
        print(f"{r['name']:<{w}}  {r['description']}\n{'':<{w}}  sklearn: {params}")
    print("\nAll presets standardise features first. Engine: sklearnex (default) runs the SVMs; the narrow, "
          "bilayered and trilayered networks compute their L-BFGS loss in one pass (numba); the other presets use "
          "stock scikit-learn; --engine sklearn uses stock scikit-learn throughout.\n"
          f"The optimizable presets search their space (Optuna TPE, --budget configurations, default "
          f"{O.DEFAULT_BUDGET}) in each outer training part only, inner folds by subject where known, and refit the "
          "best on that part; compare --clf optimizable runs the four. Their first trial is the fixed preset's "
          "configuration; --set NAME=VALUE fixes a searched parameter.")
    return 0


def _add_predict(sub) -> None:
    from fer_features.apply.predict import add_arguments

    p = sub.add_parser("predict", formatter_class=_Fmt,
                       help="predict expressions in images and videos with a saved model",
                       description="Detect every face with the model's own face-crop settings, embed each as in "
                                   "training and print one row per face: source, frame and time (videos), face "
                                   "index, box, detector score, label, probability per class, error (CSV, or "
                                   "--output FILE). Exit 1 when no input could be read.")
    add_arguments(p)
    p.set_defaults(func=_cmd_predict)


def _cmd_predict(a) -> int:
    from fer_features.apply.predict import main as predict_main

    return predict_main(a)


def _version() -> str:
    """The installed distribution's version, else the package's ``__version__`` (a source checkout)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("fer_features")
    except PackageNotFoundError:
        from fer_features import __version__

        return __version__


def _stdout_closed() -> int:
    """The reader of stdout went away (``... | head``): point stdout at devnull so exit stays quiet; 141."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    return 141  # 128 + SIGPIPE, what a shell reports for a command whose pipe closed


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m fer_features", formatter_class=_Fmt,
        description="Facial expression recognition by transfer learning: frozen CNN features, "
                    "scikit-learn classifiers and honest (subject-independent) evaluation.")
    p.add_argument("--version", action="version", version=f"fer_features {_version()}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_extract(sub)
    _add_backbones(sub)
    _add_info(sub)
    _add_merge(sub)
    _add_duplicates(sub)
    _add_classify(sub)
    _add_compare(sub)
    _add_significance(sub)
    _add_experiment(sub)
    _add_finetune(sub)
    _add_classifiers(sub)
    _add_predict(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    _quiet_tf()
    parser = build_parser()
    a = parser.parse_args(argv)
    _one_line_warnings(a.command)
    try:
        rc = int(a.func(a) or 0)
        sys.stdout.flush()  # here, so that a closed pipe is caught below rather than at exit
        return rc
    except BrokenPipeError:
        return _stdout_closed()
    except (FerError, ValueError, FileNotFoundError) as exc:  # FerError: bad input, said in one line
        print(f"fer_features {a.command}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except RunStopped as exc:
        print(f"fer_features {a.command}: error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt as exc:
        from fer_features.errors import Terminated

        print("interrupted: an extraction resumes where it stopped when run again", file=sys.stderr)
        return 143 if isinstance(exc, Terminated) else 130


if __name__ == "__main__":
    sys.exit(main())
