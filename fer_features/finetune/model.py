"""The fine-tuning model on the backbones' graph (input, normalisation, backbone, pooled, head) and which of its
layers train in each phase (head, top, full, scratch)."""
from __future__ import annotations

from fer_features import backbones as bb
from fer_features.backbones.graph import normalised_input
from fer_features.finetune.config import FinetuneConfig


# -- model ----------------------------------------------------------------------------------------------
def build_model(cfg: FinetuneConfig, n_classes: int):
    """(model, backbone): RGB 0-255 input -> family preprocessing -> backbone -> pooled -> [dense] -> softmax."""
    import keras  # heavy (loads the Keras backend): only when a model is built or run

    bcfg = bb.get_config(cfg.backbone)
    weights = "random" if cfg.mode == "scratch" else bb.normalize_weights(cfg.weights)
    base = bb.base_network(bcfg, False, weights, cfg.size)
    inputs, x = normalised_input(bcfg.preprocess, cfg.size)  # the backbones' graph: RGB 0-255, normalised
    # Keras 3 hands the outer ``training`` flag to every inner layer (a ``training=False`` here would be
    # overridden by fit), so batch norm is kept in inference mode by set_phase instead.
    x = base(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    if cfg.hidden:
        x = keras.layers.Dense(cfg.hidden, activation="relu", name="hidden")(x)
    if cfg.dropout:
        x = keras.layers.Dropout(cfg.dropout, name="dropout")(x)
    out = keras.layers.Dense(n_classes, activation="softmax", name="classes")(x)
    return keras.Model(inputs, out, name=cfg.name()), base


def last_stage_start(base) -> int:
    """Index of the first backbone layer at the resolution of its last convolution: the last stage."""
    maps = [(i, tuple(layer.output.shape[1:3])) for i, layer in enumerate(base.layers)
            if len(getattr(layer.output, "shape", ())) == 4]
    last_weighted = max(i for i, layer in enumerate(base.layers) if layer.weights and len(layer.output.shape) == 4)
    size = dict(maps)[last_weighted]
    return next(i for i, s in maps if s == size)


def set_phase(base, cfg: FinetuneConfig, phase: str) -> None:
    """head: backbone frozen; top: its last stage trainable; full/scratch: all trainable.

    Batch norm of a pretrained backbone stays frozen in every phase: a non-trainable Keras 3
    BatchNormalization runs in inference mode (ImageNet statistics, no updates from small batches).
    Only ``scratch`` (random initialisation) trains its batch norm.
    """
    import keras  # heavy (loads the Keras backend): only when a model is built or run

    if phase == "head":
        base.trainable = False
        return
    base.trainable = True  # (a no-op if it already was: so every layer is set explicitly below)
    k = last_stage_start(base) if phase == "top" else 0
    for i, layer in enumerate(base.layers):
        frozen_bn = isinstance(layer, keras.layers.BatchNormalization) and cfg.mode != "scratch"
        layer.trainable = i >= k and not frozen_bn
