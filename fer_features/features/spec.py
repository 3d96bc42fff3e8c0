"""``ExtractionSpec``: every setting that changes the features, resolved and checked ONCE (backbone spec, weights,
input size, taps, preprocessing, face crop, flip average, precision), built at the door: from options
(``build``: the CLI, the Python API, ``FeatureExtractor``'s parameters), or from a cache (``from_cache``: what a
saved model or augmentation needs to embed new images alike). Everything downstream reads it: the cache key and
file name (``settings``), the model build and the preprocessing (``FeatureExtractor``), results' ``features``."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fer_features import backbones as bb
from fer_features.backbones.device import keras_backend
from fer_features.backbones.keras_file import describe
from fer_features.data.faces import DEFAULT_FACE_CROP, DEFAULT_FACE_MARGIN
from fer_features.data.images import content_hash
from fer_features.data.intensity import INTENSITY_METHODS
from fer_features.data.preprocess import PreprocessConfig
from fer_features.errors import BackboneError, CacheError

# bfloat16: Keras mixed precision (bf16 compute, float32 weights). Measured (bench/results/reduced_precision.md):
# downstream accuracy within 0.5 points; faster only for dense-convolution networks (resnet50 1.4x), slower for
# the depthwise ones (efficientnet_lite0 0.75x, mobilenet_v2 0.95x) on this CPU.
PRECISIONS = ("float32", "bfloat16")
DEFAULT_FLIP_AVERAGE = True  # with the Haar crop: chosen by experiment (bench/results/feature_quality.md)
# what a cache records and FeatureExtractor takes: the options of one extraction
EXTRACTION_KEYS = ("backbone", "weights", "image_size", "pooling", "layer", "preprocess", "face_crop",
                   "face_margin", "align", "flip_average", "precision")


def _weights_id(weights: str) -> str:
    """Cache-key identity of normalised weights: 'imagenet', 'random' or the file's name and content hash."""
    if weights in ("imagenet", "random"):
        return weights
    return f"file:{Path(weights).name}:{content_hash(weights)[:24]}"


@dataclass(frozen=True)
class ExtractionSpec:
    """One extraction's settings, resolved: build it with ``build`` or ``from_cache``, never field by field."""

    backbone: bb.BackboneSpec
    weights: str  # normalised: 'imagenet', 'random' or an absolute file path
    image_size: int
    layer: str  # resolved taps ('' for the classical descriptors)
    pooling: str
    preprocess: str = "none"
    face_crop: str = DEFAULT_FACE_CROP
    face_margin: float = DEFAULT_FACE_MARGIN
    align: bool = False
    flip_average: bool = DEFAULT_FLIP_AVERAGE
    precision: str = "float32"
    weights_id: str = ""  # the cache key's identity of the weights (a file's content hash), computed once

    @classmethod
    def build(cls, backbone: str | bb.BackboneSpec = bb.DEFAULT_BACKBONE, weights: str | Path | None = "imagenet",
              image_size: int | None = None, pooling: str | None = None, layer: str | None = None,
              preprocess: str = "none", face_crop: str = DEFAULT_FACE_CROP,
              face_margin: float = DEFAULT_FACE_MARGIN, align: bool = False,
              flip_average: bool = DEFAULT_FLIP_AVERAGE, precision: str = "float32") -> ExtractionSpec:
        """Resolve and check every option (the one place where they are)."""
        spec = bb.resolve(backbone)
        size = int(image_size or spec.default_size)
        layer, pooling = bb.resolve_taps(spec, layer, pooling, size)
        if preprocess not in INTENSITY_METHODS:  # named after FeatureExtractor's parameter
            raise ValueError(f"unknown preprocess {preprocess!r}; use one of {', '.join(INTENSITY_METHODS)}")
        PreprocessConfig(image_size=size, face_crop=face_crop, face_margin=float(face_margin), align=bool(align),
                         intensity=preprocess).validate()  # face crop, margin, size: the preprocessing's own checks
        if precision not in PRECISIONS:
            raise ValueError(f"unknown precision {precision!r}; use one of {', '.join(PRECISIONS)}")
        if precision != "float32" and spec.classical:
            raise ValueError(f"{spec.ref} is not a network: precision {precision} does not apply")
        if precision != "float32" and spec.keras_file:
            raise ValueError(f"{spec.ref}: a .keras backbone runs as saved (float32); precision {precision} does "
                             "not apply")
        w = bb.normalize_weights(weights)
        wid = "none" if spec.classical else "model-file" if spec.keras_file else _weights_id(w)
        return cls(spec, w, size, layer, pooling, preprocess, face_crop, float(face_margin), bool(align),
                   bool(flip_average), precision, wid)

    @classmethod
    def from_options(cls, options: dict[str, Any]) -> ExtractionSpec:
        """From the options dict a cache or a saved model records (``options()``)."""
        return cls.build(**{k: v for k, v in options.items() if k in EXTRACTION_KEYS})

    @classmethod
    def from_cache(cls, cache) -> ExtractionSpec:
        return cls.from_options(cache_options(cache))

    @property
    def random_weights(self) -> bool:
        return self.weights == "random"

    def options(self) -> dict[str, Any]:
        """The options that rebuild this spec (``FeatureExtractor(**options)``): what a saved model records."""
        return {"backbone": self.backbone.ref, "weights": self.weights, "image_size": self.image_size,
                "pooling": self.pooling, "layer": self.layer, "preprocess": self.preprocess,
                "face_crop": self.face_crop, "face_margin": self.face_margin, "align": self.align,
                "flip_average": self.flip_average, "precision": self.precision}

    def preprocess_config(self) -> PreprocessConfig:
        return PreprocessConfig(image_size=self.image_size, face_crop=self.face_crop, face_margin=self.face_margin,
                                align=self.align, intensity=self.preprocess)

    def settings(self) -> dict[str, Any]:
        """Every setting that changes the features: what the cache key hashes and its file name spells."""
        cfg = self.backbone
        return {
            "backbone": cfg.name,  # a .keras file: its content id, not its path
            "weights": self.weights_id,
            "image_size": self.image_size,
            "pooling": self.pooling,
            "layer": self.layer,
            "input_preprocessing": cfg.preprocess,
            "preprocess": self.preprocess,
            "face_crop": self.face_crop,
            "face_margin": self.face_margin if self.face_crop != "none" else 0.0,
            "align": self.align if self.face_crop != "none" else False,
            "flip_average": self.flip_average,
            # only when not float32, so that float32 caches keep the keys they had before this option
            **({"precision": self.precision} if self.precision != "float32" else {}),
            **self._backend_setting(),
        }

    def _backend_setting(self) -> dict[str, str]:
        """``{'keras_backend': name}`` for random weights on a backend other than TensorFlow, else ``{}``.

        Random weights come from the backend's own generator (same seed, other numbers on JAX or torch);
        trained weights give the same features on every backend, to float tolerance, so they keep one key
        (and TensorFlow caches the keys they had before other backends were supported)."""
        if self.backbone.classical or self.backbone.keras_file or not self.random_weights:
            return {}
        backend = keras_backend()
        return {} if backend == "tensorflow" else {"keras_backend": backend}


def cache_options(cache) -> dict[str, Any]:
    """What ``FeatureExtractor`` needs to reproduce a cache's features on new images (``ExtractionSpec``'s
    options, as the cache recorded them)."""
    if cache.attrs.get("sources_json"):  # features/merge.py: features of two extractions side by side
        raise CacheError(f"{cache.path}: a merged cache (features of two extractions) cannot embed new images: "
                         "augmentation and classify --save need a cache of one extraction")
    s = cache.settings
    out = {k: s.get(k) for k in EXTRACTION_KEYS if k in s}
    if cache.attrs.get("weights_spec"):
        out["weights"] = cache.attrs["weights_spec"]
    if cache.attrs.get("backbone_spec"):  # a .keras file backbone: the file, where extract read it
        path = cache.attrs["backbone_spec"]
        try:
            same = describe(path)["id"] == s.get("backbone")
        except BackboneError as exc:
            raise CacheError(f"{cache.path}: its backbone file is gone or unreadable ({exc})") from None
        if not same:
            raise CacheError(f"{cache.path}: its backbone file {path} changed since extraction")
        out["backbone"] = path
    if not out.get("layer"):  # older caches wrote '' for the last layer; classical descriptors have none
        out["layer"] = None if bb.is_classical(out.get("backbone") or bb.DEFAULT_BACKBONE) else "last"
    return out
