"""A 2-D map of a cache's features, coloured by expression and, beside it, by subject.

Does the feature space group people or expressions?  The picture answers at a glance and two numbers
answer it in the title: the *5-nearest-neighbour agreement* in the standardised feature space (not in the
2-D map) for the expression label and for the subject id, i.e. the mean fraction of each image's 5 nearest
neighbours that show the same expression / the same person, next to its chance level (the probability that
a random other image shares the label, sum of squared proportions).  A third number counts, for expression,
only neighbours from other people: high within-person agreement can come from a person's repeated photos.

The map is scikit-learn's t-SNE (standardise, PCA to 50 dimensions, t-SNE with a fixed seed): no new
dependency.  UMAP would need ``umap-learn`` (numba-compiled code and a download) for a similar picture.
Large caches (FER2013) are first cut to ``max_points`` rows by a seeded, class-stratified sample; the title
says so, and the numbers are computed on the same sample.

A cross-dataset map (``compare --test-cache B``: ``test_cache=``) holds both sets, classes matched by name: the
left panel by expression (a marker per set), the right one by set, with the sets' agreement (how far they
separate) and the expression agreement with neighbours from the other set only (does an expression find the
same expression in the other dataset?). The sample is stratified by set and class.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from sklearn.decomposition import PCA
from sklearn.manifold import TSNE
from sklearn.neighbors import NearestNeighbors

from fer_features.evaluation.cross_dataset import dataset_name
from fer_features.features.cache import FeatureCache
from fer_features.reporting.tables import _pyplot

DEFAULT_MAX_POINTS = 3000
PCA_DIMS = 50
NEIGHBOURS = 5
SUBJECT_LEGEND_MAX = 20


def stratified_sample(labels: np.ndarray, max_points: int, seed: int = 0) -> np.ndarray:
    """Sorted row indices: all rows if there are at most ``max_points``, else a seeded sample with each
    class in proportion (largest remainders; every class keeps at least one row)."""
    labels = np.asarray(labels)
    n = len(labels)
    if n <= max_points:
        return np.arange(n)
    classes, counts = np.unique(labels, return_counts=True)
    quota = counts * max_points / n
    take = np.maximum(np.floor(quota).astype(int), 1)
    for i in np.argsort(-(quota - np.floor(quota)), kind="stable"):
        if take.sum() >= max_points:
            break
        if take[i] < counts[i]:
            take[i] += 1
    while take.sum() > max_points:  # the at-least-one rule overshot: trim the largest class
        take[np.argmax(take)] -= 1
    rng = np.random.default_rng(seed)
    idx = [rng.choice(np.flatnonzero(labels == c), size=t, replace=False) for c, t in zip(classes, take)]
    return np.sort(np.concatenate(idx))


def neighbour_agreement(X: np.ndarray, labels: np.ndarray, k: int = NEIGHBOURS,
                        groups: np.ndarray | None = None) -> float:
    """Mean fraction of each point's ``k`` nearest neighbours (Euclidean, itself excluded) sharing its label.

    With ``groups`` (subject ids) only neighbours from *other* groups count: whether an expression finds the
    same expression on other people's faces, not on the same person's other photos."""
    labels = np.asarray(labels)
    n = len(labels)
    if groups is not None:
        return _cross_group_agreement(np.asarray(X, np.float64), labels, np.asarray(groups), k)

    k = min(k, n - 1)
    if k < 1:
        return float("nan")
    nn = NearestNeighbors(n_neighbors=k + 1).fit(X).kneighbors(X, return_distance=False)
    rows = np.arange(n)[:, None]
    is_self = nn == rows
    # drop the point itself; if a duplicate pushed it out of the list, drop the farthest instead
    keep = ~is_self
    keep[~is_self.any(axis=1), -1] = False
    nbrs = nn[keep].reshape(n, k)
    return float(np.mean(labels[nbrs] == labels[:, None]))


def _cross_group_agreement(X: np.ndarray, labels: np.ndarray, groups: np.ndarray, k: int, chunk: int = 512) -> float:
    sq = np.einsum("ij,ij->i", X, X)
    hits, total = 0.0, 0
    for a in range(0, len(X), chunk):
        d = sq[a:a + chunk, None] + sq[None, :] - 2 * X[a:a + chunk] @ X.T
        d[groups[a:a + chunk, None] == groups[None, :]] = np.inf  # the same person (and the point itself)
        kk = min(k, int(np.isfinite(d).sum(axis=1).min()))
        if kk < 1:
            return float("nan")
        nbrs = np.argpartition(d, kk - 1, axis=1)[:, :kk]
        hits += float(np.sum(labels[nbrs] == labels[a:a + chunk, None])) / kk
        total += len(nbrs)
    return hits / total


def chance_agreement(labels: np.ndarray) -> float:
    """The agreement expected when neighbours are random: the sum of squared label proportions."""
    _, counts = np.unique(np.asarray(labels), return_counts=True)
    p = counts / counts.sum()
    return float(np.sum(p ** 2))


def embed(X: np.ndarray, seed: int = 0) -> np.ndarray:
    """Standardise, PCA to at most 50 dimensions, then 2-D t-SNE (seeded)."""
    n = len(X)
    dims = min(PCA_DIMS, X.shape[1], n)
    Z = PCA(n_components=dims, random_state=seed).fit_transform(X) if dims < X.shape[1] else X
    perplexity = float(min(30.0, max(2.0, (n - 1) / 3)))
    return TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(Z)


def _standardised(features: np.ndarray) -> np.ndarray:
    X = np.asarray(features, dtype=np.float64)
    sd = X.std(axis=0)
    return (X - X.mean(axis=0)) / np.where(sd > 0, sd, 1.0)


def _colours(n: int):
    from matplotlib import colormaps  # heavy: only when a plot is drawn

    if n <= 10:
        return colormaps["tab10"](np.arange(n) % 10)
    if n <= 20:
        return colormaps["tab20"](np.arange(n) % 20)
    return colormaps["hsv"](np.linspace(0, 1, n, endpoint=False))


def _name(cache) -> str:
    """A set's name in a cross-dataset map: its dataset's (the cache file's, for a plain object)."""
    return dataset_name(cache) if isinstance(cache, FeatureCache) else Path(str(getattr(cache, "path", ""))).name


def _rows(cache, test_cache):
    """(features, label indices into the names, names, set of each row or None) of ``cache``, or of ``cache`` and
    ``test_cache`` stacked (a class of the test cache only is added to the names)."""
    names = [str(n) for n in cache.label_names]
    if test_cache is None:
        return np.asarray(cache.features), np.asarray(cache.labels), names, None
    names += [str(n) for n in test_cache.label_names if str(n) not in names]
    codes = [np.array([names.index(str(n)) for n in c.label_names])[np.asarray(c.labels, dtype=np.int64)]
             for c in (cache, test_cache)]
    sets = np.array([f"train: {_name(cache)}"] * len(codes[0]) + [f"test: {_name(test_cache)}"] * len(codes[1]))
    return (np.concatenate([np.asarray(cache.features), np.asarray(test_cache.features)]), np.concatenate(codes),
            names, sets)


def plot_feature_map(cache, path: str | Path, *, test_cache=None, max_points: int = DEFAULT_MAX_POINTS, seed: int = 0,
                     k: int = NEIGHBOURS) -> dict[str, Any]:
    """Write the two-panel map of ``cache`` (a ``FeatureCache`` or anything with ``features``, ``labels``,
    ``label_names``, ``subjects``, ``has_subjects``) to ``path``; returns the numbers and texts shown.
    ``test_cache``: a cross-dataset map of both caches, its right panel coloured by set instead of subject."""
    features, labels_all, names, sets_all = _rows(cache, test_cache)
    n_total = len(labels_all)
    if n_total < 3:
        raise ValueError(f"a feature map needs at least 3 images, the cache has {n_total}")
    strata = labels_all if sets_all is None else (sets_all == sets_all[0]) * len(names) + labels_all
    idx = stratified_sample(strata, max_points, seed)
    X = _standardised(features[idx])
    y = labels_all[idx]
    sets = None if sets_all is None else sets_all[idx]
    has_subj = bool(getattr(cache, "has_subjects", False)) and sets is None
    subj = np.asarray(cache.subjects)[idx].astype(str) if has_subj else None

    expr_agree, expr_chance = neighbour_agreement(X, y, k), chance_agreement(y)
    subj_agree = neighbour_agreement(X, subj, k) if has_subj else None
    subj_chance = chance_agreement(subj) if has_subj else None
    cross = neighbour_agreement(X, y, k, groups=subj) if has_subj and len(set(subj)) > 1 else None
    set_numbers = None if sets is None else (neighbour_agreement(X, sets, k), chance_agreement(sets),
                                             neighbour_agreement(X, y, k, groups=sets))
    xy = embed(X, seed)

    name = (Path(str(getattr(cache, "path", "") or "features")).name if test_cache is None
            else f"{_name(cache)} + {_name(test_cache)}")
    subsampled = len(idx) < n_total
    pts = (f"{len(idx):,} of {n_total:,} images (class-stratified sample, seed {seed})" if subsampled
           else f"{n_total:,} images")
    numbers = f"{k}-NN agreement in feature space: expression {expr_agree:.2f} (chance {expr_chance:.2f})"
    if set_numbers is not None:
        numbers += (f", set {set_numbers[0]:.2f} (chance {set_numbers[1]:.2f}); expression with the other set's "
                    f"images as neighbours {set_numbers[2]:.2f}")
    else:
        numbers += (f", subject {subj_agree:.2f} (chance {subj_chance:.2f})" if has_subj else ", subject n/a (no ids)")
    if cross is not None:
        numbers += f"; expression with other people's images as neighbours {cross:.2f}"
    title = f"{name}: t-SNE (scikit-learn) of standardised features, PCA {min(PCA_DIMS, X.shape[1])} dims; {pts}"

    plt = _pyplot()
    fig, (ax_e, ax_s) = plt.subplots(1, 2, figsize=(14, 6.6))
    cols = _colours(len(names))
    set_names = [] if sets is None else list(dict.fromkeys(sets))
    for c, lab in enumerate(names):
        m = y == c
        labelled = False
        for j, part in enumerate(set_names or [None]):  # a marker per set: circles train, triangles test
            mm = m if part is None else m & (sets == part)
            if mm.any():
                ax_e.scatter(xy[mm, 0], xy[mm, 1], s=12, color=cols[c], marker="o^"[j], alpha=0.8, linewidths=0,
                             label=None if labelled else f"{lab} ({int(m.sum())})")
                labelled = True
    ax_e.legend(fontsize=8, markerscale=1.5, loc="best", title="expression")
    ax_e.set_title(f"coloured by expression (agreement {expr_agree:.2f}, chance {expr_chance:.2f})"
                   + ("" if sets is None else "\ncircles: training set, triangles: test set"), fontsize=10)
    subjects = sorted(set(subj)) if has_subj else []
    legend = 0 < len(subjects) <= SUBJECT_LEGEND_MAX
    if sets is not None:
        for j, part in enumerate(set_names):
            m = sets == part
            ax_s.scatter(xy[m, 0], xy[m, 1], s=12, color=("tab:blue", "tab:orange")[j], marker="o^"[j],
                         label=f"{part} ({int(m.sum())})", alpha=0.7, linewidths=0)
        ax_s.legend(fontsize=8, markerscale=1.5, loc="best", title="set")
        subject_panel = (f"coloured by set (agreement {set_numbers[0]:.2f}, chance {set_numbers[1]:.2f}); "
                         f"expression with the other set's neighbours {set_numbers[2]:.2f}")
    elif has_subj:
        scols = _colours(len(subjects))
        for j, s in enumerate(subjects):
            m = subj == s
            ax_s.scatter(xy[m, 0], xy[m, 1], s=12, color=scols[j], label=s, alpha=0.8, linewidths=0)
        if legend:
            ax_s.legend(fontsize=7, markerscale=1.5, loc="best", title="subject", ncol=2 if len(subjects) > 10 else 1)
        subject_panel = (f"coloured by subject, {len(subjects)} people (agreement {subj_agree:.2f}, "
                         f"chance {subj_chance:.2f})" + ("" if legend else "; too many for a legend"))
    else:
        ax_s.scatter(xy[:, 0], xy[:, 1], s=12, color="0.75", linewidths=0)
        ax_s.text(0.5, 0.5, "no subject ids", transform=ax_s.transAxes, ha="center", va="center", fontsize=16)
        subject_panel = "no subject ids (extract --subject-pattern or a manifest gives them)"
    ax_s.set_title(subject_panel, fontsize=10)
    for ax in (ax_e, ax_s):
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(f"{title}\n{numbers}", fontsize=10)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return {"path": str(path), "n_points": int(len(idx)), "n_total": int(n_total), "subsampled": subsampled,
            "seed": seed, "k": k, "expression_agreement": expr_agree, "expression_chance": expr_chance,
            "subject_agreement": subj_agree, "subject_chance": subj_chance,
            "cross_subject_expression_agreement": cross, "n_subjects": len(subjects),
            "subject_legend": legend, "subject_panel": subject_panel, "title": f"{title}\n{numbers}",
            "sets": None if sets is None else {s: int(np.sum(sets_all == s)) for s in set_names},
            "set_agreement": None if sets is None else set_numbers[0],
            "set_chance": None if sets is None else set_numbers[1],
            "cross_set_expression_agreement": None if sets is None else set_numbers[2]}


def summary_line(info: dict) -> str:
    """One line for the terminal: the agreement numbers and where the picture went."""
    subj = (f"subject {info['subject_agreement']:.2f} (chance {info['subject_chance']:.2f})"
            if info["subject_agreement"] is not None else "subject n/a (no subject ids)")
    if info.get("sets"):
        subj = (f"set {info['set_agreement']:.2f} (chance {info['set_chance']:.2f}); expression with the other set's "
                f"images as neighbours {info['cross_set_expression_agreement']:.2f}")
    return (f"feature map: {info['path']} ({info['n_points']} of {info['n_total']} images); {info['k']}-NN "
            f"agreement: expression {info['expression_agreement']:.2f} (chance {info['expression_chance']:.2f}), "
            f"{subj}" + (f"; expression with other people's images as neighbours {cross:.2f}"
                         if (cross := info.get("cross_subject_expression_agreement")) is not None else ""))


def add_to_report(cache, report_dir: str | Path, **kw) -> dict[str, Any]:
    """``report_dir/feature_map.png`` and its line at the end of ``report_dir/report.md`` (``test_cache=``: a
    cross-dataset map of both caches)."""
    out = Path(report_dir)
    info = plot_feature_map(cache, out / "feature_map.png", **kw)
    md = out / "report.md"
    text = md.read_text() if md.exists() else ""
    line = "![feature map](feature_map.png)"
    if line not in text:
        md.write_text(text + ("" if not text or text.endswith("\n") else "\n") + "\n## Feature map\n\n"
                      + summary_line({**info, "path": "feature_map.png"}) + "\n\n" + line + "\n")
    return info
