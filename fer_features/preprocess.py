"""Image preprocessing: grey/RGB conversion, intensity equalisation (incl. BBHE), face crop, resize.

Importing this module does not import TensorFlow; MTCNN (which needs it) is built on first use.
"""
from __future__ import annotations

import math
import threading
from dataclasses import asdict, dataclass

import cv2
import numpy as np

INTENSITY_METHODS = ("none", "histeq", "clahe", "bbhe")
FACE_CROP_METHODS = ("none", "haar", "mtcnn")


def to_grey(img: np.ndarray) -> np.ndarray:
    """HxW or HxWx3/4 uint8 -> HxW uint8 (ITU-R 601 luma)."""
    img = np.asarray(img)
    if img.ndim == 2:
        return img
    if img.ndim == 3 and img.shape[2] == 1:
        return img[..., 0]
    if img.ndim == 3 and img.shape[2] == 4:
        return cv2.cvtColor(np.ascontiguousarray(img), cv2.COLOR_RGBA2GRAY)
    if img.ndim == 3 and img.shape[2] == 3:
        return cv2.cvtColor(np.ascontiguousarray(img), cv2.COLOR_RGB2GRAY)
    raise ValueError(f"expected an HxW or HxWxC image, got shape {img.shape}")


def to_rgb(img: np.ndarray) -> np.ndarray:
    """HxW -> HxWx3 by repeating the grey channel; RGBA drops alpha; RGB unchanged."""
    img = np.asarray(img)
    if img.ndim == 2:
        return np.repeat(img[..., None], 3, axis=2)
    if img.ndim == 3 and img.shape[2] == 1:
        return np.repeat(img, 3, axis=2)
    if img.ndim == 3 and img.shape[2] >= 3:
        return np.ascontiguousarray(img[..., :3])
    raise ValueError(f"expected an HxW or HxWxC image, got shape {img.shape}")


def _as_uint8(img: np.ndarray) -> np.ndarray:
    img = np.asarray(img)
    if img.dtype == np.uint8:
        return img
    if np.issubdtype(img.dtype, np.floating) and img.size and img.max() <= 1.0:
        img = img * 255.0
    return np.clip(np.round(img), 0, 255).astype(np.uint8)


def bbhe_lut(grey: np.ndarray) -> np.ndarray:
    """The 256-entry lookup table of Bi-Histogram Equalisation (Kim 1997) for ``grey``.

    Split the histogram at the mean Xm; map [0, Xm] onto [0, Xm] and (Xm, 255] onto [Xm+1, 255],
    each half equalised with its own cumulative distribution. Brightness is largely preserved.
    """
    hist = np.bincount(grey.ravel(), minlength=256).astype(np.float64)
    xm = int(np.floor(grey.mean()))
    lut = np.arange(256, dtype=np.float64)
    lo, hi = hist[: xm + 1], hist[xm + 1:]
    if lo.sum() > 0:
        lut[: xm + 1] = xm * np.cumsum(lo) / lo.sum()  # X0 = 0 .. Xm
    if hi.size and hi.sum() > 0:
        lut[xm + 1:] = (xm + 1) + (255 - (xm + 1)) * np.cumsum(hi) / hi.sum()
    return np.clip(np.round(lut), 0, 255).astype(np.uint8)


def bbhe(grey: np.ndarray) -> np.ndarray:
    """Bi-Histogram Equalisation of a grey uint8 image; a constant image is returned unchanged."""
    grey = _as_uint8(grey)
    if grey.size == 0 or grey.min() == grey.max():
        return grey.copy()
    return bbhe_lut(grey)[grey]


def equalize(img: np.ndarray, method: str = "none", *, clahe_clip: float = 2.0, clahe_tile: int = 8) -> np.ndarray:
    """Intensity normalisation: none | histeq | clahe | bbhe. RGB images are equalised on luma only."""
    if method not in INTENSITY_METHODS:
        raise ValueError(f"unknown intensity method {method!r}; use one of {', '.join(INTENSITY_METHODS)}")
    img = _as_uint8(img)
    if method == "none":
        return img
    if img.ndim == 3 and img.shape[2] >= 3:
        rgb = np.ascontiguousarray(img[..., :3])
        if np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 1], rgb[..., 2]):
            return to_rgb(equalize(rgb[..., 0], method, clahe_clip=clahe_clip, clahe_tile=clahe_tile))
        ycc = cv2.cvtColor(rgb, cv2.COLOR_RGB2YCrCb)
        ycc[..., 0] = equalize(ycc[..., 0], method, clahe_clip=clahe_clip, clahe_tile=clahe_tile)
        return cv2.cvtColor(ycc, cv2.COLOR_YCrCb2RGB)
    grey = to_grey(img)
    if method == "histeq":
        return cv2.equalizeHist(np.ascontiguousarray(grey))
    if method == "clahe":
        return cv2.createCLAHE(clipLimit=clahe_clip, tileGridSize=(clahe_tile, clahe_tile)).apply(
            np.ascontiguousarray(grey))
    return bbhe(grey)


def resize(img: np.ndarray, size: int | tuple[int, int]) -> np.ndarray:
    """Resize to ``size`` x ``size`` (or (h, w)): area interpolation to shrink, cubic to enlarge."""
    h, w = (size, size) if isinstance(size, (int, np.integer)) else size
    if img.shape[0] == h and img.shape[1] == w:
        return img
    interp = cv2.INTER_AREA if (h < img.shape[0] and w < img.shape[1]) else cv2.INTER_CUBIC
    return cv2.resize(np.ascontiguousarray(img), (int(w), int(h)), interpolation=interp)


@dataclass
class FaceBox:
    """A detected face; eye landmarks (x, y) when the detector gives them."""

    x: int
    y: int
    w: int
    h: int
    score: float = 1.0
    left_eye: tuple[float, float] | None = None
    right_eye: tuple[float, float] | None = None


class FaceDetector:
    """Largest-face detector: OpenCV's Haar cascade or MTCNN (built lazily, one per thread)."""

    HAAR_FILE = "haarcascade_frontalface_default.xml"
    MIN_SIDE = 160  # small images (48x48 crops) are upscaled to this before detection

    def __init__(self, method: str = "haar"):
        if method not in ("haar", "mtcnn"):
            raise ValueError(f"unknown face detector {method!r}; use haar or mtcnn")
        self.method = method
        self._local = threading.local()

    def __getstate__(self):
        return {"method": self.method}

    def __setstate__(self, state):
        self.__init__(state["method"])

    def _haar(self):
        c = getattr(self._local, "haar", None)
        if c is None:
            path = cv2.data.haarcascades + self.HAAR_FILE
            c = cv2.CascadeClassifier(path)
            if c.empty():
                raise RuntimeError(f"cannot load the Haar cascade {path} (OpenCV >= 5 moved it out; pin opencv<5)")
            self._local.haar = c
        return c

    def _mtcnn(self):
        d = getattr(self._local, "mtcnn", None)
        if d is None:
            import contextlib
            import sys

            with contextlib.redirect_stdout(sys.stderr):
                from mtcnn import MTCNN

                d = MTCNN(device="CPU:0")
            self._local.mtcnn = d
        return d

    def detect(self, img: np.ndarray) -> FaceBox | None:
        """The largest face in ``img`` (uint8 grey or RGB), or None."""
        img = _as_uint8(img)
        grey = to_grey(img)
        h, w = grey.shape
        scale = max(1.0, self.MIN_SIDE / min(h, w))
        if scale > 1:
            grey = cv2.resize(grey, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_CUBIC)
        if self.method == "haar":
            box = self._detect_haar(grey)
        else:
            box = self._detect_mtcnn(grey)
        if box is None or scale == 1:
            return box
        s = 1.0 / scale
        eye = lambda e: None if e is None else (e[0] * s, e[1] * s)  # noqa: E731
        return FaceBox(round(box.x * s), round(box.y * s), max(1, round(box.w * s)), max(1, round(box.h * s)),
                       box.score, eye(box.left_eye), eye(box.right_eye))

    def _detect_haar(self, grey: np.ndarray) -> FaceBox | None:
        side = min(grey.shape)
        faces = self._haar().detectMultiScale(grey, scaleFactor=1.1, minNeighbors=4,
                                              minSize=(max(24, side // 5), max(24, side // 5)))
        if len(faces) == 0:
            return None
        x, y, w, h = max(faces, key=lambda f: f[2] * f[3])
        return FaceBox(int(x), int(y), int(w), int(h))

    def _detect_mtcnn(self, grey: np.ndarray) -> FaceBox | None:
        rgb = to_rgb(grey)
        res = self._mtcnn().detect_faces(rgb)
        if not res:
            return None
        best = max(res, key=lambda r: r["box"][2] * r["box"][3])
        x, y, w, h = (int(v) for v in best["box"])
        kp = best.get("keypoints") or {}
        le, re_ = kp.get("left_eye"), kp.get("right_eye")
        return FaceBox(max(0, x), max(0, y), w, h, float(best.get("confidence", 1.0)),
                       tuple(map(float, le)) if le is not None else None,
                       tuple(map(float, re_)) if re_ is not None else None)


def eye_angle(box: FaceBox) -> float | None:
    """Angle (degrees) of the line from the left to the right eye in image coordinates."""
    if box.left_eye is None or box.right_eye is None:
        return None
    (x1, y1), (x2, y2) = box.left_eye, box.right_eye
    if x2 < x1:
        (x1, y1), (x2, y2) = (x2, y2), (x1, y1)
    return math.degrees(math.atan2(y2 - y1, x2 - x1))


def crop_face(img: np.ndarray, box: FaceBox, margin: float = 0.2, *, align: bool = False) -> np.ndarray:
    """Square crop around ``box`` grown by ``margin`` (fraction of its size per side); borders are padded
    by edge replication. ``align`` rotates about the eye midpoint so the eyes are level (needs landmarks)."""
    img = np.asarray(img)
    cx, cy = box.x + box.w / 2.0, box.y + box.h / 2.0
    angle = eye_angle(box) if align else None
    if angle is not None and abs(angle) > 0.5:
        (x1, y1), (x2, y2) = box.left_eye, box.right_eye
        centre = ((x1 + x2) / 2.0, (y1 + y2) / 2.0)
        m = cv2.getRotationMatrix2D(centre, angle, 1.0)
        img = cv2.warpAffine(np.ascontiguousarray(img), m, (img.shape[1], img.shape[0]),
                             flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        cx, cy = m @ np.array([cx, cy, 1.0])
    side = max(box.w, box.h) * (1.0 + 2.0 * max(0.0, margin))
    x0, y0 = int(round(cx - side / 2)), int(round(cy - side / 2))
    s = max(1, int(round(side)))
    h, w = img.shape[:2]
    pad = max(0, -x0, -y0, x0 + s - w, y0 + s - h)
    if pad:
        widths = ((pad, pad), (pad, pad)) + (((0, 0),) if img.ndim == 3 else ())
        img = np.pad(img, widths, mode="edge")
        x0, y0 = x0 + pad, y0 + pad
    return np.ascontiguousarray(img[y0:y0 + s, x0:x0 + s])


@dataclass
class PreprocessConfig:
    """Settings of the per-image pipeline (part of the feature-cache key)."""

    image_size: int = 224
    face_crop: str = "none"
    face_margin: float = 0.2
    align: bool = False
    intensity: str = "none"

    def to_dict(self) -> dict:
        return asdict(self)


class Preprocessor:
    """Image (HxW or HxWxC uint8) -> (HxWx3 uint8 RGB at ``image_size``, face found or None).

    Order: detect the face on the original image, crop it (none found: keep the whole image), equalise
    intensity, grey to RGB, resize. Safe to call from several threads.
    """

    def __init__(self, config: PreprocessConfig | None = None, **kwargs):
        self.config = config or PreprocessConfig(**kwargs)
        c = self.config
        if c.face_crop not in FACE_CROP_METHODS:
            raise ValueError(f"unknown face_crop {c.face_crop!r}; use one of {', '.join(FACE_CROP_METHODS)}")
        if c.intensity not in INTENSITY_METHODS:
            raise ValueError(f"unknown intensity {c.intensity!r}; use one of {', '.join(INTENSITY_METHODS)}")
        if int(c.image_size) < 8:
            raise ValueError(f"image_size must be >= 8, got {c.image_size}")
        if not (0.0 <= float(c.face_margin) <= 2.0):
            raise ValueError(f"face_margin must be within 0..2, got {c.face_margin}")
        self.detector = FaceDetector(c.face_crop) if c.face_crop != "none" else None

    def __call__(self, img: np.ndarray) -> tuple[np.ndarray, bool | None]:
        img = _as_uint8(img)
        if img.ndim == 3 and img.shape[2] == 4:
            img = img[..., :3]
        found: bool | None = None
        if self.detector is not None:
            box = self.detector.detect(img)
            found = box is not None
            if box is not None:
                img = crop_face(img, box, self.config.face_margin, align=self.config.align)
        img = equalize(img, self.config.intensity)
        return resize(to_rgb(img), int(self.config.image_size)), found
