"""Command line: a thin layer over the Python API. ``python -m fer_features --help``."""
from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Sequence

EXIT_USAGE = 2  # bad input: missing data, unknown layout, bad option
EXIT_FAILED = 1  # the run started and stopped (e.g. --strict on an unreadable image)


class _Fmt(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    pass


def _quiet_tf() -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _add_extract(sub) -> None:
    from .backbones import DEFAULT_BACKBONE, POOLINGS_HELP
    from .datasets import FORMATS
    from .preprocess import FACE_CROP_METHODS, INTENSITY_METHODS

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
                "  python -m fer_features extract --data KDEF/ --frontal-only --backbone resnet50 "
                "--weights resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"))
    p.add_argument("--data", required=True, help="dataset folder or FER2013 CSV (.csv or .csv.gz)")
    p.add_argument("--format", default="auto", choices=FORMATS,
                   help="dataset layout; auto recognises JAFFE, CK+, KDEF, FER2013 CSV and folder-per-class")
    p.add_argument("--frontal-only", action="store_true", help="KDEF: keep straight (S) views only")
    p.add_argument("--backbone", default=DEFAULT_BACKBONE, help="see: python -m fer_features backbones")
    p.add_argument("--weights", default="imagenet",
                   help="imagenet, random, or a path to a weights file (e.g. the .h5 Keras would download)")
    p.add_argument("--image-size", type=int, default=None, help="input size (default: the backbone's)")
    p.add_argument("--pooling", default="avg", help=POOLINGS_HELP)
    p.add_argument("--layer", default=None, help="tap this layer instead of the last one "
                   "(list: python -m fer_features backbones --layers NAME)")
    p.add_argument("--preprocess", default="none", choices=INTENSITY_METHODS,
                   help="intensity normalisation; bbhe = Bi-Histogram Equalisation (Kim 1997)")
    p.add_argument("--face-crop", default="none", choices=FACE_CROP_METHODS,
                   help="crop the face first (OpenCV Haar cascade or MTCNN); no face found: whole image kept")
    p.add_argument("--face-margin", type=float, default=0.2, help="margin around the detected face, fraction of its size")
    p.add_argument("--align", action="store_true", help="rotate so the eyes are level (MTCNN landmarks)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--workers", type=int, default=2, help="threads decoding and preprocessing images")
    p.add_argument("--cache-dir", default=None, help="cache folder (default: $FER_FEATURES_CACHE or ./cache)")
    p.add_argument("--strict", action="store_true", help="stop (exit 1) on the first unreadable image")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_extract)


def _cmd_extract(a) -> int:
    from .extract import extract_dataset

    path = extract_dataset(
        a.data, a.format, cache_dir=a.cache_dir, backbone=a.backbone, weights=a.weights,
        image_size=a.image_size, pooling=a.pooling, layer=a.layer, preprocess=a.preprocess,
        face_crop=a.face_crop, face_margin=a.face_margin, align=a.align, batch_size=a.batch_size,
        frontal_only=a.frontal_only, strict=a.strict, progress=not a.no_progress, workers=a.workers)
    print(path)
    return 0


def _add_backbones(sub) -> None:
    p = sub.add_parser("backbones", formatter_class=_Fmt, help="list the registered backbones",
                       description="List backbones with feature size, default input size and preprocessing.")
    p.add_argument("--layers", metavar="NAME", default=None, help="list the tappable layers of one backbone")
    p.add_argument("--image-size", type=int, default=None, help="input size for --layers shapes")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=_cmd_backbones)


def _cmd_backbones(a) -> int:
    from . import backbones as bb

    if a.layers:
        bb.get_config(a.layers)
        rows = bb.tappable_layers(a.layers, a.image_size)
        if a.json:
            print(json.dumps([{"layer": n, "shape": list(s)} for n, s in rows]))
        else:
            w = max(len(n) for n, _ in rows)
            for n, s in rows:
                print(f"{n:<{w}}  {'x'.join(str(d) for d in s)}")
        return 0
    cfgs = bb.list_backbones()
    if a.json:
        print(json.dumps([c.to_dict() for c in cfgs], indent=1))
        return 0
    head = ("name", "family", "input", "features", "preprocessing", "weights")
    rows = [(c.name + (" (default)" if c.name == bb.DEFAULT_BACKBONE else ""), c.family, str(c.default_size),
             str(c.feature_dim), c.preprocess, c.weights_note) for c in cfgs]
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    for r in [head, tuple("-" * w for w in widths), *rows]:
        print("  ".join(f"{v:<{widths[i]}}" for i, v in enumerate(r)).rstrip())
    print("\npreprocessing modes (applied inside each model, input is RGB 0-255):")
    for k, v in bb.PREPROCESS_MODES.items():
        print(f"  {k:<6} {v}")
    return 0


def _add_info(sub) -> None:
    p = sub.add_parser("info", formatter_class=_Fmt, help="summarise a feature cache",
                       description="Rows, classes, subjects, splits and settings of a cache file.")
    p.add_argument("cache", help="cache file (.h5)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_cmd_info)


def _cmd_info(a) -> int:
    from collections import Counter

    from .cache import load_cache

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
            print(f"{k}: {v}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m fer_features", formatter_class=_Fmt,
        description="Facial expression recognition by transfer learning: frozen CNN features, "
                    "scikit-learn classifiers and honest (subject-independent) evaluation.")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_extract(sub)
    _add_backbones(sub)
    _add_info(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    _quiet_tf()
    parser = build_parser()
    a = parser.parse_args(argv)
    from .backbones import BackboneError
    from .cache import CacheError
    from .datasets import DatasetError
    from .extract import ExtractionError

    try:
        return int(a.func(a) or 0)
    except (DatasetError, BackboneError, CacheError, ValueError, FileNotFoundError) as exc:
        print(f"fer_features {a.command}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except ExtractionError as exc:
        print(f"fer_features {a.command}: error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print("interrupted: an extraction resumes where it stopped when run again", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
