"""A saved Keras model file (``.keras``, e.g. written by ``finetune --save``) used as a frozen backbone.

``extract --backbone path/to/model.keras`` and ``backbones --layers path/to/model.keras`` reach this module
through ``backbones.get_config``/``create``. What it reads from the file, without building the model:

* **identity**: ``keras:<model name>:<SHA-256 of the file's bytes, 16 hex>``. The cache key holds this, not
  the path or the modification time: a copy of the file anywhere finds its caches, a changed weight does not.
* **input size**: the model's input layer (a model with free spatial size takes ``--image-size``; 224 by
  default, or the size its ``finetune`` metadata records).
* **preprocessing**: a ``fer_features`` ``InputNormalization`` layer inside the model (every ``finetune``
  model has one: RGB 0-255 in) is the model's own; otherwise the backbone its ``finetune`` metadata names
  gives the mode, applied in front; otherwise none (documented default: the model receives RGB 0-255 floats,
  so a foreign model must rescale its input itself, e.g. with a ``Rescaling`` layer).
* **layers**: every layer with a 4-D output, those of a nested backbone model included (``finetune``
  models nest theirs); ``last`` is the last of them, pooled ``avg`` by default, which for a ``finetune``
  model is exactly the pooled feature its classifier head was trained on.

Imports no other module of the package but the low-level ``pooling`` (``backbones`` imports this one).
"""
from __future__ import annotations

import hashlib
import json
import os
import zipfile
from functools import lru_cache
from pathlib import Path
from typing import Any

from fer_features.errors import BackboneError

SUFFIX = ".keras"
META_MEMBER = "fer_features.json"  # the member ``finetune.save`` adds to the zip
DEFAULT_PREPROCESS = "raw"  # a foreign model without an InputNormalization layer nor metadata: RGB 0-255 as is
_HASHES: dict[tuple[str, int, int], str] = {}


def is_model_file(name: str | os.PathLike | None) -> bool:
    """True when ``name`` names a Keras model file (ends in .keras) rather than a registered backbone."""
    return name is not None and str(name).lower().endswith(SUFFIX)


def file_hash(path: str | Path) -> str:
    """SHA-256 of the file's bytes (remembered per path, size and mtime: a large file is read once)."""
    p = Path(path)
    st = p.stat()
    key = (str(p.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _HASHES:
        h = hashlib.sha256()
        with open(p, "rb") as fh:
            while block := fh.read(1 << 20):
                h.update(block)
        _HASHES[key] = h.hexdigest()
    return _HASHES[key]


def _find(node: Any, class_name: str) -> dict | None:
    """The first layer config of ``class_name`` in a Keras config tree (depth first, outer layers first)."""
    if isinstance(node, dict):
        if node.get("class_name") == class_name:
            return node
        layers = (node.get("config") or {}).get("layers") if isinstance(node.get("config"), dict) else None
        for child in layers or []:
            if child.get("class_name") == class_name:
                return child
        for child in layers or []:
            if (found := _find(child, class_name)) is not None:
                return found
    return None


def describe(path: str | os.PathLike) -> dict[str, Any]:
    """What the file says about itself (no model built): id, path, input size, preprocessing, metadata."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise BackboneError(f"{path}: no such Keras model file")
    try:
        with zipfile.ZipFile(p) as z:
            names = z.namelist()
            config = json.loads(z.read("config.json"))
            meta = json.loads(z.read(META_MEMBER)) if META_MEMBER in names else None
    except (zipfile.BadZipFile, KeyError, ValueError, OSError) as exc:
        raise BackboneError(f"{path}: not a Keras .keras model file ({type(exc).__name__}: {exc})") from None
    model_name = str((config.get("config") or {}).get("name") or "model")
    size = None
    inp = _find(config, "InputLayer")
    if inp is not None:
        shape = inp["config"].get("batch_shape") or inp["config"].get("batch_input_shape")
        if shape and len(shape) == 4 and shape[1] and shape[1] == shape[2]:
            size = int(shape[1])
        elif shape and len(shape) == 4 and shape[1] and shape[2]:
            raise BackboneError(f"{path}: input {shape[1]}x{shape[2]} is not square; fer_features feeds square images")
    norm = _find(config, "InputNormalization")
    return {
        "id": f"keras:{model_name}:{file_hash(p)[:16]}",
        "path": str(p.resolve()),
        "model_name": model_name,
        "size": size,
        "model_preprocess": norm["config"]["mode"] if norm is not None else None,
        "meta": meta,
    }


@lru_cache(maxsize=4)
def _load(path: str, digest: str):
    import keras  # heavy (loads the Keras backend): only when a model is built or run

    from fer_features.backbones.layers import custom_objects  # defines Keras layers, so imports keras: only when a model is built

    try:
        model = keras.models.load_model(path, custom_objects=custom_objects(), compile=False)
    except Exception as exc:  # noqa: BLE001 - any loader failure is the file's problem
        raise BackboneError(f"{path}: cannot load the Keras model: {type(exc).__name__}: {exc}") from None
    model.trainable = False
    return model


def load(path: str | os.PathLike, content_id: str | None = None):
    """The model in the file, frozen (loaded once per file content). With the ``content_id`` its spec already
    read (``BackboneSpec.name``), the file's description is not read again."""
    if content_id is None:
        d = describe(path)
        path, content_id = d["path"], d["id"]
    return _load(str(path), content_id)


def _skip(layer) -> bool:
    import keras  # heavy (loads the Keras backend): only when a model is built or run

    return isinstance(layer, (keras.layers.InputLayer, keras.layers.ZeroPadding2D)) or isinstance(layer, keras.Model)


def _shape(layer) -> tuple:
    return tuple(getattr(getattr(layer, "output", None), "shape", ()) or ())


def layer_owners(model) -> list[tuple[str, tuple, Any]]:
    """(layer name, map shape H x W x C, the model holding it) of every layer with a 4-D output, in order;
    a nested model's layers (a ``finetune`` backbone) in place of the nested model itself."""
    import keras  # heavy (loads the Keras backend): only when a model is built or run

    out = []
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            out += [(n, s, o) for n, s, o in layer_owners(layer)]
        elif not _skip(layer) and len(_shape(layer)) == 4:
            out.append((layer.name, _shape(layer)[1:], model))
    return out


def _parent(m, root):
    """The model directly holding ``m`` inside ``root`` (None if ``m`` is not in it)."""
    import keras  # heavy (loads the Keras backend): only when a model is built or run

    for layer in root.layers:
        if layer is m:
            return root
        if isinstance(layer, keras.Model) and (p := _parent(m, layer)) is not None:
            return p
    return None


def _entry(outer, owner) -> list[tuple[Any, Any]]:
    """(parent, child) pairs from ``outer`` down to ``owner``: the nested models to enter, outermost first."""
    chain, m = [], owner
    while m is not outer:
        p = _parent(m, outer)
        if p is None:
            raise BackboneError(f"layer owner {owner.name} not found in {outer.name}")
        chain.append((p, m))
        m = p
    return chain[::-1]


def tap_model(model, names: list[str], input_size: int):
    """A Keras model: RGB input of ``input_size`` -> the outputs of the named layers (nested ones too)."""
    import keras  # heavy (loads the Keras backend): only when a model is built or run

    owners = {n: o for n, _, o in layer_owners(model)}
    inp = keras.Input((input_size, input_size, 3), name="rgb_in")
    outs: dict[str, Any] = {}
    groups: dict[int, list[str]] = {}
    for n in names:
        groups.setdefault(id(owners[n]), []).append(n)
    for key, group in groups.items():
        owner = owners[group[0]]
        x = inp
        for parent, child in _entry(model, owner):
            nodes = getattr(child, "_inbound_nodes", None)
            if not nodes:
                raise BackboneError(f"{child.name}: a nested model that is never called; cannot tap its layers")
            feed = keras.Model(parent.inputs, nodes[0].input_tensors[0])
            x = feed(x)
        part = keras.Model(owner.inputs, [owner.get_layer(n).output for n in group])
        res = part(x)
        res = res if isinstance(res, (list, tuple)) else [res]
        outs.update(zip(group, res))
    return keras.Model(inp, [outs[n] for n in names], name="taps")


__all__ = ["is_model_file", "describe", "load", "file_hash", "layer_owners", "tap_model", "DEFAULT_PREPROCESS"]
