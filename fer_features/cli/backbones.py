"""``backbones``: list the registered backbones, or the tappable layers of one."""
from __future__ import annotations

import json

from fer_features import backbones as bb
from fer_features.cli import _options as O


def register(sub) -> None:
    p = sub.add_parser("backbones", formatter_class=O.Fmt, help="list the registered backbones",
                       description="List backbones with feature size, default input size and preprocessing.")
    p.add_argument("--layers", metavar="NAME", default=None,
                   help="list the tappable layers of one backbone (a name, or a saved PATH.keras model)")
    O.IMAGE_SIZE.add(p, help="input size for --layers shapes")
    O.JSON.add(p)
    p.set_defaults(func=run)


def run(a) -> int:
    return _layers(a) if a.layers else _backbones(a)


def _layers(a) -> int:
    bb.get_config(a.layers)
    rows = bb.tappable_layers(a.layers, a.image_size)
    if not rows:
        print(f"{a.layers} is a classical descriptor: it has no layers")
        return 0
    if a.json:
        print(json.dumps([{"layer": n, "shape": list(s), "stage": st} for n, s, st in rows]))
    else:
        head = ("layer", "output HxWxC", "stage")
        w = max(len(n) for n, _, _ in [head, *rows])
        for n, s, st in [head, ("-" * w, "-" * 14, "-" * 7),
                         *((n, "x".join(str(d) for d in s), st) for n, s, st in rows)]:
            print(f"{n:<{w}}  {s:<14} {st}".rstrip())
    return 0


def _backbones(a) -> int:
    cfgs = bb.list_backbones()
    sizes = {c.name: bb.feature_size(c) for c in cfgs}  # the default features' length (no model is built)
    if a.json:
        print(json.dumps([{**c.to_dict(), "default_feature_size": sizes[c.name]} for c in cfgs], indent=1))
        return 0
    head = ("name", "family", "input", "features", "default layer@pooling", "last dim", "preprocessing", "weights")
    rows = [(c.name + (" (default)" if c.name == bb.DEFAULT_BACKBONE else ""), c.family, str(c.default_size),
             "?" if sizes[c.name] is None else str(sizes[c.name]), f"{c.default_layer or '-'}@{c.default_pooling}",
             "-" if c.classical else str(c.feature_dim), c.preprocess, c.weights_note)
            for c in cfgs]
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    for r in [head, tuple("-" * w for w in widths), *rows]:
        print("  ".join(f"{v:<{widths[i]}}" for i, v in enumerate(r)).rstrip())
    print("\nfeatures: the length of the default features (the default layer, pooled as named, at the input size); "
          "last dim: the last layer's channels")
    print("\npreprocessing modes (applied inside each model, input is RGB 0-255):")
    for k, v in bb.PREPROCESS_MODES.items():
        print(f"  {k:<6} {v}")
    return 0
