"""Uncertainty and significance: bootstrap intervals of accuracy, paired tests between two results.

Intervals resample subjects (cluster bootstrap: a resampled subject brings all its test images; accuracy =
pooled correct / total over the resampled images) where the test images have subject ids, images otherwise;
percentile intervals, seeded. Two results on the same test images are compared paired: exact McNemar for one
split without subjects, a paired bootstrap of the accuracy difference otherwise (over subjects where known).
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
from scipy.stats import binomtest

from fer_features.errors import MismatchError

N_RESAMPLES = 2000
LEVEL = 0.95
SEED = 0
ALPHA = 0.05  # rows with p >= ALPHA against the best are marked "~" (not distinguishable)
MIN_CLUSTERS = 5  # an interval resampling fewer subjects (or images) than this carries a warning (ci_note)
_CHUNK = 2_000_000  # resampled indices held at once (rows x clusters)


def _clusters(n: int, clusters: Sequence | None, unit: str = "subjects") -> tuple[np.ndarray, int, str]:
    """(cluster code per item, number of clusters, 'N subjects' / 'N images')."""
    if clusters is None or len(clusters) == 0 or any(str(c) == "" for c in clusters):
        return np.arange(n), n, f"{n} images"
    _, codes = np.unique(np.asarray(clusters).astype(str), return_inverse=True)
    k = int(codes.max()) + 1
    return codes, k, f"{k} {unit}"


def _resampled_sums(values: np.ndarray, codes: np.ndarray, k: int, n_resamples: int, seed: int) -> np.ndarray:
    """Per resample (rows) the sums of each column of ``values`` over ``k`` clusters drawn with replacement."""
    per = np.stack([np.bincount(codes, weights=v, minlength=k) for v in values.T], 1)
    rng = np.random.default_rng(seed)
    out = np.empty((n_resamples, values.shape[1]))
    step = max(1, _CHUNK // max(k, 1))
    for s in range(0, n_resamples, step):
        m = min(step, n_resamples - s)
        idx = rng.integers(0, k, size=(m, k), dtype=np.int32)
        for j in range(values.shape[1]):  # one contiguous gather per column: ~0.1 s for 2000 x 3589
            out[s:s + m, j] = np.take(per[:, j], idx).sum(axis=1)
    return out


def _kind(what: str) -> str:
    return "bootstrap over " + what if what.endswith(" images") else "cluster bootstrap over " + what


def accuracy_ci(correct: Sequence[bool], clusters: Sequence | None = None, *, n_resamples: int = N_RESAMPLES,
                level: float = LEVEL, seed: int = SEED, unit: str = "subjects") -> tuple[float, float, str]:
    """Percentile bootstrap interval of the pooled accuracy: (lo, hi, method in words).

    ``clusters``: the subject of each test image (resampled whole); None or any empty id: images. ``unit``
    names the clusters ("images" for image ids: an image tested in several folds is resampled whole).
    """
    correct = np.asarray(correct, dtype=float)
    codes, k, what = _clusters(len(correct), clusters, unit)
    sums = _resampled_sums(np.stack([correct, np.ones_like(correct)], 1), codes, k, n_resamples, seed)
    acc = sums[:, 0] / np.maximum(sums[:, 1], 1)
    tail = 100 * (1 - level) / 2
    lo, hi = np.percentile(acc, [tail, 100 - tail])
    return (float(lo), float(hi),
            f"{_kind(what)}, {n_resamples} resamples, percentile {100 * level:g} %")


def ci_note(n: int, clusters: Sequence | None = None, unit: str = "subjects", level: float = LEVEL) -> str | None:
    """The warning an interval of ``accuracy_ci(correct of length n, clusters, unit=unit)`` carries when it
    resamples fewer than ``MIN_CLUSTERS`` subjects (or images): so few draws make its bounds unreliable
    (4 subjects can give [19.7, 100.0]). None when there are enough."""
    _, k, what = _clusters(n, clusters, unit)
    if k >= MIN_CLUSTERS:
        return None
    return (f"warning: the {100 * level:g} % interval of the accuracy resamples only {what} (fewer than "
            f"{MIN_CLUSTERS}): too few for its bounds to mean much; test on more subjects for a usable interval")


def mcnemar_exact(a_correct: Sequence[bool], b_correct: Sequence[bool]) -> float:
    """Two-sided exact McNemar p: a binomial test (p = 0.5) on the images exactly one of the two got right."""
    a, b = np.asarray(a_correct, bool), np.asarray(b_correct, bool)
    n01, n10 = int(np.sum(a & ~b)), int(np.sum(~a & b))
    if n01 + n10 == 0:
        return 1.0
    return float(binomtest(min(n01, n10), n01 + n10, 0.5).pvalue)


def paired_bootstrap(a_correct: Sequence[bool], b_correct: Sequence[bool], clusters: Sequence | None = None, *,
                     n_resamples: int = N_RESAMPLES, level: float = LEVEL, seed: int = SEED,
                     unit: str = "subjects") -> dict[str, Any]:
    """Accuracy difference a - b on the same images, its percentile interval and a two-sided bootstrap p.

    Both results are resampled with the same subjects (or images); p = 2 x the smaller share of resampled
    differences on either side of 0 (+1 smoothing, at most 1).
    """
    a, b = np.asarray(a_correct, float), np.asarray(b_correct, float)
    codes, k, what = _clusters(len(a), clusters, unit)
    sums = _resampled_sums(np.stack([a - b, np.ones_like(a)], 1), codes, k, n_resamples, seed)
    d = sums[:, 0] / np.maximum(sums[:, 1], 1)
    tail = 100 * (1 - level) / 2
    lo, hi = np.percentile(d, [tail, 100 - tail])
    if not np.any(a != b):
        p = 1.0
    else:
        side = min(np.sum(d <= 0), np.sum(d >= 0))
        p = min(1.0, 2 * (side + 1) / (n_resamples + 1))
    return {"diff": float(np.mean(a) - np.mean(b)), "lo": float(lo), "hi": float(hi), "p": float(p),
            "p_min": 2 / (n_resamples + 1),  # the smallest p these resamples resolve (none crossed 0)
            "test": f"paired {_kind(what)} of the accuracy difference, {n_resamples} resamples, two-sided"}


# -- the predictions of a result ------------------------------------------------------------------------------
KEY_FIELDS = ("fold", "cache row", "path", "label")


def predictions_key(r: dict, by_content: bool = False) -> list[tuple] | None:
    """(fold, cache row, relative path, true label) per test image, in the result's order; with ``by_content``
    (fold, image content id, true label): the same images described otherwise (renamed, moved, a manifest)
    pair by what they are. None without predictions."""
    p = r.get("predictions")
    if not p:
        return None
    labels = r.get("labels") or []
    names = [labels[t] if 0 <= t < len(labels) else t for t in p["true"]]
    if by_content:
        return list(zip(p["fold"], p["content"], names))
    return list(zip(p["fold"], p["row"], p["path"], names))


def _first_difference(ka: list[tuple], kb: list[tuple], fields: Sequence[str]) -> str:
    for i, (x, y) in enumerate(zip(ka, kb)):
        if x != y:
            what = [f"{f} {u!r} vs {v!r}" for f, u, v in zip(fields, x, y) if u != v]
            return f"; the first at test row {i}: {', '.join(what)}"
    return ""


def _correct(r: dict) -> np.ndarray:
    p = r["predictions"]
    return np.asarray(p["true"]) == np.asarray(p["pred"])


def _units(r: dict) -> tuple[list, str]:
    """The clusters of a result's test images: its subjects where known, else its cache rows (images)."""
    p = r["predictions"]
    s = p.get("subject") or []
    return (list(s), "subjects") if s and all(x != "" for x in s) else (list(p["row"]), "images")


def paired_test(a: dict, b: dict, *, n_resamples: int = N_RESAMPLES, seed: int = SEED) -> dict[str, Any]:
    """The paired test of two results on the same test images (``MismatchError`` otherwise).

    Subject ids: paired cluster bootstrap over subjects; no subjects and one split: exact McNemar; no subjects
    and several folds: paired bootstrap over images. The difference's interval is a paired bootstrap in all cases.
    """
    ka, kb = predictions_key(a), predictions_key(b)
    if ka is None or kb is None:
        raise MismatchError(f"{(a if ka is None else b).get('classifier')}: the result holds no per-image "
                            "predictions (made before they were stored)")
    fields, order = KEY_FIELDS, None
    if ka != kb and all((r.get("predictions") or {}).get("content") for r in (a, b)):
        ka, kb, fields = predictions_key(a, True), predictions_key(b, True), ("fold", "image content", "label")
        at = {k: i for i, k in enumerate(kb)}
        if len(at) == len(kb) == len(ka) and set(ka) == set(at):  # the same images, listed in another order
            order = np.array([at[k] for k in ka])
            kb = ka
    if ka != kb:
        n_diff = sum(x != y for x, y in zip(ka, kb)) + abs(len(ka) - len(kb))
        raise MismatchError(f"not made on the same test images and folds ({len(ka)} vs {len(kb)} test rows, "
                            f"{n_diff} differ in {', '.join(fields[:-1])} or {fields[-1]}"
                            f"{_first_difference(ka, kb, fields)}): a paired test needs the same images, protocol, "
                            "folds and seed")
    ca, cb = _correct(a), _correct(b)
    if order is not None:
        cb = cb[order]
    units, unit = _units(a)
    out = paired_bootstrap(ca, cb, units, n_resamples=n_resamples, seed=seed, unit=unit)
    if unit == "images" and len(set(a["predictions"]["fold"])) == 1:
        out["p"] = mcnemar_exact(ca, cb)
        n01, n10 = int(np.sum(ca & ~cb)), int(np.sum(~ca & cb))
        out["test"] = f"exact McNemar (binomial test on the discordant images); interval: {out['test']}"
        out["discordant"] = [n01, n10]  # right by a only, by b only
    pb = np.asarray(b["predictions"]["pred"])
    out["identical"] = bool(np.all(np.asarray(a["predictions"]["pred"]) == (pb if order is None else pb[order])))
    return out


def result_ci(r: dict) -> tuple[float, float, str]:
    """A result's stored interval, else one computed from its predictions."""
    if r.get("accuracy_ci"):
        return r["accuracy_ci"][0], r["accuracy_ci"][1], r.get("accuracy_ci_method", "")
    units, unit = _units(r)
    return accuracy_ci(_correct(r), units, unit=unit)


def mark_vs_best(results: Sequence[dict], alpha: float = ALPHA) -> None:
    """Set ``vs_best`` on every result: the best (highest pooled accuracy) of the rows made on the same test
    images is marked "best"; each other row gets the paired test's p and mark "~" (p >= alpha: not
    distinguishable), "=" (the same predictions) or "" (worse at p < alpha). Rows without predictions: None.
    """
    groups: dict[str, list[dict]] = {}
    for r in results:  # the same test images: by content id where the results have it (renames pair), else by path
        key = predictions_key(r, bool((r.get("predictions") or {}).get("content")))
        r["vs_best"] = None
        if key is not None:
            groups.setdefault(repr(key), []).append(r)
    for rows in groups.values():
        best = max(rows, key=lambda r: r["accuracy"])
        best["vs_best"] = {"mark": "best", "p": None, "best": best["classifier"], "test": None}
        for r in rows:
            if r is best:
                continue
            t = paired_test(r, best)
            mark = "=" if t["identical"] else ("~" if t["p"] >= alpha else "")
            r["vs_best"] = {"mark": mark, "p": t["p"], "best": best["classifier"], "test": t["test"],
                            "diff": t["diff"], "diff_ci": [t["lo"], t["hi"]]}


def vs_best_note(results: Sequence[dict], alpha: float = ALPHA) -> str:
    """The line under a table with a ``vs best`` column: which test, what the marks mean."""
    tests = sorted({r["vs_best"]["test"] for r in results if r.get("vs_best") and r["vs_best"].get("test")})
    if not any(r.get("vs_best") for r in results):
        return ""
    how = "; ".join(tests) if tests else "no other row on the same test images"
    return (f"vs best: p of a paired test against the best row on the same test images ({how}); "
            f"'~': not distinguishable from the best (p >= {alpha:g}); '=': the same predictions as the best")
