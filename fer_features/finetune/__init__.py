"""End-to-end fine-tuning beside the frozen path: the run's settings (``config``), the model on the backbones'
graph (``model``), the images and tf.data (``data``), training and evaluation runs with resumable checkpoints
(``train``, ``checkpoints``), and the saved ``.keras`` file (``keras_io``). The names below are the old
``fer_features.finetune`` module's."""
from fer_features.finetune.config import KERAS_META, MODES, FinetuneConfig, preprocessor
from fer_features.finetune.data import load_images, make_dataset
from fer_features.finetune.keras_io import load_keras, write_keras
from fer_features.finetune.model import build_model, last_stage_start, set_phase
from fer_features.finetune.training import checkpoint_key, predict_proba, run, save, train, validation_rows

__all__ = ["KERAS_META", "MODES", "FinetuneConfig", "build_model", "checkpoint_key", "last_stage_start",
           "load_images", "load_keras", "make_dataset", "predict_proba", "preprocessor", "run", "save",
           "set_phase", "train", "validation_rows", "write_keras"]
