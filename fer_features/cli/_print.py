"""Printing shared by classify, compare and finetune: one result's tables, and the optimizable presets' choices."""
from __future__ import annotations

from fer_features.classify.search import search_table
from fer_features.reporting.tables import protocol_header, text_table


def print_searches(results) -> None:
    """The chosen hyper-parameters per outer fold of every optimizable result."""
    for r in results:
        if r.get("search"):
            print()
            print(search_table(r))


def print_ci_notes(results) -> None:
    """Each distinct warning about the results' intervals (``accuracy_ci_note``: too few subjects) once, with
    the rows it concerns where it does not concern them all."""
    notes: dict[str, list[str]] = {}
    for r in results:
        if r.get("accuracy_ci_note"):
            notes.setdefault(r["accuracy_ci_note"], []).append(str(r.get("classifier")))
    for note, names in notes.items():
        print(note + ("" if len(names) == len(results) else f" ({', '.join(names)})"))


def print_result(r: dict) -> None:
    print(protocol_header([r]))
    for w in r.get("warnings", []):
        print(w)
    print_ci_notes([r])
    print()
    print(text_table([r]))
    print("\nper-class accuracy:")
    for lab, acc in r["per_class_accuracy"].items():
        print(f"  {lab:<10} {'-' if acc is None else f'{100 * acc:5.1f} %'}")
    print("\nconfusion matrix (rows: true, columns: predicted; summed over folds):")
    labels = r["labels"]
    w = max(6, max(len(x) for x in labels))
    print(" " * (w + 1) + " ".join(f"{x[:w]:>{w}}" for x in labels))
    for lab, row in zip(labels, r["confusion_matrix"]):
        print(f"{lab:<{w}} " + " ".join(f"{v:>{w}}" for v in row))
    print_searches([r])
