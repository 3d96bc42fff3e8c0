"""Leak-free augmentation: random geometric/photometric copies of TRAINING images, embedded once and cached.

Copy ``j`` of cache row ``i`` is a deterministic function of (augmentation settings, seed, i, j), so its
features can be cached once and reused by every fold that trains on image ``i``. ``fold_plan`` decides how
many copies each training image of a fold gets (``copies`` per image and/or ``balance``: grow every class to
N images); ``augment_splits`` turns a protocol's splits into splits over originals + copies, copies only from
each fold's training part. ``augment_then_split`` reproduces the seed papers' leaky protocol on purpose.
"""
from __future__ import annotations

import hashlib
import json
import sys
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import cv2
import h5py
import numpy as np
from sklearn.model_selection import StratifiedKFold, train_test_split

from fer_features.data.formats import load_dataset
from fer_features.errors import AugmentError, DatasetError
from fer_features.features.cache import cache_lock
from fer_features.features.extractor import FeatureExtractor
from fer_features.features.spec import ExtractionSpec

AUGMENT_HELP = ("augmentation ranges as NAME=VALUE,... (rotation degrees, shift and zoom as fractions, shear "
                "degrees, stretch fraction, brightness fraction, flip 0/1), or 'default' (the seed papers': "
                "rotation=10,shift=0.1,zoom=0.1,flip=1)")


@dataclass(frozen=True)
class AugmentConfig:
    """Ranges of the random transforms; every draw is uniform in [-r, r] (zoom/stretch/brightness: 1 +/- r)."""

    rotation: float = 10.0  # degrees
    shift: float = 0.1  # fraction of the image side, x and y
    zoom: float = 0.1  # scale 1 +/- zoom
    shear: float = 0.0  # degrees
    stretch: float = 0.0  # x/y aspect 1 +/- stretch
    brightness: float = 0.0  # intensity x (1 +/- brightness)
    flip: bool = True  # horizontal mirror with probability 1/2
    seed: int = 0

    def __post_init__(self):
        for f in fields(self):
            v = getattr(self, f.name)
            if f.name not in ("flip", "seed") and (not np.isfinite(v) or v < 0):
                raise AugmentError(f"augmentation {f.name} must be a range >= 0, got {v}")
        if self.zoom >= 1 or self.stretch >= 1 or self.brightness >= 1 or self.shift >= 0.5:
            raise AugmentError("augmentation zoom, stretch and brightness must be < 1, shift < 0.5")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def key(self) -> str:
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()[:12]


def parse_augment(spec: str | None, seed: int = 0) -> AugmentConfig:
    """``'default'`` or ``'rotation=15,shift=0.1,flip=0,brightness=0.2'`` -> AugmentConfig (unnamed: defaults)."""
    if spec is None or spec.strip() in ("", "default"):
        return AugmentConfig(seed=seed)
    known = {f.name for f in fields(AugmentConfig)} - {"seed"}
    kw: dict[str, Any] = {}
    for item in spec.split(","):
        name, _, value = item.partition("=")
        name = name.strip()
        if name not in known:
            raise AugmentError(f"unknown augmentation {name!r}; known: {', '.join(sorted(known))}")
        if name == "flip":
            kw[name] = value.strip().lower() in ("", "1", "true", "yes", "on")
            continue
        try:
            kw[name] = float(value)
        except ValueError:
            raise AugmentError(f"augmentation {name} needs a number, got {value!r}") from None
    return AugmentConfig(seed=seed, **kw)


def random_transform(img: np.ndarray, rng: np.random.Generator, cfg: AugmentConfig) -> np.ndarray:
    """One random copy of an ``(H, W, C)`` uint8 image (OpenCV affine warp, edges replicated)."""
    h, w = img.shape[:2]
    u = lambda r: rng.uniform(-r, r) if r else 0.0  # noqa: E731 - draws happen in a fixed order
    angle, zoom, shear, stretch = u(cfg.rotation), 1 + u(cfg.zoom), u(cfg.shear), 1 + u(cfg.stretch)
    tx, ty = u(cfg.shift) * w, u(cfg.shift) * h
    gain = 1 + u(cfg.brightness)
    flip = bool(cfg.flip and rng.random() < 0.5)
    c, s = np.cos(np.deg2rad(angle)), np.sin(np.deg2rad(angle))
    a = np.array([[c, -s], [s, c]]) @ np.array([[1, np.tan(np.deg2rad(shear))], [0, 1]]) \
        @ np.diag([zoom * stretch, zoom / stretch])
    centre = np.array([w / 2, h / 2])
    m = np.hstack([a, (centre - a @ centre + [tx, ty])[:, None]])
    out = cv2.warpAffine(img, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    if out.ndim == 2:
        out = out[:, :, None]
    if flip:
        out = out[:, ::-1]
    if gain != 1:
        out = np.clip(np.rint(out.astype(np.float32) * gain), 0, 255).astype(np.uint8)  # rounded, not floored
    return np.ascontiguousarray(out)


def copy_rng(cfg: AugmentConfig, row: int, copy: int) -> np.random.Generator:
    return np.random.default_rng([int(cfg.seed), int(row), int(copy)])


# -- how many copies --------------------------------------------------------------------------------
def balances(balance: int | str | None) -> bool:
    """Whether ``balance`` asks for class balancing (None, 0, '' and 'none' do not)."""
    return balance not in (None, 0, "", "none")


def augments(copies: int, balance: int | str | None) -> bool:
    """Whether ``copies``/``balance`` ask for any augmented copy at all."""
    return bool(copies) or balances(balance)


def fold_plan(train_idx: np.ndarray, y: np.ndarray, *, copies: int = 0, balance: int | str | None = None,
              seed: int = 0) -> dict[int, int]:
    """Copies per training row: ``copies`` each, then ``balance`` tops every class up to N images.

    ``balance``: an int N, or 'max' (the largest class of this training part). Classes already at or above N
    are left as they are (never cut). Extra copies go round-robin over the class's images in a seeded order.
    """
    train_idx = np.asarray(train_idx)
    plan = {int(i): int(copies) for i in train_idx}
    if not balances(balance):
        return plan
    classes, counts = np.unique(y[train_idx], return_counts=True)
    target = int(counts.max() * (1 + copies)) if balance == "max" else int(balance)
    rng = np.random.default_rng([int(seed), 7919])
    for c in classes:
        rows = train_idx[y[train_idx] == c]
        have = len(rows) * (1 + copies)
        need = target - have
        if need <= 0:
            continue
        order = rng.permutation(rows)
        per, extra = divmod(need, len(rows))
        for k, i in enumerate(order):
            plan[int(i)] += per + (1 if k < extra else 0)
    return plan


# -- the cache of augmented features -------------------------------------------------------------------
class AugmentStore:
    """Features of augmented copies of one feature cache's images, one HDF5 file per augmentation setting.

    ``features(pairs)`` returns the rows for ``(source_row, copy)`` pairs, embedding the missing ones first
    (re-reading the images from the dataset the cache was made from, with the same extraction settings).
    """

    def __init__(self, cache, cfg: AugmentConfig, *, progress: bool = True, batch_size: int = 32):
        self.cache, self.cfg, self.progress, self.batch_size = cache, cfg, progress, batch_size
        base = Path(cache.path)
        self.path = base.with_name(f"{base.stem}__aug-{cfg.key()}.h5")
        self.extracted = 0  # copies embedded by this object (0 on a fully cached re-run)

    def _index(self) -> dict[tuple[int, int], int]:
        if not self.path.exists():
            return {}
        try:
            f = h5py.File(self.path, "r")
        except OSError as exc:  # killed in the middle of a metadata write: copies are redone, not lost work
            print(f"{self.path}: unreadable ({exc}); its copies will be embedded again", file=sys.stderr)
            self.path.unlink()
            return {}
        with f:
            if f.attrs.get("base_key") != self.cache.attrs.get("key"):
                raise AugmentError(f"{self.path}: made from another feature cache; delete it")
            n = int(f.attrs.get("n_rows", 0))
            if n == 0:
                return {}
            src, cp = f["source"][:n], f["copy"][:n]
        return {(int(s), int(c)): r for r, (s, c) in enumerate(zip(src, cp))}

    def features(self, pairs: list[tuple[int, int]]) -> np.ndarray:
        index = self._index()
        missing = sorted({p for p in pairs if p not in index})
        if missing:
            self._extract(missing)
            index = self._index()
        if not pairs:
            return np.zeros((0, self.cache.features.shape[1]), np.float32)
        rows = np.array([index[p] for p in pairs])
        order = np.argsort(rows)
        out = np.empty((len(rows), self.cache.features.shape[1]), np.float32)
        with h5py.File(self.path, "r") as f:
            out[order] = f["features"][rows[order]]  # h5py wants increasing indices
        return out

    def _extractor_and_dataset(self, missing: list[tuple[int, int]]):
        """The extractor of the cache's settings, its dataset, and the dataset index of every needed row;
        all checked before anything is written."""
        root, fmt = self.cache.dataset_root, self.cache.settings.get("dataset_format", "auto")
        if not root:
            raise AugmentError(f"{self.cache.path}: the cache does not record its dataset; cannot augment")
        try:
            opts = self.cache.settings.get("dataset_options") or {}
            ds = load_dataset(root, fmt, frontal_only=bool(opts.get("frontal_only")),
                              subject_pattern=opts.get("subject_pattern"), label_map=opts.get("label_map"),
                              allow_new_labels=True)  # its labels were checked when the cache was made
        except DatasetError as exc:
            raise AugmentError(f"{exc} (the dataset of {Path(self.cache.path).name}; if it moved, run extract "
                               "--data <its new place> with the same settings: a cache hit records the new "
                               "place)") from None
        by_path = {p: k for k, p in enumerate(ds.rel_paths())}
        fp = self.cache.attrs.get("dataset_fingerprint")
        rows = [by_path.get(str(p)) for p in self.cache.paths]
        gone = [str(self.cache.paths[r]) for r, _ in missing if rows[r] is None]
        if gone:
            raise AugmentError(f"{root}/{gone[0]}: in the cache but not in the dataset any more "
                               f"({len(set(gone))} image(s)); re-run extract")
        if ds.fingerprint() != fp and (None in rows or ds.subset(rows).fingerprint() != fp):  # or a subset
            raise AugmentError(f"{root}: the dataset changed since {Path(self.cache.path).name} was made; "
                               "re-run extract")
        ext = FeatureExtractor.from_spec(ExtractionSpec.from_cache(self.cache), batch_size=self.batch_size).fit()
        return ext, ds, rows

    def _extract(self, missing: list[tuple[int, int]]) -> None:
        with cache_lock(self.path, what="augmentation"):
            index = self._index()  # another process may have embedded some while we waited
            missing = [p for p in missing if p not in index]
            if missing:
                self._extract_locked(missing)

    def _extract_locked(self, missing: list[tuple[int, int]]) -> None:
        ext, ds, rows = self._extractor_and_dataset(missing)
        dim = self.cache.features.shape[1]
        f = h5py.File(self.path, "a")
        try:
            if "features" not in f:
                f.create_dataset("features", (0, dim), np.float32, maxshape=(None, dim), chunks=(256, dim))
                f.create_dataset("source", (0,), np.int64, maxshape=(None,), chunks=(4096,))
                f.create_dataset("copy", (0,), np.int64, maxshape=(None,), chunks=(4096,))
                f.attrs.update(base_key=self.cache.attrs.get("key"), n_rows=0,
                               augment_json=json.dumps(self.cfg.to_dict(), sort_keys=True))
            bar = None
            if self.progress:
                from tqdm import tqdm  # only where a progress bar is shown

                bar = tqdm(total=len(missing), unit="img", desc="augment", file=sys.stderr, dynamic_ncols=True,
                           mininterval=0.5)
            last_row, base = -1, None  # ``missing`` is sorted: each source image is read and prepared once
            bs = max(self.batch_size, 64)
            for start in range(0, len(missing), bs):
                chunk = missing[start:start + bs]
                imgs = []
                for row, copy in chunk:
                    if row != last_row:
                        last_row, base = row, ext.prepare([ds.load_image(rows[row])])[0][0]
                    imgs.append(random_transform(base, copy_rng(self.cfg, row, copy), self.cfg))
                feats = ext.embed(np.stack(imgs))
                n = int(f.attrs["n_rows"])
                for name, data in (("features", feats), ("source", [r for r, _ in chunk]),
                                   ("copy", [c for _, c in chunk])):
                    f[name].resize(n + len(chunk), axis=0)
                    f[name][n:] = data
                f.attrs["n_rows"] = n + len(chunk)  # written last: a crash leaves a readable prefix
                f.flush()
                self.extracted += len(chunk)
                if bar is not None:
                    bar.update(len(chunk))
            if bar is not None:
                bar.close()
        finally:
            f.close()


# -- splits over originals + copies -------------------------------------------------------------------
@dataclass
class AugmentedData:
    """Original rows ``0..n-1`` followed by augmented copies; ``source[k]`` is the original row of row k."""

    X: np.ndarray
    y: np.ndarray
    groups: np.ndarray | None
    source: np.ndarray
    splits: list[tuple[np.ndarray, np.ndarray]]
    info: dict[str, Any]


def _pairs(plan: dict[int, int]) -> list[tuple[int, int]]:
    return [(i, j) for i, k in sorted(plan.items()) for j in range(k)]


def _stack(cache, store: AugmentStore, pairs: list[tuple[int, int]]):
    X0 = np.asarray(cache.features, dtype=np.float32)
    n = len(X0)
    uniq = sorted(set(pairs))
    row_of = {p: n + k for k, p in enumerate(uniq)}
    X = np.concatenate([X0, store.features(uniq)]) if uniq else X0
    source = np.concatenate([np.arange(n), np.array([i for i, _ in uniq], dtype=np.int64)])
    y = cache.labels[source]
    groups = cache.subjects[source] if cache.has_subjects else None
    return X, y, groups, source, row_of


def check_no_leak(source: np.ndarray, splits) -> None:
    """Raise if any training row of a fold is a test image of that fold or a copy of one."""
    for k, (tr, te) in enumerate(splits):
        shared = np.intersect1d(source[tr], source[te])
        if len(shared):
            raise AssertionError(f"fold {k}: {len(shared)} test image(s) or copies of them are in training")


def augment_splits(cache, splits, cfg: AugmentConfig, *, copies: int = 0, balance: int | str | None = None,
                   progress: bool = True) -> AugmentedData:
    """Leak-free: each fold's training part gains copies of ITS training images; test parts stay originals."""
    if copies < 0:
        raise AugmentError("--copies must be >= 0")
    plans = [fold_plan(tr, cache.labels, copies=copies, balance=balance, seed=cfg.seed) for tr, _ in splits]
    store = AugmentStore(cache, cfg, progress=progress)
    X, y, groups, source, row_of = _stack(cache, store, [p for plan in plans for p in _pairs(plan)])
    new = []
    for (tr, te), plan in zip(splits, plans):
        extra = np.array([row_of[p] for p in _pairs(plan)], dtype=np.int64)
        new.append((np.concatenate([np.asarray(tr), extra]), np.asarray(te)))
    check_no_leak(source, new)
    n_aug = [len(tr) - len(o) for (tr, _), (o, _) in zip(new, splits)]
    info = {"augmentation": cfg.to_dict(), "copies": copies, "balance": balance, "leak_free": True,
            "applied_to": "the training part of each fold only (test images and their copies never train)",
            "augmented_train_rows": int(round(np.mean(n_aug))) if n_aug else 0,
            "augment_cache": store.path.name, "augment_extracted": store.extracted}
    return AugmentedData(X, y, groups, source, new, info)


def augment_then_split(cache, cfg: AugmentConfig, *, copies: int = 0, balance: int | str | None = None,
                       folds: int = 1, test_size: float = 0.1, seed: int = 0,
                       progress: bool = True) -> AugmentedData:
    """The seed papers' LEAKY protocol: augment every image first, then split the pooled set at random."""
    n = len(cache.labels)
    plan = fold_plan(np.arange(n), cache.labels, copies=copies, balance=balance, seed=cfg.seed)
    store = AugmentStore(cache, cfg, progress=progress)
    X, y, groups, source, _ = _stack(cache, store, _pairs(plan))
    idx = np.arange(len(y))
    if folds <= 1:
        tr, te = train_test_split(idx, test_size=test_size, stratify=y, random_state=seed)
        splits = [(np.sort(tr), np.sort(te))]
    else:
        splits = list(StratifiedKFold(folds, shuffle=True, random_state=seed).split(idx, y))
    leaked = [float(np.isin(source[te], source[tr]).mean()) for tr, te in splits]
    info = {"augmentation": cfg.to_dict(), "copies": copies, "balance": balance, "leak_free": False,
            "applied_to": "the whole dataset BEFORE splitting (leaky: copies of test images are in training)",
            "test_rows_with_source_in_train": float(np.mean(leaked)),
            "augment_cache": store.path.name, "augment_extracted": store.extracted}
    return AugmentedData(X, y, groups, source, splits, info)
