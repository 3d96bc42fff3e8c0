"""``FinetuneConfig``: every setting of a fine-tuning run (stored with its results and its saved model), and
the image preparation it shares with extract."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from fer_features import backbones as bb
from fer_features.data.faces import DEFAULT_FACE_CROP, DEFAULT_FACE_MARGIN
from fer_features.data.preprocess import PreprocessConfig, Preprocessor
from fer_features.features.augment import AugmentConfig

MODES = ("head", "top", "full", "scratch")


KERAS_META = "fer_features.json"  # extra member of the saved .keras zip: labels and preprocessing


@dataclass
class FinetuneConfig:
    """Every setting of a fine-tuning run (stored with its results and its saved model)."""

    backbone: str = bb.DEFAULT_BACKBONE
    mode: str = "top"
    weights: str = "imagenet"
    image_size: int | None = None
    epochs: int = 10  # per phase: the head phase, then the fine phase (top/full)
    head_epochs: int | None = None  # top/full: epochs of the head phase before the fine one (None: epochs)
    batch_size: int = 32
    lr: float = 1e-3
    fine_lr: float = 1e-4
    hidden: int = 0  # units of an optional dense hidden layer in the head (with dropout)
    dropout: float = 0.2
    patience: int = 3  # early stopping on validation accuracy; best weights restored
    val_fraction: float = 0.15
    augment: AugmentConfig | None = field(default_factory=AugmentConfig)
    preprocess: str = "none"
    face_crop: str = DEFAULT_FACE_CROP  # the same preparation as extract's by default
    face_margin: float = DEFAULT_FACE_MARGIN
    align: bool = False
    seed: int = 0

    def __post_init__(self):
        if self.mode not in MODES:
            raise ValueError(f"unknown fine-tuning mode {self.mode!r}; use one of {', '.join(MODES)}")
        cfg = bb.get_config(self.backbone)
        if cfg.family == "classical":
            raise ValueError(f"{self.backbone} is not a network: it cannot be fine-tuned")
        head = 1 if self.head_epochs is None else self.head_epochs
        if min(self.epochs, head, self.batch_size) < 1 or self.lr <= 0 or self.fine_lr <= 0:
            raise ValueError("epochs and batch size must be >= 1 and learning rates > 0")
        if not 0 <= self.dropout < 1 or not 0 <= self.val_fraction < 0.5:
            raise ValueError("dropout must be in [0, 1) and the validation fraction in [0, 0.5)")

    @property
    def size(self) -> int:
        return int(self.image_size or bb.get_config(self.backbone).default_size)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["image_size"] = self.size
        return d

    def name(self) -> str:
        return f"finetune_{self.backbone}_{self.mode}"

    def extraction(self) -> dict[str, Any]:
        """The image preparation settings (stored in a saved model; ``preprocessor`` rebuilds it)."""
        return {"image_size": self.size, "preprocess": self.preprocess, "face_crop": self.face_crop,
                "face_margin": float(self.face_margin), "align": bool(self.align)}


def preprocessor(extraction: dict[str, Any]):
    """The ``Preprocessor`` of ``FinetuneConfig.extraction()`` settings: the same preparation as extract."""
    return Preprocessor(PreprocessConfig(image_size=int(extraction["image_size"]), face_crop=extraction["face_crop"],
                                         face_margin=float(extraction["face_margin"]),
                                         align=bool(extraction.get("align", False)),  # absent: saved before --align
                                         intensity=extraction["preprocess"]))
