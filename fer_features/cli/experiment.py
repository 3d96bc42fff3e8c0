"""``experiment``: a seed paper's experiment beside its leak-free version, written as NAME.md and NAME.json."""
from __future__ import annotations

import sys

from fer_features.cli import _options as O
from fer_features.reporting.experiments import DEFAULT_OUT, EXPERIMENTS, run_experiment


def register(sub) -> None:
    p = sub.add_parser(
        "experiment", formatter_class=O.Fmt, help="run a seed paper's experiment beside its leak-free version",
        description="Reproduce a seed paper's experiment and its honest counterpart; writes <out>/<NAME>.md and "
                    ".json with the backbone, preprocessing, protocol and engine of every number.\n"
                    + "\n".join(f"  {n}: {d}" for n, (_, d, _) in EXPERIMENTS.items()),
        epilog="example:\n  python -m fer_features experiment seed-jaffe --copies 30")
    p.add_argument("name", choices=list(EXPERIMENTS), metavar="NAME", help=", ".join(EXPERIMENTS))
    p.add_argument("--data-root", default="../shared/datasets", help="folder holding jaffe/, ckplus48/, fer2013/")
    p.add_argument("--out", default=DEFAULT_OUT,
                   help="folder for NAME.md and NAME.json, relative to the current directory (the committed "
                   "reports are regenerated with --out bench/results)")
    p.add_argument("--backbone", default=None,
                   help="comma-separated backbones (default: the offline default plus every Keras backbone whose "
                   "ImageNet weights are cached here)")
    p.add_argument("--clf", default=None, help="comma-separated presets (default: the experiment's own)")
    p.add_argument("--copies", type=int, default=30, help="seed-jaffe: augmented copies per image")
    p.add_argument("--images", type=int, default=3000,
                   help="seed-resnet-svm: FER2013 happy/sad/surprise images sampled (DS1)")
    O.add_cluster_options(p)
    p.set_defaults(func=run)


def _names(v: str | None) -> list[str] | None:
    return [x.strip() for x in v.split(",") if x.strip()] if v else None


def run(a) -> int:
    opts = {"seed-jaffe": {"copies": a.copies}, "seed-resnet-svm": {"n_images": a.images}}.get(a.name, {})
    cmd = "python -m fer_features " + " ".join(sys.argv[1:]) if sys.argv[1:2] == ["experiment"] else None
    if cmd and not any(x == "--out" or x.startswith("--out=") for x in sys.argv):
        cmd += f" --out {a.out}"  # the record says where it wrote, whatever the default is later
    with O.cluster(a) as cl:
        path = run_experiment(a.name, data_root=a.data_root, out_dir=a.out, backbones=_names(a.backbone),
                              classifiers=_names(a.clf), command=cmd, cluster=cl, **opts)
    print(path.read_text())
    print(f"written: {path}")
    return 0
