"""What several commands share, declared once: the help formatter, the options of more than one command (each
``Option`` holds its flags, type, default and choices; a command may word its help for itself), the evaluation
options of classify and compare, and the Dask cluster options with the cluster they open."""
from __future__ import annotations

import argparse
import sys
from typing import Any

from fer_features.backbones import DEFAULT_BACKBONE
from fer_features.classify.optimizable import DEFAULT_BUDGET
from fer_features.classify.presets import DEFAULT_ENGINE, ENGINES
from fer_features.classify.search import DEFAULT_INNER_FOLDS
from fer_features.data import FORMATS
from fer_features.data.faces import DEFAULT_FACE_CROP, DEFAULT_FACE_MARGIN, FACE_CROP_METHODS
from fer_features.data.intensity import INTENSITY_METHODS
from fer_features.distributed.cluster import DEFAULT_SHARD_SIZE, ENV_VAR, cluster_address, open_cluster
from fer_features.distributed.extract import on_cluster
from fer_features.errors import AugmentError
from fer_features.evaluation.splits import PROTOCOLS
from fer_features.features.augment import AUGMENT_HELP, parse_augment
from fer_features.features.cache import load_cache


class Fmt(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Appends "(default: X)" to option help, except for None/False defaults (the help says what happens) and
    a default the help already names in quotes (no "'default' (...) (default: default)")."""

    def _get_help_string(self, action: argparse.Action) -> str:
        named = isinstance(action.default, str) and f"'{action.default}'" in (action.help or "")
        if action.default is None or action.default is False or named:
            return action.help or ""
        return super()._get_help_string(action)


class Option:
    """One option as ``add_argument`` takes it, declared once; ``add(parser, help=...)`` words it per command."""

    def __init__(self, *flags: str, **kwargs: Any):
        self.flags, self.kwargs = flags, kwargs

    def add(self, p, **changes: Any) -> argparse.Action:
        return p.add_argument(*self.flags, **{**self.kwargs, **changes})


# -- the dataset and its preprocessing (extract, finetune, duplicates) -----------------------------------------
DATA = Option("--data", required=True,
              help="dataset folder, FER2013 CSV (.csv or .csv.gz) or manifest CSV (path,label[,subject][,split])")
FORMAT = Option("--format", default="auto", choices=FORMATS, help="dataset layout (as for extract)")
SUBJECT_PATTERN = Option(
    "--subject-pattern", default=None, metavar="REGEX",
    help="subject id of each image: a regex searched in its file name, or in its path relative to the dataset "
    "root when it contains a '/'; the group 'subject' (else group 1, else the match) is the id, e.g. "
    "'^(?P<subject>[A-Z]{2})_' or '^[^/]+/(?P<subject>[^/]+)/'; overrides the layout's own ids; every image "
    "must match")
LABEL_MAP = Option(
    "--label-map", action="append", default=None, metavar="FROM=TO|FILE.csv",
    help="rename labels (class folder names, a manifest's label column) before they are checked, e.g. "
    "--label-map suprise=surprise; repeatable or comma-separated, or a CSV file of from,to rows; part of the "
    "cache key")
ALLOW_NEW_LABELS = Option(
    "--allow-new-labels", action="store_true",
    help="keep unknown labels as classes of their own in a dataset whose labels are mostly expression names "
    "(without it each is an error naming it and the closest known name; a dataset of its own classes needs no "
    "option)")


def add_label_options(p) -> None:
    """--label-map and --allow-new-labels (every command that reads a dataset)."""
    LABEL_MAP.add(p)
    ALLOW_NEW_LABELS.add(p)


def label_kwargs(a) -> dict:
    """``load_dataset``'s label arguments from the parsed options."""
    return {"label_map": a.label_map, "allow_new_labels": a.allow_new_labels}


BACKBONE = Option("--backbone", default=DEFAULT_BACKBONE, help="see: python -m fer_features backbones")
WEIGHTS = Option("--weights", default="imagenet",
                 help="imagenet, random, or a path to a weights file (e.g. the .h5 Keras would download); "
                 "not for a .keras backbone (it carries its own)")
IMAGE_SIZE = Option("--image-size", type=int, default=None, help="input size (default: the backbone's)")
PREPROCESS = Option("--preprocess", default="none", choices=INTENSITY_METHODS,
                    help="intensity normalisation; bbhe = Bi-Histogram Equalisation (Kim 1997)")
FACE_CROP = Option("--face-crop", default=DEFAULT_FACE_CROP, choices=FACE_CROP_METHODS,
                   help="crop the face first (OpenCV Haar cascade or MTCNN; none = whole image); no face found: "
                   "whole image kept, and counted")
FACE_MARGIN = Option("--face-margin", type=float, default=DEFAULT_FACE_MARGIN,
                     help="margin around the detected face, fraction of its size on each side; negative crops "
                     "inside the box; 0 = the detector's box (best in bench/results/feature_quality.md)")
ALIGN = Option("--align", action="store_true", help="rotate so the eyes are level (MTCNN landmarks)")
BATCH_SIZE = Option("--batch-size", type=int, default=32, help="images per forward pass of the network")

# -- evaluation and output (classify, compare, finetune, significance, and the listing commands) --------------
FOLDS = Option("--folds", type=int, default=10, help="folds for kfold / group-kfold")
TEST_SIZE = Option("--test-size", type=float, default=0.1, help="holdout test fraction")
TEST_SPLIT = Option("--test-split", default=None, help="official: the test split (default PrivateTest / test)")
SEED = Option("--seed", type=int, default=0, help="seeds the splits and the augmentation")
AUGMENT = Option("--augment", default="default", metavar="SPEC", help=AUGMENT_HELP)
REPORT_DIR = Option("--report-dir", default=None,
                    help="also write the report files (markdown, CSV, JSON, PNG)")
JSON = Option("--json", action="store_true", help="print JSON")
NO_PROGRESS = Option("--no-progress", action="store_true", help="no progress bar")


def add_eval_options(p, default_clf: str) -> None:
    """The options of classify and compare: the cache, the classifier(s), the protocol, augmentation, search."""
    p.add_argument("--cache", required=True, help="feature cache (.h5) written by extract")
    p.add_argument("--test-cache", default=None, metavar="B.h5",
                   help="cross-dataset: train on all of --cache, test on all of this cache (same extraction "
                   "settings; classes on one side only are dropped); protocol cross-dataset")
    p.add_argument("--clf", default=default_clf,
                   help="classifier preset(s); see: python -m fer_features classifiers (compare: a comma-separated "
                   "list, where all = the fixed presets, seed = the seed study's, optimizable = the four optimizable "
                   "ones, e.g. all,optimizable)")
    p.add_argument("--protocol", default="auto", choices=PROTOCOLS,
                   help="auto = group-kfold with subject ids, else official with a split, else kfold; "
                   "cross-dataset (the only one with --test-cache) = train on --cache, test on --test-cache")
    FOLDS.add(p)
    TEST_SIZE.add(p)
    TEST_SPLIT.add(p)
    SEED.add(p)
    p.add_argument("--engine", default=DEFAULT_ENGINE, choices=ENGINES,
                   help="sklearnex = the accelerated default (Intel extension for the SVMs; a one-pass numba loss for "
                   "the 10-unit neural networks, same L-BFGS) or stock sklearn throughout")
    p.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                   help="override a classifier parameter, e.g. --set C=10 --set gamma=0.001")
    p.add_argument("--pca", type=float, default=None,
                   help="PCA after standardising: variance fraction (0-1) or number of components")
    p.add_argument("--subject-norm", default="none", choices=("none", "center", "neutral"),
                   help="identity normalisation: subtract each subject's mean feature (center; uses the test "
                   "subject's unlabelled test images) or its neutral image's (neutral); needs subject ids")
    g = p.add_argument_group("augmentation (copies of each fold's TRAINING images only, features cached)")
    g.add_argument("--copies", type=int, default=0, metavar="N", help="augmented copies per training image")
    g.add_argument("--balance", default=None, metavar="N|max",
                   help="grow every class of the training part to N images (max: to the largest class) with "
                   "augmented copies; larger classes are kept whole")
    AUGMENT.add(g)
    g = p.add_argument_group("optimizable presets (optimizable_svm|knn|nn|ensemble: a nested search in each outer "
                             "training part only, inner folds by subject where known)")
    g.add_argument("--budget", type=int, default=DEFAULT_BUDGET, metavar="N",
                   help="configurations each search tries (Optuna TPE, seeded with --seed)")
    g.add_argument("--inner-folds", type=int, default=DEFAULT_INNER_FOLDS, metavar="K",
                   help="inner folds of the search (leave-one-subject-out when the training part has <= K subjects)")
    p.add_argument("--n-jobs", type=int, default=None, help="folds in parallel (default: up to 2)")
    NO_PROGRESS.add(p, help="no progress bar (classifiers x folds, on stderr)")
    JSON.add(p, help="print ONE JSON object as the last line of stdout")
    add_cluster_options(p, shards=False)


def augment_kwargs(a) -> dict:
    """The augmentation arguments of ``evaluation.run`` (and ``train_model``) from the parsed options."""
    balance = a.balance
    if balance not in (None, "max"):
        try:
            balance = int(balance)
        except ValueError:
            raise AugmentError(f"--balance takes a number of images or 'max', got {balance!r}") from None
    return {"augment": parse_augment(a.augment, seed=a.seed), "copies": int(a.copies), "balance": balance}


def pca_arg(v: float | None) -> float | int | None:
    """--pca as make_classifier takes it: a variance fraction below 1 or a number of components."""
    if v is None:
        return None
    if v <= 0:
        raise ValueError(f"--pca must be > 0 (a variance fraction below 1 or a number of components), got {v:g}")
    return int(v) if v >= 1 else float(v)


def search_kwargs(a) -> dict:
    """The optimizable presets' search settings of ``evaluation.run`` from the parsed options."""
    if a.budget < 1 or a.inner_folds < 2:
        raise ValueError(f"--budget must be >= 1 and --inner-folds >= 2, got {a.budget} and {a.inner_folds}")
    return {"budget": a.budget, "inner_folds": a.inner_folds}


def load_test_cache(a):
    """The --test-cache, loaded (None without one)."""
    return load_cache(a.test_cache) if a.test_cache else None


def on(cache, test_cache) -> str:
    """'A.h5', or 'A.h5 -> B.h5' for a cross-dataset run (report titles)."""
    return cache.path.name + (f" -> {test_cache.path.name}" if test_cache is not None else "")


# -- Dask cluster options (fer_features.distributed.cluster) ---------------------------------------------------
def add_cluster_options(p, shards: bool = True) -> None:
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


def cluster(a, log=None):
    """A context giving the ``Cluster`` the options ask for (connected), or None."""
    return open_cluster(cluster_address(getattr(a, "cluster", None)), shard_size=getattr(a, "shard_size", None),
                        gather=getattr(a, "gather", False),
                        log=log or (lambda m: print(m, file=sys.stderr)))


def cluster_runner(a):
    """``extract_dataset``'s runner for --cluster: the cluster starts only on a cache miss; None without one."""
    if cluster_address(getattr(a, "cluster", None)) is None:
        return None

    def runner(*args, **kw):
        with cluster(a) as cl:
            return on_cluster(cl)(*args, **kw)

    return runner
