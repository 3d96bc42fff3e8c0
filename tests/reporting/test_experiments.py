"""The seed experiments end to end on the real datasets, scaled down (HOG features, few classifiers)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from fer_features.reporting.experiments import run_experiment
from helpers import SHARED, run_cli


@pytest.fixture
def data_root():
    if not (SHARED / "jaffe").exists():
        pytest.skip("real datasets not present")
    return SHARED


def test_seed_jaffe_runs_both_protocols_and_labels_them(data_root, tmp_path, monkeypatch):
    monkeypatch.setenv("FER_FEATURES_CACHE", str(tmp_path / "cache"))
    md = run_experiment("seed-jaffe", data_root=data_root, out_dir=tmp_path, backbones=["hog"],
                        classifiers=["lda"], copies=2).read_text()
    assert "LEAKY" in md and "leave-one-subject-out, 2 copies" in md and "Command:" in md
    data = json.loads((tmp_path / "seed-jaffe.json").read_text())["results"]["hog"]
    by_protocol = {row["protocol"] + str(row["copies"]): row["results"][0] for row in data}
    assert by_protocol["augment-then-split2"]["leaky"] and not by_protocol["loso2"]["leaky"]
    assert by_protocol["loso2"]["n_train"] > by_protocol["loso0"]["n_train"] * 2.5  # copies of training images
    assert by_protocol["augment-then-split2"]["augmentation"]["test_rows_with_source_in_train"] > 0.5
    assert len(data) == 4 and all(0 < row["results"][0]["accuracy"] <= 1 for row in data)


def _subset_root(root: Path, out: Path) -> Path:
    """A datasets folder of links to 3 JAFFE subjects' images and 10 CK+48 subjects' (every class folder)."""
    (out / "jaffe").mkdir(parents=True)
    for f in sorted((root / "jaffe").iterdir()):
        if f.name.split(".")[0] in ("KA", "KL", "KM"):
            (out / "jaffe" / f.name).symlink_to(f.resolve())
    ck = sorted((root / "ckplus48").glob("*/*.png"))
    keep = sorted({f.name.split("_")[0] for f in ck})[:10]
    for f in ck:
        if f.name.split("_")[0] in keep:
            (out / "ckplus48" / f.parent.name).mkdir(parents=True, exist_ok=True)
            (out / "ckplus48" / f.parent.name / f.name).symlink_to(f.resolve())
    return out


def test_seed_resnet_svm_and_linear_baseline_scaled_down(data_root, tmp_path, monkeypatch):
    from fer_features.reporting.experiments import seed_resnet_svm

    monkeypatch.setenv("FER_FEATURES_CACHE", str(tmp_path / "cache"))
    md, payload = seed_resnet_svm(data_root, ["hog"], ["lda", "linear_svm"], lambda m: None, n_images=90,
                                  per_class=(40, 60))
    text = "\n".join(md)
    assert "Accuracy %, preprocessing bbhe" in text and "DS4 leaky" in text and "DS1 leak-free" in text
    rows = payload["hog"]
    assert len(rows) == 2 * 7  # (DS1 once, DS2-4 twice) x with/without BBHE
    ds4 = next(r for r in rows if r["ds"] == "DS4" and not r["leaky"] and r["preprocess"] == "none")["results"][0]
    assert ds4["n_train"] == 3 * 60 and ds4["n_test"] == 9  # grown training part, original test images only

    small = _subset_root(data_root, tmp_path / "datasets")  # the CLI path, not the datasets' size, is tested
    p = run_cli("experiment", "seed-linear-baseline", "--data-root", small, "--out", tmp_path, "--backbone", "hog",
                "--clf", "linear_svm,lda")  # FER_FEATURES_CACHE: set above
    assert p.returncode == 0, p.stderr[-2000:]
    md = (tmp_path / "seed-linear-baseline.md").read_text()
    assert "| **linear_svm** |" in md and "linear_svm ranks" in md and "subject-independent" in md


def test_experiment_writes_to_the_users_folder_by_default(tmp_path, monkeypatch):
    """Without --out, ``experiment`` writes ./fer_results/NAME.md, never the committed bench/results; the
    recorded command says where it wrote."""
    from fer_features import cli
    from fer_features.reporting import experiments

    monkeypatch.setitem(experiments.EXPERIMENTS, "seed-jaffe",
                        (lambda root, backbones, clfs, log, **kw: (["body"], {}), "fake", ["lda"]))
    monkeypatch.chdir(tmp_path)
    a = cli.build_parser().parse_args(["experiment", "seed-jaffe"])
    assert a.out == experiments.DEFAULT_OUT == "fer_results"
    assert cli.main(["experiment", "seed-jaffe", "--backbone", "hog"]) == 0
    md = (tmp_path / "fer_results" / "seed-jaffe.md").read_text()
    assert "--out fer_results" in md and (tmp_path / "fer_results" / "seed-jaffe.json").exists()
    path = experiments.run_experiment("seed-jaffe", backbones=["hog"], log=lambda m: None)
    assert path == Path("fer_results") / "seed-jaffe.md"
    help_text = next(p for p in cli.build_parser()._subparsers._group_actions[0].choices.items()
                     if p[0] == "experiment")[1].format_help()
    assert "fer_results" in help_text and "current directory" in help_text
