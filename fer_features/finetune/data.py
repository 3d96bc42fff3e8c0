"""Fine-tuning data: images prepared as extract prepares them, tf.data pipelines with on-the-fly augmentation
(training images only), and the validation part carved from training (by subject where ids exist)."""
from __future__ import annotations

import sys

import numpy as np
from sklearn.model_selection import GroupShuffleSplit, StratifiedShuffleSplit
from tqdm import tqdm

from fer_features.backbones import device
from fer_features.backbones.device import keras_backend
from fer_features.data.formats import as_dataset
from fer_features.features.augment import AugmentConfig
from fer_features.finetune.config import FinetuneConfig, preprocessor


# -- data -----------------------------------------------------------------------------------------------
def _augmenter(aug: AugmentConfig | None, seed: int):
    import keras  # heavy (loads the Keras backend): only when a model is built or run

    if aug is None:
        return None
    layers = []
    if aug.flip:
        layers.append(keras.layers.RandomFlip("horizontal", seed=seed))
    if aug.rotation:
        layers.append(keras.layers.RandomRotation(aug.rotation / 360.0, fill_mode="nearest", seed=seed))
    if aug.shift:
        layers.append(keras.layers.RandomTranslation(aug.shift, aug.shift, fill_mode="nearest", seed=seed))
    if aug.zoom or aug.stretch:
        z = aug.zoom or 0.0
        layers.append(keras.layers.RandomZoom((-z - aug.stretch, z + aug.stretch), (-z, z), fill_mode="nearest",
                                              seed=seed))
    if aug.shear:
        layers.append(keras.layers.RandomShear(x_factor=aug.shear / 45.0, fill_mode="nearest", seed=seed))
    if aug.brightness:
        layers.append(keras.layers.RandomBrightness(aug.brightness, value_range=(0, 255), seed=seed))
    return keras.Sequential(layers, name="augment") if layers else None


def _tensorflow():
    """TensorFlow, for tf.data (with any Keras backend: the model itself runs on JAX or torch as well)."""
    try:
        import tensorflow as tf  # heavy, and optional beside JAX: only where TensorFlow itself is used
    except ImportError:
        raise ValueError("finetune streams its images through tf.data and needs TensorFlow installed, whatever "
                         f"the Keras backend (here {keras_backend()}): pip install tensorflow-cpu") from None
    return tf


def _log_device(log) -> None:
    _tensorflow()  # before the images are loaded: a missing TensorFlow stops the run at once
    log(f"training on {device.describe()}")


def make_dataset(images: np.ndarray, labels: np.ndarray, batch_size: int, *, training: bool = False,
                 augment: AugmentConfig | None = None, seed: int = 0):
    """tf.data pipeline of uint8 images -> float32 batches, shuffled and augmented when training."""
    tf = _tensorflow()

    ds = tf.data.Dataset.from_tensor_slices((images, labels.astype(np.int32)))
    if training:
        ds = ds.shuffle(len(images), seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size).map(lambda x, y: (tf.cast(x, tf.float32), y), num_parallel_calls=tf.data.AUTOTUNE)
    aug = _augmenter(augment, seed) if training else None
    if aug is not None:
        ds = ds.map(lambda x, y: (aug(x, training=True), y))  # sequential: seeded random draws in order
    return ds.prefetch(tf.data.AUTOTUNE)


def _validation_split(y: np.ndarray, groups: np.ndarray | None, fraction: float, seed: int):
    """(train, val) positions: by subject where ids exist, else stratified; no validation if too small."""
    idx = np.arange(len(y))
    if fraction <= 0 or len(y) < 20:
        return idx, idx[:0]
    if groups is not None and len(set(groups)) >= 3:
        tr, va = next(GroupShuffleSplit(1, test_size=fraction, random_state=seed).split(idx, y, groups))
    else:
        try:
            tr, va = next(StratifiedShuffleSplit(1, test_size=fraction, random_state=seed).split(idx, y))
        except ValueError:  # a class with a single image
            return idx, idx[:0]
    return tr, va


# -- whole runs -----------------------------------------------------------------------------------------
def load_images(data, cfg: FinetuneConfig, format: str = "auto", progress: bool = True,
                subject_pattern: str | None = None, label_map=None, allow_new_labels: bool = False):
    """(dataset, uint8 images N x S x S x 3) through the same preprocessing as extract."""
    ds = as_dataset(data, format, subject_pattern=subject_pattern, label_map=label_map,
                    allow_new_labels=allow_new_labels)
    ds.require_classes()
    prep = preprocessor(cfg.extraction())
    it = range(len(ds))
    if progress:
        it = tqdm(it, unit="img", desc="preprocess", file=sys.stderr, dynamic_ncols=True, mininterval=0.5)
    return ds, np.stack([prep(ds.load_image(i))[0] for i in it])


def _targets(ds) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(class index, subject id, split name) per record of ``ds``."""
    y = np.array([ds.label_names.index(r.label) for r in ds.records])
    groups = np.array([r.subject for r in ds.records], dtype=object)
    split = np.array([r.split for r in ds.records], dtype=object)
    return y, groups, split
