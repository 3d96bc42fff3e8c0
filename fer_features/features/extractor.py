"""``FeatureExtractor``: a scikit-learn transformer that embeds face images with a frozen backbone (its spec
resolved once), after the shared preprocessing (face crop, equalisation, grey to RGB, resize)."""
from __future__ import annotations

import contextlib
import random
from types import MappingProxyType
from typing import Any, Sequence

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin

from fer_features import backbones as bb
from fer_features.data.faces import DEFAULT_FACE_CROP, DEFAULT_FACE_MARGIN
from fer_features.data.preprocess import Preprocessor
from fer_features.features.spec import DEFAULT_FLIP_AVERAGE, EXTRACTION_KEYS, ExtractionSpec

# the whole image through one forward pass (no face crop, no flip average): what the seed papers fed, and the
# network's input path alone in the speed benchmarks; spelt out so their numbers keep whatever the defaults are
WHOLE_IMAGE = MappingProxyType({"face_crop": "none", "flip_average": False})


@contextlib.contextmanager
def _dtype_policy(policy: str | None):
    """Build Keras layers under ``policy`` (e.g. 'mixed_bfloat16'), restoring the global policy after."""
    if policy is None:
        yield
        return
    import keras  # heavy (loads the Keras backend): only when a model is built or run

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
    try:
        from keras.src.random import seed_generator as sg  # heavy: loads the Keras backend
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
    def _options(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in EXTRACTION_KEYS}

    @property
    def spec_(self) -> ExtractionSpec:
        """The extraction's spec, resolved once per parameter set (``set_params`` resolves again)."""
        key = tuple(self._options().items())
        if getattr(self, "_spec_key", None) != key:
            self._spec, self._spec_key = ExtractionSpec.build(**self._options()), key
        return self._spec

    @classmethod
    def from_spec(cls, spec: ExtractionSpec, batch_size: int = 32) -> FeatureExtractor:
        """The extractor of a spec already built (its options as parameters, the spec itself not rebuilt)."""
        ext = cls(**spec.options(), batch_size=batch_size)
        ext._spec, ext._spec_key = spec, tuple(ext._options().items())
        return ext

    def resolved_image_size(self) -> int:
        return self.spec_.image_size

    def settings(self) -> dict[str, Any]:
        """Every setting that changes the features (what the cache key hashes)."""
        return self.spec_.settings()

    def preprocessor(self) -> Preprocessor:
        return Preprocessor(self.spec_.preprocess_config())

    # -- scikit-learn API ------------------------------------------------------------------------
    def fit(self, X=None, y=None):
        """Build the frozen network; returns self."""
        spec = self.spec_
        if int(self.batch_size) < 1:
            raise ValueError("batch_size must be >= 1")
        seeds = contextlib.nullcontext()
        if spec.random_weights:
            import keras  # heavy (loads the Keras backend): only when a model is built or run

            keras.utils.set_random_seed(0)  # random weights: reproducible, so the cache key stays honest
            seeds = _own_python_random(0)
        with _dtype_policy("mixed_bfloat16" if spec.precision == "bfloat16" else None), seeds:
            self.model_ = bb.create(spec.backbone, include_top=False, weights=spec.weights,
                                    input_size=spec.image_size, pooling=spec.pooling, layer=spec.layer or None)
        self.preprocessor_ = self.preprocessor()
        if spec.backbone.classical:
            self.n_features_out_ = int(self.model_.n_features)
        else:
            self.n_features_out_ = int(self.model_.output.shape[-1])
            size = spec.image_size  # trace the graph now (part of the build, not of the first batch)
            self.model_.predict_on_batch(np.zeros((int(self.batch_size), size, size, 3), np.float32))
        self.settings_ = spec.settings()
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
            if self.spec_.flip_average:  # mean of the image's and its mirror image's features
                f = (f + self._forward(b[:, :, ::-1])) / 2
            outs.append(f)
        return np.concatenate(outs).astype(np.float32, copy=False)

    def _forward(self, b: np.ndarray) -> np.ndarray:
        """One batch through the network, a short batch zero-padded to ``batch_size``: every call has the
        same shape, so the backend traces (JAX: compiles) the graph once (a new shape costs ~0.5 s or more)."""
        n, bs = len(b), int(self.batch_size)
        x = b.astype(np.float32)
        if n < bs and not self.spec_.backbone.classical:
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
        state.pop("_spec_key", None)
        state.pop("model_", None)  # Keras models are rebuilt on demand, not pickled
        state.pop("preprocessor_", None)
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        if "n_features_out_" in state:
            self.fit()
