"""Augmentation: transforms, plans, the feature cache of copies, and the proof that no copy of a test image
ever trains its own fold (leak-free protocols), while augment-then-split does leak and says so."""
from __future__ import annotations

import json

import numpy as np
import pytest

from fer_features.features import augment as A
from fer_features import evaluation as ev
from fer_features.features.cache import load_cache
from helpers import run_cli, shared


def test_parse_augment_and_errors():
    assert A.parse_augment("default") == A.AugmentConfig()
    cfg = A.parse_augment("rotation=15,shift=0.05,flip=0,brightness=0.2", seed=3)
    assert (cfg.rotation, cfg.shift, cfg.flip, cfg.brightness, cfg.seed, cfg.zoom) == (15, 0.05, False, 0.2, 3, 0.1)
    assert cfg.key() != A.AugmentConfig().key() and cfg.key() == A.parse_augment(
        "rotation=15,shift=0.05,flip=0,brightness=0.2", seed=3).key()
    for bad in ("spin=3", "rotation=abc", "rotation=-1", "zoom=1.5"):
        with pytest.raises(A.AugmentError):
            A.parse_augment(bad)


def test_random_transform_is_deterministic_and_identity_at_zero():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    cfg = A.AugmentConfig(rotation=20, shift=0.1, zoom=0.1, shear=5, stretch=0.1, brightness=0.2)
    a = A.random_transform(img, A.copy_rng(cfg, 4, 1), cfg)
    b = A.random_transform(img, A.copy_rng(cfg, 4, 1), cfg)
    c = A.random_transform(img, A.copy_rng(cfg, 4, 2), cfg)
    assert a.shape == img.shape and a.dtype == np.uint8
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    still = A.AugmentConfig(rotation=0, shift=0, zoom=0, flip=False)
    assert np.array_equal(A.random_transform(img, np.random.default_rng(1), still), img)
    flipped = A.random_transform(img, np.random.default_rng(1),
                                 A.AugmentConfig(rotation=0, shift=0, zoom=0, flip=True))
    assert np.array_equal(flipped, img) or np.array_equal(flipped, img[:, ::-1])
    faint = A.AugmentConfig(rotation=0, shift=0, zoom=0, flip=False, brightness=1e-6)  # gains 1 -+ 1e-6
    for seed in range(4):  # rounded: a gain a hair under 1 does not darken every pixel by one level
        assert np.array_equal(A.random_transform(img, np.random.default_rng(seed), faint), img)


def test_fold_plan_copies_and_balance():
    y = np.array([0] * 10 + [1] * 4 + [2] * 1)
    train = np.arange(15)
    assert set(A.fold_plan(train, y, copies=2).values()) == {2}
    plan = A.fold_plan(train, y, balance=8)
    grown = {c: sum(1 + plan[i] for i in train if y[i] == c) for c in range(3)}
    assert grown == {0: 10, 1: 8, 2: 8}  # the larger class is kept whole, never cut
    plan = A.fold_plan(train, y, copies=1, balance="max")
    assert {c: sum(1 + plan[i] for i in train if y[i] == c) for c in range(3)} == {0: 20, 1: 20, 2: 20}
    sub = np.array([0, 1, 10, 11])  # only the training part counts
    assert set(A.fold_plan(sub, y, balance="max")) == {0, 1, 10, 11}


@pytest.fixture(scope="module")
def jaffe_hog(tmp_path_factory):
    """Real JAFFE through the real extraction path, with the fast classical HOG descriptor at 48 px."""
    from fer_features.features.extract import extract_dataset

    d = tmp_path_factory.mktemp("aug")
    return load_cache(extract_dataset(shared("jaffe"), cache_dir=d, backbone="hog", image_size=48, progress=False))


def test_no_augmented_copy_of_a_test_image_is_in_its_training_fold(jaffe_hog):
    """Content-level proof on real data: regenerate every copy of each fold's test images with the real
    pipeline, and check that none of those feature rows is among the fold's training rows, although the
    copies exist in the augmentation cache (other folds train on them)."""
    from fer_features.features.extractor import FeatureExtractor
    from fer_features.features.spec import cache_options
    from fer_features.data.formats import load_dataset

    cache = jaffe_hog
    cfg = A.AugmentConfig(seed=5)
    splits, _ = ev.make_splits("loso", cache.labels, cache.subjects)
    d = A.augment_splits(cache, splits, cfg, copies=2, progress=False)
    n = len(cache)
    assert len(d.X) == n + 2 * n  # every image is a training image of 9 folds: two copies each, stored once
    ds = load_dataset(cache.dataset_root, "jaffe")
    by_path = {p: k for k, p in enumerate(ds.rel_paths())}
    ext = FeatureExtractor(**cache_options(cache)).fit()
    train_rows_seen = 0
    for (tr, te), (tr0, _) in zip(d.splits, splits):
        assert set(d.source[tr]) == set(tr0)  # copies come from the fold's own training images
        assert not set(d.source[tr]) & set(d.source[te])
        test_copies = []
        for i in te:
            base = ext.prepare([ds.load_image(by_path[str(cache.paths[i])])])[0][0]
            test_copies += [A.random_transform(base, A.copy_rng(cfg, i, j), cfg) for j in range(2)]
        feats = ext.embed(np.stack(test_copies))
        train_set = {r.tobytes() for r in d.X[tr]}
        all_set = {r.tobytes() for r in d.X}
        assert all(f.tobytes() in all_set for f in feats)  # the copies exist (made for the other folds) ...
        assert not any(f.tobytes() in train_set for f in feats)  # ... but never train this fold
        assert not any(r.tobytes() in train_set for r in cache.features[te])
        train_rows_seen += len(tr)
    assert train_rows_seen == sum(3 * len(tr0) for tr0, _ in splits)


def test_augmented_features_are_cached_and_leaky_protocol_is_labelled(jaffe_hog):
    cache = jaffe_hog
    cfg = A.AugmentConfig(seed=1)
    splits, info = ev.make_splits("group-kfold", cache.labels, cache.subjects, folds=5)
    first = A.augment_splits(cache, splits, cfg, balance="max", progress=False)
    again = A.augment_splits(cache, splits, cfg, balance="max", progress=False)
    assert first.info["augment_extracted"] > 0 and again.info["augment_extracted"] == 0  # no re-extraction
    np.testing.assert_array_equal(first.X, again.X)
    for tr, _ in first.splits:
        assert len(set(np.bincount(first.y[tr]))) == 1  # every class grown to the largest

    results, notes = ev.run(cache, ["linear_svm"], "augment-then-split", copies=3, progress=False)
    r = results[0]
    assert r["leaky"] and r["protocol"] == "augment-then-split"
    assert r["augmentation"]["test_rows_with_source_in_train"] > 0.9  # almost every test row has kin in training
    assert any("LEAKY" in n for n in notes)
    from fer_features.reporting.tables import protocol_header

    assert "LEAKY" in protocol_header(results) and "augmentation:" in protocol_header(results)
    honest, _ = ev.run(cache, ["linear_svm"], "loso", copies=1, progress=False)
    assert not honest[0]["leaky"] and honest[0]["augmentation"]["leak_free"]
    assert honest[0]["n_test"] == len(cache)  # test parts are originals only
    with pytest.raises(ev.ProtocolError):
        ev.run(cache, ["linear_svm"], "augment-then-split", progress=False)


def test_cli_augmentation_options(jaffe_hog, tmp_path):
    p = run_cli("classify", "--cache", jaffe_hog.path, "--clf", "lda", "--protocol", "group-kfold", "--folds", "3",
                "--balance", "40", "--augment", "rotation=5,flip=0", "--json")
    assert p.returncode == 0, p.stderr[-2000:]
    r = json.loads(p.stdout.strip().splitlines()[-1])
    assert r["augmentation"]["augmentation"]["rotation"] == 5 and not r["augmentation"]["augmentation"]["flip"]
    assert "augmentation:" in p.stdout
    p = run_cli("classify", "--cache", jaffe_hog.path, "--clf", "lda", "--augment", "spin=3", "--copies", "1")
    assert p.returncode == 2 and "unknown augmentation 'spin'" in p.stderr
    p = run_cli("classify", "--cache", jaffe_hog.path, "--clf", "lda", "--protocol", "augment-then-split")
    assert p.returncode == 2 and "needs augmentation" in p.stderr
