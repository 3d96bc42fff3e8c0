"""Scoring a classifier's folds: pooled accuracy and its interval, per-class accuracy, confusion matrix, F1,
times, and every test prediction, into one ``Result``."""
from __future__ import annotations

import os
from typing import Any, Sequence

import numpy as np
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score

from fer_features.evaluation import stats
from fer_features.evaluation.result import Result
from fer_features.evaluation.splits import has_groups

ACCURACY_DEFINITION = "correct / all test images, pooled over folds"


def score_folds(classifier: str, label_names: Sequence[str], y: np.ndarray, splits: list, preds: list,
                fit_seconds: Sequence[float], predict_seconds: Sequence[float], wall: float,
                protocol_info: dict, *, groups: np.ndarray | None = None,
                probas: list | None = None) -> Result:
    """The result dict every evaluation path reports (frozen features or fine-tuned networks alike).

    ``accuracy`` is pooled: correct test images / all test images over every fold (``accuracy_fold_mean`` is
    the mean of the fold accuracies, ``accuracy_std`` their std); fit/predict seconds are totals over folds.
    ``accuracy_ci``: its 95 % bootstrap interval, over the test images' subjects (``groups``) where known;
    ``accuracy_ci_note``, only when it resamples fewer than 5 subjects (or images): a warning that it is unreliable.
    ``predictions``: per test image its row (index into ``y``), subject, true and predicted label index, fold
    and class probabilities (``probas``, one array per fold) where the model has them.
    """
    labels_idx = np.arange(len(label_names))
    y_true = np.concatenate([y[te] for _, te in splits])
    y_pred = np.concatenate(preds)
    fold_acc = [float(accuracy_score(y[te], p)) for (_, te), p in zip(splits, preds)]
    cm = confusion_matrix(y_true, y_pred, labels=labels_idx)
    with np.errstate(invalid="ignore", divide="ignore"):
        per_class = cm.diagonal() / cm.sum(axis=1)
    present = cm.sum(axis=1) > 0
    pooled = float(accuracy_score(y_true, y_pred))
    res = Result({
        "classifier": classifier,
        "protocol": protocol_info["protocol"],
        "protocol_description": protocol_info["description"],
        "subject_independent": protocol_info["subject_independent"],
        "leaky": bool(protocol_info.get("leaky", False)),
        "accuracy": pooled,
        "accuracy_definition": ACCURACY_DEFINITION,
        "accuracy_pooled": pooled,  # the same value, for readers of older results
        "accuracy_fold_mean": float(np.mean(fold_acc)),
        "accuracy_std": float(np.std(fold_acc)),
        "fold_accuracies": fold_acc,
        "macro_f1": float(f1_score(y_true, y_pred, labels=labels_idx[present], average="macro", zero_division=0)),
        "labels": list(label_names),
        "per_class_accuracy": {n: (float(a) if p else None) for n, a, p in zip(label_names, per_class, present)},
        "confusion_matrix": cm.tolist(),
        "fit_seconds": float(sum(fit_seconds)),
        "predict_seconds": float(sum(predict_seconds)),
        "wall_seconds": float(wall),
        "n_train": int(round(np.mean([len(tr) for tr, _ in splits]))),
        "n_test": int(sum(len(te) for _, te in splits)),
        "n_folds": len(splits),
        "threads": os.cpu_count(),
    })
    res.update(_uncertainty(y, splits, preds, groups, probas))
    for k in ("test_split", "train_splits", "subjects_in_train_and_test", "test_size", "seed", "augmentation"):
        if k in protocol_info:
            res[k] = protocol_info[k]
    return res


def _uncertainty(y: np.ndarray, splits: list, preds: list, groups, probas) -> dict[str, Any]:
    """``accuracy_ci``, its method and the per-image ``predictions`` of a result (see ``score_folds``)."""
    rows = np.concatenate([np.asarray(te, dtype=np.int64) for _, te in splits])
    subj = np.asarray(groups)[rows].astype(str) if has_groups(groups) else None
    y_true, y_pred = np.asarray(y)[rows], np.concatenate(preds)
    units, unit = (subj, "subjects") if subj is not None else (rows, "images")
    lo, hi, method = stats.accuracy_ci(y_true == y_pred, units, unit=unit)
    note = stats.ci_note(len(rows), units, unit)
    pred = {"row": rows.tolist(), "path": [""] * len(rows),
            "subject": subj.tolist() if subj is not None else [""] * len(rows),
            "true": y_true.astype(int).tolist(), "pred": y_pred.astype(int).tolist(),
            "fold": np.repeat(np.arange(len(splits)), [len(te) for _, te in splits]).tolist(),
            "proba": None if probas is None else np.round(np.concatenate(probas).astype(np.float64), 4).tolist()}
    return {"accuracy_ci": [lo, hi], "accuracy_ci_method": method, **({"accuracy_ci_note": note} if note else {}),
            "predictions": pred}
