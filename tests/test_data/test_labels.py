"""Labels are checked, not invented: known names and aliases map to the canonical vocabulary; in a dataset whose
labels are mostly expression names an unknown one (a typo) is an error naming it, its count and the closest known
name, unless mapped (``--label-map``) or allowed (``--allow-new-labels``); a dataset of its own classes is taken
as it is, said once."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fer_features.data.formats import load_dataset
from fer_features.errors import DatasetError
from fer_features.features.cache import load_cache, read_attrs
from fer_features.features.extract import dataset_cache_path
from fer_features.features.extractor import FeatureExtractor
from helpers import make_folder_dataset, run_cli

HOG = {"backbone": "hog", "face_crop": "none", "flip_average": False, "image_size": 32}
HOG_ARGS = ("--backbone", "hog", "--face-crop", "none", "--no-flip-average", "--image-size", "32", "--no-progress")


def manifest(tmp_path: Path, labels=("happy", "sad", "suprise"), per: int = 3, name: str = "manifest.csv") -> Path:
    """A manifest of ``per`` images for each label (distinct grey images, subjects P0..)."""
    proj = tmp_path / "proj"
    (proj / "imgs").mkdir(parents=True, exist_ok=True)
    rows = ["path,label,subject"]
    for c, lab in enumerate(labels):
        for i in range(per):
            Image.fromarray(np.full((24, 24), 20 * c + 3 * i, np.uint8)).save(proj / "imgs" / f"{c}_{i}.png")
            rows.append(f"imgs/{c}_{i}.png,{lab},P{i}")
    csv = proj / name
    csv.write_text("\n".join(rows) + "\n")
    return csv


@pytest.fixture
def no_network(monkeypatch):
    """Fails the test if a backbone is built."""
    built = []
    monkeypatch.setattr(FeatureExtractor, "fit", lambda self, *a, **k: built.append(1) or self)
    return built


# -- the check ------------------------------------------------------------------------------------------------
def test_known_names_and_aliases_map_as_before(tmp_path):
    ds = load_dataset(manifest(tmp_path, labels=("anger", "Happy", "sadness")))
    assert ds.label_names == ["angry", "happy", "sad"] and not any("label" in n for n in ds.notes)
    assert "label_map" not in ds.options


def test_a_typo_among_expression_names_is_an_error_naming_it(tmp_path):
    csv = manifest(tmp_path, labels=("happy", "sad", "suprise", "grumpy"))
    with pytest.raises(DatasetError) as e:
        load_dataset(csv)
    msg = str(e.value)
    assert "\n" not in msg and "manifest.csv" in msg
    assert "unknown label 'suprise' (3 images; did you mean 'surprise'?)" in msg
    assert "unknown label 'grumpy' (3 images)" in msg or "'grumpy' (3 images)" in msg
    assert "--label-map suprise=surprise" in msg and "--allow-new-labels" in msg


def test_extract_stops_on_a_typo_before_any_network(tmp_path, no_network):
    csv = manifest(tmp_path)
    p = run_cli("extract", "--data", csv, "--cache-dir", tmp_path / "c", *HOG_ARGS)
    assert p.returncode == 2, p.stderr
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "'suprise'" in lines[0] and "did you mean 'surprise'?" in lines[0]
    assert not no_network and not (tmp_path / "c").exists()


@pytest.mark.parametrize("how", ["pair", "comma", "file"])
def test_extract_with_a_label_map_gets_the_mapped_labels_and_their_key(tmp_path, how):
    csv = manifest(tmp_path, labels=("happy", "sad", "suprise", "grumpy"))
    if how == "file":
        (tmp_path / "map.csv").write_text("from,to\nsuprise,surprise\nGrumpy,anger\n")
        opts = ("--label-map", tmp_path / "map.csv")
    elif how == "comma":
        opts = ("--label-map", "suprise=surprise,grumpy=angry")
    else:
        opts = ("--label-map", "suprise=Surprise", "--label-map", "grumpy=angry")
    p = run_cli("extract", "--data", csv, "--cache-dir", tmp_path / "c", *opts, *HOG_ARGS)
    assert p.returncode == 0, p.stderr
    c = load_cache(p.last_line)
    assert c.label_names == ["angry", "happy", "sad", "surprise"]
    assert "labels mapped (--label-map): grumpy -> angry (3 images), suprise -> surprise (3 images)" in p.stderr
    mapped = load_dataset(csv, label_map={"suprise": "surprise", "grumpy": "angry"})
    _, key, _ = dataset_cache_path(mapped, FeatureExtractor(**HOG), tmp_path / "c")
    assert read_attrs(p.last_line)["key"] == key  # the key the mapped labels give, however the map was written
    _, kept_key, _ = dataset_cache_path(load_dataset(csv, allow_new_labels=True), FeatureExtractor(**HOG))
    assert kept_key != key


def test_a_mapped_cache_is_augmented_from_its_dataset_reloaded_with_the_map(tmp_path):
    csv = manifest(tmp_path, per=4)
    p = run_cli("extract", "--data", csv, "--cache-dir", tmp_path / "c", "--label-map", "suprise=surprise", *HOG_ARGS)
    assert p.returncode == 0, p.stderr
    assert load_cache(p.last_line).settings["dataset_options"] == {"label_map": {"suprise": "surprise"}}
    p = run_cli("classify", "--cache", p.last_line, "--clf", "fine_knn", "--copies", "1", "--protocol", "kfold",
                "--folds", "2", "--n-jobs", "1", "--no-progress")
    assert p.returncode == 0, p.stderr
    assert len(list((tmp_path / "c").glob("*__aug-*.h5"))) == 1


def test_allow_new_labels_keeps_them(tmp_path):
    csv = manifest(tmp_path)
    ds = load_dataset(csv, allow_new_labels=True)
    assert ds.label_names == ["happy", "sad", "suprise"] and "label_map" not in ds.options
    assert "new labels kept (--allow-new-labels): suprise (3 images)" in ds.notes
    p = run_cli("extract", "--data", csv, "--cache-dir", tmp_path / "c", "--allow-new-labels", *HOG_ARGS)
    assert p.returncode == 0, p.stderr
    assert load_cache(p.last_line).label_names == ["happy", "sad", "suprise"]
    assert p.stderr.count("new labels kept") == 1


def test_a_dataset_of_its_own_classes_is_taken_as_it_is_said_once(tmp_path):
    data = make_folder_dataset(tmp_path / "engagement", classes=("low", "medium", "high"), per_class=3, size=24)
    ds = load_dataset(data)
    assert ds.label_names == ["high", "low", "medium"]
    note = "labels are not expression names (high, low, medium): used as they are"
    assert ds.notes.count(note) == 1
    p = run_cli("extract", "--data", data, "--cache-dir", tmp_path / "c", *HOG_ARGS)
    assert p.returncode == 0, p.stderr
    assert p.stderr.count(note) == 1
    assert load_cache(p.last_line).label_names == ["high", "low", "medium"]


def test_folder_names_with_a_typo_get_the_same_error(tmp_path, no_network):
    data = make_folder_dataset(tmp_path / "faces", classes=("happy", "sad", "suprise"), per_class=2, size=24)
    with pytest.raises(DatasetError, match=r"unknown label 'suprise' \(2 images; did you mean 'surprise'\?\)"):
        load_dataset(data)
    p = run_cli("extract", "--data", data, "--cache-dir", tmp_path / "c", *HOG_ARGS)
    assert p.returncode == 2 and "did you mean 'surprise'?" in p.stderr and not no_network
    ds = load_dataset(data, label_map="suprise=surprise")
    assert ds.label_names == ["happy", "sad", "surprise"]
    assert ds.options == {"label_map": {"suprise": "surprise"}}


def test_mostly_means_half_of_the_labels_or_half_of_the_images(tmp_path):
    # 1 of 4 distinct labels known, 3 of 12 images: mostly not expression names -> taken, said
    ds = load_dataset(manifest(tmp_path / "a", labels=("happy", "low", "medium", "high")))
    assert any(n.startswith("labels are mostly not expression names") for n in ds.notes)
    # 1 of 2 distinct labels known: half -> the unknown one is an error
    with pytest.raises(DatasetError, match="'hapy'.*did you mean 'happy'"):
        load_dataset(manifest(tmp_path / "b", labels=("sad", "hapy")))
    # 1 of 3 distinct labels known, but it holds 6 of 10 images: mostly -> an error
    csv = manifest(tmp_path / "c", labels=("sad", "sda", "hapy"), per=2)
    text = csv.read_text().splitlines()
    extra = []
    for i in range(4):
        Image.fromarray(np.full((24, 24), 200 + i, np.uint8)).save(csv.parent / "imgs" / f"x{i}.png")
        extra.append(f"imgs/x{i}.png,sad,P{i}")
    csv.write_text("\n".join(text + extra) + "\n")
    with pytest.raises(DatasetError, match="'sda' \\(2 images; did you mean 'sad'\\?\\)"):
        load_dataset(csv)


def test_label_map_errors(tmp_path):
    csv = manifest(tmp_path)
    for bad, match in ((["nope=surprise"], "'nope' is no label of"), ("suprise=", "FROM=TO"),
                       ("suprise=surprise,suprise=happy", "twice"), (str(tmp_path / "none.csv"), "no such file")):
        with pytest.raises(DatasetError, match=match) as e:
            load_dataset(csv, label_map=bad)
        assert "\n" not in str(e.value)
    (tmp_path / "bad.csv").write_text("suprise,surprise,extra\n")
    with pytest.raises(DatasetError, match="line 1"):
        load_dataset(csv, label_map=str(tmp_path / "bad.csv"))


def test_datasets_without_a_map_keep_their_fingerprint(tmp_path):
    data = make_folder_dataset(tmp_path / "d", classes=("happy", "sad"), per_class=2, size=24)
    plain = load_dataset(data)
    assert plain.options == {} and load_dataset(data, allow_new_labels=True).fingerprint() == plain.fingerprint()
    assert load_dataset(data, label_map="sad=happy").fingerprint() != plain.fingerprint()


def test_every_command_reading_a_dataset_takes_the_options(tmp_path):
    csv = manifest(tmp_path)
    assert run_cli("duplicates", "--data", csv, "--no-progress").returncode == 2
    p = run_cli("duplicates", "--data", csv, "--label-map", "suprise=surprise", "--no-progress")
    assert p.returncode == 0, p.stderr
    assert run_cli("duplicates", "--data", csv, "--allow-new-labels", "--no-progress").returncode == 0
    p = run_cli("finetune", "--data", csv, "--epochs", "1", "--no-progress")  # stops before any training
    assert p.returncode == 2 and "did you mean 'surprise'?" in p.stderr
    for cmd in ("extract", "finetune", "duplicates"):
        out = run_cli(cmd, "--help").stdout
        assert "--label-map" in out and "--allow-new-labels" in out, cmd
