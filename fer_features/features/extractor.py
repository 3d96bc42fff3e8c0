"""``FeatureExtractor``: a scikit-learn transformer that embeds face images with a frozen backbone (its spec
resolved once), after the shared preprocessing (face crop, equalisation, grey to RGB, resize)."""
from __future__ import annotations

import contextlib
from pathlib import Path
from types import MappingProxyType
from typing import Any, Sequence
import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from fer_features import backbones as bb
from fer_features.backbones.device import keras_backend
from fer_features.data.faces import DEFAULT_FACE_CROP, DEFAULT_FACE_MARGIN
from fer_features.data.intensity import INTENSITY_METHODS
from fer_features.data.preprocess import PreprocessConfig, Preprocessor


def _weights_id(weights: str) -> str:
    """Cache-key identity of a weights spec: 'imagenet', 'random' or the file's name and content hash."""
    from fer_features.data.images import content_hash

    w = bb.normalize_weights(weights)
    if w in ("imagenet", "random"):
        return w
    return f"file:{Path(w).name}:{content_hash(w)[:24]}"


# bfloat16: Keras mixed precision (bf16 compute, float32 weights). Measured (bench/results/reduced_precision.md):
# downstream accuracy within 0.5 points; faster only for dense-convolution networks (resnet50 1.4x), slower for
# the depthwise ones (efficientnet_lite0 0.75x, mobilenet_v2 0.95x) on this CPU.
PRECISIONS = ("float32", "bfloat16")


DEFAULT_FLIP_AVERAGE = True  # with the Haar crop: chosen by experiment (bench/results/feature_quality.md)


# the whole image through one forward pass (no face crop, no flip average): what the seed papers fed, and the
# network's input path alone in the speed benchmarks; spelt out so their numbers keep whatever the defaults are
WHOLE_IMAGE = MappingProxyType({"face_crop": "none", "flip_average": False})


@contextlib.contextmanager
def _dtype_policy(policy: str | None):
    """Build Keras layers under ``policy`` (e.g. 'mixed_bfloat16'), restoring the global policy after."""
    if policy is None:
        yield
        return
    import keras

    before = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(policy)
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(before)


@contextlib.contextmanager
def _own_python_random(seed: int):
    """Keras draws the seed of every initializer that has none from Python's global ``random``; another thread
    drawing from it during a build (a Dask worker's event loop does) would change random weights. For the block,
    Keras gets a generator of its own, seeded as ``keras.utils.set_random_seed(seed)`` seeds the global one, so
    the weights are those a lone process builds."""
    import random

    try:
        from keras.src.random import seed_generator as sg
    except ImportError:  # another Keras layout: the global generator, as before
        yield
        return
    before = sg.python_random
    sg.python_random = random.Random(seed)
    try:
        yield
    finally:
        sg.python_random = before


class FeatureExtractor(TransformerMixin, BaseEstimator):
    """Embed face images with a frozen pretrained CNN (a registered backbone, or a saved ``.keras`` model
    file such as ``finetune --save`` writes: see ``keras_backbone``).

    ``X`` is an array ``(N, H, W)`` / ``(N, H, W, C)`` of uint8 images or a sequence of such images of
    any size; ``transform`` preprocesses each (face crop, intensity equalisation, grey to RGB, resize)
    and returns float32 features ``(N, D)``. ``fit`` only builds the network (nothing is learned).
    """

    def __init__(self, backbone: str = bb.DEFAULT_BACKBONE, weights: str | None = "imagenet",
                 image_size: int | None = None, pooling: str | None = None, layer: str | None = None,
                 preprocess: str = "none", face_crop: str = DEFAULT_FACE_CROP,
                 face_margin: float = DEFAULT_FACE_MARGIN, align: bool = False,
                 flip_average: bool = DEFAULT_FLIP_AVERAGE, precision: str = "float32",
                 batch_size: int = 32):
        self.backbone = backbone
        self.weights = weights
        self.image_size = image_size
        self.pooling = pooling
        self.layer = layer
        self.preprocess = preprocess
        self.face_crop = face_crop
        self.face_margin = face_margin
        self.align = align
        self.flip_average = flip_average
        self.precision = precision
        self.batch_size = batch_size

    # -- configuration ---------------------------------------------------------------------------
    @property
    def spec(self) -> bb.BackboneSpec:
        """The backbone's spec, resolved once per ``backbone`` value (a spec passed as ``backbone`` is used as is)."""
        if getattr(self, "_spec_of", None) != self.backbone:
            self._spec, self._spec_of = bb.resolve(self.backbone), self.backbone
        return self._spec

    def _validate(self) -> tuple[bb.BackboneSpec, str, str]:
        """Check every parameter; return the backbone spec and the resolved (layer, pooling)."""
        cfg = self.spec
        layer, pooling = bb.resolve_taps(cfg, self.layer, self.pooling, self.resolved_image_size())
        if self.preprocess not in INTENSITY_METHODS:  # named after this estimator's parameter
            raise ValueError(f"unknown preprocess {self.preprocess!r}; use one of {', '.join(INTENSITY_METHODS)}")
        self._preprocess_config().validate()  # face crop, margin, size: the preprocessing's own checks
        if int(self.batch_size) < 1:
            raise ValueError("batch_size must be >= 1")
        if self.precision not in PRECISIONS:
            raise ValueError(f"unknown precision {self.precision!r}; use one of {', '.join(PRECISIONS)}")
        if self.precision != "float32" and cfg.classical:
            raise ValueError(f"{self.backbone} is not a network: precision {self.precision} does not apply")
        if self.precision != "float32" and cfg.keras_file:
            raise ValueError(f"{self.backbone}: a .keras backbone runs as saved (float32); precision "
                             f"{self.precision} does not apply")
        return cfg, layer, pooling

    def resolved_image_size(self) -> int:
        return int(self.image_size or self.spec.default_size)

    def settings(self) -> dict[str, Any]:
        """Every setting that changes the features (what the cache key hashes)."""
        cfg, layer, pooling = self._validate()
        return {
            "backbone": cfg.name,  # a .keras file: its content id, not its path
            "weights": ("none" if cfg.classical else "model-file" if cfg.keras_file
                        else _weights_id(self.weights)),
            "image_size": self.resolved_image_size(),
            "pooling": pooling,
            "layer": layer,
            "input_preprocessing": cfg.preprocess,
            "preprocess": self.preprocess,
            "face_crop": self.face_crop,
            "face_margin": float(self.face_margin) if self.face_crop != "none" else 0.0,
            "align": bool(self.align) if self.face_crop != "none" else False,
            "flip_average": bool(self.flip_average),
            # only when not float32, so that float32 caches keep the keys they had before this option
            **({"precision": self.precision} if self.precision != "float32" else {}),
            **self._backend_setting(cfg),
        }

    def _backend_setting(self, cfg: bb.BackboneSpec) -> dict[str, str]:
        """``{'keras_backend': name}`` for random weights on a backend other than TensorFlow, else ``{}``.

        Random weights come from the backend's own generator (same seed, other numbers on JAX or torch);
        trained weights give the same features on every backend, to float tolerance, so they keep one key
        (and TensorFlow caches the keys they had before other backends were supported)."""
        if cfg.classical or cfg.keras_file or not self._random_weights():
            return {}
        backend = keras_backend()
        return {} if backend == "tensorflow" else {"keras_backend": backend}

    def _random_weights(self) -> bool:
        return bb.normalize_weights(self.weights) == "random"

    def _preprocess_config(self) -> PreprocessConfig:
        return PreprocessConfig(image_size=self.resolved_image_size(), face_crop=self.face_crop,
                                face_margin=float(self.face_margin), align=bool(self.align),
                                intensity=self.preprocess)

    def preprocessor(self) -> Preprocessor:
        return Preprocessor(self._preprocess_config())

    # -- scikit-learn API ------------------------------------------------------------------------
    def fit(self, X=None, y=None):
        """Build the frozen network; returns self."""
        self._validate()
        seeds = contextlib.nullcontext()
        if self._random_weights():
            import keras

            keras.utils.set_random_seed(0)  # random weights: reproducible, so the cache key stays honest
            seeds = _own_python_random(0)
        with _dtype_policy("mixed_bfloat16" if self.precision == "bfloat16" else None), seeds:
            self.model_ = bb.create(self.spec, include_top=False, weights=self.weights,
                                    input_size=self.resolved_image_size(), pooling=self.pooling, layer=self.layer)
        self.preprocessor_ = self.preprocessor()
        if self.spec.classical:
            self.n_features_out_ = int(self.model_.n_features)
        else:
            self.n_features_out_ = int(self.model_.output.shape[-1])
            size = self.resolved_image_size()  # trace the graph now (part of the build, not of the first batch)
            self.model_.predict_on_batch(np.zeros((int(self.batch_size), size, size, 3), np.float32))
        self.settings_ = self.settings()
        return self

    def _check_fitted(self):
        if not hasattr(self, "model_"):
            self.fit()

    def prepare(self, images: Sequence[np.ndarray]) -> tuple[np.ndarray, list[bool | None]]:
        """Preprocess images into one ``(N, S, S, 3)`` uint8 batch; also returns face-found flags."""
        self._check_fitted()
        out = [self.preprocessor_(np.asarray(img)) for img in images]
        size = self.resolved_image_size()
        batch = np.stack([o[0] for o in out]) if out else np.zeros((0, size, size, 3), np.uint8)
        return batch, [o[1] for o in out]

    def embed(self, batch: np.ndarray) -> np.ndarray:
        """Run the network on ready ``(N, S, S, 3)`` RGB 0-255 tensors; returns float32 ``(N, D)``."""
        self._check_fitted()
        if len(batch) == 0:
            return np.zeros((0, self.n_features_out_), np.float32)
        bs = int(self.batch_size)
        outs = []
        for i in range(0, len(batch), bs):
            b = batch[i:i + bs]
            f = self._forward(b)
            if self.flip_average:  # mean of the image's and its mirror image's features
                f = (f + self._forward(b[:, :, ::-1])) / 2
            outs.append(f)
        return np.concatenate(outs).astype(np.float32, copy=False)

    def _forward(self, b: np.ndarray) -> np.ndarray:
        """One batch through the network, a short batch zero-padded to ``batch_size``: every call has the
        same shape, so the backend traces (JAX: compiles) the graph once (a new shape costs ~0.5 s or more)."""
        n, bs = len(b), int(self.batch_size)
        x = b.astype(np.float32)
        if n < bs and not self.spec.classical:
            x = np.concatenate([x, np.zeros((bs - n, *x.shape[1:]), np.float32)])
        return np.asarray(self.model_.predict_on_batch(x), dtype=np.float32)[:n]

    def transform(self, X) -> np.ndarray:
        batch, _ = self.prepare(list(X))
        return self.embed(batch)

    def get_feature_names_out(self, input_features=None) -> np.ndarray:
        self._check_fitted()
        return np.array([f"{self.backbone}_{i}" for i in range(self.n_features_out_)], dtype=object)

    def __getstate__(self):
        state = dict(self.__dict__)
        state.pop("_spec", None)  # resolved again where unpickled (a .keras file's path may differ there)
        state.pop("_spec_of", None)
        state.pop("model_", None)  # Keras models are rebuilt on demand, not pickled
        state.pop("preprocessor_", None)
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        if "n_features_out_" in state:
            self.fit()
