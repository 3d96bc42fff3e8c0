"""The ``significance`` command: load two saved results and test them against each other, paired, on the same
test images (the statistics themselves are in ``stats``)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

from fer_features.errors import FerError
from fer_features.evaluation.stats import ALPHA, N_RESAMPLES, SEED, paired_test, result_ci
from fer_features.reporting.tables import load_results


def load_result(spec: str, name: str | None = None) -> dict:
    """One result from a file: the JSON line ``classify --json`` prints (or that command's whole stdout), or a
    ``results.json`` of ``compare``; ``name`` (or ``FILE#name``) picks an entry by classifier."""

    if name is None and "#" in spec and not Path(spec).exists():
        spec, name = spec.rsplit("#", 1)
    if not Path(spec).exists():
        raise FerError(f"{spec}: no such results file")
    try:
        rows = load_results(spec)
    except ValueError:
        try:  # a saved stdout: the JSON object is its last line
            last = [x for x in Path(spec).read_text().splitlines() if x.startswith(("{", "["))][-1]
            data = json.loads(last)
        except (OSError, UnicodeDecodeError, IndexError, json.JSONDecodeError):
            raise ValueError(f"{spec}: not a results JSON file (classify --json's line or compare's "
                             "results.json)") from None
        rows = data if isinstance(data, list) else [data]
    names = [r.get("classifier") for r in rows]
    if name is not None:
        hits = [r for r in rows if r.get("classifier") == name]
        if len(hits) != 1:
            raise ValueError(f"{spec}: {len(hits)} results named {name!r} (entries: {', '.join(map(str, names))})")
        return hits[0]
    if len(rows) != 1:
        raise ValueError(f"{spec} holds {len(rows)} results ({', '.join(map(str, names))}): pick one with "
                         "FILE#NAME or --a-classifier/--b-classifier NAME")
    return rows[0]


def significance(a: dict, b: dict, *, n_resamples: int = N_RESAMPLES, seed: int = SEED) -> dict[str, Any]:
    """Both accuracies with intervals, the difference a - b with its interval, the paired test and its p."""
    t = paired_test(a, b, n_resamples=n_resamples, seed=seed)

    def side(r: dict) -> dict[str, Any]:
        lo, hi, method = result_ci(r)
        return {"classifier": r.get("classifier"), "accuracy": r["accuracy"], "accuracy_ci": [lo, hi],
                "accuracy_ci_method": method, "backbone": r.get("backbone"), "features": r.get("features"),
                "cache": r.get("cache")}

    return {"a": side(a), "b": side(b), "diff": t["diff"], "diff_ci": [t["lo"], t["hi"]], "test": t["test"],
            "p": t["p"], "p_min": t["p_min"], "identical_predictions": t["identical"],
            "discordant": t.get("discordant"),
            "n_test": len(a["predictions"]["row"]),
            "protocol": a.get("protocol"), "protocol_description": a.get("protocol_description")}


def format_significance(d: dict, names: Sequence[str] = ("A", "B"), alpha: float = ALPHA) -> str:
    """The text report of ``significance``: accuracies, difference, test, p."""
    pct = lambda v: f"{100 * v:.1f}"  # noqa: E731
    fa, fb = d["a"].get("features") or {}, d["b"].get("features") or {}
    differ = sorted(k for k in set(fa) | set(fb) if fa.get(k) != fb.get(k))
    lines = [f"protocol: {d.get('protocol')} ({d.get('protocol_description')}); {d['n_test']} test predictions, "
             "the same images and folds in both"]
    for tag, s, name in (("A", d["a"], names[0]), ("B", d["b"], names[1])):
        feats = ", ".join(f"{k}={(s.get('features') or {}).get(k)}" for k in differ)
        lines.append(f"{tag}: {s['classifier']} ({name}): {pct(s['accuracy'])} % [{pct(s['accuracy_ci'][0])}, "
                     f"{pct(s['accuracy_ci'][1])}]" + (f"; {feats}" if feats else ""))
    lines.append(f"[95 % CI]: {d['a']['accuracy_ci_method']}")
    lines.append(f"difference A - B: {100 * d['diff']:+.1f} points [{100 * d['diff_ci'][0]:+.1f}, "
                 f"{100 * d['diff_ci'][1]:+.1f}]")
    lines.append(f"test: {d['test']}" + (f"; discordant images: {d['discordant'][0]} right by A only, "
                                          f"{d['discordant'][1]} by B only" if d.get("discordant") else ""))
    verdict = "the same predictions" if d["identical_predictions"] else (
        f"{'not ' if d['p'] >= alpha else ''}significant at {alpha:g}")
    if d.get("p_min") and d["p"] <= d["p_min"] and "McNemar" not in d["test"]:
        lines.append(f"p < {d['p'] * 1.001:.2g} ({verdict}; no resampled difference crossed 0: the smallest p "
                     "these resamples resolve)")
    else:
        lines.append(f"p = {d['p']:.4g} ({verdict})")
    return "\n".join(lines)
