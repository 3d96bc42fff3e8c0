"""Classical face descriptors (HOG, LBP from scikit-image) behind the same interface as the CNN backbones.

They see exactly the images the CNNs see (same crop, equalisation and resize), converted to grey, so
``compare`` and ``bench/feature_quality.py`` put them on equal terms with the frozen networks.
"""
from __future__ import annotations

import numpy as np
from skimage.feature import hog, local_binary_pattern

from fer_features.backbones.pooling import parse_pooling
from fer_features.data.intensity import to_grey
from fer_features.errors import BackboneError

LBP_POINTS, LBP_RADIUS = 8, 1
LBP_BINS = LBP_POINTS * (LBP_POINTS - 1) + 3  # 59 'nri_uniform' codes
HOG_CELL, HOG_BLOCK, HOG_ORIENTATIONS = 8, 2, 9


def _grey(img: np.ndarray) -> np.ndarray:
    """HxW uint8 grey of ``img`` via ``preprocess.to_grey`` (rounded BT.601 luma: exact when R=G=B)."""
    return to_grey(img)


class Descriptor:
    """``hog`` or ``lbp`` on ``size`` x ``size`` images; ``predict_on_batch((N, S, S, 3)) -> (N, D)``."""

    def __init__(self, name: str, size: int, pooling: str = "grid8"):
        if name not in ("hog", "lbp"):
            raise BackboneError(f"unknown classical descriptor {name!r}")
        self.name, self.size, self.pooling = name, int(size), pooling
        if name == "hog" and self.size < HOG_CELL * HOG_BLOCK:
            raise BackboneError(f"hog needs images of at least {HOG_CELL * HOG_BLOCK} px")
        if name == "lbp":
            kind, self.grid = parse_pooling(pooling)
            if kind != "grid" or self.grid > self.size // 2:
                raise BackboneError(f"lbp pooling must be gridN with N <= {self.size // 2}, got {pooling!r}")

    @property
    def n_features(self) -> int:
        if self.name == "hog":
            cells = self.size // HOG_CELL
            blocks = cells - HOG_BLOCK + 1
            return blocks * blocks * HOG_BLOCK * HOG_BLOCK * HOG_ORIENTATIONS
        return self.grid * self.grid * LBP_BINS

    def describe_one(self, img: np.ndarray) -> np.ndarray:
        g = _grey(img)
        if g.shape != (self.size, self.size):
            raise ValueError(f"{self.name} expects {self.size}x{self.size} images, got {g.shape}")
        if self.name == "hog":
            return hog(g.astype(np.float32), orientations=HOG_ORIENTATIONS, pixels_per_cell=(HOG_CELL, HOG_CELL),
                       cells_per_block=(HOG_BLOCK, HOG_BLOCK), block_norm="L2-Hys", feature_vector=True)
        codes = local_binary_pattern(g, LBP_POINTS, LBP_RADIUS, "nri_uniform").astype(np.int64)
        n, s = self.grid, self.size
        hists = []
        for i in range(n):
            for j in range(n):
                cell = codes[i * s // n:(i + 1) * s // n, j * s // n:(j + 1) * s // n]
                hists.append(np.bincount(cell.ravel(), minlength=LBP_BINS) / cell.size)
        return np.concatenate(hists)

    def predict_on_batch(self, batch: np.ndarray) -> np.ndarray:
        if len(batch) == 0:
            return np.zeros((0, self.n_features), np.float32)
        return np.stack([self.describe_one(b) for b in batch]).astype(np.float32)

    def __repr__(self) -> str:
        return f"Descriptor({self.name!r}, size={self.size}, pooling={self.pooling!r})"
