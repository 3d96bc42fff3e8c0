"""predict on real material: every face of an image, folders and lists, videos, annotated output, the API.

Most tests use a quick model saved from a HOG cache (Haar face crop, no network) of a JAFFE subset."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from helpers import run_cli, shared

JAFFE_PICKS = ("KA.HA1.29.tiff", "KM.SU1.14.tiff", "NA.AN1.211.tiff")


@pytest.fixture(scope="module")
def jaffe() -> Path:
    return shared("jaffe")


@pytest.fixture(scope="module")
def hog_model(jaffe, tmp_path_factory) -> Path:
    """linear_svm on HOG features (Haar crop) of 8 JAFFE images per expression, saved like classify --save."""
    from fer_features.features.cache import load_cache
    from fer_features.classify.presets import make_classifier
    from fer_features.features.extract import extract_dataset
    from fer_features.features.spec import cache_options
    from fer_features.apply.models import save_model

    tmp = tmp_path_factory.mktemp("hog")
    sub = tmp / "jaffe"
    sub.mkdir()
    by_expr: dict[str, list[Path]] = {}
    for f in sorted(jaffe.glob("*.tiff")):
        by_expr.setdefault(f.name.split(".")[1][:2], []).append(f)
    for files in by_expr.values():
        for f in files[:8]:
            (sub / f.name).symlink_to(f)
    cache = load_cache(extract_dataset(sub, backbone="hog", cache_dir=tmp / "cache", progress=False,
                                       log=lambda m: None))
    pipe = make_classifier("linear_svm", engine="sklearn", probability=True)
    pipe.fit(cache.features, cache.labels)
    return save_model(tmp / "hog.skops", pipe, cache.label_names, cache_options(cache), {})


def _jaffe_rgb(jaffe: Path, name: str) -> np.ndarray:
    from fer_features.data.images import read_image

    g = read_image(jaffe / name)
    return np.repeat(g[..., None], 3, axis=2) if g.ndim == 2 else g


@pytest.fixture(scope="module")
def two_faces(jaffe, tmp_path_factory) -> Path:
    canvas = np.zeros((256, 512, 3), np.uint8)
    canvas[:, :256] = _jaffe_rgb(jaffe, JAFFE_PICKS[0])
    canvas[:, 256:] = _jaffe_rgb(jaffe, JAFFE_PICKS[1])
    path = tmp_path_factory.mktemp("two") / "two_faces.png"
    Image.fromarray(canvas).save(path)
    return path


@pytest.fixture(scope="module")
def video(jaffe, tmp_path_factory) -> Path:
    """20 frames at 10 fps, 320x240: a JAFFE face on a grey canvas, switching face every 5 frames."""
    path = tmp_path_factory.mktemp("vid") / "clip.mp4"
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (320, 240))
    assert w.isOpened()
    for i in range(20):
        frame = np.full((240, 320, 3), 90, np.uint8)
        face = _jaffe_rgb(jaffe, JAFFE_PICKS[(i // 5) % 2])
        frame[:, 40:280] = cv2.resize(face, (240, 240))
        w.write(frame[..., ::-1])
    w.release()
    return path


def _csv(text: str):
    import io

    import pandas as pd

    return pd.read_csv(io.StringIO(text), keep_default_na=False)


def test_detect_all_finds_both_faces_and_detect_keeps_the_largest(two_faces, jaffe):
    from fer_features.data.images import read_image
    from fer_features.data.faces import FaceDetector

    det = FaceDetector("haar")
    boxes = det.detect_all(read_image(two_faces))
    assert len(boxes) == 2
    a, b = boxes
    assert a.x + a.w <= b.x  # sorted left to right, not overlapping
    assert a.x < 256 <= b.x + b.w / 2
    assert all(np.isfinite(bx.score) for bx in boxes)
    single = read_image(jaffe / JAFFE_PICKS[0])
    one = det.detect(single)
    alone = det.detect_all(single)
    assert len(alone) == 1 and (alone[0].x, alone[0].y, alone[0].w, alone[0].h) == (one.x, one.y, one.w, one.h)


def test_two_faces_two_rows_same_labels_as_alone(hog_model, two_faces, jaffe):
    p = run_cli("predict", "--model", hog_model, two_faces, jaffe / JAFFE_PICKS[0], jaffe / JAFFE_PICKS[1],
                "--no-progress")
    assert p.returncode == 0, p.stderr[-3000:]
    df = _csv(p.stdout)
    for col in ("source", "frame", "time_s", "face", "x", "y", "w", "h", "score", "label", "error"):
        assert col in df.columns
    assert sum(c.startswith("p_") for c in df.columns) == 7
    both = df[df.source == str(two_faces)]
    assert list(both.face) == [0, 1]
    (x0, w0), (x1, _) = both[["x", "w"]].values.tolist()
    assert x0 + w0 <= x1
    alone = [df[df.source == str(jaffe / n)].label.item() for n in JAFFE_PICKS[:2]]
    assert list(both.label) == alone
    probs = both[[c for c in df.columns if c.startswith("p_")]].to_numpy(float)
    assert np.allclose(probs.sum(1), 1, atol=1e-3)


def test_no_face_is_one_row_saying_so(hog_model, tmp_path):
    import skimage.data

    coffee = tmp_path / "coffee.png"
    Image.fromarray(skimage.data.coffee()).save(coffee)
    p = run_cli("predict", "--model", hog_model, coffee, "--no-progress")
    assert p.returncode == 0, p.stderr[-3000:]
    df = _csv(p.stdout)
    assert len(df) == 1 and df.label.item() == "" and "no_face" in df.error.item()
    p = run_cli("predict", "--model", hog_model, coffee, "--no-face", "whole", "--no-progress")
    assert p.returncode == 0 and _csv(p.stdout).label.item() != ""


def test_video_rows_per_sampled_frame_and_annotations(hog_model, video, tmp_path):
    ann = tmp_path / "ann"
    p = run_cli("predict", "--model", hog_model, video, "--every", "5", "--annotate", ann, "--no-progress",
                "--output", tmp_path / "out.json", "--summary", "--window", "1", "--plot", tmp_path / "plots")
    assert p.returncode == 0, p.stderr[-3000:]
    rows = json.loads((tmp_path / "out.json").read_text())
    assert [r["frame"] for r in rows] == [0, 5, 10, 15]
    assert [r["time_s"] for r in rows] == pytest.approx([0.0, 0.5, 1.0, 1.5])
    assert all(r["label"] and r["w"] > 50 for r in rows)
    assert "label shares" in p.stderr and "1 s" in p.stderr  # overall and per 1-second window
    assert (tmp_path / "plots" / "clip_shares.png").stat().st_size > 1000
    vids = list(ann.glob("*.mp4"))
    assert len(vids) == 1
    cap = cv2.VideoCapture(str(vids[0]))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 4
    cap.release()
    p = run_cli("predict", "--model", hog_model, video, "--fps", "2", "--no-progress")
    assert p.returncode == 0, p.stderr[-3000:]
    assert list(_csv(p.stdout).frame) == [0, 5, 10, 15]


def test_annotate_images_folder_and_list(hog_model, two_faces, tmp_path):
    lst = tmp_path / "list.txt"
    lst.write_text(f"{two_faces}\n\n")
    ann = tmp_path / "ann"
    p = run_cli("predict", "--model", hog_model, f"@{lst}", two_faces.parent, "--annotate", ann, "--no-progress")
    assert p.returncode == 0, p.stderr[-3000:]
    df = _csv(p.stdout)
    assert len(df) == 4  # the list and the folder both name the picture: two faces each
    out = list(ann.glob("*.png"))
    assert out and cv2.imread(str(out[0])).shape == (256, 512, 3)


def test_all_unreadable_exit_1_some_readable_exit_0(hog_model, two_faces, tmp_path):
    bad = tmp_path / "broken.png"
    bad.write_text("no image")
    p = run_cli("predict", "--model", hog_model, bad, tmp_path / "missing.jpg", "--no-progress")
    assert p.returncode == 1
    df = _csv(p.stdout)
    assert len(df) == 2 and all(df.error.str.len() > 0) and all(df.label == "")
    p = run_cli("predict", "--model", hog_model, bad, two_faces, "--no-progress")
    assert p.returncode == 0 and len(_csv(p.stdout)) == 3


def test_parquet_needs_its_library(hog_model, two_faces, tmp_path):
    try:
        import pyarrow  # noqa: F401
        pytest.skip("pyarrow installed")
    except ImportError:
        pass
    p = run_cli("predict", "--model", hog_model, two_faces, "--output", tmp_path / "o.parquet", "--no-progress")
    assert p.returncode == 2 and "install pyarrow" in p.stderr.replace(str(tmp_path), "")


def test_dataframe_api(hog_model, two_faces, video):
    import fer_features

    df = fer_features.predict(hog_model, [two_faces, video], every=10, progress=False)
    assert list(df.face[df.source == str(two_faces)]) == [0, 1]
    vid = df[df.source == str(video)]
    assert list(vid.frame) == [0, 10] and list(vid.time_s) == pytest.approx([0.0, 1.0])
    assert df.error.eq("").all()


def _same_as_extraction(model_path, files, atol):
    """predict's probabilities for single-face images == the classifier on FeatureExtractor's own features."""
    import fer_features
    from fer_features.data.images import read_image
    from fer_features.features.extractor import FeatureExtractor
    from fer_features.apply.models import load_model

    bundle = load_model(model_path)
    fx = FeatureExtractor(**bundle["extraction"])
    want = bundle["pipeline"].predict_proba(fx.fit().transform([read_image(f) for f in files]))
    df = fer_features.predict(bundle, files, progress=False)
    assert list(df.face) == [0] * len(files)
    got = df[[f"p_{lab}" for lab in bundle["label_names"]]].to_numpy(float)
    np.testing.assert_allclose(got, want, atol=atol)
    return bundle, df


def test_each_face_embedded_as_in_training_hog(hog_model, jaffe):
    _same_as_extraction(hog_model, [jaffe / n for n in JAFFE_PICKS], atol=1e-6)


def test_default_cnn_model(jaffe, two_faces, tmp_path):
    """The default backbone (96 px to keep it short): the same features as extraction, two faces, two rows."""
    import fer_features
    from fer_features.classify.presets import make_classifier
    from fer_features.data.images import read_image
    from fer_features.features.extractor import FeatureExtractor
    from fer_features.features.spec import EXTRACTION_KEYS
    from fer_features.apply.models import save_model

    by_expr: dict[str, list[Path]] = {}
    for f in sorted(jaffe.glob("*.tiff")):
        by_expr.setdefault(f.name.split(".")[1][:2], []).append(f)
    files = [f for fs in by_expr.values() for f in fs[:6]]
    labels = sorted(by_expr)
    y = [labels.index(f.name.split(".")[1][:2]) for f in files]
    fx = FeatureExtractor(image_size=96)
    X = fx.fit().transform([read_image(f) for f in files])
    pipe = make_classifier("linear_svm", engine="sklearn", probability=True).fit(X, y)
    ext = {k: v for k, v in fx.settings().items() if k in EXTRACTION_KEYS}
    ext["weights"] = "imagenet"
    path = save_model(tmp_path / "cnn.skops", pipe, labels, ext, {})
    _same_as_extraction(path, [jaffe / n for n in JAFFE_PICKS], atol=1e-5)
    df = fer_features.predict(path, [two_faces, jaffe / JAFFE_PICKS[0], jaffe / JAFFE_PICKS[1]], progress=False)
    assert list(df.face[df.source == str(two_faces)]) == [0, 1]
    assert list(df.label[df.source == str(two_faces)]) == list(df.label[df.source != str(two_faces)])
