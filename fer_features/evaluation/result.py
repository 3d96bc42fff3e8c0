"""``Result``: one classifier evaluated under one protocol.

It is a ``dict`` of the result JSON's keys (so ``json.dump`` writes it exactly as before, and every table, plot
and significance test reads it as before), with typed read-only accessors for the fields every result has and
``to_dict()`` / ``from_dict()`` for the plain JSON form. A dict subclass rather than a dataclass on purpose:
results carry about 90 keys, optional by protocol (search records, augmentation, cross-dataset pairing), and
JSON files written by earlier releases must load as they are."""
from __future__ import annotations

from typing import Any

import numpy as np


class Result(dict):
    """One classifier x protocol: accuracy (pooled over folds) with its 95 % interval, per-class accuracy,
    confusion matrix, times, the protocol's description and whether it leaks, and every test prediction."""

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Result:
        return d if isinstance(d, cls) else cls(d)

    def to_dict(self) -> dict[str, Any]:
        """The plain dict (today's JSON)."""
        return dict(self)

    @property
    def classifier(self) -> str:
        return str(self["classifier"])

    @property
    def protocol(self) -> str:
        return str(self["protocol"])

    @property
    def protocol_description(self) -> str:
        return str(self.get("protocol_description", self.protocol))

    @property
    def accuracy(self) -> float:
        """Correct test images / all test images, pooled over folds (0-1)."""
        return float(self["accuracy"])

    @property
    def accuracy_ci(self) -> tuple[float, float] | None:
        """Its 95 % bootstrap interval (over subjects where known, else images), or None."""
        ci = self.get("accuracy_ci")
        return None if not ci or ci[0] is None else (float(ci[0]), float(ci[1]))

    @property
    def labels(self) -> list[str]:
        return list(self["labels"])

    @property
    def per_class_accuracy(self) -> dict[str, float | None]:
        return dict(self["per_class_accuracy"])

    @property
    def confusion_matrix(self) -> np.ndarray:
        return np.asarray(self["confusion_matrix"], dtype=np.int64)

    @property
    def leaky(self) -> bool:
        return bool(self.get("leaky", False))

    @property
    def subject_independent(self) -> bool:
        return bool(self.get("subject_independent", False))

    @property
    def fit_seconds(self) -> float:
        return float(self.get("fit_seconds", 0.0))

    @property
    def predict_seconds(self) -> float:
        return float(self.get("predict_seconds", 0.0))

    @property
    def n_test(self) -> int:
        return int(self.get("n_test", 0))

    def __repr__(self) -> str:
        ci = self.accuracy_ci
        band = f" [{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]" if ci else ""
        return f"Result({self.get('classifier')}, {self.get('protocol')}: {100 * self.get('accuracy', 0):.1f} %{band})"
