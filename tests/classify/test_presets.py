"""Classifier presets (MATLAB's kernels and scales, one BLAS thread for the nets, overrides) and the fused MLP
engine (the same loss and gradient as scikit-learn's, which code each result records)."""
from __future__ import annotations

import numpy as np
import pytest

from fer_features.classify import _minkowski
from fer_features.classify import presets as C
from fer_features import evaluation as ev
from helpers import LABELS, blobs


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


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_cubic_knn_finds_scikit_learns_minkowski_3_neighbours(dtype):
    """The default engine's cubic_knn computes its Minkowski p=3 distances in blocks (numba) and finds the same
    neighbours, votes and predictions as scikit-learn's brute-force KNeighborsClassifier(metric='minkowski', p=3),
    ties included (equal distances: the lower training row wins, as in scikit-learn)."""
    from sklearn.neighbors import KNeighborsClassifier

    rng = np.random.default_rng(3)
    X = rng.normal(size=(300, 70)).astype(dtype)
    y = rng.integers(0, 4, 300)
    X[150:160] = X[10:20]  # test images with a copy in training: distance 0
    X[200:220] = X[100]  # 21 equal training rows (with their own labels), test row 0 next to them: a tie at the
    X[0] = X[100] + 0.01  # 10th place, which scikit-learn breaks towards the lower rows (X's 100, 200, ..., 208)
    tr, te = np.arange(40, 300), np.arange(40)
    pipe = C.make_classifier("cubic_knn").fit(X[tr], y[tr])
    knn = pipe.named_steps["clf"]
    assert isinstance(knn, C.CubicKNN) and C.engine_used("cubic_knn", C.DEFAULT_ENGINE) == "numba"
    Z = pipe.named_steps["scale"].transform(X)
    ref = KNeighborsClassifier(n_neighbors=10, metric="minkowski", p=3, algorithm="brute").fit(Z[tr], y[tr])
    d, i = knn.kneighbors(Z[te])
    d_ref, i_ref = ref.kneighbors(Z[te])
    # the same neighbours (in scikit-learn's output, equal distances come in no particular order), nearest first
    assert np.array_equal(np.sort(i, 1), np.sort(i_ref, 1)) and sorted(i[0]) == [60, *range(160, 169)]
    assert (np.diff(d, axis=1) >= 0).all()
    np.testing.assert_allclose(d, d_ref, rtol=1e-5)
    np.testing.assert_array_equal(pipe.predict(X[te]), ref.predict(Z[te]))
    np.testing.assert_array_equal(pipe.predict_proba(X[te]), ref.predict_proba(Z[te]))
    knn.set_params(weights=C._squared_inverse)  # distance weights: scikit-learn's voting on these neighbours
    np.testing.assert_array_equal(knn.predict(Z[te]), ref.set_params(weights=C._squared_inverse).predict(Z[te]))
    for q, t, block in ((te, tr, 1), (te[1:], tr[:-1], 2**20)):  # one query row per block; rows left from tiles
        got = _minkowski.kneighbors(Z[q], Z[t], 3, block_bytes=block)[1]
        want = KNeighborsClassifier(3, metric="minkowski", p=3, algorithm="brute").fit(Z[t], y[t]).kneighbors(Z[q])[1]
        assert np.array_equal(np.sort(got, 1), np.sort(want, 1))
    big = (rng.normal(size=(40, 6)) * 1e13).astype(dtype)  # float32 sums overflow: summed again in float64
    got = _minkowski.kneighbors(big[:10], big[10:], 4)[1]
    big = big.astype(np.float64)  # (scikit-learn's own float32 sums overflow here)
    ref = KNeighborsClassifier(4, metric="minkowski", p=3, algorithm="brute").fit(big[10:], y[10:40])
    assert np.array_equal(got, ref.kneighbors(big[:10])[1])


def test_cubic_knn_is_a_scikit_learn_estimator():
    """Constructor arguments stored, fit returns self, clone()-able, in a Pipeline; other metrics and
    ``--engine sklearn`` run stock scikit-learn."""
    from sklearn.base import clone
    from sklearn.neighbors import KNeighborsClassifier

    X, y, _ = blobs()
    est = C.CubicKNN(n_neighbors=4, p=3, metric="minkowski", algorithm="brute")
    assert est.get_params()["n_neighbors"] == 4 and est.fit(X, y) is est
    twin = clone(est)
    assert type(twin) is C.CubicKNN and twin.get_params() == est.get_params() and not hasattr(twin, "classes_")
    assert (C.make_classifier("cubic_knn").fit(X, y).predict(X) == y).mean() > 0.8
    stock = C.make_classifier("cubic_knn", engine="sklearn").named_steps["clf"]
    assert type(stock) is KNeighborsClassifier and C.engine_used("cubic_knn", "sklearn") == "sklearn"
    assert type(C.make_classifier("medium_knn").named_steps["clf"]) is KNeighborsClassifier
    other = C.make_classifier("cubic_knn", {"p": 1}).fit(X, y)  # not p=3: scikit-learn's own search
    ref = KNeighborsClassifier(n_neighbors=10, p=1, algorithm="brute").fit(other.named_steps["scale"].transform(X), y)
    assert (other.predict(X) == ref.predict(other.named_steps["scale"].transform(X))).all()
    with pytest.raises(ValueError):
        C.CubicKNN(n_neighbors=500, p=3, algorithm="brute").fit(X, y).kneighbors(X)
