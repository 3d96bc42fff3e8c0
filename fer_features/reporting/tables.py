"""Result tables (console, markdown, CSV), JSON, and plots (confusion matrices, accuracy/time bars)."""
from __future__ import annotations

import csv
import json
import textwrap
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from fer_features.classify.search import search_table
from fer_features.errors import FerError
from fer_features.evaluation.stats import vs_best_note

TABLE_COLUMNS = (("setup", "setup"), ("classifier", "classifier"), ("protocol", "protocol"),
                 ("accuracy", "accuracy % (pooled)"), ("accuracy_std", "fold std"), ("macro_f1", "macro-F1 %"),
                 ("fit_seconds", "fit s (total)"), ("predict_seconds", "predict s (total)"), ("engine", "engine"))
LEFT_ALIGNED = {"setup", "classifier", "protocol", "engine"}
REQUIRED_KEYS = ("classifier", "protocol", "accuracy", "labels", "confusion_matrix", "fit_seconds",
                 "predict_seconds", "n_folds", "n_test")
SETUP_KEYS = ("protocol", "protocol_description", "leaky", "seed", "n_folds", "n_test", "backbone", "features",
              "dataset", "n_images", "subject_norm", "augmentation", "pca", "test_size", "test_split", "train_splits",
              "train_dataset", "test_dataset")
ACCURACY_NOTE = ("accuracy % = correct / all test images, pooled over folds; fold std = std of the fold "
                 "accuracies; fit s, predict s = totals over folds")
CI_HEADER = " [95 % CI]"
VS_BEST = ("vs_best", "vs best")


def _fmt(key: str, v: Any) -> str:
    if v is None:
        return "-"
    if key in ("accuracy", "accuracy_std", "macro_f1"):
        return f"{100 * v:.1f}"
    if key.endswith("seconds"):
        return f"{v:.3f}" if v < 10 else f"{v:.1f}"
    return str(v)


def is_finetuned(r: dict) -> bool:
    return r.get("source") == "finetune" or bool((r.get("features") or {}).get("fine_tuned"))


def setup_letters(results: Sequence[dict]) -> list[str]:
    """One letter per row (A, B, ...): rows share a letter when protocol, folds and features are all equal."""
    keys = [json.dumps({k: r.get(k) for k in SETUP_KEYS}, sort_keys=True, default=str) for r in results]
    order = list(dict.fromkeys(keys))
    name = lambda i: chr(ord("A") + i) if i < 26 else f"S{i + 1}"  # noqa: E731
    return [name(order.index(k)) for k in keys]


def row_label(r: dict, letter: str = "") -> str:
    """'[B] cubic_svm LEAKY': the row's setup letter (when several), name, fine-tuned and leaky marks."""
    label = r["classifier"] + (" (fine-tuned)" if is_finetuned(r) else "") + (" LEAKY" if r.get("leaky") else "")
    return f"[{letter}] {label}" if letter else label


def _columns(results: Sequence[dict]) -> list[tuple[str, str]]:
    mixed = len(set(setup_letters(results))) > 1
    cols = [c for c in TABLE_COLUMNS if mixed or c[0] != "setup"]
    if any(r.get("accuracy_ci") for r in results):
        cols = [(k, h + CI_HEADER if k == "accuracy" else h) for k, h in cols]
    if any(r.get("vs_best") for r in results):
        cols.insert([k for k, _ in cols].index("accuracy") + 1, VS_BEST)
    return cols


def _fmt_accuracy(r: dict) -> str:
    """'72.8 [66.1, 79.0]': the pooled accuracy and its 95 % interval (where the result has one)."""
    acc, ci = _fmt("accuracy", r.get("accuracy")), r.get("accuracy_ci")
    return f"{acc} [{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]" if ci else acc


def _fmt_vs_best(v: dict | None) -> str:
    """'best', '~ 0.41' (not distinguishable from the best), '= 1.00' (same predictions), '0.003', or '-'."""
    if not v:
        return "-"
    if v["mark"] == "best":
        return "best"
    p = v["p"]
    num = f"{p:.2f}" if p >= 0.01 else f"{p:.3f}" if p >= 0.001 else "<0.001"
    return f"{v['mark']} {num}".strip()


def table_rows(results: Sequence[dict]) -> list[list[str]]:
    rows = []
    for r, letter in zip(results, setup_letters(results)):
        cells = {k: _fmt(k, r.get(k)) for k, _ in TABLE_COLUMNS}
        cells["setup"], cells["classifier"] = letter, row_label(r)
        cells["accuracy"], cells["vs_best"] = _fmt_accuracy(r), _fmt_vs_best(r.get("vs_best"))
        if r.get("n_folds") == 1:
            cells["accuracy_std"] = "-"  # one split: no spread to report
        rows.append([cells[k] for k, _ in _columns(results)])
    return rows


def table_note(results: Sequence[dict]) -> str:
    """The line under a table: the interval's method(s) and, with a ``vs best`` column, the test used."""
    methods = list(dict.fromkeys(r["accuracy_ci_method"] for r in results if r.get("accuracy_ci_method")))
    lines = [f"[95 % CI]: {'; '.join(methods)}"] if methods else []
    note = vs_best_note(results)
    return "\n".join(lines + ([note] if note else []))


def text_table(results: Sequence[dict]) -> str:
    cols = _columns(results)
    head = [h for _, h in cols]
    rows = table_rows(results)
    w = [max(len(x) for x in col) for col in zip(head, *rows)]
    left = [k in LEFT_ALIGNED for k, _ in cols]
    line = lambda r: "  ".join(v.ljust(w[i]) if left[i] else v.rjust(w[i]) for i, v in enumerate(r)).rstrip()  # noqa: E731
    note = table_note(results)
    return "\n".join([line(head), line(["-" * x for x in w]), *map(line, rows), *([note] if note else [])])


def markdown_table(results: Sequence[dict]) -> str:
    cols = _columns(results)
    out = ["| " + " | ".join(h for _, h in cols) + " |",
           "|" + "|".join("---" if k in LEFT_ALIGNED else "---:" for k, _ in cols) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in table_rows(results)]
    note = table_note(results)
    return "\n".join(out + (["", *(f"{x}  " for x in note.splitlines())] if note else []))


def protocol_options(r: dict, width: int = 0) -> str:
    """'subject-norm center; PCA 0.95; augmentation 3 copies, balance none; cross-dataset ckplus48 -> jaffe': every
    protocol option of a result (subject normalisation, PCA and augmentation always; the holdout test size, the
    official test split and the cross-dataset pairing where the protocol has them), for titles and setup lines;
    ``width``: lines of at most about that many characters, broken between options."""
    lines = [""]
    for part in _option_parts(r):
        if lines[-1] and width and len(lines[-1]) + 2 + len(part) > width:
            lines.append("")
        lines[-1] += ("; " if lines[-1] else "") + part
    return "\n".join(lines)


def _option_parts(r: dict) -> list[str]:
    aug = r.get("augmentation")
    opts = [f"subject-norm {r.get('subject_norm') or 'none'}", f"PCA {'none' if r.get('pca') is None else r['pca']}",
            f"augmentation {aug['copies']} copies, balance {aug.get('balance') or 'none'}" if aug
            else "no augmentation"]
    if r.get("test_size") is not None:
        opts.append(f"test size {r['test_size']}")
    if r.get("test_split"):
        opts.append(f"test split {r['test_split']}" + (f" (train {', '.join(map(str, r['train_splits']))})"
                                                       if r.get("train_splits") else ""))
    if r.get("test_dataset"):
        opts.append(f"cross-dataset {r.get('train_dataset')} -> {r['test_dataset']}")
    return opts


def _setup_lines(r: dict) -> list[str]:
    lines = [f"protocol: {r.get('protocol')} ({r.get('protocol_description', '')})", f"options: {protocol_options(r)}"]
    if r.get("leaky"):
        lines.append("LEAKY PROTOCOL: test images (or their augmented copies / subjects) are in training")
    if r.get("backbone") or r.get("features"):
        src = f"; cache {Path(r['cache']).name}" if r.get("cache") else ""
        if r.get("test_cache"):  # cross-dataset: the features line is the training cache's
            src += f"; test cache {Path(r['test_cache']).name} ({r.get('test_n_images')} images)"
        lines.append(f"features: {r.get('backbone')} {json.dumps(r.get('features', {}), sort_keys=True)}; "
                     f"{r.get('n_images')} images ({r.get('dataset')}){src}")
    lines.append(f"folds: {r.get('n_folds')}, n_train {r.get('n_train')} per fold, n_test {r.get('n_test')} in all")
    if r.get("subject_norm", "none") != "none":
        lines.append(f"identity normalisation: {r.get('subject_norm_note', r['subject_norm'])}")
    aug = r.get("augmentation")
    if aug:
        ranges = ", ".join(f"{k} {v}" for k, v in aug["augmentation"].items() if k != "seed")
        lines.append(f"augmentation: copies {aug['copies']}, balance {aug['balance']}; {ranges}; seed "
                     f"{aug['augmentation']['seed']}; applied to {aug['applied_to']}")
    return lines


def protocol_header(results: Sequence[dict]) -> str:
    """What the rows measured: one block per distinct setup, lettered [A], [B]... when there are several."""
    if not results:
        return ""
    letters = setup_letters(results)
    firsts = {letter: r for r, letter in reversed(list(zip(results, letters)))}
    if len(firsts) == 1:
        return "\n".join([*_setup_lines(results[0]), ACCURACY_NOTE])
    out = []
    for letter in sorted(firsts, key=letters.index):
        first, *rest = _setup_lines(firsts[letter])
        out += [f"[{letter}] {first}", *(f"    {x}" for x in rest)]
    out.append(f"{ACCURACY_NOTE}. Setups differ in protocol, folds or features: compare rows of one setup.")
    return "\n".join(out)


def _short_setup(r: dict) -> str:
    """'loso, efficientnet_lite0 224 px' for plot titles (the header block has the full statement)."""
    f = r.get("features") or {}
    size = f" {f['image_size']} px" if f.get("image_size") else ""
    tuned = f" fine-tuned {f.get('mode')}" if f.get("fine_tuned") else ""
    return f"{r.get('protocol')}, {r.get('n_folds')} fold(s); {r.get('backbone')}{size}{tuned}"


def _pyplot():
    """matplotlib.pyplot on the file-only Agg backend (no display needed)."""
    import matplotlib  # heavy: only when a plot is drawn

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # heavy: only when a plot is drawn

    return plt


def plot_confusion(result: dict, path: str | Path, setup: str = "") -> Path:
    """Row-normalised confusion matrix titled with the row's label, pooled accuracy, protocol and features."""
    plt = _pyplot()
    cm = np.asarray(result["confusion_matrix"], dtype=float)
    labels = result["labels"]
    with np.errstate(invalid="ignore", divide="ignore"):
        norm = np.nan_to_num(cm / cm.sum(axis=1, keepdims=True))
    width = 1.0 + 0.7 * len(labels)
    fig, ax = plt.subplots(figsize=(width, 0.8 + 0.65 * len(labels)), dpi=110)
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    for i in range(len(labels)):
        for j in range(len(labels)):
            ax.text(j, i, f"{int(cm[i, j])}", ha="center", va="center", fontsize=8,
                    color="white" if norm[i, j] > 0.5 else "black")
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    desc = textwrap.shorten(result.get("protocol_description", ""), 90)
    ax.set_title(f"{row_label(result, setup)}: {100 * result['accuracy']:.1f} % (pooled)\n{desc}\n"
                 f"{_short_setup(result)}\n{protocol_options(result, int(16 * width))}", fontsize=7)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="row fraction")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path)
    plt.close(fig)
    return path


def _whisker(r: dict) -> tuple[float, float]:
    """(below, above) the accuracy in points: the 95 % interval, else ± fold std (older results), else 0."""
    acc, ci = 100 * r["accuracy"], r.get("accuracy_ci")
    if ci:
        return max(0.0, acc - 100 * ci[0]), max(0.0, 100 * ci[1] - acc)
    std = 100 * r.get("accuracy_std", 0) if r.get("n_folds", 1) > 1 else 0.0
    return std, std


def plot_bars(results: Sequence[dict], path: str | Path) -> Path:
    """Pooled accuracy (whiskers: its 95 % interval, else ± fold std) and total seconds per row; leaky rows red
    and hatched, setups lettered."""
    plt = _pyplot()
    letters = setup_letters(results)
    mixed = len(set(letters)) > 1
    names = [row_label(r, letter if mixed else "") for r, letter in zip(results, letters)]
    acc = [100 * r["accuracy"] for r in results]
    err = np.array([_whisker(r) for r in results]).T
    tsec = [r["fit_seconds"] + r["predict_seconds"] for r in results]
    leaky = [bool(r.get("leaky")) for r in results]
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 0.5 + 0.35 * len(names) + 1.15 + 0.3 * len(set(letters))),
                                 dpi=110, sharey=True)
    y = np.arange(len(names))
    for ax, values, colour, xerr in ((a1, acc, "tab:blue", err), (a2, tsec, "tab:orange", None)):
        bars = ax.barh(y, values, xerr=xerr, color=["tab:red" if lk else colour for lk in leaky])
        for bar, lk in zip(bars, leaky):
            bar.set_hatch("//" if lk else "")
    a1.set_yticks(y, names)
    a1.invert_yaxis()
    a1.set_xlabel("accuracy % (pooled over folds; whiskers: 95 % interval" +
                  ("" if all(r.get("accuracy_ci") for r in results) else ", or ± fold std where none") + ")")
    a1.set_xlim(0, 100)
    a2.set_xlabel("fit + predict seconds (totals over folds)")
    firsts = {letter: r for r, letter in reversed(list(zip(results, letters)))}
    title = "\n".join(f"[{k}] " * mixed + textwrap.shorten(f"{r.get('protocol_description', '')}; {_short_setup(r)}",
                                                              140) + f"\n{'    ' * mixed}{protocol_options(r)}"
                      for k, r in sorted(firsts.items()))
    fig.suptitle(title, fontsize=8)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path)
    plt.close(fig)
    return path


def load_results(path: str | Path) -> list[dict]:
    """Results written by classify/compare/finetune (``--json`` or results.json), checked; ValueError names the file.

    Older results (whose ``accuracy`` was the fold mean) get the pooled headline of current ones.
    """
    if not Path(path).exists():
        raise FerError(f"{path}: no such results file")
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: not a results JSON file ({exc})") from None
    rows = data if isinstance(data, list) else [data]
    for r in rows:
        missing = [k for k in REQUIRED_KEYS if not isinstance(r, dict) or k not in r]
        if missing:
            raise ValueError(f"{path}: not a fer_features result (missing {', '.join(missing)})")
        if "accuracy_definition" not in r and "accuracy_pooled" in r:
            r.update(accuracy_fold_mean=r["accuracy"], accuracy=r["accuracy_pooled"],
                     accuracy_definition="correct / all test images, pooled over folds")
    return rows


OPTION_COLUMNS = ("subject_norm", "pca", "augment_copies", "augment_balance", "test_size", "test_split",
                  "train_dataset", "test_dataset")


def option_columns(r: dict) -> dict[str, Any]:
    """results.csv's protocol option columns of a result (``protocol_options`` in columns)."""
    aug = r.get("augmentation") or {}
    return {"subject_norm": r.get("subject_norm") or "none", "pca": "none" if r.get("pca") is None else r["pca"],
            "augment_copies": aug.get("copies", 0), "augment_balance": aug.get("balance") or "none",
            "test_size": r.get("test_size", ""), "test_split": r.get("test_split") or "",
            "train_dataset": r.get("train_dataset", ""), "test_dataset": r.get("test_dataset", "")}


def write_report(results: Sequence[dict], out_dir: str | Path, title: str = "Classifier comparison") -> Path:
    """Markdown + CSV tables, the JSON results, a confusion-matrix PNG per classifier and a bar chart."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(list(results), indent=1))
    letters = setup_letters(results)
    mixed = len(set(letters)) > 1
    with open(out / "results.csv", "w", newline="") as f:
        w = csv.writer(f)
        keys = ["classifier", "source", "protocol", "protocol_description", "leaky", "backbone", "features",
                "dataset", *OPTION_COLUMNS, "accuracy", "accuracy_ci_lo", "accuracy_ci_hi", "accuracy_ci_method",
                "accuracy_fold_mean", "accuracy_std", "vs_best_mark", "vs_best_p", "vs_best_test", "macro_f1",
                "fit_seconds", "predict_seconds", "n_train", "n_test", "n_folds", "engine"]
        w.writerow(["setup", *keys])
        for r, letter in zip(results, letters):
            row = {**r, "leaky": bool(r.get("leaky")), "features": json.dumps(r.get("features", {}), sort_keys=True),
                   **option_columns(r)}
            ci, vb = r.get("accuracy_ci") or ["", ""], r.get("vs_best") or {}
            row.update(accuracy_ci_lo=ci[0], accuracy_ci_hi=ci[1], vs_best_mark=vb.get("mark", ""),
                       vs_best_p="" if vb.get("p") is None else vb["p"], vs_best_test=vb.get("test") or "")
            w.writerow([letter, *(row.get(k, "") for k in keys)])
    pngs = []
    for r, letter in zip(results, letters):
        safe = (r["classifier"].replace("/", "_") + ("_finetuned" if is_finetuned(r) else "")
                + (f"_{letter}" if mixed else ""))
        pngs.append(plot_confusion(r, out / f"confusion_{safe}.png", letter if mixed else ""))
        if r.get("predictions"):
            write_predictions(r, out / f"predictions_{safe}.csv")
    plot_bars(results, out / "accuracy_time.png")
    md = [f"# {title}", "", "```", protocol_header(results), "```", "", markdown_table(results), "",
          "![accuracy and time](accuracy_time.png)", ""]
    md += [f"![{p.stem}]({p.name})" for p in pngs]
    if any(r.get("search") for r in results):  # optimizable presets: what each outer fold's search chose

        md += ["", "## Chosen hyper-parameters", ""]
        md += [search_table(r, markdown=True) + "\n" for r in results if r.get("search")]
    (out / "report.md").write_text("\n".join(md) + "\n")
    return out / "report.md"


def write_predictions(r: dict, path: str | Path) -> Path:
    """One row per test image (per fold it is tested in): cache row, path, subject, true and predicted label,
    fold, and p_<label> columns where the model gives class probabilities."""
    p, labels = r["predictions"], r["labels"]
    proba = p.get("proba")
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["row", "path", "subject", "true", "pred", "fold", *([f"p_{x}" for x in labels] if proba else [])])
        for i in range(len(p["row"])):
            w.writerow([p["row"][i], p["path"][i], p["subject"][i], labels[p["true"][i]], labels[p["pred"][i]],
                        p["fold"][i], *(proba[i] if proba else [])])
    return Path(path)
