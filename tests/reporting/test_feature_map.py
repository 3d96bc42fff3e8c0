"""The 2-D feature map (t-SNE, by expression and by subject) with its nearest-neighbour agreement numbers."""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from fer_features.reporting import feature_map as fm
from fer_features.features.cache import load_cache
from helpers import run_cli, write_cache

PNG = b"\x89PNG\r\n\x1a\n"


def small_cache(path, n_subjects=4, per=9, dim=12, classes=("angry", "happy", "sad"), subjects=True, seed=0):
    """Expression clusters (well apart) with a small per-subject offset."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(len(classes), dim)) * 5
    X, y, g = [], [], []
    for s in range(n_subjects):
        off = rng.normal(size=dim) * 0.5
        for i in range(per):
            c = i % len(classes)
            X.append(centres[c] + off + rng.normal(size=dim) * 0.3)
            y.append(c)
            g.append(f"S{s}" if subjects else "")
    return load_cache(write_cache(path, np.array(X), y, g, labels=classes))


def test_agreement_is_one_for_separated_clusters_and_near_chance_for_noise():
    rng = np.random.default_rng(0)
    X = np.concatenate([rng.normal(size=(20, 5)) * 0.1 + 10 * k for k in range(3)])
    y = np.repeat([0, 1, 2], 20)
    assert fm.neighbour_agreement(X, y, k=5) == 1.0
    noise = rng.normal(size=(300, 5))
    labels = rng.integers(0, 3, 300)
    assert abs(fm.neighbour_agreement(noise, labels, k=5) - 1 / 3) < 0.1
    dup = np.zeros((6, 2))  # identical points: a point is never its own neighbour
    assert fm.neighbour_agreement(dup, np.array([0, 0, 0, 1, 1, 1]), k=2) <= 1.0
    assert fm.chance_agreement(np.array([0, 0, 1, 1])) == pytest.approx(0.5)
    people = np.tile(np.arange(4), 15)  # every cluster holds all four people
    assert fm.neighbour_agreement(X, y, k=5, groups=people) == 1.0
    # repeated photos: each person shows each expression 6 times nearly alike, at a place of their own
    place = rng.normal(size=(8, 2, 10)) * 5  # person x expression x dims: no expression direction shared
    Xr = np.concatenate([place[p, e] + rng.normal(size=(6, 10)) * 0.01 for p in range(8) for e in range(2)])
    yr, pr = np.tile(np.repeat([0, 1], 6), 8), np.repeat(np.arange(8), 12)
    assert fm.neighbour_agreement(Xr, yr, k=5) == 1.0  # the same person's repeats
    assert fm.neighbour_agreement(Xr, yr, k=5, groups=pr) < 0.8  # other people: no better than a guess

def test_stratified_subsample_is_seeded_and_keeps_every_class():
    y = np.array([0] * 900 + [1] * 90 + [2] * 10)
    idx = fm.stratified_sample(y, 100, seed=0)
    assert len(idx) == 100 and len(set(idx)) == 100
    assert np.bincount(y[idx]).tolist() == [90, 9, 1]
    np.testing.assert_array_equal(idx, fm.stratified_sample(y, 100, seed=0))
    assert not np.array_equal(idx, fm.stratified_sample(y, 100, seed=1))
    np.testing.assert_array_equal(fm.stratified_sample(y, 5000, seed=0), np.arange(1000))


def test_writes_a_png_with_both_panels_and_the_numbers(tmp_path):
    c = small_cache(tmp_path / "c.h5")
    info = fm.plot_feature_map(c, tmp_path / "map.png")
    assert (tmp_path / "map.png").read_bytes()[:8] == PNG
    assert info["n_points"] == len(c) and not info["subsampled"]
    assert info["expression_agreement"] == 1.0 and info["subject_agreement"] < 0.7
    assert "expression" in info["title"] and "subject" in info["title"] and "t-SNE" in info["title"]
    assert info["n_subjects"] == 4 and info["subject_legend"]
    assert info["cross_subject_expression_agreement"] == 1.0 and "other people" in info["title"]


def test_subsamples_above_the_limit_and_says_so(tmp_path):
    c = small_cache(tmp_path / "c.h5", n_subjects=10, per=9)  # 90 rows
    info = fm.plot_feature_map(c, tmp_path / "map.png", max_points=30)
    assert info["n_points"] == 30 and info["n_total"] == 90 and info["subsampled"]
    assert "30 of 90" in info["title"]
    assert (tmp_path / "map.png").read_bytes()[:8] == PNG


def test_without_subject_ids_the_right_panel_says_so(tmp_path):
    c = small_cache(tmp_path / "c.h5", subjects=False)
    info = fm.plot_feature_map(c, tmp_path / "map.png")
    assert info["subject_agreement"] is None and info["n_subjects"] == 0
    assert "no subject ids" in info["subject_panel"]
    assert (tmp_path / "map.png").read_bytes()[:8] == PNG


def test_many_subjects_have_no_legend_and_plain_arrays_work(tmp_path):
    rng = np.random.default_rng(0)
    obj = SimpleNamespace(features=rng.normal(size=(60, 8)).astype(np.float32), labels=np.arange(60) % 2,
                          label_names=["a", "b"], subjects=np.array([f"S{i % 30}" for i in range(60)]),
                          has_subjects=True, path=tmp_path / "x.h5")
    info = fm.plot_feature_map(obj, tmp_path / "m.png")
    assert info["n_subjects"] == 30 and not info["subject_legend"]


def test_info_plot_writes_the_file(tmp_path):
    small_cache(tmp_path / "c.h5")
    p = run_cli("info", tmp_path / "c.h5", "--plot", tmp_path / "out" / "map.png")
    assert p.returncode == 0, p.stderr[-2000:]
    assert (tmp_path / "out" / "map.png").read_bytes()[:8] == PNG
    assert "5-NN agreement" in p.stdout and "map.png" in p.stdout


def test_compare_report_dir_writes_the_map_and_links_it(tmp_path):
    small_cache(tmp_path / "c.h5")
    p = run_cli("compare", "--cache", tmp_path / "c.h5", "--clf", "lda", "--protocol", "loso", "--no-progress",
                "--report-dir", tmp_path / "rep")
    assert p.returncode == 0, p.stderr[-2000:]
    assert (tmp_path / "rep" / "feature_map.png").read_bytes()[:8] == PNG
    assert "![feature map](feature_map.png)" in (tmp_path / "rep" / "report.md").read_text()


def test_a_cross_dataset_map_shows_both_sets_coloured_by_set(tmp_path, monkeypatch):
    """compare --test-cache B: the map holds A's and B's images (classes matched by name), the right panel is
    coloured by set, and the numbers say how far the sets separate."""
    import matplotlib.figure

    small_cache(tmp_path / "a.h5")  # 36 images: angry, happy, sad
    b = small_cache(tmp_path / "b.h5", n_subjects=2, classes=("happy", "neutral", "sad"), seed=1)  # 18 images
    texts: list[str] = []
    save = matplotlib.figure.Figure.savefig

    def spy(fig, path, *a, **k):
        if Path(path).name == "feature_map.png":
            texts.extend(t.get_text() for t in fig.findobj(matplotlib.text.Text))
        return save(fig, path, *a, **k)

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", spy)
    p = run_cli("compare", "--cache", tmp_path / "a.h5", "--test-cache", tmp_path / "b.h5", "--clf", "lda",
                "--no-progress", "--report-dir", tmp_path / "rep")
    assert p.returncode == 0, p.stderr[-2000:]
    shown = "\n".join(texts)
    assert "train: a.h5 (36)" in shown and "test: b.h5 (18)" in shown  # the set panel's legend
    assert "coloured by set" in shown and "neutral (6)" in shown and "angry (12)" in shown and "54 images" in shown
    line = next(x for x in p.stdout.splitlines() if x.startswith("feature map:"))
    assert "54 of 54 images" in line and "set " in line and "other set" in line
    info = fm.plot_feature_map(load_cache(tmp_path / "a.h5"), tmp_path / "m.png", test_cache=b, max_points=30)
    assert info["sets"] == {"train: a.h5": 36, "test: b.h5": 18} and info["n_total"] == 54
    assert info["n_points"] == 30  # 21 + 9: stratified by set and class
    assert info["set_chance"] == pytest.approx(fm.chance_agreement(np.repeat([0, 1], [21, 9])))
    assert 0 <= info["set_agreement"] <= 1 and info["cross_set_expression_agreement"] is not None
