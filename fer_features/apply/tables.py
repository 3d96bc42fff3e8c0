"""predict's output: one row per face (``item_rows``, ``to_frame``), written as CSV, JSON, JSON lines or parquet
(``write_table``), and per-video label shares (``video_summary``, ``format_summary``, ``plot_shares``)."""
from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from fer_features.apply.inputs import Item
from fer_features.errors import PredictError

NO_FACE = "no_face"
BASE_COLUMNS = ("source", "frame", "time_s", "face", "x", "y", "w", "h", "score", "label")
OUTPUT_TYPES = (".csv", ".json", ".jsonl", ".parquet")


def item_rows(item: Item, labels: Sequence[str]) -> list[dict[str, Any]]:
    base = {"source": item.source, "frame": item.frame, "time_s": item.time_s}
    empty = {"face": None, "x": None, "y": None, "w": None, "h": None, "score": None, "label": "",
             **{f"p_{lab}": None for lab in labels}}
    if item.error:
        return [{**base, **empty, "error": item.error}]
    if not item.boxes:
        return [{**base, **empty, "error": NO_FACE}]
    note = "" if item.found else f"{NO_FACE}: whole image classified"
    out = []
    for i, (b, p) in enumerate(zip(item.boxes, item.proba)):
        out.append({**base, "face": i, "x": b.x, "y": b.y, "w": b.w, "h": b.h,
                    "score": None if b.score is None or not math.isfinite(b.score) else float(b.score),
                    "label": labels[int(np.argmax(p))], **{f"p_{lab}": float(v) for lab, v in zip(labels, p)},
                    "error": note})
    return out


def to_frame(rows: list[dict], labels: Sequence[str]) -> pd.DataFrame:
    cols = [*BASE_COLUMNS, *[f"p_{lab}" for lab in labels], "error"]
    df = pd.DataFrame(rows, columns=cols)
    for c in ("frame", "face", "x", "y", "w", "h"):
        df[c] = df[c].astype("Int64")
    for c in ("time_s", "score", *[f"p_{lab}" for lab in labels]):
        df[c] = df[c].astype(float)
    df["label"] = df["label"].fillna("").astype(str)
    df["error"] = df["error"].fillna("").astype(str)
    return df


def n_read(df) -> int:
    """How many rows come from an input that could be read (a face, or a no-face note)."""
    return int((~df["error"].str.len().astype(bool) | df["error"].str.startswith(NO_FACE)).sum())


def input_notes(df) -> list[str]:
    """What went wrong, in a line each: inputs that could not be read, images/frames without a face."""
    notes = []
    errors = df[df["error"].str.len().astype(bool) & ~df["error"].str.startswith(NO_FACE)]
    if len(errors):
        notes.append(f"{errors['source'].nunique()} of {df['source'].nunique()} input(s) could not be read")
    no_face = df[df["error"] == NO_FACE]
    if len(no_face):
        notes.append(f"no face found in {len(no_face)} image(s)/frame(s)")
    return notes


def check_output(output: str | Path) -> str:
    """The output file's type (its extension), refused unless ``write_table`` can write it here."""
    ext = Path(output).suffix.lower()
    if ext not in OUTPUT_TYPES:
        raise PredictError(f"{output}: unknown output type {ext or '(none)'}; use .csv, .json, .jsonl or .parquet")
    if ext == ".parquet":
        try:
            import pyarrow  # noqa: F401  (optional, for parquet only: probed here, written through pandas)
        except ImportError:
            raise PredictError(f"{output}: writing parquet needs pyarrow (pip install pyarrow); "
                               "or use .csv / .json") from None
    return ext


def write_table(df, output: str | Path | None, stream=None) -> None:
    """CSV to ``stream`` (stdout) when ``output`` is None; else by extension: .csv, .json, .jsonl, .parquet."""
    if output is None:
        df.to_csv(stream or sys.stdout, index=False, float_format="%.6g")
        return
    out = Path(output)
    ext = check_output(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if ext == ".csv":
        df.to_csv(out, index=False, float_format="%.6g")
    elif ext == ".json":
        df.to_json(out, orient="records", indent=1)
    elif ext == ".jsonl":
        df.to_json(out, orient="records", lines=True)
    else:
        df.to_parquet(out, index=False)


# -- per-video label shares ----------------------------------------------------------------------------

def video_summary(df, window: float = 10.0) -> pd.DataFrame:
    """Label shares (of the labelled faces) per video, overall (``window_start`` NaN) and per ``window``
    seconds: a DataFrame with columns source, window_start, n_faces and one share column per label."""
    labels = [c[2:] for c in df.columns if c.startswith("p_")]
    vid = df[df["frame"].notna() & (df["label"] != "")]
    out = []
    for src, g in vid.groupby("source", sort=False):
        parts = [(float("nan"), g)]
        if window and window > 0:
            start = (g["time_s"] // window) * window
            parts += [(float(s), gg) for s, gg in g.groupby(start)]
        for s, gg in parts:
            counts = gg["label"].value_counts()
            out.append({"source": src, "window_start": s, "n_faces": int(len(gg)),
                        **{lab: float(counts.get(lab, 0)) / len(gg) for lab in labels}})
    return pd.DataFrame(out, columns=["source", "window_start", "n_faces", *labels])


def format_summary(summary) -> str:
    labels = list(summary.columns[3:])
    lines = []
    for src, g in summary.groupby("source", sort=False):
        lines.append(f"{src}: label shares of {int(g['n_faces'].iloc[0])} face(s)")
        w = max(8, *(len(lab) for lab in labels))
        lines.append(f"  {'window':>12} {'faces':>6} " + " ".join(f"{lab:>{w}}" for lab in labels))
        for _, r in g.iterrows():
            name = "all" if math.isnan(r["window_start"]) else f"{r['window_start']:.0f} s"
            lines.append(f"  {name:>12} {int(r['n_faces']):>6} " + " ".join(f"{r[lab]:>{w}.2f}" for lab in labels))
    return "\n".join(lines)


def plot_shares(summary, folder: str | Path, window: float = 10.0) -> list[Path]:
    """One small PNG per video: label shares per time window (stacked areas)."""
    import matplotlib  # ~0.25 s to import: only when a plot is asked for

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # the same, and only once the Agg backend is chosen

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    labels = list(summary.columns[3:])
    written = []
    for src, g in summary.groupby("source", sort=False):
        g = g[g["window_start"].notna()].sort_values("window_start")
        if g.empty:
            continue
        fig, ax = plt.subplots(figsize=(6, 3), dpi=100)
        x = np.append(g["window_start"].to_numpy(), g["window_start"].iloc[-1] + window)  # the last window's end
        ax.stackplot(x, *[np.append(g[lab].to_numpy(), g[lab].iloc[-1]) for lab in labels], labels=labels,
                     step="post")
        ax.set_xlabel("time (s, window start)")
        ax.set_ylabel("share of faces")
        ax.set_ylim(0, 1)
        ax.set_title(Path(src).name, fontsize=9)
        ax.legend(fontsize=6, loc="upper left", bbox_to_anchor=(1.0, 1.0))
        fig.tight_layout()
        path = folder / f"{Path(src).stem}_shares.png"
        fig.savefig(path)
        plt.close(fig)
        written.append(path)
    return written
