"""Datasets and their formats (folder, JAFFE, CK+, KDEF, FER2013 CSV, manifest), subject ids, image reading,
preprocessing and face detection (``data.preprocess``, ``data.faces``), pixel-identical duplicates."""
from fer_features.data.datasets import (
    CANONICAL_LABELS,
    FER2013_LABELS,
    FORMATS,
    JAFFE_CODES,
    KDEF_ANGLES,
    KDEF_CODES,
    Dataset,
    Record,
    Sample,
    canonical_label,
    dataset_stem,
)
from fer_features.data.formats import detect_format, load_dataset
from fer_features.data.images import IMAGE_EXTENSIONS, content_hash, read_image
from fer_features.errors import DatasetError, ImageReadError

__all__ = [
    "CANONICAL_LABELS", "FER2013_LABELS", "FORMATS", "IMAGE_EXTENSIONS", "JAFFE_CODES", "KDEF_ANGLES", "KDEF_CODES",
    "Dataset", "DatasetError", "ImageReadError", "Record", "Sample", "canonical_label", "content_hash",
    "dataset_stem", "detect_format", "load_dataset", "read_image",
]
