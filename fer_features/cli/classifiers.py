"""``classifiers``: the classifier presets and their definitions."""
from __future__ import annotations

import json

from fer_features.classify import registry
from fer_features.classify.optimizable import DEFAULT_BUDGET
from fer_features.cli import _options as O


def register(sub) -> None:
    p = sub.add_parser("classifiers", formatter_class=O.Fmt, help="list the classifier presets",
                       description="Classifier presets (MATLAB Classification Learner names) and their definitions.")
    O.JSON.add(p)
    p.set_defaults(func=run)


def run(a) -> int:
    rows = [registry.describe(n) for n in registry.NAMES]
    if a.json:
        print(json.dumps(rows, indent=1))
        return 0
    w = max(len(r["name"]) for r in rows)
    for r in rows:
        params = ", ".join(f"{k}={v}" for k, v in r["params"].items())
        print(f"{r['name']:<{w}}  {r['description']}\n{'':<{w}}  sklearn: {params}")
    print("\nAll presets standardise features first. Engine: sklearnex (default) runs the SVMs; the narrow, "
          "bilayered and trilayered networks compute their L-BFGS loss in one pass (numba); the other presets use "
          "stock scikit-learn; --engine sklearn uses stock scikit-learn throughout.\n"
          f"The optimizable presets search their space (Optuna TPE, --budget configurations, default "
          f"{DEFAULT_BUDGET}) in each outer training part only, inner folds by subject where known, and refit the "
          "best on that part; compare --clf optimizable runs the four. Their first trial is the fixed preset's "
          "configuration; --set NAME=VALUE fixes a searched parameter.")
    return 0
