"""``extract``: embed a labelled face dataset with a frozen CNN into an HDF5 feature cache."""
from __future__ import annotations

import argparse

from fer_features.backbones.pooling import POOLINGS_HELP
from fer_features.backbones.taps import LAYERS_HELP
from fer_features.cli import _options as O
from fer_features.features.extract import extract_dataset
from fer_features.features.spec import DEFAULT_FLIP_AVERAGE

DESCRIPTION = (
    "Read a labelled face dataset, preprocess every image, embed it with a frozen pretrained CNN "
    "and write features, labels, subject ids and splits to an HDF5 cache.\n"
    "The cache file's path is printed as the last line of stdout; progress goes to stderr.\n"
    "An identical earlier run is a cache hit (no model is loaded); an interrupted run resumes.")
EPILOG = (
    "examples:\n"
    "  python -m fer_features extract --data ../shared/datasets/jaffe\n"
    "  python -m fer_features extract --data fer2013.csv.gz --image-size 112\n"
    "  python -m fer_features extract --data my_faces/ --subject-pattern '^(?P<subject>[A-Z]{2})_'\n"
    "  python -m fer_features extract --data my_faces/list.csv   # path,label,subject,split\n"
    "  python -m fer_features extract --data KDEF/ --frontal-only --backbone resnet50 "
    "--weights resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5")


def register(sub) -> None:
    p = sub.add_parser("extract", formatter_class=O.Fmt, description=DESCRIPTION, epilog=EPILOG,
                       help="embed a labelled face dataset with a frozen CNN into an HDF5 feature cache")
    O.DATA.add(p)
    O.FORMAT.add(p, help="dataset layout; auto recognises JAFFE, CK+, KDEF, FER2013 CSV, a manifest CSV (a path "
                 "column) and folder-per-class")
    p.add_argument("--frontal-only", action="store_true", help="KDEF: keep straight (S) views only")
    O.SUBJECT_PATTERN.add(p)
    O.add_label_options(p)
    O.BACKBONE.add(p, help="a registered name (see: python -m fer_features backbones) or a saved Keras model file "
                   "PATH.keras (e.g. from finetune --save) used frozen: its input size and preprocessing, layers "
                   "listed by backbones --layers PATH.keras, default layer last@avg; the cache key holds the "
                   "file's content hash")
    O.WEIGHTS.add(p)
    O.IMAGE_SIZE.add(p)
    p.add_argument("--pooling", default=None, help=POOLINGS_HELP + "; default: the backbone's "
                   "(efficientnet_lite0: grid7; others: avg)")
    p.add_argument("--layer", default=None, help=LAYERS_HELP + "; default: the backbone's (efficientnet_lite0: "
                   "block4c_add, chosen by experiment; others: last). List: python -m fer_features backbones "
                   "--layers NAME")
    O.PREPROCESS.add(p)
    O.FACE_CROP.add(p)
    O.FACE_MARGIN.add(p)
    O.ALIGN.add(p)
    p.add_argument("--flip-average", action=argparse.BooleanOptionalAction, default=DEFAULT_FLIP_AVERAGE,
                   help="average each image's features with its mirror image's (2x the network time)")
    p.add_argument("--precision", default="float32", choices=("float32", "bfloat16"),
                   help="network arithmetic: bfloat16 = Keras mixed precision; moved accuracy < 0.5 points, "
                   "1.4x faster for resnet50 but slower for efficientnet_lite0/mobilenet_v2 on this CPU "
                   "(bench/results/reduced_precision.md)")
    O.BATCH_SIZE.add(p)
    p.add_argument("--workers", type=int, default=2, help="threads decoding and preprocessing images")
    p.add_argument("--cache-dir", default=None, help="cache folder (default: $FER_FEATURES_CACHE or ./cache)")
    p.add_argument("--reuse-from", action="append", default=[], metavar="DIR",
                   help="another folder of caches whose rows are reused: an image whose content was already embedded "
                   "with the same feature settings is copied, not computed (the cache folder itself is always "
                   "searched); repeatable")
    p.add_argument("--strict", action="store_true", help="stop (exit 1) on the first unreadable image")
    O.NO_PROGRESS.add(p)
    O.add_cluster_options(p)
    p.set_defaults(func=run)


def run(a) -> int:
    path = extract_dataset(
        a.data, a.format, cache_dir=a.cache_dir, backbone=a.backbone, weights=a.weights,
        image_size=a.image_size, pooling=a.pooling, layer=a.layer, preprocess=a.preprocess,
        face_crop=a.face_crop, face_margin=a.face_margin, align=a.align, flip_average=a.flip_average,
        precision=a.precision, batch_size=a.batch_size,
        frontal_only=a.frontal_only, subject_pattern=a.subject_pattern, strict=a.strict, **O.label_kwargs(a),
        progress=not a.no_progress, workers=a.workers, runner=O.cluster_runner(a), reuse_from=a.reuse_from)
    print(path)
    return 0
