"""Which layers of a backbone are tapped and how each is pooled: ``--layer`` / ``--pooling`` resolved against a
spec (defaults filled in, sizes checked) without building the network where the map sizes are known."""
from __future__ import annotations

import re
import warnings

from fer_features.backbones._efficientnet_lite import feature_maps
from fer_features.backbones.pooling import parse_pooling
from fer_features.backbones.registry import BackboneSpec, resolve
from fer_features.errors import BackboneError

LAYERS_HELP = ("NAME | stage-N | last, or several joined by commas, each optionally NAME@POOLING "
               "(e.g. block3b_add@grid7,block4c_add@grid4); stage-N is the last layer at stride 2^N "
               "(stage-1: 112x112 maps for a 224 input); features of several layers are concatenated")


def resolve_taps(backbone: str | BackboneSpec, layer: str | None, pooling: str | None,
                 input_size: int | None = None) -> tuple[str, str]:
    """(layer, pooling) with the backbone's defaults filled in and checked; builds no model.

    Classical descriptors have no layers (layer ``''``); hog takes no pooling, lbp a ``gridN``.
    With ``input_size``, where the map sizes are known without building (efficientnet_lite0), a gridN finer
    than a layer's map is an error if asked for, and reduced to the map's side (with a warning) if a default.
    """
    cfg = resolve(backbone)
    name = cfg.ref
    explicit = pooling is not None
    pooling = pooling or cfg.default_pooling
    if cfg.classical:
        if layer not in (None, "", "last"):
            raise BackboneError(f"{name} has no layers")
        if name == "hog" and pooling != "n/a":
            raise BackboneError("hog takes no pooling option (its cells are fixed at 8x8 pixels)")
        if name == "lbp" and parse_pooling(pooling)[0] != "grid":
            raise BackboneError("lbp pooling must be gridN (the histogram grid), e.g. grid8")
        return "", pooling
    if cfg.keras_file and input_size and int(input_size) != cfg.default_size:
        raise BackboneError(f"{name} takes {cfg.default_size} px images, not {input_size} (leave --image-size out)")
    layer = layer or cfg.default_layer
    parse_layers(layer, pooling)
    maps = _static_maps(cfg, input_size) if input_size else None
    return _fit_taps(name, layer, pooling, explicit, int(input_size), maps) if maps else (layer, pooling)


def feature_size(backbone: str | BackboneSpec, layer: str | None = None, pooling: str | None = None,
                 input_size: int | None = None) -> int | None:
    """The length of the features of ``layer`` pooled by ``pooling`` at ``input_size`` (each default: the spec's),
    without building the network: every tap's channels x its pooling's cells (avg, max: 1; gridN: N x N) where
    the map sizes are known statically (efficientnet_lite0), the last layer's ``feature_dim`` under avg/max, a
    classical descriptor's registered size at its defaults; None where only a built model can tell."""
    cfg = resolve(backbone)
    size = int(input_size or cfg.default_size)
    if cfg.classical:
        default = layer in (None, "", "last") and pooling in (None, cfg.default_pooling) and size == cfg.default_size
        return cfg.feature_dim if default else None
    layer, pooling = resolve_taps(cfg, layer, pooling, size)
    maps = _static_maps(cfg, size)
    shapes = dict(maps or [])
    total = 0
    for lname, lpool in parse_layers(layer, pooling):
        _, grid = parse_pooling(lpool)
        if maps:
            channels = shapes[_layer_name(cfg.ref, size, lname, maps[-1][0], shapes, stage_layers(maps))][-1]
        elif lname == "last" and cfg.feature_dim:
            channels = cfg.feature_dim
        else:
            return None
        total += int(channels) * grid * grid
    return total


def _static_maps(cfg: BackboneSpec, size: int) -> list[tuple[str, tuple]] | None:
    """The backbone's feature maps at ``size`` px where they are known without building it, else None."""
    return feature_maps(size) if cfg.family == "efficientnet_lite" else None


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
    import keras  # heavy (loads the Keras backend): only when a model is built or run

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
