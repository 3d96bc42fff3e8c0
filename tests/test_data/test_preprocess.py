"""fer_features.preprocess: colour/size helpers, BBHE and other equalisation, Haar/MTCNN face crop on real faces."""
from __future__ import annotations

import json
import pickle
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from fer_features.data.faces import FACE_CROP_METHODS, FaceBox, FaceDetector, crop_face, eye_angle
from fer_features.data.intensity import INTENSITY_METHODS, bbhe, bbhe_lut, equalize, resize, to_grey, to_rgb
from fer_features.data.preprocess import PreprocessConfig, Preprocessor
from helpers import ROOT, SHARED as DATA  # DATA: ../shared/datasets beside the repo


def _dataset(name: str) -> Path:
    p = DATA / name
    if not p.exists():
        pytest.skip(f"real dataset {p} not present")
    return p


def _load(p: Path) -> np.ndarray:
    return np.asarray(Image.open(p).convert("L"))


@pytest.fixture(scope="module")
def jaffe() -> list[np.ndarray]:
    files = sorted(_dataset("jaffe").glob("*.tiff"))
    assert len(files) == 213
    return [_load(p) for p in files]


@pytest.fixture(scope="module")
def ckplus() -> list[np.ndarray]:
    files = sorted(_dataset("ckplus48").glob("*/*.png"))[:300]
    assert len(files) == 300
    return [_load(p) for p in files]


def _low_contrast(seed: int = 0, shape=(96, 128)) -> np.ndarray:
    """A dark, skewed, low-contrast image (levels ~50..190, mean ~82)."""
    rng = np.random.default_rng(seed)
    return np.clip(rng.gamma(4.0, 8.0, shape) + 50, 0, 255).astype(np.uint8)


def _noise(size: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (size, size), dtype=np.uint8)


# -- BBHE ---------------------------------------------------------------------------------------------

def _bbhe_reference(img: np.ndarray) -> np.ndarray:
    """Kim (1997) written out level by level: split at the mean, equalise each half onto its own range."""
    xm = int(np.floor(img.mean()))
    hist = [int(np.count_nonzero(img == k)) for k in range(256)]
    n_lo, n_hi = sum(hist[: xm + 1]), sum(hist[xm + 1:])
    lut = list(range(256))
    acc = 0
    for k in range(0, xm + 1):
        acc += hist[k]
        lut[k] = round(0 + (xm - 0) * acc / n_lo)
    acc = 0
    for k in range(xm + 1, 256):
        acc += hist[k]
        lut[k] = round((xm + 1) + (255 - (xm + 1)) * acc / n_hi)
    return np.array(lut, dtype=np.uint8)[img]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_bbhe_matches_reference_and_keeps_halves(seed):
    img = _low_contrast(seed)
    out = bbhe(img)
    assert out.shape == img.shape and out.dtype == np.uint8
    ref = _bbhe_reference(img)
    assert np.abs(out.astype(int) - ref.astype(int)).max() <= 1
    assert np.mean(out == ref) > 0.99
    xm = int(np.floor(img.mean()))
    assert out[img <= xm].max() <= xm  # lower half stays in [0, Xm]
    assert out[img > xm].min() >= xm + 1  # upper half stays in [Xm+1, 255]
    assert out.min() < img.min() and out.max() > img.max()  # contrast actually stretched


def test_bbhe_on_real_face_matches_reference(jaffe):
    img = jaffe[7]
    assert np.abs(bbhe(img).astype(int) - _bbhe_reference(img).astype(int)).max() <= 1


def test_bbhe_preserves_brightness_better_than_histeq():
    img = _low_contrast()
    d_bbhe = abs(bbhe(img).mean() - img.mean())
    d_he = abs(cv2.equalizeHist(img).mean() - img.mean())
    assert d_he > 30  # plain HE drags the mean to mid-grey
    assert d_bbhe < 0.6 * d_he  # BBHE lands about halfway between the input mean and mid-grey (Kim 1997)


def test_bbhe_lut_is_monotone_and_order_preserving():
    img = _low_contrast(3)
    lut = bbhe_lut(img).astype(int)
    assert np.all(np.diff(lut) >= 0)
    out = bbhe(img)
    np.testing.assert_array_equal(out, lut.astype(np.uint8)[img])
    a, b = img.ravel().astype(int), out.ravel().astype(int)
    order = np.argsort(a, kind="stable")
    assert np.all(np.diff(b[order]) >= 0)


@pytest.mark.parametrize("value", [0, 37, 128, 255])
def test_bbhe_constant_image_unchanged(value):
    img = np.full((20, 30), value, np.uint8)
    np.testing.assert_array_equal(bbhe(img), img)


# -- equalize -------------------------------------------------------------------------------------------

def test_equalize_grey_methods_match_opencv():
    img = _low_contrast()
    np.testing.assert_array_equal(equalize(img, "none"), img)
    np.testing.assert_array_equal(equalize(img, "histeq"), cv2.equalizeHist(img))
    np.testing.assert_array_equal(equalize(img, "clahe", clahe_clip=3.0, clahe_tile=4),
                                  cv2.createCLAHE(clipLimit=3.0, tileGridSize=(4, 4)).apply(img))
    np.testing.assert_array_equal(equalize(img, "bbhe"), bbhe(img))


@pytest.mark.parametrize("method", ["histeq", "clahe", "bbhe"])
def test_equalize_grey_in_rgb_stays_grey(method):
    grey = _low_contrast()
    out = equalize(np.stack([grey] * 3, -1), method)
    assert out.shape == grey.shape + (3,) and out.dtype == np.uint8
    np.testing.assert_array_equal(out[..., 0], out[..., 1])
    np.testing.assert_array_equal(out[..., 1], out[..., 2])
    np.testing.assert_array_equal(out[..., 0], equalize(grey, method))


@pytest.mark.parametrize("method", ["histeq", "clahe", "bbhe"])
def test_equalize_rgb_changes_luma_only(method):
    rng = np.random.default_rng(5)
    base = rng.integers(40, 200, (64, 64, 1))
    col = np.clip(base + rng.integers(-30, 30, (64, 64, 3)), 0, 255).astype(np.uint8)
    out = equalize(col, method)
    yin = cv2.cvtColor(col, cv2.COLOR_RGB2YCrCb).astype(int)
    yout = cv2.cvtColor(out, cv2.COLOR_RGB2YCrCb).astype(int)
    assert np.abs(yout[..., 0] - yin[..., 0]).mean() > 5  # luma really changed
    assert np.abs(yout[..., 0] - equalize(yin[..., 0].astype(np.uint8), method).astype(int)).mean() < 1
    chroma = np.abs(yout[..., 1:] - yin[..., 1:])
    unclipped = np.all((out > 0) & (out < 255), axis=2)  # where RGB did not saturate, chroma is kept exactly
    assert unclipped.mean() > 0.8 and chroma[unclipped].max() <= 1
    assert chroma.mean() < 1


def test_equalize_rgba_keeps_alpha():
    rgba = np.dstack([_low_contrast()] * 3 + [np.full((96, 128), 77, np.uint8)])
    out = equalize(rgba, "bbhe")
    assert out.shape == rgba.shape
    assert np.all(out[..., 3] == 77)


def test_equalize_unknown_method():
    with pytest.raises(ValueError, match="bbhe") as e:
        equalize(_low_contrast(), "gamma")
    assert "gamma" in str(e.value) and all(m in str(e.value) for m in INTENSITY_METHODS)


# -- colour and size --------------------------------------------------------------------------------

def test_to_grey_and_to_rgb():
    g = np.arange(12, dtype=np.uint8).reshape(3, 4)
    rgb = to_rgb(g)
    assert rgb.shape == (3, 4, 3) and rgb.dtype == np.uint8
    assert all(np.array_equal(rgb[..., c], g) for c in range(3))
    np.testing.assert_array_equal(to_grey(rgb), g)
    np.testing.assert_array_equal(to_rgb(rgb), rgb)
    rgba = np.dstack([rgb, np.full((3, 4), 9, np.uint8)])
    assert to_rgb(rgba).shape == (3, 4, 3) and np.array_equal(to_rgb(rgba), rgb)
    assert to_grey(rgba).shape == (3, 4) and to_grey(rgba).dtype == np.uint8
    assert to_rgb(g[..., None]).shape == (3, 4, 3) and to_grey(g[..., None]).shape == (3, 4)
    # ITU-R BT.601 luma: 0.299 R + 0.587 G + 0.114 B, input in RGB order
    prim = np.array([[[255, 0, 0], [0, 255, 0], [0, 0, 255]]], np.uint8)
    np.testing.assert_allclose(to_grey(prim)[0], [76, 150, 29], atol=1)
    with pytest.raises(ValueError):
        to_grey(np.zeros((4, 4, 2), np.uint8))


@pytest.mark.parametrize("shape", [(48, 48), (48, 48, 3), (256, 256), (256, 256, 3)])
def test_resize_both_ways(shape):
    img = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    for size, hw in [(224, (224, 224)), (32, (32, 32)), ((30, 50), (30, 50)), ((300, 20), (300, 20))]:
        out = resize(img, size)
        assert out.shape[:2] == hw and out.shape[2:] == shape[2:] and out.dtype == np.uint8
    flat = np.full(shape, 123, np.uint8)
    assert np.all(resize(flat, 224) == 123) and np.all(resize(flat, 17) == 123)
    with pytest.raises(ValueError):
        resize(img, 0)


# -- Haar on real faces ---------------------------------------------------------------------------------

def _haar_detections(images, name: str):
    """Boxes Haar found in ``images`` and the detection rate (printed for the record)."""
    det = FaceDetector("haar")
    found = [b for b in (det.detect(img) for img in images) if b is not None]
    rate = len(found) / len(images)
    print(f"\nHaar {name} detection rate {rate:.3f} ({len(found)}/{len(images)})")
    return found, rate


@pytest.mark.slow
def test_haar_finds_faces_on_jaffe(jaffe):
    found, rate = _haar_detections(jaffe, "JAFFE")
    assert rate >= 0.95
    widths = np.array([b.w / 256 for b in found])
    assert np.all((widths >= 0.25) & (widths <= 0.9))
    centres = np.array([(b.x + b.w / 2, b.y + b.h / 2) for b in found]) / 256
    assert np.all((centres > 0.25) & (centres < 0.75))  # JAFFE faces sit in the middle of the frame


@pytest.mark.slow
def test_haar_on_tight_48px_crops(ckplus):
    found, rate = _haar_detections(ckplus, "CK+48 (first 300)")
    assert rate >= 0.9  # tight crops are upscaled (and edge-padded on a miss) before detection
    widths = np.array([b.w / 48 for b in found])
    assert np.median(widths) > 0.6  # the face fills a tight crop


def test_haar_on_noise_finds_nothing():
    det = FaceDetector("haar")
    for seed in range(3):
        assert det.detect(_noise(256, seed)) is None
        assert det.detect(_noise(48, seed)) is None


def test_preprocessor_keeps_whole_image_when_no_face():
    img = _noise(96)
    out, found = Preprocessor(PreprocessConfig(image_size=64, face_crop="haar"))(img)
    assert found is False
    ref, found_none = Preprocessor(PreprocessConfig(image_size=64))(img)
    assert found_none is None
    np.testing.assert_array_equal(out, ref)


def test_preprocessor_haar_crops_face(jaffe):
    out, found = Preprocessor(PreprocessConfig(image_size=64, face_crop="haar", face_margin=0.1))(jaffe[0])
    assert found is True and out.shape == (64, 64, 3)
    whole, _ = Preprocessor(PreprocessConfig(image_size=64))(jaffe[0])
    assert not np.array_equal(out, whole)


def test_preprocessor_threadsafe_matches_serial(jaffe):
    pre = Preprocessor(PreprocessConfig(image_size=64, face_crop="haar", intensity="clahe"))
    imgs = jaffe[::10]
    serial = [pre(img) for img in imgs]
    with ThreadPoolExecutor(4) as pool:
        threaded = list(pool.map(pre, imgs))
    for (a, fa), (b, fb) in zip(serial, threaded):
        assert fa == fb is True
        np.testing.assert_array_equal(a, b)


# -- MTCNN (slow on CPU: a few images only) ------------------------------------------------------------

@pytest.fixture(scope="module")
def mtcnn() -> FaceDetector:
    pytest.importorskip("mtcnn")
    return FaceDetector("mtcnn")


@pytest.mark.slow
def test_mtcnn_finds_faces_with_eyes(jaffe, mtcnn):
    for img in jaffe[::45][:5]:
        b = mtcnn.detect(img)
        assert b is not None and b.left_eye is not None and b.right_eye is not None
        assert 0.25 <= b.w / 256 <= 0.9 and 0.5 < b.score <= 1.0
        (lx, ly), (rx, ry) = b.left_eye, b.right_eye
        assert lx < rx and b.y <= ry <= b.y + b.h and b.x <= lx <= b.x + b.w and b.y <= ly <= b.y + b.h
        assert abs(eye_angle(b)) < 10  # JAFFE poses are near upright


@pytest.mark.slow
def test_mtcnn_on_48px_crop(ckplus, mtcnn):
    b = mtcnn.detect(ckplus[0])
    assert b is not None and b.left_eye is not None
    assert 0.5 <= b.w / 48 <= 1.1 and 0 <= b.left_eye[0] < b.right_eye[0] <= 48


@pytest.mark.slow
@pytest.mark.parametrize("angle", [15, -15])
def test_mtcnn_align_levels_eyes(jaffe, mtcnn, angle):
    img = jaffe[100]
    h, w = img.shape
    rot = cv2.warpAffine(img, cv2.getRotationMatrix2D((w / 2, h / 2), angle, 1.0), (w, h),
                         borderMode=cv2.BORDER_REPLICATE)
    b = mtcnn.detect(rot)
    assert b is not None and abs(eye_angle(b) + angle) < 5  # CCW rotation on screen: negative eye angle
    plain = mtcnn.detect(crop_face(rot, b, 0.2, align=False))
    aligned = mtcnn.detect(crop_face(rot, b, 0.2, align=True))
    assert abs(eye_angle(plain)) > 10
    assert abs(eye_angle(aligned)) < 3


@pytest.mark.slow
def test_preprocessor_mtcnn_align(jaffe):
    pre = Preprocessor(PreprocessConfig(image_size=96, face_crop="mtcnn", align=True, intensity="bbhe"))
    out, found = pre(jaffe[3])
    assert found is True and out.shape == (96, 96, 3) and out.dtype == np.uint8
    out2, found2 = pickle.loads(pickle.dumps(pre))(jaffe[3])
    assert found2 is True and np.array_equal(out, out2)


# -- crop ------------------------------------------------------------------------------------------------

def test_crop_face_inside_is_a_plain_slice():
    img = np.arange(100 * 120, dtype=np.int64).reshape(100, 120).astype(np.uint8)
    c = crop_face(img, FaceBox(40, 30, 20, 20), margin=0.5)
    assert c.shape == (40, 40)
    np.testing.assert_array_equal(c, img[20:60, 30:70])
    np.testing.assert_array_equal(crop_face(img, FaceBox(40, 30, 20, 20), margin=0.0), img[30:50, 40:60])  # the box
    np.testing.assert_array_equal(crop_face(img, FaceBox(40, 30, 20, 20), margin=-0.25), img[35:45, 45:55])  # inside


@pytest.mark.parametrize("box", [FaceBox(0, 0, 30, 40), FaceBox(80, 70, 30, 30), FaceBox(-5, 50, 20, 60),
                                 FaceBox(10, 90, 50, 20)])
def test_crop_face_at_borders_is_square(box):
    img = np.random.default_rng(1).integers(0, 256, (100, 110, 3), dtype=np.uint8)
    c = crop_face(img, box, margin=0.3)
    side = round(max(box.w, box.h) * 1.6)
    assert c.shape == (side, side, 3) and c.dtype == np.uint8


def test_crop_face_pads_by_edge_replication():
    img = np.zeros((50, 50), np.uint8)
    img[0, :] = 200  # top row bright
    c = crop_face(img, FaceBox(10, 0, 20, 20), margin=0.25)  # 30x30 window starting 5 rows above the image
    assert c.shape == (30, 30)
    assert np.all(c[:6] == 200) and np.all(c[6:] == 0)


def test_crop_face_align_without_landmarks_is_noop():
    img = _noise(64)
    box = FaceBox(10, 10, 30, 30)
    np.testing.assert_array_equal(crop_face(img, box, align=True), crop_face(img, box, align=False))


def test_crop_face_align_rotates_about_eye_midpoint():
    img = np.zeros((100, 100), np.uint8)
    cv2.line(img, (30, 40), (70, 60), 255, 3)  # a tilted "eye line" through (50, 50)
    box = FaceBox(25, 25, 50, 50, left_eye=(30.0, 40.0), right_eye=(70.0, 60.0))
    assert eye_angle(box) == pytest.approx(np.degrees(np.arctan2(20, 40)))
    c = crop_face(img, box, margin=0.0, align=True)
    ys, xs = np.nonzero(c > 128)
    slope = np.degrees(np.arctan2(*np.polyfit(xs, ys, 1)[:1], 1))
    assert abs(slope) < 2 and abs(ys.mean() - 25) < 2  # level, through the crop centre


# -- pipeline --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("intensity", INTENSITY_METHODS)
@pytest.mark.parametrize("kind", ["grey", "rgb", "rgba", "grey1"])
def test_preprocessor_output_shapes(kind, intensity):
    g = _low_contrast()
    img = {"grey": g, "grey1": g[..., None], "rgb": np.dstack([g, 255 - g, g // 2]),
           "rgba": np.dstack([g, g, g, np.full_like(g, 255)])}[kind]
    out, found = Preprocessor(PreprocessConfig(image_size=72, intensity=intensity))(img)
    assert out.shape == (72, 72, 3) and out.dtype == np.uint8 and found is None
    if kind != "rgb":
        assert np.array_equal(out[..., 0], out[..., 1]) and np.array_equal(out[..., 1], out[..., 2])


def test_preprocessor_order_equalises_after_crop(jaffe):
    """BBHE must see the cropped face, not the whole frame: compare against doing the steps by hand."""
    img = jaffe[20]
    cfg = PreprocessConfig(image_size=80, face_crop="haar", face_margin=0.1, intensity="bbhe")
    out, found = Preprocessor(cfg)(img)
    box = FaceDetector("haar").detect(img)
    manual = resize(to_rgb(bbhe(crop_face(img, box, 0.1))), 80)
    assert found is True
    np.testing.assert_array_equal(out, manual)


def test_preprocessor_pickles(jaffe):
    pre = Preprocessor(PreprocessConfig(image_size=64, face_crop="haar", intensity="bbhe"))
    first = pre(jaffe[0])  # builds the cascade; pickling must still work
    clone = pickle.loads(pickle.dumps(pre))
    assert clone.config == pre.config
    second = clone(jaffe[0])
    assert first[1] == second[1] is True
    np.testing.assert_array_equal(first[0], second[0])


@pytest.mark.parametrize("bad, word", [
    ({"face_crop": "dlib"}, "face_crop"), ({"intensity": "sharpen"}, "intensity"),
    ({"image_size": 0}, "image_size"), ({"image_size": 224.5}, "image_size"),
    ({"face_margin": -0.5}, "face_margin"), ({"face_margin": float("nan")}, "face_margin"),
    ({"align": "yes"}, "align"),
])
def test_invalid_config_raises(bad, word):
    with pytest.raises(ValueError, match=word):
        Preprocessor(PreprocessConfig(**bad))


def test_invalid_options_name_allowed_values():
    with pytest.raises(ValueError) as e:
        Preprocessor(PreprocessConfig(face_crop="dlib"))
    assert all(m in str(e.value) for m in FACE_CROP_METHODS)
    with pytest.raises(ValueError, match="haar"):
        FaceDetector("none")


def test_config_to_dict_is_json():
    cfg = PreprocessConfig(image_size=112, face_crop="mtcnn", face_margin=0.3, align=True, intensity="clahe")
    d = cfg.to_dict()
    assert json.loads(json.dumps(d, sort_keys=True)) == d
    assert d == {"image_size": 112, "face_crop": "mtcnn", "face_margin": 0.3, "align": True, "intensity": "clahe"}
    assert PreprocessConfig.from_dict(d) == cfg


def test_import_does_not_load_tensorflow():
    """A fresh interpreter (this one has TensorFlow loaded by other tests): what the import itself loads."""
    code = ("import sys, fer_features.data.preprocess as p; p.Preprocessor(p.PreprocessConfig(face_crop='mtcnn')); "
            "print('tensorflow' in sys.modules, 'mtcnn' in sys.modules)")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert res.stdout.split() == ["False", "False"]
