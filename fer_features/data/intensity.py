"""Pixel-level preparation: uint8, grey and RGB, resizing, histogram equalisation (global, CLAHE, BBHE)."""
from __future__ import annotations

import cv2
import numpy as np

INTENSITY_METHODS = ("none", "histeq", "clahe", "bbhe")


def _as_uint8(img: np.ndarray) -> np.ndarray:
    """uint8 view/copy of ``img``; floats with max <= 1 are taken as 0..1 and scaled to 0..255."""
    img = np.asarray(img)
    if img.dtype == np.uint8:
        return img
    if img.dtype == np.bool_:
        return img.astype(np.uint8) * 255
    if np.issubdtype(img.dtype, np.floating) and img.size and float(np.nanmax(img)) <= 1.0:
        img = img * 255.0
    return np.clip(np.round(np.nan_to_num(img)), 0, 255).astype(np.uint8)


def _check_image(img: np.ndarray) -> None:
    if not (img.ndim == 2 or (img.ndim == 3 and img.shape[2] in (1, 3, 4))):
        raise ValueError(f"expected an HxW, HxWx1, HxWx3 or HxWx4 image, got shape {img.shape}")
    if img.shape[0] == 0 or img.shape[1] == 0:
        raise ValueError(f"empty image of shape {img.shape}")


def to_grey(img: np.ndarray) -> np.ndarray:
    """HxW, HxWx1 or HxWx3/4 (RGB[A]) -> HxW uint8, ITU-R BT.601 luma (0.299 R + 0.587 G + 0.114 B)."""
    img = _as_uint8(img)
    _check_image(img)
    if img.ndim == 2:
        return img
    if img.shape[2] == 1:
        return img[..., 0]
    code = cv2.COLOR_RGBA2GRAY if img.shape[2] == 4 else cv2.COLOR_RGB2GRAY
    return cv2.cvtColor(np.ascontiguousarray(img), code)


def to_rgb(img: np.ndarray) -> np.ndarray:
    """HxW (or HxWx1) -> HxWx3 by repeating the grey channel; HxWx3 unchanged; HxWx4 drops alpha. uint8."""
    img = _as_uint8(img)
    _check_image(img)
    if img.ndim == 2:
        return np.repeat(img[..., None], 3, axis=2)
    if img.shape[2] == 1:
        return np.repeat(img, 3, axis=2)
    if img.shape[2] == 3:
        return img
    return np.ascontiguousarray(img[..., :3])


def resize(img: np.ndarray, size: int | tuple[int, int]) -> np.ndarray:
    """Resize to ``size`` x ``size`` or to ``(h, w)``: INTER_AREA to shrink, INTER_CUBIC to enlarge; uint8."""
    img = _as_uint8(img)
    h, w = (size, size) if isinstance(size, (int, np.integer)) else size
    h, w = int(h), int(w)
    if h <= 0 or w <= 0:
        raise ValueError(f"resize: size must be positive, got {size!r}")
    if img.shape[0] == h and img.shape[1] == w:
        return img
    interp = cv2.INTER_AREA if (h <= img.shape[0] and w <= img.shape[1]) else cv2.INTER_CUBIC
    out = cv2.resize(np.ascontiguousarray(img), (w, h), interpolation=interp)
    if img.ndim == 3 and out.ndim == 2:  # cv2 drops a trailing singleton channel
        out = out[..., None]
    return out


def bbhe_lut(grey: np.ndarray) -> np.ndarray:
    """The 256-entry lookup table of Bi-Histogram Equalisation (Kim 1997) for a grey uint8 image.

    The histogram is split at the mean Xm (as an integer level, floor of the mean); levels [0, Xm] are
    equalised onto [0, Xm] and (Xm, 255] onto [Xm+1, 255], each half with its own CDF.
    """
    grey = _as_uint8(grey)
    hist = np.bincount(grey.ravel(), minlength=256).astype(np.float64)
    xm = int(np.floor(grey.mean()))
    lut = np.arange(256, dtype=np.float64)
    lo, hi = hist[: xm + 1], hist[xm + 1:]
    if lo.sum() > 0:
        lut[: xm + 1] = xm * (np.cumsum(lo) / lo.sum())
    if hi.size and hi.sum() > 0:
        lut[xm + 1:] = (xm + 1) + (255 - (xm + 1)) * (np.cumsum(hi) / hi.sum())
    return np.clip(np.round(lut), 0, 255).astype(np.uint8)


def bbhe(grey: np.ndarray) -> np.ndarray:
    """Bi-Histogram Equalisation of a grey uint8 image (brightness preserving); constant image unchanged."""
    grey = _as_uint8(grey)
    if grey.size == 0 or grey.min() == grey.max():
        return grey.copy()
    return bbhe_lut(grey)[grey]


def _equalize_grey(grey: np.ndarray, method: str, clahe_clip: float, clahe_tile: int) -> np.ndarray:
    grey = np.ascontiguousarray(grey)
    if method == "histeq":
        return cv2.equalizeHist(grey)
    if method == "clahe":
        return cv2.createCLAHE(clipLimit=float(clahe_clip), tileGridSize=(int(clahe_tile), int(clahe_tile))).apply(grey)
    return bbhe(grey)


def equalize(img: np.ndarray, method: str = "none", *, clahe_clip: float = 2.0, clahe_tile: int = 8) -> np.ndarray:
    """Intensity equalisation: ``none`` | ``histeq`` | ``clahe`` | ``bbhe``.

    Grey images are equalised directly; RGB(A) images on the luma (Y of YCrCb) only, alpha kept.
    """
    if method not in INTENSITY_METHODS:
        raise ValueError(f"unknown intensity method {method!r}; use one of {', '.join(INTENSITY_METHODS)}")
    img = _as_uint8(img)
    _check_image(img)
    if method == "none":
        return img
    if img.ndim == 2:
        return _equalize_grey(img, method, clahe_clip, clahe_tile)
    if img.shape[2] == 1:
        return _equalize_grey(img[..., 0], method, clahe_clip, clahe_tile)[..., None]
    rgb = np.ascontiguousarray(img[..., :3])
    if np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 1], rgb[..., 2]):
        out = to_rgb(_equalize_grey(rgb[..., 0], method, clahe_clip, clahe_tile))  # grey in 3 channels: exact
    else:
        ycc = cv2.cvtColor(rgb, cv2.COLOR_RGB2YCrCb)
        ycc[..., 0] = _equalize_grey(ycc[..., 0], method, clahe_clip, clahe_tile)
        out = cv2.cvtColor(ycc, cv2.COLOR_YCrCb2RGB)
    if img.shape[2] == 4:
        out = np.concatenate([out, img[..., 3:]], axis=2)
    return out
