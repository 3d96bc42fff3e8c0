"""Classifier presets, evaluation protocols (no subject leaks), reports, saved models and the CLI."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fer_features.classify import presets as C
from fer_features.evaluation import run as ev
from fer_features.features.cache import CacheWriter, load_cache

ROOT = Path(__file__).resolve().parents[1]
LABELS = ["angry", "happy", "sad"]


def blobs(n_subjects=6, per=6, dim=16, seed=0, sep=3.0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(len(LABELS), dim)) * sep
    X, y, g = [], [], []
    for s in range(n_subjects):
        offset = rng.normal(size=dim)
        for i in range(per):
            c = i % len(LABELS)
            X.append(centres[c] + offset + rng.normal(size=dim) * 0.5)
            y.append(c)
            g.append(f"S{s:02d}")
    return np.array(X, np.float32), np.array(y), np.array(g, dtype=object)


def write_cache(path, X, y, subjects, split=None):
    w = CacheWriter(path, "k", X.shape[1], LABELS, {"settings_json": json.dumps({"backbone": "test"})})
    w.open()
    n = len(y)
    w.append(X, y, subjects, split if split is not None else [""] * n, [f"img{i}.png" for i in range(n)],
             [LABELS[i] for i in y], [-1] * n, n_processed=n)
    return w.finish()


@pytest.mark.parametrize("name", list(C.PRESETS))
@pytest.mark.parametrize("engine", C.ENGINES)
def test_every_preset_learns_separable_data(name, engine):
    X, y, _ = blobs(n_subjects=40, per=6, seed=1)  # 120 training rows: enough for coarse_knn (100 neighbours)
    pipe = C.make_classifier(name, engine=engine)
    assert pipe.steps[0][0] == "scale"
    pipe.fit(X[::2], y[::2])
    assert (pipe.predict(X[1::2]) == y[1::2]).mean() > 0.8, name


def test_cubic_svm_is_matlabs_kernel_with_scale_sqrt_d():
    """(1 + x'y/s^2)^3 with s = sqrt(D) on standardised features equals the fitted SVC's kernel."""
    from sklearn.metrics.pairwise import polynomial_kernel

    X, y, _ = blobs()
    pipe = C.make_classifier("cubic_svm", engine="sklearn").fit(X, y)
    Z = pipe.named_steps["scale"].transform(X)
    svc = pipe.named_steps["clf"]
    assert svc.degree == 3 and svc.coef0 == 1.0
    assert np.isclose(svc._gamma, 1.0 / Z.shape[1], rtol=1e-3)  # unit variance after scaling
    np.testing.assert_allclose(polynomial_kernel(Z[:5], Z[:5], degree=3, gamma=svc._gamma, coef0=1),
                               (1 + Z[:5] @ Z[:5].T / Z.shape[1]) ** 3, rtol=1e-3)


def test_linear_svm_is_matlabs_scaled_linear_kernel():
    """x'y/s^2 with s = sqrt(D): the same classifier as SVC(kernel='linear', C=1/D) on standardised features."""
    from sklearn.svm import SVC

    X, y, _ = blobs(dim=24, sep=0.6)  # overlapping classes: C matters
    pipe = C.make_classifier("linear_svm", engine="sklearn").fit(X, y)
    Z = pipe.named_steps["scale"].transform(X)
    ref = SVC(kernel="linear", C=1.0 / Z.shape[1]).fit(Z, y)
    np.testing.assert_allclose(pipe.decision_function(X), ref.decision_function(Z), rtol=1e-2, atol=1e-2)
    assert (pipe.predict(X) == ref.predict(Z)).all()


def test_mlp_presets_fit_with_one_blas_thread(monkeypatch, tmp_path):
    from sklearn.base import clone
    from sklearn.neural_network import MLPClassifier
    from threadpoolctl import threadpool_info

    seen = []
    orig = MLPClassifier._fit

    def spy(self, *a, **k):
        seen.append([i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"])
        return orig(self, *a, **k)

    monkeypatch.setattr(MLPClassifier, "_fit", spy)
    X, y, _ = blobs()
    pipe = C.make_classifier("medium_nn")
    mlp = pipe.named_steps["clf"]
    assert isinstance(mlp, C.SingleThreadMLP) and isinstance(mlp, MLPClassifier)
    assert clone(mlp).get_params() == mlp.get_params()  # a plain scikit-learn estimator
    pipe.fit(X, y)
    assert seen and all(n == 1 for n in seen[0])
    from fer_features.apply.models import load_model, save_model

    path = save_model(tmp_path / "m.skops", pipe, LABELS, {}, {})  # the subclass is a trusted, loadable type
    assert (load_model(path)["pipeline"].predict(X) == pipe.predict(X)).all()


def test_overrides_and_errors():
    assert C.parse_overrides(["C=10", "gamma=0.001", "kernel=rbf", "hidden_layer_sizes=(50,20)"]) == {
        "C": 10, "gamma": 0.001, "kernel": "rbf", "hidden_layer_sizes": (50, 20)}
    assert C.make_classifier("cubic_svm", {"C": 10}).named_steps["clf"].C == 10
    assert C.make_classifier("wide_nn").named_steps["clf"].hidden_layer_sizes == (100,)
    with pytest.raises(C.ClassifierError):
        C.get_preset("deep_forest")
    with pytest.raises(C.ClassifierError):
        C.make_classifier("lda", {"no_such_param": 1})
    with pytest.raises(C.ClassifierError):
        C.parse_overrides(["C"])


def test_subject_independent_protocols_never_share_a_subject():
    X, y, g = blobs(n_subjects=12)
    for proto in ("group-kfold", "loso"):
        splits, info = ev.make_splits(proto, y, g, folds=5)
        assert info["subject_independent"]
        tested = np.concatenate([te for _, te in splits])
        assert sorted(tested) == list(range(len(y)))  # every image tested exactly once
        for tr, te in splits:
            assert not set(g[tr]) & set(g[te])
    splits, _ = ev.make_splits("loso", y, g)
    assert len(splits) == 12 and all(len(set(g[te])) == 1 for _, te in splits)
    _, info = ev.make_splits("kfold", y, g, folds=3)
    assert info["subjects_in_train_and_test"] > 0  # the leak is measured and reported
    with pytest.raises(ev.ProtocolError):
        ev.make_splits("loso", y, None)


def test_official_split_and_default_protocol():
    y = np.array([0, 1, 2] * 10)
    split = np.array(["Training"] * 18 + ["PublicTest"] * 6 + ["PrivateTest"] * 6, dtype=object)
    (tr, te), = ev.make_splits("official", y, None, split)[0]
    assert set(split[tr]) == {"Training"} and set(split[te]) == {"PrivateTest"}
    (tr, te), = ev.make_splits("official", y, None, split, test_split="PublicTest")[0]
    assert set(split[te]) == {"PublicTest"}
    assert ev.default_protocol(True, True) == "group-kfold"
    assert ev.default_protocol(False, True) == "official"
    assert ev.default_protocol(False, False) == "kfold"


def test_evaluate_result_and_duplicates(tmp_path):
    X, y, g = blobs()
    X[1] = X[0]  # an exact duplicate image: reported, not hidden
    cache = load_cache(write_cache(tmp_path / "c.h5", X, y, g))
    results, notes = ev.run(cache, ["linear_svm", "fine_knn"], "kfold", folds=3)
    r = results[0]
    for key in ("protocol", "classifier", "accuracy", "accuracy_std", "macro_f1", "per_class_accuracy", "labels",
                "confusion_matrix", "fit_seconds", "predict_seconds", "n_train", "n_test", "n_folds", "engine"):
        assert key in r
    assert np.sum(r["confusion_matrix"]) == len(y) == r["n_test"]
    assert r["duplicate_rows"] == 1
    assert any("kfold splits by image" in n for n in notes)  # random protocol on subject data: warned
    assert results[1]["classifier"] == "fine_knn"


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "fer_features", *map(str, args)], capture_output=True,
                          text=True, cwd=ROOT, timeout=600)


def test_cli_classify_json_compare_report_and_predict(tmp_path, jaffe_dir):
    """On JAFFE: LOSO classify with JSON, compare with a report folder, save + predict on real images."""
    from fer_features.features.extract import extract_dataset

    cache = extract_dataset(jaffe_dir, cache_dir=tmp_path / "cache", image_size=96, progress=False)
    p = run_cli("classify", "--cache", cache, "--clf", "cubic_svm", "--protocol", "loso", "--json",
                "--save", tmp_path / "m.skops")
    assert p.returncode == 0, p.stderr[-3000:]
    r = json.loads(p.stdout.strip().splitlines()[-1])
    assert r["protocol"] == "loso" and r["n_folds"] == 10 and r["subject_independent"]
    assert np.sum(r["confusion_matrix"]) == 213 and r["n_test"] == 213
    assert 0.14 < r["accuracy"] <= 1.0  # above chance (1/7) even with naive whole-image features
    rep = tmp_path / "rep"
    p = run_cli("compare", "--cache", cache, "--clf", "linear_svm,medium_knn,lda", "--protocol", "group-kfold",
                "--folds", "5", "--report-dir", rep)
    assert p.returncode == 0, p.stderr[-3000:]
    for name in ("linear_svm", "medium_knn", "lda"):
        assert any(line.startswith(name) for line in p.stdout.splitlines())
        assert (rep / f"confusion_{name}.png").stat().st_size > 1000
    assert (rep / "report.md").read_text().count("|") > 10 and (rep / "results.csv").exists()
    assert len(json.loads((rep / "results.json").read_text())) == 3
    imgs = sorted(jaffe_dir.glob("*.tiff"))[:3]
    bad = tmp_path / "broken.png"
    bad.write_text("no image")
    p = run_cli("predict", "--model", tmp_path / "m.skops", *imgs, bad, "--json")
    assert p.returncode == 0, p.stderr[-3000:]
    rows = [json.loads(line) for line in p.stdout.strip().splitlines()]
    assert len(rows) == 4 and rows[-1]["error"] and "broken.png" in rows[-1]["error"]
    for row in rows[:3]:
        assert row["label"] in r["labels"] and row["face"] == 0 and row["w"] > 50  # one face per JAFFE image
        assert abs(sum(v for k, v in row.items() if k.startswith("p_")) - 1) < 1e-6


def test_cli_errors_exit_2(tmp_path):
    p = run_cli("classify", "--cache", tmp_path / "none.h5")
    assert p.returncode == 2 and "none.h5" in p.stderr
    X, y, g = blobs()
    c = write_cache(tmp_path / "c.h5", X, y, [""] * len(y))
    p = run_cli("classify", "--cache", c, "--protocol", "loso")
    assert p.returncode == 2 and "subject" in p.stderr
    p = run_cli("classify", "--cache", c, "--clf", "nope")
    assert p.returncode == 2 and "unknown classifier" in p.stderr
    (tmp_path / "x.skops").write_text("nope")
    p = run_cli("predict", "--model", tmp_path / "x.skops", tmp_path)
    assert p.returncode == 2


def test_subject_normalisation_removes_identity_and_stays_within_each_part():
    # identity offsets dwarf the expression signal: centring each subject recovers it
    X, y, g = blobs(n_subjects=8, per=6, sep=0.6)
    X = X + np.repeat(np.random.default_rng(5).normal(size=(8, X.shape[1])) * 20, 6, axis=0).astype(np.float32)
    Xc, fb = ev.subject_normalize(X, g, "center")
    for s in np.unique(g):
        np.testing.assert_allclose(Xc[g == s].mean(0), 0, atol=1e-4)
    assert fb == 0 and not np.shares_memory(Xc, X)
    splits, info = ev.make_splits("loso", y, g)
    raw = ev.evaluate(X, y, LABELS, "linear_svm", splits, info, n_jobs=1)
    cen = ev.evaluate(X, y, LABELS, "linear_svm", splits, info, n_jobs=1, subject_norm="center", groups=g)
    assert cen["accuracy"] > raw["accuracy"] + 0.2 and cen["subject_norm"] == "center"
    assert "unlabelled test images" in cen["subject_norm_note"] and raw["subject_norm"] == "none"
    # a fold's training part is normalised with training rows only: a test row changed at will leaves
    # the training features (hence the fitted model) untouched
    tr, te = splits[0]
    X2 = X.copy()
    X2[te] += 1000
    a, _ = ev.subject_normalize(X[tr], g[tr], "center")
    b, _ = ev.subject_normalize(X2[tr], g[tr], "center")
    np.testing.assert_array_equal(a, b)
    # neutral: the subject's neutral rows are the reference; no neutral row -> the subject's mean
    names = ["neutral", "happy", "sad"]
    Xn, fb = ev.subject_normalize(X, g, "neutral", neutral=(y == 0) & (g != "S00"))
    assert fb == 1
    np.testing.assert_allclose(Xn[(g == "S01") & (y == 0)].mean(0), 0, atol=1e-4)
    np.testing.assert_allclose(Xn[g == "S00"].mean(0), 0, atol=1e-4)
    r = ev.evaluate(X, y, names, "lda", splits, info, n_jobs=1, subject_norm="neutral", groups=g)
    assert r["subject_norm"] == "neutral" and r["subject_norm_fallbacks"] == 0
    with pytest.raises(ev.ProtocolError, match="neutral"):
        ev.evaluate(X, y, LABELS, "lda", splits, info, subject_norm="neutral", groups=g)
    with pytest.raises(ev.ProtocolError, match="subject ids"):
        ev.evaluate(X, y, LABELS, "lda", splits, info, subject_norm="center", groups=None)


def test_cli_subject_norm_is_recorded_and_refused_where_it_cannot_apply(tmp_path):
    X, y, g = blobs()
    c = write_cache(tmp_path / "c.h5", X, y, g)
    p = run_cli("classify", "--cache", c, "--clf", "lda", "--protocol", "loso", "--subject-norm", "center", "--json")
    assert p.returncode == 0, p.stderr[-2000:]
    r = json.loads(p.stdout.strip().splitlines()[-1])
    assert r["subject_norm"] == "center" and "identity normalisation" in p.stdout
    p = run_cli("classify", "--cache", c, "--subject-norm", "center", "--save", tmp_path / "m.skops")
    assert p.returncode == 2 and "--save" in p.stderr and not (tmp_path / "m.skops").exists()
    p = run_cli("classify", "--cache", c, "--subject-norm", "neutral")
    assert p.returncode == 2 and "neutral" in p.stderr
    nosub = write_cache(tmp_path / "n.h5", X, y, [""] * len(y))
    p = run_cli("classify", "--cache", nosub, "--protocol", "kfold", "--subject-norm", "center")
    assert p.returncode == 2 and "subject ids" in p.stderr


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("hidden, alpha, dim", [((10,), 0.0, 40), ((10, 10), 0.0, 40), ((10, 10, 10), 0.3, 40),
                                                ((5, 20), 0.3, 40), ((10,), 0.0, 3000)])
def test_fused_mlp_loss_and_gradient_equal_scikit_learns(dtype, hidden, alpha, dim):
    """The one-pass, cache-blocked loss/gradient (default engine) is scikit-learn's _backprop up to rounding."""
    from sklearn.neural_network import MLPClassifier

    from fer_features.classify import _fused_mlp as F

    rng = np.random.default_rng(1)
    X = rng.standard_normal((301, dim)).astype(dtype)  # 301 rows: the last block is shorter than the others
    y = rng.integers(0, 4, 301)
    m = C.FusedMLP(hidden_layer_sizes=hidden, alpha=alpha, max_iter=3, random_state=0).fit(X, y)
    Y = m._label_binarizer.transform(y).astype(bool)
    assert F.applies(m, X)
    n = len(m.coefs_)
    ref = MLPClassifier._backprop(m, X, Y, None, [X] + [None] * n, [None] * n, [None] * n, [None] * n)
    loss, cg, ig = F.loss_grad(m, X, Y)
    assert loss == pytest.approx(ref[0], rel=1e-5)
    for a, b in zip(ref[1] + ref[2], cg + ig):
        assert a.shape == b.shape and a.dtype == b.dtype
        np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-6)


def test_default_engine_fuses_thin_nets_only_and_matches_stock(monkeypatch):
    from fer_features.classify import _fused_mlp as F

    assert [C.engine_used(n, "sklearnex") for n in ("narrow_nn", "bilayered_nn", "trilayered_nn")] == ["numba"] * 3
    assert C.engine_used("wide_nn", "sklearnex") == C.engine_used("narrow_nn", "sklearn") == "sklearn"
    calls = []
    orig = F.loss_grad
    monkeypatch.setattr(F, "loss_grad", lambda *a: calls.append(1) or orig(*a))
    X, y, _ = blobs()
    X = X.astype(np.float32)
    fused = C.make_classifier("narrow_nn", {"max_iter": 15}).fit(X, y)
    assert calls  # the fused path ran
    stock = C.make_classifier("narrow_nn", {"max_iter": 15}, engine="sklearn").fit(X, y)
    assert type(fused[-1]) is C.FusedMLP and type(stock[-1]) is C.SingleThreadMLP
    for a, b in zip(fused[-1].coefs_, stock[-1].coefs_):  # same optimiser, same start: same weights
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-4)
    n = len(calls)
    C.make_classifier("wide_nn", {"max_iter": 5}).fit(X, y)  # wide first layer: scikit-learn's own code
    y2 = np.where(y == y[0], y[0], y[-1] if y[-1] != y[0] else y[1])
    C.make_classifier("narrow_nn", {"max_iter": 5}).fit(X, y2)  # two classes: logistic output, stock code
    assert len(calls) == n


def test_recorded_engine_is_what_the_folds_ran():
    """Results name the code that fitted: stock for two classes or a widened net, numba for a thinned wide one."""
    X, y, g = blobs()
    splits, info = ev.make_splits("loso", y, g)

    def run(name, yy, **kw):
        return ev.evaluate(X, yy, LABELS, name, splits, info, n_jobs=1, **kw)["engine"]

    assert run("narrow_nn", y, overrides={"max_iter": 5}) == "numba"
    assert run("narrow_nn", np.minimum(y, 1), overrides={"max_iter": 5}) == "sklearn"  # two classes: logistic output
    assert run("narrow_nn", y, overrides={"max_iter": 5, "hidden_layer_sizes": (40,)}) == "sklearn"
    assert run("wide_nn", y, overrides={"max_iter": 5, "hidden_layer_sizes": (10,)}) == "numba"
    assert run("wide_nn", y, overrides={"max_iter": 5}, engine="sklearn") == "sklearn"
    assert run("linear_svm", y) == C.engine_used("linear_svm", C.DEFAULT_ENGINE)


def test_fused_kernel_compiles_once_per_dtype_for_every_depth():
    """The weights cross into numba packed flat, so 1-, 2- and 3-layer nets share one compiled kernel per dtype."""
    from fer_features.classify import _fused_mlp as F

    X, y, _ = blobs()
    for name in ("narrow_nn", "bilayered_nn", "trilayered_nn"):
        assert C.make_classifier(name, {"max_iter": 3}).fit(X.astype(np.float32), y)[-1].fused_
    assert len([s for s in F._fused_loss_grad.signatures if str(s[0].dtype) == "float32"]) == 1


def test_fused_blocks_shrink_with_wider_features():
    from fer_features.classify._fused_mlp import chunk_rows

    assert [chunk_rows(d, 4) for d in (64, 1280, 2048, 3920, 5880, 100_000)] == [64, 64, 40, 24, 16, 8]
    assert chunk_rows(1280, 8) == 32
