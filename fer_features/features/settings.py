"""The extraction settings a cache records and a saved model needs to reproduce its features.

Its own module so that ``augment`` and ``evaluation`` can read them without importing ``models`` (which
imports ``finetune``, which imports ``augment`` and ``evaluation``)."""
from __future__ import annotations

from typing import Any

EXTRACTION_KEYS = ("backbone", "weights", "image_size", "pooling", "layer", "preprocess", "face_crop",
                   "face_margin", "align", "flip_average", "precision")


def extraction_settings(cache) -> dict[str, Any]:
    """What ``FeatureExtractor`` needs to reproduce a cache's features on new images."""
    if cache.attrs.get("sources_json"):  # fer_features.merge: features of two extractions side by side
        from fer_features.errors import CacheError

        raise CacheError(f"{cache.path}: a merged cache (features of two extractions) cannot embed new images: "
                         "augmentation and classify --save need a cache of one extraction")
    s = cache.settings
    out = {k: s.get(k) for k in EXTRACTION_KEYS if k in s}
    spec = cache.attrs.get("weights_spec")
    if spec:
        out["weights"] = spec
    if cache.attrs.get("backbone_spec"):  # a .keras file backbone: the file, where extract read it
        from fer_features.errors import CacheError
        from fer_features.backbones.keras_file import describe
        from fer_features.errors import BackboneError

        spec = cache.attrs["backbone_spec"]
        try:
            same = describe(spec)["id"] == s.get("backbone")
        except BackboneError as exc:
            raise CacheError(f"{cache.path}: its backbone file is gone or unreadable ({exc})") from None
        if not same:
            raise CacheError(f"{cache.path}: its backbone file {spec} changed since extraction")
        out["backbone"] = spec
    if not out.get("layer"):  # older caches wrote '' for the last layer; classical descriptors have none
        from fer_features.backbones.registry import DEFAULT_BACKBONE, is_classical

        out["layer"] = None if is_classical(out.get("backbone") or DEFAULT_BACKBONE) else "last"
    return out
