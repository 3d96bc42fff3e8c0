"""Result tables (console, markdown, CSV), JSON, and plots (confusion matrices, accuracy/time bars)."""
from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np

TABLE_COLUMNS = (("classifier", "classifier"), ("accuracy", "accuracy %"), ("accuracy_std", "std"),
                 ("macro_f1", "macro-F1 %"), ("fit_seconds", "fit s"), ("predict_seconds", "predict s"),
                 ("engine", "engine"))


def _fmt(key: str, v: Any) -> str:
    if v is None:
        return "-"
    if key in ("accuracy", "accuracy_std", "macro_f1"):
        return f"{100 * v:.1f}"
    if key.endswith("seconds"):
        return f"{v:.3f}" if v < 10 else f"{v:.1f}"
    return str(v)


def table_rows(results: Sequence[dict]) -> list[list[str]]:
    rows = []
    for r in results:
        row = [_fmt(k, r.get(k)) for k, _ in TABLE_COLUMNS]
        if r.get("source") == "finetune":
            row[0] += " (fine-tuned)"
        rows.append(row)
    return rows


def text_table(results: Sequence[dict]) -> str:
    head = [h for _, h in TABLE_COLUMNS]
    rows = table_rows(results)
    w = [max(len(x) for x in col) for col in zip(head, *rows)]
    line = lambda r: "  ".join(v.ljust(w[i]) if i == 0 else v.rjust(w[i]) for i, v in enumerate(r))  # noqa: E731
    return "\n".join([line(head), line(["-" * x for x in w]), *map(line, rows)])


def markdown_table(results: Sequence[dict]) -> str:
    head = [h for _, h in TABLE_COLUMNS]
    out = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] + ["---:"] * (len(head) - 2) + ["---"]) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in table_rows(results)]
    return "\n".join(out)


def protocol_header(results: Sequence[dict]) -> str:
    if not results:
        return ""
    r = results[0]
    lines = [f"protocol: {r.get('protocol')} ({r.get('protocol_description', '')})"]
    if r.get("leaky"):
        lines.append("LEAKY PROTOCOL: test images (or their augmented copies / subjects) are in training")
    if r.get("cache"):
        lines.append(f"features: {r.get('backbone')} {json.dumps(r.get('features', {}), sort_keys=True)}; "
                     f"{r.get('n_images')} images ({r.get('dataset')}); cache {Path(r['cache']).name}")
    lines.append(f"folds: {r.get('n_folds')}, n_train {r.get('n_train')} per fold, n_test {r.get('n_test')} in all")
    if r.get("subject_norm", "none") != "none":
        lines.append(f"identity normalisation: {r.get('subject_norm_note', r['subject_norm'])}")
    aug = r.get("augmentation")
    if aug:
        ranges = ", ".join(f"{k} {v}" for k, v in aug["augmentation"].items() if k != "seed")
        lines.append(f"augmentation: copies {aug['copies']}, balance {aug['balance']}; {ranges}; seed "
                     f"{aug['augmentation']['seed']}; applied to {aug['applied_to']}")
    return "\n".join(lines)


def _pyplot():
    """matplotlib.pyplot on the file-only Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_confusion(result: dict, path: str | Path) -> Path:
    plt = _pyplot()
    cm = np.asarray(result["confusion_matrix"], dtype=float)
    labels = result["labels"]
    with np.errstate(invalid="ignore", divide="ignore"):
        norm = np.nan_to_num(cm / cm.sum(axis=1, keepdims=True))
    fig, ax = plt.subplots(figsize=(1.0 + 0.7 * len(labels), 0.8 + 0.65 * len(labels)), dpi=110)
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    for i in range(len(labels)):
        for j in range(len(labels)):
            ax.text(j, i, f"{int(cm[i, j])}", ha="center", va="center", fontsize=8,
                    color="white" if norm[i, j] > 0.5 else "black")
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"{result['classifier']}: {100 * result['accuracy']:.1f} % ({result['protocol']})", fontsize=9)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="row fraction")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path)
    plt.close(fig)
    return path


def plot_bars(results: Sequence[dict], path: str | Path) -> Path:
    plt = _pyplot()
    names = [r["classifier"] for r in results]
    acc = [100 * r["accuracy"] for r in results]
    err = [100 * r.get("accuracy_std", 0) for r in results]
    tsec = [r["fit_seconds"] + r["predict_seconds"] for r in results]
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 0.5 + 0.35 * len(names) + 1), dpi=110, sharey=True)
    y = np.arange(len(names))
    a1.barh(y, acc, xerr=err, color="tab:blue")
    a1.set_yticks(y, names)
    a1.invert_yaxis()
    a1.set_xlabel("accuracy % (mean ± std over folds)")
    a1.set_xlim(0, 100)
    a2.barh(y, tsec, color="tab:orange")
    a2.set_xlabel("fit + predict seconds (all folds)")
    fig.suptitle(results[0].get("protocol_description", ""), fontsize=9)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path)
    plt.close(fig)
    return path


def write_report(results: Sequence[dict], out_dir: str | Path, title: str = "Classifier comparison") -> Path:
    """Markdown + CSV tables, the JSON results, a confusion-matrix PNG per classifier and a bar chart."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(list(results), indent=1))
    with open(out / "results.csv", "w", newline="") as f:
        w = csv.writer(f)
        keys = ["classifier", "source", "protocol", "accuracy", "accuracy_std", "macro_f1", "fit_seconds",
                "predict_seconds", "n_train", "n_test", "n_folds", "engine", "leaky"]
        w.writerow(keys)
        for r in results:
            w.writerow([r.get(k, "") for k in keys])
    pngs = []
    for r in results:
        safe = r["classifier"].replace("/", "_") + ("_finetuned" if r.get("source") == "finetune" else "")
        pngs.append(plot_confusion(r, out / f"confusion_{safe}.png"))
    plot_bars(results, out / "accuracy_time.png")
    md = [f"# {title}", "", "```", protocol_header(results), "```", "", markdown_table(results), "",
          "![accuracy and time](accuracy_time.png)", ""]
    md += [f"![{p.stem}]({p.name})" for p in pngs]
    (out / "report.md").write_text("\n".join(md) + "\n")
    return out / "report.md"


def _version(module: str, dist: str) -> str:
    """The installed distribution's version (sklearnex's ``__version__`` is a placeholder), else the module's."""
    import importlib
    from importlib import metadata

    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return getattr(importlib.import_module(module), "__version__", "?")


def machine_info(packages: Sequence[tuple[str, str]] = ()) -> str:
    """'CPU model, N cores; Python x.y.z, <label> <version>...' for benchmark reports.

    ``packages``: (import name, label) pairs, e.g. ``[("tensorflow", "TensorFlow")]``.
    """
    import os
    import platform

    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        cpu = platform.processor() or "unknown CPU"
    versions = [f"Python {platform.python_version()}"]
    versions += [f"{label} {_version(mod, label)}" for mod, label in packages]
    return f"{cpu}, {os.cpu_count()} cores; {', '.join(versions)}"
