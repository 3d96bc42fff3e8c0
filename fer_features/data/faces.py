"""Face detection (OpenCV's Haar cascade, MTCNN) and the face crop (margin, optional eye alignment)."""
from __future__ import annotations

import contextlib
import math
import os
import sys
import threading
from dataclasses import dataclass

import cv2
import numpy as np

from fer_features.data.intensity import _as_uint8, _check_image, to_grey, to_rgb

FACE_CROP_METHODS = ("none", "haar", "mtcnn")


DETECTOR_METHODS = ("haar", "mtcnn")


@dataclass
class FaceBox:
    """A detected face (x, y, w, h in pixels of the input image); eye landmarks (x, y) when known.

    ``left_eye`` / ``right_eye`` follow MTCNN: the eye on the image's left / right side.
    """

    x: int
    y: int
    w: int
    h: int
    score: float = 1.0
    left_eye: tuple[float, float] | None = None
    right_eye: tuple[float, float] | None = None


_MTCNN = None


_MTCNN_LOCK = threading.Lock()


def _shared_mtcnn():
    """One MTCNN per process, built on first use (imports TensorFlow)."""
    global _MTCNN
    with _MTCNN_LOCK:
        if _MTCNN is None:
            os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
            with contextlib.redirect_stdout(sys.stderr):
                from mtcnn import MTCNN  # loads TensorFlow: only for --face-crop mtcnn

                _MTCNN = MTCNN(device="CPU:0")
        return _MTCNN


class FaceDetector:
    """Largest-face detector, ``method`` in {"haar", "mtcnn"}; ``detect(img) -> FaceBox | None``.

    The detector is built lazily on first use: a Haar cascade (OpenCV's
    ``haarcascade_frontalface_default.xml``) per thread, or one process-wide MTCNN whose calls are
    serialised by a lock. Images whose short side is below ``min_side`` (48x48 crops of CK+ or
    FER2013) are upscaled before detection; when nothing is found, Haar tries once more on the image
    padded by edge replication (``pad`` of its side on each border), which helps on tight face crops.
    Boxes are mapped back to the input's pixel coordinates and may extend past its borders.
    Picklable: the built detectors are not part of the state.
    """

    HAAR_FILE = "haarcascade_frontalface_default.xml"

    def __init__(self, method: str = "haar", *, min_side: int = 128, scale_factor: float = 1.1,
                 min_neighbors: int = 3, min_face: float = 0.2, pad: float = 0.15):
        if method not in DETECTOR_METHODS:
            raise ValueError(f"unknown face detector {method!r}; use one of {', '.join(DETECTOR_METHODS)}")
        self.method = method
        self.min_side = int(min_side)
        self.scale_factor = float(scale_factor)
        self.min_neighbors = int(min_neighbors)
        self.min_face = float(min_face)
        self.pad = float(pad)
        self._local = threading.local()

    def __repr__(self) -> str:
        return f"FaceDetector({self.method!r})"

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state.pop("_local", None)
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._local = threading.local()

    def _haar(self) -> cv2.CascadeClassifier:
        c = getattr(self._local, "haar", None)
        if c is None:
            if not hasattr(cv2, "CascadeClassifier"):
                raise RuntimeError(f"OpenCV {cv2.__version__} has no Haar cascades (OpenCV 5 removed them): "
                                   "pip install 'opencv-python-headless<5', or use --face-crop none or mtcnn")
            path = cv2.data.haarcascades + self.HAAR_FILE
            c = cv2.CascadeClassifier(path)
            if c.empty():
                raise RuntimeError(f"cannot load the Haar cascade {path} (OpenCV >= 5 moved it out; pin opencv<5)")
            self._local.haar = c
        return c

    def detect(self, img: np.ndarray) -> FaceBox | None:
        """The largest face in ``img`` (uint8 grey, RGB or RGBA), or None."""
        boxes = self._find(img, every=False)
        return boxes[0] if boxes else None

    def detect_all(self, img: np.ndarray, *, min_face: float | None = None) -> list[FaceBox]:
        """Every face in ``img``, sorted left to right (then top to bottom); [] when none.

        The same search as :meth:`detect` (upscaling of small images, the padded retry when nothing is
        found), keeping all detections at least ``min_face`` (default: the detector's) of the image's short
        side. ``score``: Haar's level weight of the final cascade stage (OpenCV ``detectMultiScale3``; higher
        is surer, not a probability), MTCNN's confidence. The largest box is the one :meth:`detect` returns.
        """
        return self._find(img, every=True, min_face=min_face)

    def _find(self, img: np.ndarray, *, every: bool, min_face: float | None = None) -> list[FaceBox]:
        grey = to_grey(img)
        h, w = grey.shape
        scale = max(1.0, self.min_side / min(h, w))
        if scale > 1:
            grey = cv2.resize(grey, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_CUBIC)
        mf = self.min_face if min_face is None else float(min_face)
        find = self._detect_haar_all if self.method == "haar" else self._detect_mtcnn_all
        if not every:  # the single-face path of extraction: exactly what it always did
            find = self._detect_haar if self.method == "haar" else self._detect_mtcnn

            def run(g, min_ref=None):
                b = find(g, min_ref)
                return [] if b is None else [b]
        else:
            def run(g, min_ref=None):
                return find(g, min_ref, mf)
        boxes, offset = run(grey), 0
        if not boxes and self.method == "haar" and self.pad > 0:
            offset = max(1, int(round(self.pad * min(grey.shape))))
            padded = cv2.copyMakeBorder(grey, offset, offset, offset, offset, cv2.BORDER_REPLICATE)
            boxes = run(padded, min(grey.shape))
        if scale != 1 or offset != 0:
            boxes = [self._unmap(b, scale, offset) for b in boxes]
        if every:
            boxes.sort(key=lambda b: (b.x, b.y))
        return boxes

    @staticmethod
    def _unmap(box: FaceBox, scale: float, offset: int) -> FaceBox:
        """A box found on the upscaled / padded grey copy, in the input's pixel coordinates."""
        def pt(x: float, y: float) -> tuple[float, float]:
            return ((x - offset) / scale, (y - offset) / scale)

        def eye(e):
            return None if e is None else pt(*e)

        x0, y0 = pt(box.x, box.y)
        return FaceBox(int(round(x0)), int(round(y0)), max(1, int(round(box.w / scale))),
                       max(1, int(round(box.h / scale))), box.score, eye(box.left_eye), eye(box.right_eye))

    def _detect_haar(self, grey: np.ndarray, min_ref: int | None = None) -> FaceBox | None:
        m = max(20, int(self.min_face * (min_ref or min(grey.shape))))
        faces = self._haar().detectMultiScale(grey, scaleFactor=self.scale_factor, minNeighbors=self.min_neighbors,
                                              minSize=(m, m))
        if len(faces) == 0:
            return None
        x, y, w, h = max(faces, key=lambda f: int(f[2]) * int(f[3]))
        return FaceBox(int(x), int(y), int(w), int(h))

    def _detect_haar_all(self, grey: np.ndarray, min_ref: int | None, min_face: float) -> list[FaceBox]:
        m = max(20, int(min_face * (min_ref or min(grey.shape))))
        faces, _levels, weights = self._haar().detectMultiScale3(
            grey, scaleFactor=self.scale_factor, minNeighbors=self.min_neighbors, minSize=(m, m),
            outputRejectLevels=True)
        weights = np.asarray(weights, dtype=float).ravel()
        return [FaceBox(int(x), int(y), int(w), int(h), float(weights[i]) if i < len(weights) else float("nan"))
                for i, (x, y, w, h) in enumerate(np.asarray(faces).reshape(-1, 4))]

    @staticmethod
    def _mtcnn_results(grey: np.ndarray) -> list[dict]:
        detector = _shared_mtcnn()
        with _MTCNN_LOCK:
            res = detector.detect_faces(to_rgb(grey))
        if res and isinstance(res[0], list):  # some versions wrap a single image's result
            res = res[0]
        return list(res or [])

    @staticmethod
    def _mtcnn_box(r: dict) -> FaceBox:
        x, y, w, h = (int(round(float(v))) for v in r["box"])
        kp = r.get("keypoints") or {}
        le, re_ = kp.get("left_eye"), kp.get("right_eye")
        return FaceBox(x, y, max(1, w), max(1, h), float(r.get("confidence", 1.0)),
                       (float(le[0]), float(le[1])) if le is not None else None,
                       (float(re_[0]), float(re_[1])) if re_ is not None else None)

    def _detect_mtcnn(self, grey: np.ndarray, min_ref: int | None = None) -> FaceBox | None:
        res = self._mtcnn_results(grey)
        if not res:
            return None
        return self._mtcnn_box(max(res, key=lambda r: float(r["box"][2]) * float(r["box"][3])))

    def _detect_mtcnn_all(self, grey: np.ndarray, min_ref: int | None, min_face: float) -> list[FaceBox]:
        m = min_face * (min_ref or min(grey.shape))
        return [b for b in map(self._mtcnn_box, self._mtcnn_results(grey)) if max(b.w, b.h) >= m]


def eye_angle(box: FaceBox) -> float | None:
    """Angle in degrees of the eye line (image-left eye to image-right eye, y pointing down), or None."""
    if box.left_eye is None or box.right_eye is None:
        return None
    (x1, y1), (x2, y2) = box.left_eye, box.right_eye
    if x2 < x1:
        (x1, y1), (x2, y2) = (x2, y2), (x1, y1)
    return math.degrees(math.atan2(y2 - y1, x2 - x1))


MIN_FACE_MARGIN = -0.45  # a crop at least 10 % of the detected box's side


# extract's defaults, chosen by experiment (bench/results/feature_quality.md): Haar crop, the detector's own box
DEFAULT_FACE_CROP = "haar"


DEFAULT_FACE_MARGIN = 0.0


def crop_face(img: np.ndarray, box: FaceBox, margin: float = 0.2, *, align: bool = False) -> np.ndarray:
    """Square crop centred on ``box``, side ``max(w, h) * (1 + 2 * margin)`` (a negative margin crops inside
    the box; -0.45 at the least); parts outside the image are
    filled by edge replication. ``align`` (needs eye landmarks, else a no-op) first rotates the image about
    the eye midpoint so the eyes are level."""
    img = _as_uint8(img)
    _check_image(img)
    cx, cy = box.x + box.w / 2.0, box.y + box.h / 2.0
    angle = eye_angle(box) if align else None
    if angle is not None and abs(angle) > 0.1:
        (x1, y1), (x2, y2) = box.left_eye, box.right_eye
        centre = ((x1 + x2) / 2.0, (y1 + y2) / 2.0)
        rot = cv2.getRotationMatrix2D(centre, angle, 1.0)  # positive angle: counter-clockwise on screen
        squeeze = img.ndim == 3 and img.shape[2] == 1
        img = cv2.warpAffine(np.ascontiguousarray(img), rot, (img.shape[1], img.shape[0]),
                             flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        if squeeze:
            img = img[..., None]
        cx, cy = rot @ np.array([cx, cy, 1.0])
    s = max(1, int(round(max(box.w, box.h) * (1.0 + 2.0 * max(MIN_FACE_MARGIN, float(margin))))))
    x0, y0 = int(round(cx - s / 2.0)), int(round(cy - s / 2.0))
    h, w = img.shape[:2]
    if x0 >= 0 and y0 >= 0 and x0 + s <= w and y0 + s <= h:
        return np.ascontiguousarray(img[y0:y0 + s, x0:x0 + s])
    ys = np.clip(np.arange(y0, y0 + s), 0, h - 1)  # clipped indices = edge-replication padding
    xs = np.clip(np.arange(x0, x0 + s), 0, w - 1)
    return np.ascontiguousarray(img[ys[:, None], xs[None, :]])
