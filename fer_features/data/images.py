"""Reading one image robustly (palette, alpha, 16-bit and float modes to uint8 grey or RGB) and hashing a
file's bytes."""
from __future__ import annotations

import hashlib
import os

import numpy as np

from fer_features.errors import DatasetError, ImageReadError

IMAGE_EXTENSIONS: frozenset[str] = frozenset({
    ".png", ".jpg", ".jpeg", ".jpe", ".jfif", ".tif", ".tiff", ".bmp", ".dib",
    ".gif", ".webp", ".ppm", ".pgm", ".pbm", ".pnm", ".tga", ".jp2",
})


_ALPHA_MODES = {"LA", "La", "PA", "RGBA", "RGBa"}


_HIGH_DEPTH_PREFIXES = ("I", "F")  # I, I;16, I;16B, I;16L, I;16N, I;32..., F, F;32...


def _scale_to_uint8(arr: np.ndarray) -> np.ndarray:
    """Stretch a high bit-depth image to 0..255 by its own min/max.

    A constant image has no range to stretch: it is clipped to 0..255 instead.
    Non-finite values (float images) count as 0.
    """
    a = np.asarray(arr, dtype=np.float64)
    if not np.all(np.isfinite(a)):
        a = np.nan_to_num(a, nan=0.0, posinf=0.0, neginf=0.0)
    lo, hi = float(a.min()), float(a.max())
    if hi > lo:
        a = (a - lo) * (255.0 / (hi - lo))
        return np.rint(a).astype(np.uint8)
    return np.clip(np.rint(a), 0, 255).astype(np.uint8)


def _composite_on_white(img) -> np.ndarray:
    """Drop alpha by compositing over a white background."""
    if img.mode in ("LA", "La"):
        la = np.asarray(img.convert("LA"), dtype=np.float32)
        colour, alpha = la[..., 0], la[..., 1] / 255.0
    else:
        rgba = np.asarray(img.convert("RGBA"), dtype=np.float32)
        colour, alpha = rgba[..., :3], rgba[..., 3:4] / 255.0
    out = colour * alpha + 255.0 * (1.0 - alpha)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def _grey_if_equal(rgb: np.ndarray) -> np.ndarray:
    if (np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 0], rgb[..., 2])):
        return np.ascontiguousarray(rgb[..., 0])
    return rgb


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Decode one image file to a uint8 array, HxW (grey) or HxWx3 (RGB).

    Mode handling: ``1``/``L`` -> grey; ``P`` -> grey when every used colour is
    grey, else RGB; ``I;16``/``I``/``F`` -> grey stretched to 0..255 by the
    image's own min/max (constant images clipped); modes with alpha
    (``LA``/``PA``/``RGBA``, palette transparency) are composited over a white
    background (``LA`` stays grey); ``CMYK``/``YCbCr``/``LAB``/``HSV`` -> RGB.
    Multi-frame files give their first frame.  No EXIF rotation is applied.

    Raises :class:`ImageReadError` (``"{path}: {reason}"``) for missing,
    truncated, corrupt or non-image files.
    """
    from PIL import Image  # local: keeps ``import fer_features.datasets`` light

    try:
        with Image.open(path) as img:
            img.load()  # forces full decode: truncation is detected here
            mode = img.mode
            if mode == "P":
                if "transparency" in img.info:
                    arr = _grey_if_equal(_composite_on_white(img))
                else:
                    arr = _grey_if_equal(np.asarray(img.convert("RGB")))
            elif mode == "L":
                arr = np.asarray(img)
            elif mode == "1":
                arr = np.asarray(img.convert("L"))
            elif mode in _ALPHA_MODES:
                arr = _composite_on_white(img)
            elif mode.startswith(_HIGH_DEPTH_PREFIXES):
                arr = _scale_to_uint8(np.asarray(img))
            elif mode == "RGB":
                arr = np.asarray(img)
            else:  # CMYK, YCbCr, LAB, HSV, RGBX, ...
                arr = np.asarray(img.convert("RGB"))
            arr = np.array(arr, dtype=np.uint8, copy=True, order="C")
    except ImageReadError:
        raise
    except (OSError, ValueError, SyntaxError, EOFError, TypeError,
            Image.DecompressionBombError) as exc:
        reason = _one_line(exc) or type(exc).__name__
        raise ImageReadError(_one_line(f"{path}: {reason}")) from exc
    if arr.ndim == 2 or (arr.ndim == 3 and arr.shape[2] == 3):
        return arr
    raise ImageReadError(_one_line(f"{path}: unexpected decoded shape {arr.shape}"))


def content_hash(path: str | os.PathLike) -> str:
    """BLAKE2b hex digest of a file's bytes (``missing`` when it cannot be read)."""
    h = hashlib.blake2b()
    try:
        with open(path, "rb") as fh:
            while block := fh.read(1 << 20):
                h.update(block)
    except OSError:
        return "missing"
    return h.hexdigest()


def _one_line(text: object) -> str:
    return " ".join(str(text).split())


def _err(path: object, problem: str) -> DatasetError:
    return DatasetError(_one_line(f"{path}: {problem}"))
