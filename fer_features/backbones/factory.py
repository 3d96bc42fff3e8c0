"""The one factory: ``create(spec or name)`` builds a frozen backbone (a Keras application, our EfficientNet-Lite0,
a saved ``.keras`` file, or a classical descriptor) as a features model on the shared graph (``graph``)."""
from __future__ import annotations

import contextlib
import os
import re
import sys
from pathlib import Path
from typing import Any

from fer_features.backbones import _efficientnet_lite as lite
from fer_features.backbones import keras_file as kb
from fer_features.backbones.graph import features_model, normalised_input
from fer_features.backbones.registry import DEFAULT_BACKBONE, BackboneSpec, resolve
from fer_features.backbones.taps import (
    _feature_maps,
    _layer_name,
    _too_fine,
    parse_layers,
    resolve_taps,
    stage_layers,
)
from fer_features.errors import BackboneError


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


def cached_imagenet_weights(backbone: str | BackboneSpec) -> Path | None:
    """The no-top ImageNet weights file Keras cached for ``backbone`` earlier, or None (never downloads)."""
    cfg = resolve(backbone)
    folder = Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")) / "models"
    if not cfg.keras_fn or not folder.is_dir():
        return None
    key = cfg.keras_fn.lower()
    for f in sorted(folder.glob("*.h5")):
        n = f.name.lower().replace("_", "")
        if (n.startswith(key + "weights") or n.startswith(key + "notop")) and "notop" in n:
            return f
    return None


# -- the networks themselves -------------------------------------------------------------------------------
def _keras_app(cfg: BackboneSpec, include_top: bool, weights: str, size: int):
    import keras  # heavy (TensorFlow or JAX): imported when a model is built, not when the CLI starts

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


def base_network(backbone: str | BackboneSpec, include_top: bool, weights: str, size: int):
    """The frozen network itself (Keras application or our EfficientNet-Lite0), without our input layer."""
    cfg = resolve(backbone)
    base = _keras_app(cfg, include_top, weights, size) if cfg.keras_fn else _lite(include_top, weights, size)
    base.trainable = False
    return base


_base = base_network  # its name before the restructure


def _file_maps(cfg: BackboneSpec) -> list[tuple[str, tuple]]:
    maps = [(n, tuple(s)) for n, s, _ in kb.layer_owners(kb.load(cfg.source, cfg.name))]
    if not maps:
        raise BackboneError(f"{cfg.ref}: the model has no layer with a 2-D feature map to tap")
    return maps


def _resolved_taps(cfg: BackboneSpec, size: int, layer: str, pooling: str, maps, hint: str) -> list[tuple[str, str]]:
    """The taps (real layer name, pooling) of ``layer``/``pooling`` on these maps; a grid finer than its map raises."""
    names, stages, shapes = {n for n, _ in maps}, stage_layers(maps), dict(maps)
    resolved = [(_layer_name(cfg.ref, size, lname, maps[-1][0], names, stages), lpool)
                for lname, lpool in parse_layers(layer, pooling)]
    for lname, lpool in resolved:
        why = _too_fine(cfg.ref, size, lname, shapes[lname], lpool)
        if why:
            raise BackboneError(f"{why}; use grid{min(shapes[lname][:2])} or less ({hint})")
    return resolved


def create(
    name: str | BackboneSpec = DEFAULT_BACKBONE,
    include_top: bool = False,
    weights: str | Path | None = "imagenet",
    input_size: int | None = None,
    pooling: str | None = None,
    layer: str | None = None,
):
    """Build backbone ``name`` (a registered name, a ``.keras`` path or a spec) as a Keras model taking RGB 0-255
    images of ``input_size``.

    ``include_top=True`` returns the ImageNet classifier (softmax over 1000 classes). Otherwise the
    model returns pooled features of ``layer`` (see ``LAYERS_HELP``; default: the registry's choice)
    with ``pooling`` (avg, max or gridN). ``weights``: 'imagenet', None/'random', or a weights file.
    Classical entries (hog, lbp) return a ``classical.Descriptor`` with the same ``predict_on_batch``.
    """
    cfg = resolve(name)
    size = int(input_size or cfg.default_size)
    if size < cfg.min_size:
        raise BackboneError(f"{cfg.ref} needs input size >= {cfg.min_size}, got {size}")
    layer, pooling = resolve_taps(cfg, layer, pooling, size)
    if cfg.classical:
        from fer_features.backbones.classical import Descriptor  # scikit-image (about 0.4 s): only for hog/lbp

        return Descriptor(cfg.name, size, pooling)
    if cfg.keras_file:
        if include_top:
            raise BackboneError(f"{cfg.ref}: a .keras backbone gives features only (include_top does not apply)")
        if weights is not None and str(weights).lower() not in ("imagenet", "none", "random"):
            raise BackboneError(f"{cfg.ref} carries its own weights: --weights does not apply to a .keras backbone")
        taps = _resolved_taps(cfg, size, layer, pooling, _file_maps(cfg), "or avg, max")
        pre = None if cfg.preprocess_in_model or cfg.preprocess == "raw" else cfg.preprocess
        tapper = kb.tap_model(kb.load(cfg.source, cfg.name), [n for n, _ in taps], size)
        return features_model(tapper, taps, pre, size, "keras_file_features")

    import keras  # heavy: imported when a model is built

    weights = normalize_weights(weights)
    if include_top and size != cfg.default_size and weights == "imagenet" and cfg.keras_fn:
        raise BackboneError(f"{cfg.name} with its ImageNet top needs input size {cfg.default_size}")
    base = base_network(cfg, include_top, weights, size)
    if include_top:
        inputs, x = normalised_input(cfg.preprocess, size)
        return keras.Model(inputs, base(x), name=f"{cfg.name}_top")
    # Keras applications: the map sizes are known only now (efficientnet_lite0: already in resolve_taps)
    taps = _resolved_taps(cfg, size, layer, pooling, _feature_maps(base.layers), "or avg, max, or a larger image size")
    tapper = keras.Model(base.inputs, [base.get_layer(n).output for n, _ in taps], name=f"{cfg.name}_taps")
    return features_model(tapper, taps, cfg.preprocess, size, f"{cfg.name}_features")


def tappable_layers(backbone: str | BackboneSpec, input_size: int | None = None) -> list[tuple[str, tuple, str]]:
    """(layer name, output shape, stage alias or '') of the layers of ``backbone`` giving a 4-D feature map."""
    cfg = resolve(backbone)
    if cfg.classical:
        return []
    if cfg.keras_file:
        resolve_taps(cfg, None, None, input_size)  # the size check
        maps = _file_maps(cfg)
    else:
        maps = _feature_maps(base_network(cfg, False, "random", int(input_size or cfg.default_size)).layers)
    alias = {n: f"stage-{i + 1}" for i, n in enumerate(stage_layers(maps))}
    return [(n, s, alias.get(n, "")) for n, s in maps]
