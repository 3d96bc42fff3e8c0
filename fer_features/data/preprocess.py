"""The preprocessing of one image, as extraction and predict do it: face crop (``faces``), intensity
equalisation (``intensity``, incl. BBHE), grey to RGB and resize (``PreprocessConfig``, ``Preprocessor``).

Importing this module does not import TensorFlow; MTCNN (which needs it) is built on first use.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import numpy as np

from fer_features.data.faces import FACE_CROP_METHODS, MIN_FACE_MARGIN, FaceBox, FaceDetector, crop_face
from fer_features.data.intensity import INTENSITY_METHODS, _as_uint8, _check_image, equalize, resize, to_rgb

# -- colour, dtype, size ------------------------------------------------------------------------------

# -- intensity -------------------------------------------------------------------------------------------

# -- face detection ----------------------------------------------------------------------------------

# -- crop and align ------------------------------------------------------------------------------------

# -- pipeline ----------------------------------------------------------------------------------------

@dataclass
class PreprocessConfig:
    """Settings of the per-image pipeline (part of the feature-cache key)."""

    image_size: int = 224
    face_crop: str = "none"     # none | haar | mtcnn
    face_margin: float = 0.2
    align: bool = False
    intensity: str = "none"     # none | histeq | clahe | bbhe

    def to_dict(self) -> dict:
        """Plain JSON-able dict."""
        d = asdict(self)
        d["image_size"], d["face_margin"], d["align"] = int(d["image_size"]), float(d["face_margin"]), bool(d["align"])
        return d

    @classmethod
    def from_dict(cls, d: dict) -> PreprocessConfig:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})

    def validate(self) -> None:
        """Raise ValueError naming the bad option and what is allowed."""
        if self.face_crop not in FACE_CROP_METHODS:
            raise ValueError(f"unknown face_crop {self.face_crop!r}; use one of {', '.join(FACE_CROP_METHODS)}")
        if self.intensity not in INTENSITY_METHODS:
            raise ValueError(f"unknown intensity {self.intensity!r}; use one of {', '.join(INTENSITY_METHODS)}")
        if isinstance(self.image_size, bool) or not isinstance(self.image_size, (int, np.integer)) \
                or self.image_size < 8:
            raise ValueError(f"image_size must be an integer >= 8, got {self.image_size!r}")
        try:
            margin = float(self.face_margin)
        except (TypeError, ValueError):
            margin = float("nan")
        if not (MIN_FACE_MARGIN <= margin <= 2.0):
            raise ValueError(f"face_margin must be a number within {MIN_FACE_MARGIN}..2, got {self.face_margin!r}")
        if not isinstance(self.align, (bool, np.bool_)):
            raise ValueError(f"align must be True or False, got {self.align!r}")


class Preprocessor:
    """Callable pipeline: image (HxW or HxWxC uint8) -> (HxWx3 uint8 RGB at ``image_size``, face_found).

    Order: detect the face on the original image (grey copy) -> crop it (none found: keep the whole image,
    face_found False) -> intensity equalisation -> grey to RGB -> resize. ``face_found`` is None when
    ``face_crop == "none"``. ``align`` only acts with MTCNN (Haar gives no eye landmarks).
    Picklable; safe to call from a thread pool (one Haar cascade per thread, MTCNN behind a lock).
    """

    def __init__(self, config: PreprocessConfig | None = None, **kwargs):
        if config is not None and kwargs:
            raise TypeError("pass either a PreprocessConfig or keyword options, not both")
        self.config = config if config is not None else PreprocessConfig(**kwargs)
        self.config.validate()
        c = self.config
        self.detector = FaceDetector(c.face_crop) if c.face_crop != "none" else None

    def __repr__(self) -> str:
        return f"Preprocessor({self.config!r})"

    def __call__(self, img: np.ndarray) -> tuple[np.ndarray, bool | None]:
        img = _as_uint8(img)
        _check_image(img)
        if img.ndim == 3 and img.shape[2] == 4:
            img = img[..., :3]
        found: bool | None = None
        if self.detector is not None:
            box = self.detector.detect(img)
            found = box is not None
            if box is not None:
                img = self.crop(img, box)
        return self.finish(img), found

    def crop(self, img: np.ndarray, box: FaceBox) -> np.ndarray:
        """The crop of one detected face with this pipeline's margin and alignment (what ``__call__`` does
        with the largest face); feed the result to :meth:`finish`."""
        return crop_face(img, box, float(self.config.face_margin), align=bool(self.config.align))

    def finish(self, img: np.ndarray) -> np.ndarray:
        """The steps after the crop: intensity equalisation, grey to RGB, resize -> HxWx3 uint8."""
        img = _as_uint8(img)
        if img.ndim == 3 and img.shape[2] == 4:
            img = img[..., :3]
        img = equalize(img, self.config.intensity)
        size = int(self.config.image_size)
        if img.shape[0] >= size and img.shape[1] >= size:  # shrinking (INTER_AREA) a grey image before making
            return to_rgb(resize(img, size))                 # it RGB: a third of the work, the same pixels
        return resize(to_rgb(img), size)  # enlarging: INTER_CUBIC's SIMD rounding differs per channel count
