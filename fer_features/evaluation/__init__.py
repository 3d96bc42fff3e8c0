"""Evaluation: protocols as splitter objects (``splits``), leakage checks, subject normalisation, one fold
function behind one executor interface (``folds``), scoring into ``Result`` objects, statistics, cross-dataset
pairing; ``evaluate`` / ``compare`` on a cache (``api``). The names below are the old ``fer_features.evaluation``
module's, so code written against it keeps working."""
from fer_features.classify.registry import check as check_classifier
from fer_features.classify.registry import describe as describe_classifier
from fer_features.data.splits import TEST_SPLIT_NAMES, VALIDATION_SPLITS
from fer_features.errors import ProtocolError
from fer_features.evaluation.api import compare
from fer_features.evaluation.api import evaluate as evaluate_cache
from fer_features.evaluation.engine import evaluate, evaluate_many
from fer_features.evaluation.folds import LocalExecutor, progress_bar
from fer_features.evaluation.leakage import accuracy_without, duplicate_report, row_hashes
from fer_features.evaluation.normalize import SUBJECT_NORM_NOTES, SUBJECT_NORMS, subject_normalize
from fer_features.evaluation.protocols import FEATURE_DEFAULTS, describe_protocol
from fer_features.evaluation.result import Result
from fer_features.evaluation.runner import augmented_data, cache_summary, run
from fer_features.evaluation.scoring import ACCURACY_DEFINITION, score_folds
from fer_features.evaluation.splits import (
    LEAKY_PROTOCOL,
    NO_SUBJECTS_WARNING,
    PROTOCOLS,
    SPLITTERS,
    SUBJECT_INDEPENDENT,
    Splitter,
    default_protocol,
    make_splits,
    make_splitter,
    protocol_for_cache,
    require_classes,
)

__all__ = [
    "ACCURACY_DEFINITION", "FEATURE_DEFAULTS", "LEAKY_PROTOCOL", "NO_SUBJECTS_WARNING", "PROTOCOLS", "SPLITTERS",
    "SUBJECT_INDEPENDENT", "SUBJECT_NORMS", "SUBJECT_NORM_NOTES", "TEST_SPLIT_NAMES", "VALIDATION_SPLITS",
    "LocalExecutor", "ProtocolError", "Result", "Splitter", "accuracy_without", "augmented_data", "cache_summary",
    "check_classifier", "compare", "default_protocol", "describe_classifier", "describe_protocol",
    "duplicate_report", "evaluate", "evaluate_cache", "evaluate_many", "make_splits", "make_splitter",
    "progress_bar", "protocol_for_cache", "require_classes", "row_hashes", "run", "score_folds",
    "subject_normalize",
]
