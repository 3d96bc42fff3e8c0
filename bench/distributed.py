"""Single process vs a local Dask cluster (``--cluster local:2``) on the same images and the same 2 cores.

    python bench/distributed.py [--data ../shared/datasets/ckplus48] [--n 128] [--n-resnet 64] [--rounds 2]
                                [--out bench/results/distributed.md]

1. extraction, default features (efficientnet_lite0, ImageNet, Haar crop, block4c_add grid7, flip average) and
   resnet50 with random weights at 224 px (same crop/flip): ``--n`` / ``--n-resnet`` CK+48 images spread evenly
   over the dataset (its first images are all one class); single process and cluster interleaved, ``--rounds``
   rounds, the order swapped every round (the cores are shared with other work, so the load drifts);
   features compared row by row;
2. per-shard overhead: everything a cluster run spends that is not reading, preprocessing and embedding
   (scheduling and idle worker time, writing the shard file, the client's join), per shard and as a share;
3. a killed worker: one cluster run in which a worker process is SIGKILLed mid-run, against the plain run;
4. ``compare`` (``--presets``, default every preset; subject-grouped 10-fold) on the CK+48 default-feature cache: locally vs on the
   cluster, with the results checked equal;
5. a projection (arithmetic, not a measurement) for 1M images on 8, 64 and 512 workers.
Writes ``--out`` (markdown) and the same name ``.json``.
"""
from __future__ import annotations

import argparse
import os
import signal
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from _common import load_average, machine_info, md_row, md_table, save_report  # before this folder leaves sys.path

ROOT = Path(__file__).resolve().parents[1]
# this file's own folder comes first on sys.path and its name would shadow the `distributed` package
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def _quiet(msg: str) -> None:
    pass


def extract_local(ds, kw) -> dict:
    from fer_features.features.cache import load_cache
    from fer_features.features.extract import extract_dataset

    with tempfile.TemporaryDirectory() as d:
        t = time.perf_counter()
        c = load_cache(extract_dataset(ds, cache_dir=d, progress=False, log=_quiet, **kw))
        wall = time.perf_counter() - t
    return {"wall": wall, "steady_seconds": float(c.attrs["extract_seconds"]),
            "build_seconds": float(c.attrs["model_build_seconds"]), "rows": len(c), "features": c.features,
            "paths": list(c.paths)}


def extract_cluster(cl, ds, kw, kill: bool = False) -> dict:
    from fer_features.features.cache_writer import CacheWriter
    from fer_features.features.cache import load_cache
    from fer_features.distributed.extract import on_cluster
    from fer_features.features.extract import extract_dataset

    real_add = CacheWriter.add_chunk
    killed: list = []
    if kill:
        def add_and_kill(self, *a, **k):
            if not killed:
                busy = [w for w, keys in cl.client.processing().items() if keys]
                if busy:
                    pid = cl.client.run(os.getpid, workers=busy[:1])[busy[0]]
                    os.kill(pid, signal.SIGKILL)
                    killed.append(pid)
            return real_add(self, *a, **k)

        CacheWriter.add_chunk = add_and_kill
    try:
        with tempfile.TemporaryDirectory() as d:
            t = time.perf_counter()
            c = load_cache(extract_dataset(ds, cache_dir=d, progress=False, log=_quiet, runner=on_cluster(cl), **kw))
            wall = time.perf_counter() - t
    finally:
        CacheWriter.add_chunk = real_add
    st = dict(cl.last_stats)
    return {"wall": wall, "steady_seconds": st["work_seconds"], "setup_seconds": st["setup_seconds"],
            "join_seconds": st["join_seconds"], "rows": len(c), "features": c.features, "paths": list(c.paths),
            "stats": st, "killed": killed}


def overhead(r: dict, slots: int) -> dict:
    st = r["stats"]
    busy = st["load_seconds"] + st["embed_seconds"]
    other = slots * st["work_seconds"] - busy + st["join_seconds"]  # scheduling, idle, shard write, join
    return {"shards": st["shards"], "shard_size": st["shard_size"], "per_shard_seconds": other / st["shards"],
            "share": other / (slots * st["work_seconds"] + st["join_seconds"]),
            "write_per_shard": st["write_seconds"] / st["shards"], "join_seconds": st["join_seconds"],
            "worker_seconds_per_image": busy / max(1, st["images"])}


def bench_extract(cl, ds, kw, rounds: int, label: str, log) -> dict:
    runs = {"local": [], "cluster": []}
    for k in range(rounds):
        order = ("local", "cluster") if k % 2 == 0 else ("cluster", "local")
        for mode in order:
            r = extract_local(ds, kw) if mode == "local" else extract_cluster(cl, ds, kw)
            runs[mode].append(r)
            log(f"{label} round {k + 1} {mode}: {r['rows']} rows, wall {r['wall']:.1f} s, "
                f"steady {r['rows'] / r['steady_seconds']:.2f} img/s")
    ref = runs["local"][0]
    diffs = [float(np.abs(r["features"] - ref["features"]).max()) for r in runs["cluster"] + runs["local"][1:]]
    same_rows = all(r["paths"] == ref["paths"] for r in runs["cluster"])
    out = {"label": label, "images": ref["rows"], "dim": int(ref["features"].shape[1]), "max_abs_diff": max(diffs),
           "same_rows": same_rows}
    for mode, rs in runs.items():
        out[mode] = [{k: v for k, v in r.items() if k not in ("features", "paths")} for r in rs]
        out[mode + "_steady_ips"] = [r["rows"] / r["steady_seconds"] for r in rs]
        out[mode + "_wall_ips"] = [r["rows"] / r["wall"] for r in rs]
    out["overhead"] = [overhead(r, cl.n_slots) for r in runs["cluster"]]
    out["_ref"] = ref  # the first single-process run (features, paths): the killed-worker run is checked against it
    return out


def bench_compare(cl, cache, log, names) -> dict:
    from fer_features import evaluation as ev

    res = {}
    for mode in ("local", "cluster"):
        t = time.perf_counter()
        r, _ = ev.run(cache, names, "group-kfold", folds=10, progress=False, cluster=cl if mode == "cluster" else None)
        res[mode] = (time.perf_counter() - t, r)
        log(f"compare {mode}: {res[mode][0]:.1f} s")
    (tl, rl), (tc, rc) = res["local"], res["cluster"]
    same = all(a["accuracy"] == b["accuracy"] and a["predictions"]["pred"] == b["predictions"]["pred"]
               for a, b in zip(rl, rc))
    return {"presets": len(names), "folds": rl[0]["n_folds"], "rows": len(cache), "local_seconds": tl,
            "cluster_seconds": tc, "identical": same, "protocol": rl[0]["protocol_description"],
            "accuracies": {a["classifier"]: a["accuracy"] for a in rl}}


def projection(per_worker_ips: float, per_shard_s: float, shard: int, dim: int, join_s_per_row: float,
               image_bytes: float) -> list[dict]:
    rows = []
    n = 1_000_000
    shards = -(-n // shard)
    for w in (8, 64, 512):
        compute = n / (w * per_worker_ips)
        dist = shards * per_shard_s / w
        join = n * join_s_per_row
        rows.append({"workers": w, "hours": (compute + dist + join) / 3600, "join_hours": join / 3600,
                     "compute_hours": compute / 3600, "features_gb": n * dim * 4 / 1e9,
                     "to_client_mb_shared_fs": shards * 0.5e3 / 1e6, "to_client_gb_gather": n * dim * 4 / 1e9,
                     "to_workers_gb_gather": n * image_bytes / 1e9,
                     "read_mb_s_all_workers": w * per_worker_ips * (image_bytes + dim * 4) / 1e6})
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "datasets" / "ckplus48"))
    ap.add_argument("--n", type=int, default=128, help="images for the default features")
    ap.add_argument("--n-resnet", type=int, default=64, help="images for resnet50 at 224 px")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--cache-dir", default=None, help="where the CK+48 default cache is (or is made) for compare")
    ap.add_argument("--presets", default=None, help="comma-separated presets for compare (default: all)")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "distributed.md"))
    a = ap.parse_args()

    from fer_features.features.cache import load_cache
    from fer_features.distributed.cluster import Cluster
    from fer_features.data.formats import load_dataset
    from fer_features.features.extract import extract_dataset

    log = lambda m: print(m, file=sys.stderr, flush=True)  # noqa: E731
    t_all = time.perf_counter()
    ds = load_dataset(a.data)
    pick = lambda n: ds.subset(np.linspace(0, len(ds) - 1, min(n, len(ds))).round().astype(int))  # noqa: E731
    load = load_average("before")
    t = time.perf_counter()
    with Cluster("local:2") as cl:
        start_s = time.perf_counter() - t
        default = bench_extract(cl, pick(a.n), {}, a.rounds, "default features", log)
        resnet = bench_extract(cl, pick(a.n_resnet), {"backbone": "resnet50", "weights": "random", "image_size": 224},
                               a.rounds, "resnet50 random 224", log)
        plain = extract_cluster(cl, pick(a.n), {})
        killed = extract_cluster(cl, pick(a.n), {}, kill=True)
        log(f"killed worker: wall {killed['wall']:.1f} s vs {plain['wall']:.1f} s (pids {killed['killed']})")
        deadline = time.time() + 120
        while cl.n_workers < 2 and time.time() < deadline:
            time.sleep(0.5)
        ck = load_cache(extract_dataset(ds, cache_dir=a.cache_dir, progress=False, log=_quiet))
        from fer_features.classify import presets as C

        comp = bench_compare(cl, ck, log, a.presets.split(",") if a.presets else list(C.PRESETS))
    load_after = load_average("after")

    def med(x):
        return float(np.median(x))

    lines = ["# Distributed extraction and comparison on a local Dask cluster (issue 20)", "",
             f"Command: `python bench/distributed.py {' '.join(sys.argv[1:])}` ".rstrip() + " "
             f"({(time.perf_counter() - t_all) / 60:.1f} min).",
             f"Machine: {machine_info([('tensorflow', 'TensorFlow'), ('dask', 'dask'), ('distributed', 'distributed')])}.",
             f"**The 2 cores were shared with other work** (load average {load[0]:.1f} before, {load_after[0]:.1f} "
             "after, on 2 cores): absolute rates are several times below this machine's when quiet; the ratios "
             "come from interleaved runs (single process and cluster alternating, order swapped every round).",
             f"Cluster: `--cluster local:2` = 2 worker processes, 1 task and {max(1, (os.cpu_count() or 1) // 2)} "
             f"TensorFlow thread(s) each, on 127.0.0.1 (started in {start_s:.1f} s, once, before the runs). "
             "Single process: TensorFlow on all cores plus 2 image-decoding threads (the product's default).",
             f"Images: CK+48, {default['images']} (default features) and {resnet['images']} (resnet50) images "
             "spread evenly over the dataset (its first images are all one class).", "",
             "## Extraction throughput", "",
             "Steady: images / the time after every network is built (single process: `extract_seconds`; cluster: "
             "from the first shard submitted to the last shard's file, after all workers built their network at "
             "once). End to end: images / the whole `extract_dataset` call (network build, shard join; the "
             "cluster's workers keep their network after their first run, so their later runs build nothing).", "",
             *md_table(["features", "images", "single img/s steady", "cluster img/s steady", "cluster / single",
                        "single img/s end to end", "cluster img/s end to end", "max abs feature difference",
                        "same rows in the same order"], "lrrrrrrrl")]
    verdicts = []
    for r in (default, resnet):
        ratio = med(r["cluster_steady_ips"]) / med(r["local_steady_ips"])
        verdicts.append((r["label"], ratio))
        lines.append(md_row([r["label"], r["images"], f"{med(r['local_steady_ips']):.2f}",
                             f"{med(r['cluster_steady_ips']):.2f}", f"**{100 * ratio:.0f} %**",
                             f"{med(r['local_wall_ips']):.2f}", f"{med(r['cluster_wall_ips']):.2f}",
                             f"{r['max_abs_diff']:.1e}", r["same_rows"]]))
    lines += ["", "Per round (img/s, steady): " + "; ".join(
        f"{r['label']}: single {', '.join(f'{x:.2f}' for x in r['local_steady_ips'])}, cluster "
        f"{', '.join(f'{x:.2f}' for x in r['cluster_steady_ips'])}" for r in (default, resnet)) + ".", ""]
    met = all(v >= 0.9 for _, v in verdicts)
    lines += [f"**Target (cluster >= 90 % of single-process throughput on the same 2 cores): "
              f"{'met' if met else 'NOT met'}** (" + ", ".join(f"{lab} {100 * v:.0f} %" for lab, v in verdicts) + ").",
              "Read with the load in mind: the same single-process run measured "
              + " and ".join(f"{x:.2f}" for x in default["local_steady_ips"]) + " img/s in its rounds; per round the "
              "cluster reached " + "; ".join(
                  " and ".join(f"{100 * c / l:.0f} %" for c, l in zip(r["cluster_steady_ips"], r["local_steady_ips"]))
                  + f" ({r['label']})" for r in (default, resnet)) + " of the single process beside it.", ""]
    ov = [o for r in (default, resnet) for o in r["overhead"]]
    lines += ["## Per-shard overhead", "",
              "Everything a cluster run spends beyond reading, preprocessing and embedding: 2 x the run's work time "
              "minus the workers' busy time (scheduling, a worker idle at the end, writing the shard file) plus "
              "the client's join of the shards into the `.h5`.", "",
              *md_table(["features", "shards x size", "overhead per shard s", "of which shard write s", "join s",
                         "share of the run"], "llrrrr",
                        ([r["label"], f"{o['shards']} x {o['shard_size']}", f"{o['per_shard_seconds']:.2f}",
                          f"{o['write_per_shard']:.3f}", f"{o['join_seconds']:.2f}", f"{100 * o['share']:.1f} %"]
                         for r in (default, resnet) for o in r["overhead"]))]
    per_shard = med([o["per_shard_seconds"] for o in default["overhead"]])
    spi = med([o["worker_seconds_per_image"] for o in default["overhead"]])
    lines += ["", f"Shard size: with {per_shard:.2f} s of overhead per shard (median, default features; it includes "
              "the end-of-run idle time, so it overstates the steady per-shard cost) and "
              f"{spi:.3f} worker-seconds per image here, a shard of S images costs "
              f"{per_shard:.2f} / ({per_shard:.2f} + {spi:.3f} S): "
              + ", ".join(f"S = {s}: {100 * per_shard / (per_shard + spi * s):.1f} %" for s in (32, 64, 128, 256, 512))
              + ". The default (`--shard-size` 256 at most; fewer so that every worker gets 4 shards) keeps it near "
              "the low end while a killed worker loses at most one shard (256 images: "
              f"{256 * spi:.0f} s of one worker here).", ""]
    extra = killed["wall"] - plain["wall"]
    shard_s = spi * killed["stats"]["shard_size"]
    lines += ["## A killed worker", "",
              f"One cluster run of the {default['images']} default-feature images in which one worker process was "
              f"SIGKILLed when the first shard came back (pid {killed['killed']}); the nanny starts a new worker, "
              "Dask runs the lost shard again.", "",
              "| run | wall s | rows | rows equal to the single-process run | shards |", "|---|---:|---:|---|---:|",
              f"| plain | {plain['wall']:.1f} | {plain['rows']} | {_equal(plain, default['_ref'])} | "
              f"{plain['stats']['shards']} |",
              f"| a worker killed | {killed['wall']:.1f} | {killed['rows']} | {_equal(killed, default['_ref'])} | "
              f"{killed['stats']['shards']} |", "",
              f"The kill cost {extra:.1f} s of wall time, {extra / shard_s:.2f} x one shard's work "
              f"({shard_s:.1f} worker-seconds, {killed['stats']['shard_size']} images): the lost shard run again, "
              "plus the replacement worker's start and network build where it took a shard.", ""]
    lines += ["## compare on the cluster", "",
              f"{comp['presets']} presets ({', '.join(comp['accuracies'])}) x {comp['folds']} folds on the CK+48 "
              "default-feature cache "
              f"({comp['rows']} rows); protocol: {comp['protocol']}.", "",
              "| where | wall s | results identical to local |", "|---|---:|---|",
              f"| single process (2 folds at a time) | {comp['local_seconds']:.1f} | - |",
              f"| `local:2` cluster (presets x folds as tasks, features sent once per worker) | "
              f"{comp['cluster_seconds']:.1f} | {comp['identical']} |", ""]
    per_worker = med(default["cluster_steady_ips"]) / cl_slots(default)
    image_bytes = float(np.mean([os.path.getsize(r.path) for r in ds.records]))
    join_per_row = med([o["join_seconds"] for o in default["overhead"]]) / default["images"]
    proj = projection(per_worker, per_shard, 256, default["dim"], join_per_row, image_bytes)
    lines += ["## Projection for 1M images (arithmetic, NOT a measurement)", "",
              f"Assumes every worker embeds at the rate measured here per worker process ({per_worker:.2f} img/s: "
              "one shared core of this machine, default features), perfect scaling of that rate, 256-image shards "
              f"with the overhead above ({per_shard:.2f} s each, spread over the workers), a client join at the "
              f"measured {1000 * join_per_row:.2f} ms per row (it is sequential, on the client), {default['dim']} "
              f"float32 features per image and CK+48's {image_bytes / 1e3:.1f} kB per image file.", "",
              *md_table(["workers", "projected time h", "of which join h", "features on disk GB (x2 while joining)",
                         "sent to the client, shared filesystem", "sent to the client, --gather",
                         "sent to workers, --gather", "read+write rate all workers MB/s"], "r" * 8,
                        ([p["workers"], f"{p['hours']:.2f}", f"{p['join_hours']:.2f}", f"{p['features_gb']:.1f}",
                          f"{p['to_client_mb_shared_fs']:.1f} MB", f"{p['to_client_gb_gather']:.1f} GB",
                          f"{p['to_workers_gb_gather']:.1f} GB", f"{p['read_mb_s_all_workers']:.0f}"] for p in proj))]
    lines += ["", "What limits it first: the client's sequential join (a copy of every feature into one `.h5`) is "
              "a fixed cost that does not shrink with workers, so from some tens of workers it dominates; then the "
              "shared filesystem's bandwidth (images in, shard files out; the last column), and with `--gather` the "
              "client's network link (every feature and image byte passes through it). The scheduler's task rate "
              "(about 4,000 shards for 1M images) is far from a limit.", ""]
    strip = lambda r: {k: v for k, v in r.items() if k not in ("features", "paths") and not k.startswith("_")}  # noqa: E731
    out = save_report(a.out, lines, {"default": strip(default), "resnet50": strip(resnet), "plain": strip(plain),
                                     "killed": strip(killed), "compare": comp, "projection": proj,
                                     "load_before": load, "load_after": load_after}, echo=False)
    print(out.read_text())
    return 0


def _equal(r: dict, ref: dict) -> bool:
    """Same rows in the same order, features equal to float tolerance."""
    return r["paths"] == ref["paths"] and bool(np.allclose(r["features"], ref["features"], atol=1e-5))


def cl_slots(r: dict) -> int:
    return int(r["cluster"][0]["stats"]["workers"])


if __name__ == "__main__":
    sys.exit(main())
