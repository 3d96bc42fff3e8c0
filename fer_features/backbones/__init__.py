"""Frozen backbones: the registry and its specs (``resolve``), taps and pooling, the one features graph, the
factory (``create``), Keras model files, classical descriptors and the Keras compute device."""
from fer_features.backbones.factory import (
    base_network,
    cached_imagenet_weights,
    create,
    normalize_weights,
    tappable_layers,
)
from fer_features.backbones.pooling import POOLINGS_HELP, parse_pooling
from fer_features.backbones.registry import (
    CLASSICAL,
    DEFAULT_BACKBONE,
    KERAS_FILE,
    PREPROCESS_MODES,
    REGISTRY,
    BackboneConfig,
    BackboneSpec,
    get_config,
    is_classical,
    list_backbones,
    resolve,
)
from fer_features.backbones.taps import LAYERS_HELP, feature_size, parse_layers, resolve_taps, stage_layers
from fer_features.errors import BackboneError

__all__ = [
    "BackboneConfig", "BackboneError", "BackboneSpec", "CLASSICAL", "DEFAULT_BACKBONE", "KERAS_FILE", "LAYERS_HELP",
    "POOLINGS_HELP", "PREPROCESS_MODES", "REGISTRY", "base_network", "cached_imagenet_weights", "create",
    "feature_size", "get_config", "is_classical", "list_backbones", "normalize_weights", "parse_layers", "parse_pooling",
    "resolve", "resolve_taps", "stage_layers", "tappable_layers",
]
