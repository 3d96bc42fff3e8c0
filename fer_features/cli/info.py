"""``info``: rows, classes, subjects, splits and settings of a feature cache (and a t-SNE map with --plot)."""
from __future__ import annotations

import json
import sys
from collections import Counter

from fer_features.cli import _options as O
from fer_features.features.cache import load_cache
from fer_features.reporting.feature_map import plot_feature_map, summary_line


def register(sub) -> None:
    p = sub.add_parser("info", formatter_class=O.Fmt, help="summarise a feature cache",
                       description="Rows, classes, subjects, splits and settings of a cache file.")
    p.add_argument("cache", help="cache file (.h5)")
    O.JSON.add(p)
    p.add_argument("--plot", default=None, metavar="OUT.png",
                   help="also draw a t-SNE map of the features by expression and by subject, with the "
                        "5-nearest-neighbour agreement of each (see fer_features.feature_map)")
    p.set_defaults(func=run)


def run(a) -> int:
    c = load_cache(a.cache)
    counts = Counter(c.label_names[i] for i in c.labels)
    info = {
        "path": str(c.path), "rows": len(c), "dim": int(c.features.shape[1]),
        "classes": {k: counts.get(k, 0) for k in c.label_names},
        "subjects": len(set(c.subjects)) if c.has_subjects else 0,
        "splits": dict(Counter(c.split)) if c.has_split else {},
        "skipped": c.skipped, "no_face": int(c.attrs.get("n_no_face", 0)),
        "settings": c.settings,
        "extract_seconds": c.attrs.get("extract_seconds"),
    }
    if a.json:
        print(json.dumps(info, indent=1))
    else:
        for k, v in info.items():
            if k == "subjects" and not v:
                v = ("0 (no subject ids: protocol auto folds by image; give extract --subject-pattern or a "
                     "manifest with a subject column)")
            print(f"{k}: {v}")
    if a.plot:
        print(summary_line(plot_feature_map(c, a.plot)), file=sys.stderr if a.json else sys.stdout)
    return 0
