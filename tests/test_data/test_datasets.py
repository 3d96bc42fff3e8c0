"""Dataset loaders: real JAFFE / CK+48 / FER2013 beside the repo, and tiny generated layouts."""
from __future__ import annotations

import gzip
import os
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fer_features.data.datasets import CANONICAL_LABELS, FORMATS, Dataset, Record, Sample, canonical_label
from fer_features.data.formats import detect_format, load_dataset
from fer_features.data.images import read_image
from fer_features.errors import DatasetError, ImageReadError

from helpers import SHARED as DATA  # noqa: E402  (../shared/datasets beside the repo)


def real(name: str) -> Path:
    if not DATA.is_dir():
        pytest.skip(f"real datasets folder {DATA} not present")
    return DATA / name


# ----------------------------------------------------------------------------- real data
def test_jaffe_real():
    root = real("jaffe")
    assert detect_format(root) == "jaffe"
    ds = load_dataset(root)
    assert ds.format == "jaffe" and len(ds) == 213
    assert len({r.subject for r in ds.records}) == 10
    assert Counter(r.raw_label for r in ds.records) == {
        "AN": 30, "DI": 29, "FE": 32, "HA": 31, "NE": 30, "SA": 31, "SU": 30}
    assert ds.label_names == ["angry", "disgust", "fear", "happy", "neutral", "sad", "surprise"]
    r0 = ds.records[0]
    assert Path(r0.path).name == "KA.AN1.39.tiff"
    assert (r0.subject, r0.raw_label, r0.label) == ("KA", "AN", "angry")
    modes = Counter()
    for s in ds:  # all 213 decode, both the L and the palette (P) TIFFs
        assert isinstance(s, Sample)
        assert s.image.dtype == np.uint8 and s.image.shape == (256, 256)
        with Image.open(s.record.path) as im:
            modes[im.mode] += 1
    assert modes == {"L": 190, "P": 23}


def test_ckplus_real():
    root = real("ckplus48")
    assert detect_format(root) == "ckplus"
    ds = load_dataset(root)
    assert len(ds) == 981
    assert Counter(r.raw_label for r in ds.records) == {
        "anger": 135, "contempt": 54, "disgust": 177, "fear": 75, "happy": 207, "sadness": 84,
        "surprise": 249}
    assert ds.label_names == ["angry", "contempt", "disgust", "fear", "happy", "sad", "surprise"]
    assert len({r.subject for r in ds.records}) == 118
    seqs = {dict(r.extra)["sequence"] for r in ds.records}
    assert len(seqs) == 327
    assert all(dict(r.extra)["sequence"].startswith(r.subject + "_") for r in ds.records)
    rec = next(r for r in ds.records if Path(r.path).name == "S010_004_00000017.png")
    assert rec.subject == "S010" and rec.extra == (("sequence", "S010_004"), ("frame", "17"))
    for i in (0, 500, len(ds) - 1):
        img = ds.load_image(i)
        assert img.dtype == np.uint8 and img.shape == (48, 48)


@pytest.fixture(scope="module")
def fer_loaded():
    csv = real("fer2013/fer2013.csv.gz")
    t0 = time.perf_counter()
    ds = load_dataset(csv)
    n = len(ds)  # the CSV is parsed on first use of the records
    return ds, n, time.perf_counter() - t0


def test_fer2013_real(fer_loaded):
    ds, n, seconds = fer_loaded
    assert seconds < 10, f"FER2013 load took {seconds:.1f} s"
    assert ds.format == "fer2013" and n == 35887
    assert Counter(r.split for r in ds.records) == {
        "Training": 28710, "PublicTest": 3589, "PrivateTest": 3588}
    by_label = Counter(r.label for r in ds.records)
    assert sum(by_label.values()) == 35887
    assert set(by_label) == {"angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"}
    codes = {"0": "angry", "1": "disgust", "2": "fear", "3": "happy", "4": "sad", "5": "surprise",
             "6": "neutral"}
    assert all(codes[r.raw_label] == r.label for r in ds.records)
    assert ds.records[7].path == f"{ds.root}#row=7" and ds.ignored == ()
    for i in range(n):  # every row parsed (views: cheap)
        img = ds.load_image(i)
    assert img.shape == (48, 48) and img.dtype == np.uint8
    # Values match a plain per-row parse of the first and last rows.
    with gzip.open(ds.root, "rt") as fh:
        lines = fh.read().splitlines()
    for row in (0, n - 1):
        emo, pixels, usage = lines[row + 1].split(",")
        expect = np.array(pixels.split(), dtype=np.uint8).reshape(48, 48)
        assert np.array_equal(ds.load_image(row), expect)
        assert (ds.records[row].raw_label, ds.records[row].split) == (emo, usage)


def test_fer2013_subset_and_fingerprint(fer_loaded):
    ds, _, _ = fer_loaded
    sub = ds.subset([5, 2, 9])
    assert [r.path for r in sub.records] == [ds.records[i].path for i in (5, 2, 9)]
    assert np.array_equal(sub.load_image(1), ds.load_image(2))
    assert sub.fingerprint() != ds.fingerprint()
    assert load_dataset(ds.root).fingerprint() == ds.fingerprint()  # hashes the file, parses nothing


# ------------------------------------------------------------------------- tiny images
def _grey(h=12, w=10, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w), dtype=np.uint8)


def _write_mixed_folder(root: Path) -> Path:
    """Class folders with PNG, JPEG, TIFF, palette, 16-bit and RGBA images, plus two bad files."""
    happy, sad, nested = root / "Happy", root / "sadness", root / "sadness" / "more"
    for d in (happy, sad, nested):
        d.mkdir(parents=True)
    Image.fromarray(_grey(seed=1)).save(happy / "a.png")
    Image.fromarray(np.stack([_grey(seed=2)] * 3, -1)).save(happy / "b.JPG", quality=95)
    Image.fromarray(_grey(seed=3)).save(happy / "c.tiff")
    Image.fromarray(_grey(seed=4)).convert("P").save(happy / "d_palette.png")
    ramp = (np.arange(12 * 10, dtype=np.uint16).reshape(12, 10) * 500 + 1000)
    Image.fromarray(ramp).save(sad / "e16.png")
    rgba = np.zeros((12, 10, 4), np.uint8)
    rgba[..., 0] = 200
    rgba[:6, :, 3] = 255  # top half opaque red, bottom half fully transparent
    Image.fromarray(rgba, "RGBA").save(sad / "f_rgba.png")
    Image.fromarray(_grey(seed=5)).save(nested / "g.bmp")
    big = root / "big.png"
    Image.fromarray(_grey(64, 64, seed=6)).save(big)
    (sad / "truncated.png").write_bytes(big.read_bytes()[:-200])  # header fine, pixel data cut
    big.unlink()
    full = happy / "a.png"
    (sad / "not_an_image.png").write_text("hello, I am text\n")
    (sad / "notes.txt").write_text("ignored")
    (sad / ".hidden.png").write_bytes(full.read_bytes())
    (root / ".git").mkdir()
    Image.fromarray(_grey()).save(root / ".git" / "x.png")
    return root


def test_folder_mixed_formats(tmp_path):
    root = _write_mixed_folder(tmp_path / "mixed")
    assert detect_format(root) == "folder"
    ds = load_dataset(root)  # listing never decodes: the bad files are still listed
    names = sorted(Path(r.path).name for r in ds.records)
    assert names == sorted(["a.png", "b.JPG", "c.tiff", "d_palette.png", "e16.png", "f_rgba.png",
                            "g.bmp", "truncated.png", "not_an_image.png"])
    assert ds.label_names == ["happy", "sad"]
    assert {r.raw_label for r in ds.records} == {"Happy", "sadness"}
    by_name = {Path(r.path).name: i for i, r in enumerate(ds.records)}

    def img(name):
        return ds.load_image(by_name[name])

    assert np.array_equal(img("a.png"), _grey(seed=1))
    assert img("b.JPG").shape == (12, 10, 3) and img("b.JPG").dtype == np.uint8
    assert np.array_equal(img("c.tiff"), _grey(seed=3))
    assert np.array_equal(img("d_palette.png"), _grey(seed=4))  # grey palette -> HxW
    e16 = img("e16.png")
    assert e16.dtype == np.uint8 and e16.shape == (12, 10)
    assert e16.min() == 0 and e16.max() == 255 and np.all(np.diff(e16.ravel().astype(int)) >= 0)
    f = img("f_rgba.png")
    assert f.shape == (12, 10, 3)
    assert np.all(f[:6] == (200, 0, 0)) and np.all(f[6:] == 255)  # composited over white
    assert np.array_equal(img("g.bmp"), _grey(seed=5))
    for bad, why in (("truncated.png", "truncated"), ("not_an_image.png", None)):
        with pytest.raises(ImageReadError, match=why) as exc:
            img(bad)
        assert str(root / "sadness" / bad) in str(exc.value) and "\n" not in str(exc.value)
    with pytest.raises(ImageReadError):
        list(ds)  # iteration skips nothing


def test_read_image_modes(tmp_path):
    colour = np.zeros((4, 4, 3), np.uint8)
    colour[..., 0] = 255
    Image.fromarray(colour).convert("P").save(tmp_path / "p_colour.png")
    assert read_image(tmp_path / "p_colour.png").shape == (4, 4, 3)
    Image.new("I;16", (5, 3), 7).save(tmp_path / "const16.png")  # constant: no range to stretch
    const = read_image(tmp_path / "const16.png")
    assert const.shape == (3, 5) and const.dtype == np.uint8 and np.all(const == 7)
    f = np.linspace(-1.0, 1.0, 20, dtype=np.float32).reshape(4, 5)
    Image.fromarray(f, "F").save(tmp_path / "float.tiff")
    ff = read_image(tmp_path / "float.tiff")
    assert ff.dtype == np.uint8 and ff.min() == 0 and ff.max() == 255
    la = Image.fromarray(np.stack([np.full((3, 3), 10, np.uint8), np.zeros((3, 3), np.uint8)], -1), "LA")
    la.save(tmp_path / "la.png")
    assert np.all(read_image(tmp_path / "la.png") == 255)  # fully transparent grey -> white, HxW
    Image.new("CMYK", (3, 2), (0, 0, 0, 0)).save(tmp_path / "cmyk.jpg")
    assert read_image(tmp_path / "cmyk.jpg").shape == (2, 3, 3)
    Image.new("1", (3, 2), 1).save(tmp_path / "bw.png")
    assert np.all(read_image(tmp_path / "bw.png") == 255)
    with pytest.raises(ImageReadError, match="missing.png"):
        read_image(tmp_path / "missing.png")


# ------------------------------------------------------------------------- named layouts
def _touch_images(root: Path, rels, size=(8, 8)) -> None:
    for rel in rels:
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(_grey(*size)).save(p, format="JPEG" if p.suffix.lower() == ".jpg" else None)


def test_kdef_layout_and_frontal_only(tmp_path):
    root = tmp_path / "KDEF"
    rels = [f"{s}{p}/{s}{p}{e}{a}.JPG" for s in ("AF01", "BF01", "AM02")[:3]
            for p in [""] for e in ("AF", "HA") for a in ("FL", "HL", "S", "HR", "FR")]
    rels.append("BM02/bm02sus.jpg")  # lower-case name and extension
    _touch_images(root, rels)
    assert detect_format(root) == "kdef"
    ds = load_dataset(root)
    assert len(ds) == 31 and ds.format == "kdef"
    rec = next(r for r in ds.records if r.path.endswith("AF01AFHL.JPG"))
    assert (rec.label, rec.raw_label, rec.subject) == ("fear", "AF", "F01")
    assert rec.extra == (("session", "A"), ("angle", "HL"))
    assert {r.subject for r in ds.records} == {"F01", "M02"}  # same person across sessions A/B
    front = load_dataset(root, frontal_only=True)
    assert len(front) == 7 and all(dict(r.extra)["angle"] == "S" for r in front.records)
    assert front.options == {"frontal_only": True}
    assert front.fingerprint() != ds.fingerprint()
    assert ds.load_image(0).shape == (8, 8)


def test_jaffe_and_ckplus_generated(tmp_path):
    jaffe = tmp_path / "j"
    _touch_images(jaffe, ["KA.AN1.39.tiff", "KA.HA2.30.tiff", "YM.SU3.60.tif"])
    ds = load_dataset(jaffe)
    assert ds.format == "jaffe" and [r.label for r in ds.records] == ["angry", "happy", "surprise"]
    assert [r.subject for r in ds.records] == ["KA", "KA", "YM"]
    ck = tmp_path / "ck"
    _touch_images(ck, ["anger/S005_001_00000011.png", "happy/S010_006_00000013.png",
                       "happy/S010_006_00000014.png"])
    ds = load_dataset(ck)
    assert ds.format == "ckplus" and ds.label_names == ["angry", "happy"]
    assert ds.records[1].extra == (("sequence", "S010_006"), ("frame", "13"))
    # the same tree is also a valid generic folder dataset
    assert load_dataset(ck, "folder").records[0].raw_label == "anger"


# -------------------------------------------------------------------------------- CSV
def _pix(vals) -> str:
    return " ".join(str(int(v)) for v in vals)


def test_fer2013_tiny_csv_with_malformed_rows(tmp_path):
    csv = tmp_path / "tiny.csv"
    good = [np.arange(9) * 20, np.arange(9)[::-1] * 10, np.full(9, 255)]
    lines = ["emotion,pixels,Usage",
             f"3,{_pix(good[0])},Training",
             f"0,{_pix(good[1])},PublicTest",
             f"6,{_pix(range(8))},Training",          # row 2: 8 values, not square
             f"5,{_pix(range(16))},PrivateTest",      # row 3: square but not 3x3
             "4,1 2 x 4 5 6 7 8 9,Training",         # row 4: non-numeric
             f"1,{_pix(good[2])},Training",
             "2,1 2 3 4 5 6 7 8 300,Training"]       # row 6: out of range
    csv.write_text("\n".join(lines) + "\n")
    assert detect_format(csv) == "fer2013"
    ds = load_dataset(csv)
    assert len(ds) == 7
    assert [r.raw_label for r in ds.records] == ["3", "0", "6", "5", "4", "1", "2"]
    assert [r.label for r in ds.records] == ["happy", "angry", "neutral", "surprise", "sad",
                                             "disgust", "fear"]
    assert ds.records[1].split == "PublicTest" and ds.records[1].path == f"{csv}#row=1"
    assert np.array_equal(ds.load_image(0), good[0].reshape(3, 3).astype(np.uint8))
    assert np.array_equal(ds.load_image(5), np.full((3, 3), 255, np.uint8))
    for row, why in ((2, "not a square"), (3, "expected 9"), (4, "non-numeric"), (6, "0..255")):
        with pytest.raises(ImageReadError, match=why) as exc:
            ds.load_image(row)
        assert f"{csv}#row={row}" in str(exc.value)


def test_fer2013_clean_csv_gz_without_usage(tmp_path):
    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 256, (5, 4, 4), dtype=np.uint8)
    text = "emotion,pixels\n" + "".join(f"{i % 7},{_pix(im.ravel())}\n" for i, im in enumerate(imgs))
    gz = tmp_path / "small.csv.gz"
    gz.write_bytes(gzip.compress(text.encode()))
    ds = load_dataset(gz)
    assert len(ds) == 5 and all(r.split == "" and r.subject == "" for r in ds.records)
    got = np.stack([s.image for s in ds])
    assert np.array_equal(got, imgs)
    assert not ds.load_image(0).flags.writeable  # a view into the shared array
    sub = ds.subset(np.array([False, True, False, True, False]))
    assert np.array_equal(sub.load_image(1), imgs[3]) and sub.records[1].path.endswith("#row=3")


# ------------------------------------------------------------------------------ errors
def test_errors_name_the_path(tmp_path):
    def check(path, match, **kw):
        with pytest.raises(DatasetError, match=match) as exc:
            load_dataset(path, **kw)
        msg = str(exc.value)
        assert str(path) in msg and "\n" not in msg
        return msg

    check(tmp_path / "nope", "does not exist")
    (tmp_path / "empty").mkdir()
    check(tmp_path / "empty", "empty folder")
    flat = tmp_path / "flat"
    _touch_images(flat, ["one.png", "two.png"])
    check(flat, "unknown layout")
    textonly = tmp_path / "textonly"
    textonly.mkdir()
    (textonly / "readme.txt").write_text("x")
    check(textonly, "unknown layout")
    noimg = tmp_path / "noimg"
    (noimg / "happy").mkdir(parents=True)
    (noimg / "happy" / "a.txt").write_text("x")
    check(noimg, "no images", format="folder")
    nopix = tmp_path / "nopix.csv"
    nopix.write_text("emotion,Usage\n0,Training\n")
    check(nopix, "pixels")
    check(flat, "JAFFE", format="jaffe")
    check(flat, "class sub-folders", format="folder")
    check(flat, "KDEF", format="kdef")
    check(tmp_path / "flat", "fer2013", format="fer2013")
    check(flat, "unknown format", format="bogus")
    with pytest.raises(DatasetError, match="empty folder"):
        detect_format(tmp_path / "empty")
    assert issubclass(DatasetError, ValueError) and issubclass(ImageReadError, OSError)


# -------------------------------------------------------------------------- fingerprint
def test_fingerprint_tracks_files_without_decoding(tmp_path, monkeypatch):
    root = tmp_path / "fp"
    _touch_images(root, ["happy/a.png", "happy/b.png", "sad/c.png"])
    ds = load_dataset(root)
    fp = ds.fingerprint()
    assert len(fp) == 64 and load_dataset(root).fingerprint() == fp  # stable
    import PIL.Image

    def no_decode(*a, **k):
        raise AssertionError("fingerprint must not open images")

    monkeypatch.setattr(PIL.Image, "open", no_decode)
    assert load_dataset(root).fingerprint() == fp
    monkeypatch.undo()
    st = (root / "happy" / "a.png").stat()
    os.utime(root / "happy" / "a.png", ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    assert load_dataset(root).fingerprint() == fp  # identity by content: a re-synced file is the same file
    import shutil

    shutil.copytree(root, tmp_path / "copy")
    assert load_dataset(tmp_path / "copy").fingerprint() == fp  # a copy elsewhere too
    (root / "happy" / "a.png").write_bytes((root / "happy" / "a.png").read_bytes() + b"\0")
    fp2 = load_dataset(root).fingerprint()
    assert fp2 != fp
    _touch_images(root, ["sad/d.png"])
    fp3 = load_dataset(root).fingerprint()
    assert fp3 not in (fp, fp2)
    assert load_dataset(root).subset([0, 1]).fingerprint() != fp3
    assert load_dataset(root).fingerprint() == fp3


def test_the_same_csv_is_parsed_once_per_process_and_a_changed_one_again(tmp_path, monkeypatch):
    """Loading a FER2013 CSV again (augmenting a cache of it does on every call) reuses the parsed pixels,
    whatever path string names it; a file with other bytes (same size) is parsed again."""
    from fer_features.data import fer2013 as D

    calls = []
    real_parse = D._parse_pixels
    monkeypatch.setattr(D, "_parse_pixels", lambda px: calls.append(len(px)) or real_parse(px))
    csv = tmp_path / "f.csv"
    csv.write_text("emotion,pixels,Usage\n0,1 2 3 4,Training\n3,4 3 2 1,PrivateTest\n")
    a = load_dataset(csv)
    assert [r.label for r in a.records] == ["angry", "happy"] and calls == [2]
    b = load_dataset(Path(os.path.relpath(csv)))  # another spelling of the same file
    assert [r.label for r in b.records] == ["angry", "happy"] and calls == [2]
    np.testing.assert_array_equal(b.load_image(1), a.load_image(1))
    csv.write_text("emotion,pixels,Usage\n0,1 2 3 4,Training\n4,4 3 2 1,PrivateTest\n")  # same size
    assert [r.label for r in load_dataset(csv).records] == ["angry", "sad"] and calls == [2, 2]


def test_csv_fingerprint_changes_with_content_only(tmp_path):
    csv = tmp_path / "f.csv"
    csv.write_text("emotion,pixels\n0,1 2 3 4\n")
    fp = load_dataset(csv).fingerprint()
    assert load_dataset(csv).fingerprint() == fp
    st = csv.stat()
    os.utime(csv, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    assert load_dataset(csv).fingerprint() == fp  # by content, not modification time
    csv.write_text("emotion,pixels\n1,1 2 3 4\n")
    assert load_dataset(csv).fingerprint() != fp


# ----------------------------------------------------------------------------- labels
@pytest.mark.parametrize("name, canon", [
    ("anger", "angry"), ("Angry", "angry"), ("AN", "angry"), ("contempt", "contempt"),
    ("CO", "contempt"), ("disgusted", "disgust"), ("DI", "disgust"), ("afraid", "fear"),
    ("Scared", "fear"), ("FE", "fear"), ("AF", "fear"), ("happiness", "happy"), ("joy", "happy"),
    ("HA", "happy"), ("NE", "neutral"), ("Neutral", "neutral"), ("sadness", "sad"), ("SA", "sad"),
    ("surprised", "surprise"), ("SU", "surprise"), ("Cat", "cat"), ("Dog_2", "dog_2"),
])
def test_canonical_label(name, canon):
    assert canonical_label(name) == canon


def test_public_constants():
    assert CANONICAL_LABELS == ("angry", "contempt", "disgust", "fear", "happy", "neutral", "sad",
                                "surprise")
    assert FORMATS == ("auto", "folder", "jaffe", "ckplus", "kdef", "fer2013", "manifest")
    assert all(canonical_label(c) == c for c in CANONICAL_LABELS)
    rec = Record("p", "happy", "HA")
    assert (rec.subject, rec.split, rec.extra) == ("", "", ())
    ds = Dataset("folder", Path("."), [rec, Record("q", "sad", "SA")])
    assert len(ds) == 2 and ds.label_names == ["happy", "sad"]
    assert ds.subset([1]).records[0].label == "sad"
