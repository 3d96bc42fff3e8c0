"""The one features graph every Keras backbone shares: RGB 0-255 input -> the family's normalisation ->
the tapped layers -> each pooled (avg, max or gridN) -> concatenated. ``factory`` builds frozen feature models
with it; ``finetune`` builds its trainable model on ``normalised_input``."""
from __future__ import annotations

from fer_features.backbones.pooling import parse_pooling


def normalised_input(preprocess: str | None, size: int):
    """(inputs, x): a ``size`` x ``size`` RGB 0-255 input and, unless ``preprocess`` is None, the family's
    ``preprocess_input`` as an ``InputNormalization`` layer after it."""
    import keras  # heavy (TensorFlow or JAX): imported when a model is built, not when the CLI starts

    from fer_features.backbones.layers import InputNormalization  # defines Keras layers: imports keras

    inputs = keras.Input(shape=(size, size, 3), name="rgb_0_255")
    x = inputs if preprocess is None else InputNormalization(preprocess, name="preprocess_input")(inputs)
    return inputs, x


def features_model(taps_model, taps: list[tuple[str, str]], preprocess: str | None, size: int, name: str):
    """input -> normalisation -> ``taps_model`` (one output per tap) -> pooled taps -> concatenated."""
    import keras  # heavy: see normalised_input

    from fer_features.backbones.layers import SpatialPooling  # defines Keras layers: imports keras

    inputs, x = normalised_input(preprocess, size)
    outs = taps_model(x)
    outs = outs if isinstance(outs, (list, tuple)) else [outs]
    pooled = [SpatialPooling(*parse_pooling(lpool), name=f"pool_{lname}_{lpool}")(o)
              for (lname, lpool), o in zip(taps, outs)]
    x = pooled[0] if len(pooled) == 1 else keras.layers.Concatenate(name="concat_layers")(pooled)
    return keras.Model(inputs, x, name=name)
