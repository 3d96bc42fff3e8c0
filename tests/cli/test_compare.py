"""``compare``: its estimate before the run, and its report line only once every report file is written."""
from __future__ import annotations

import sys

from fer_features.classify import cost
from fer_features.classify.registry import NAMES
from helpers import blobs, run_cli, write_cache


def test_compare_prints_an_estimate_before_it_starts(tmp_path):
    X, y, g = blobs(n_subjects=5)
    c = write_cache(tmp_path / "c.h5", X, y, g)
    p = run_cli("compare", "--cache", c, "--clf", "lda,cubic_knn", "--protocol", "loso", "--no-progress")
    assert p.returncode == 0, p.stderr[-2000:]
    lines = p.stderr.splitlines()
    first = next(i for i, line in enumerate(lines) if line.startswith("estimate: about "))
    assert first < next(i for i, line in enumerate(lines) if line.startswith("[1/2]"))  # before the first result
    line = lines[first]
    assert "2 preset(s) x 5 fold(s) of ~24 training / 6 test rows, 16 features" in line
    assert "rough cost model" in line and "lda" in line and "cubic_knn" in line


def test_the_cost_model_grows_with_the_work():
    """Every preset has a cost; more rows, features, folds, presets or search budget cost more; the KNNs' cost
    grows with the test rows; cubic_knn costs about what the Euclidean KNNs cost."""
    for name in NAMES:
        small, big = cost.fold_seconds(name, 500, 50, 1000), cost.fold_seconds(name, 1000, 50, 1000)
        assert 0 < small < big < cost.fold_seconds(name, 1000, 50, 2000), name
    assert cost.fold_seconds("medium_knn", 900, 200, 3920) > 1.9 * cost.fold_seconds("medium_knn", 900, 100, 3920)
    assert cost.fold_seconds("cubic_knn", 900, 100, 3920) < 2 * cost.fold_seconds("medium_knn", 900, 100, 3920)
    one = cost.estimate(["lda"], [(900, 100)] * 10, 3920)
    assert cost.estimate(["lda", "logreg"], [(900, 100)] * 10, 3920)["total"] > one["total"]
    assert cost.estimate(["lda"], [(900, 100)] * 10, 3920, slots=2)["total"] == one["total"] / 2
    assert (cost.fold_seconds("optimizable_knn", 900, 100, 3920, budget=40)
            > cost.fold_seconds("optimizable_knn", 900, 100, 3920, budget=20))
    assert [cost.duration(s) for s in (0.2, 42, 150, 3900)] == ["1 s", "42 s", "2 min", "1 h 5 min"]


def test_compare_says_report_only_when_every_file_is_written(tmp_path, monkeypatch):
    """The feature map is the last file written: the "report:" line comes after it, as the last line."""
    from fer_features.cli import compare as cmd

    X, y, g = blobs(n_subjects=5)
    c = write_cache(tmp_path / "c.h5", X, y, g)
    said_before_map = []
    real = cmd.add_to_report

    def add_to_report(*a, **k):
        said_before_map.append("report:" in sys.stdout.getvalue())  # run_cli captures stdout in a StringIO
        return real(*a, **k)

    monkeypatch.setattr(cmd, "add_to_report", add_to_report)
    rep = tmp_path / "rep"
    p = run_cli("compare", "--cache", c, "--clf", "lda", "--protocol", "loso", "--no-progress", "--report-dir", rep)
    assert p.returncode == 0, p.stderr[-2000:]
    assert said_before_map == [False]
    assert p.stdout.strip().splitlines()[-1] == f"report: {rep / 'report.md'}"
    assert (rep / "feature_map.png").exists() and "feature_map.png" in (rep / "report.md").read_text()
