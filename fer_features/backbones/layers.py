"""Keras layers the backbones put in front of and behind the network (serialisable)."""
from __future__ import annotations

import keras
from keras import ops

_MEANS = {
    "caffe": ([103.939, 116.779, 123.68], [1.0, 1.0, 1.0]),
    "tf": ([127.5, 127.5, 127.5], [127.5, 127.5, 127.5]),
    "torch": ([0.485 * 255, 0.456 * 255, 0.406 * 255], [0.229 * 255, 0.224 * 255, 0.225 * 255]),
    "lite": ([127.0, 127.0, 127.0], [128.0, 128.0, 128.0]),
}


@keras.saving.register_keras_serializable(package="fer_features")
class InputNormalization(keras.layers.Layer):
    """RGB 0-255 in, the family's ``preprocess_input`` out (caffe, tf, torch, lite or raw)."""

    def __init__(self, mode: str, **kwargs):
        super().__init__(**kwargs)
        if mode not in (*_MEANS, "raw"):
            raise ValueError(f"unknown preprocessing mode {mode!r}")
        self.mode = mode

    def call(self, x):
        x = ops.cast(x, self.compute_dtype)
        if self.mode == "raw":
            return x
        if self.mode == "caffe":
            x = ops.flip(x, axis=-1)  # RGB -> BGR
        mean, std = _MEANS[self.mode]
        return (x - ops.convert_to_tensor(mean, self.compute_dtype)) / ops.convert_to_tensor(std, self.compute_dtype)

    def get_config(self):
        return {**super().get_config(), "mode": self.mode}


@keras.saving.register_keras_serializable(package="fer_features")
class SpatialPooling(keras.layers.Layer):
    """Global average/max pooling, or average pooling over an N x N grid of cells (concatenated,
    cell-major), with PyTorch adaptive-pooling cell bounds so any map size works."""

    def __init__(self, kind: str = "avg", grid: int = 1, **kwargs):
        super().__init__(**kwargs)
        self.kind, self.grid = kind, int(grid)

    def call(self, x):
        if self.kind == "avg":
            return ops.mean(x, axis=(1, 2))
        if self.kind == "max":
            return ops.max(x, axis=(1, 2))
        h, w = x.shape[1], x.shape[2]
        n = self.grid
        cells = []
        for i in range(n):
            r0, r1 = (i * h) // n, -(-((i + 1) * h) // n)
            for j in range(n):
                c0, c1 = (j * w) // n, -(-((j + 1) * w) // n)
                cells.append(ops.mean(x[:, r0:r1, c0:c1, :], axis=(1, 2)))
        return ops.concatenate(cells, axis=-1)

    def compute_output_shape(self, input_shape):
        mult = 1 if self.kind in ("avg", "max") else self.grid * self.grid
        return (input_shape[0], input_shape[-1] * mult)

    def get_config(self):
        return {**super().get_config(), "kind": self.kind, "grid": self.grid}


def custom_objects() -> dict:
    return {"InputNormalization": InputNormalization, "SpatialPooling": SpatialPooling}
