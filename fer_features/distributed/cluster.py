"""Run extraction and classifier comparisons on a Dask cluster (``dask.distributed``).

``--cluster ADDRESS`` (or ``$FER_FEATURES_CLUSTER``) on extract, classify, compare and experiment:

* ``local:N`` starts N worker processes on this machine for the run (one task at a time each, listening on
  the loopback interface only) and stops them after;
* ``tcp://host:8786`` connects to a running scheduler (``dask scheduler`` + ``dask worker``, SLURM via
  dask-jobqueue, Kubernetes via dask-kubernetes); ``tls://host:8786`` does so with TLS, the certificates
  coming from Dask's own security settings (``distributed.comm.tls.*`` in a Dask config file or the
  ``DASK_DISTRIBUTED__COMM__TLS__...`` environment variables).

Whoever can reach a scheduler can run any code on its workers: keep it on a private network or behind TLS.
The work itself is in ``distributed_extract`` (shards of images) and ``evaluation.run(cluster=...)`` (folds x
classifiers); this module (which imports nothing of the package) owns the connection and the generic "run these
tasks, sharing these arrays" step.
"""
from __future__ import annotations

import contextlib
import logging
import os
import re
import uuid
from typing import Any, Callable, Iterable, Iterator, Sequence

from fer_features.errors import ClusterError

ENV_VAR = "FER_FEATURES_CLUSTER"
# images per shard (one task), at most: chosen by measurement (bench/results/distributed.md): the per-shard cost
# (scheduling, idle, shard file, join) measured 0.3-0.8 s, against ~1 worker-second per image with the default
# features: 1-2 % of a 32-image shard, 0.2 % of a 256-image one; larger shards gain nothing and a killed worker
# loses at most one shard's work. Smaller datasets get smaller shards (4 per worker), so no worker idles at the end.
DEFAULT_SHARD_SIZE = 256


def auto_shard_size(n_records: int, n_slots: int, batch_size: int = 32) -> int:
    """Records per shard when none is given: ``DEFAULT_SHARD_SIZE``, or fewer so that every worker slot gets at
    least 4 shards, rounded up to whole network batches."""
    per = -(-max(1, n_records) // (4 * max(1, n_slots)))
    per = -(-per // batch_size) * batch_size
    return max(1, min(DEFAULT_SHARD_SIZE, per))
TF_THREADS_VAR = "FER_FEATURES_TF_THREADS"  # TensorFlow threads per worker process (local clusters set it)
_LOCAL_RE = re.compile(r"^local(?::(\d+))?$")
SECURITY_NOTE = ("whoever can reach a Dask scheduler can run any code on its workers: keep it on a private "
                 "network, or use tls:// with certificates")


def cluster_address(option: str | None = None) -> str | None:
    """The address to use: the option, else ``$FER_FEATURES_CLUSTER``, else None (run in this process)."""
    addr = (option or os.environ.get(ENV_VAR) or "").strip()
    return addr or None


def parse_address(address: str) -> tuple[str, Any]:
    """``('local', N)`` or ``('remote', 'tcp://...' | 'tls://...')``; ``ClusterError`` otherwise."""
    m = _LOCAL_RE.match(address)
    if m:
        n = int(m.group(1) or (os.cpu_count() or 1))
        if n < 1:
            raise ClusterError(f"--cluster {address}: a local cluster needs at least 1 worker")
        return "local", n
    if address.startswith(("tcp://", "tls://")) and len(address) > 6:
        return "remote", address
    raise ClusterError(f"--cluster {address!r}: use local:N, tcp://HOST:PORT or tls://HOST:PORT")


def _security(address: str):
    """Dask ``Security`` from the user's Dask config; a tls:// address needs a CA file and a client cert."""
    from distributed import Security  # Dask: optional (the cluster extra), only with --cluster

    sec = Security()  # reads distributed.comm.tls.* (config files, DASK_DISTRIBUTED__COMM__TLS__* variables)
    if address.startswith("tls://") and not (sec.tls_ca_file and sec.tls_client_cert):
        raise ClusterError(
            f"--cluster {address}: TLS needs certificates in Dask's settings, e.g. DASK_DISTRIBUTED__COMM__TLS__"
            "CA_FILE=ca.pem DASK_DISTRIBUTED__COMM__TLS__CLIENT__CERT=client.pem DASK_DISTRIBUTED__COMM__TLS__"
            "CLIENT__KEY=client.key (or distributed.comm.tls in ~/.config/dask/distributed.yaml)")
    return sec


class Cluster:
    """A Dask client for one run; a context manager (``with Cluster('local:2') as c: ...``).

    ``shard_size``: images per extraction task (None: :func:`auto_shard_size`); ``gather``: workers send each
    shard's features back to this process, which writes it (workers that share no filesystem with the client;
    the images are then sent to them too), instead of reading the data and writing their shard file into the
    cache's part folder themselves (a filesystem shared at the same path, the default; less traffic).
    """

    def __init__(self, address: str, *, shard_size: int | None = None, gather: bool = False,
                 log: Callable[[str], None] | None = None):
        self.address = address
        self.kind, self._arg = parse_address(address)
        if shard_size is not None and int(shard_size) < 1:
            raise ClusterError(f"--shard-size must be at least 1, got {shard_size}")
        self.shard_size = None if shard_size is None else int(shard_size)
        self.gather = bool(gather)
        self.log = log or (lambda msg: None)
        self.client = None
        self._local = None
        self.last_stats: dict[str, Any] = {}  # the last sharded extraction's timings (bench/distributed.py)

    # -- connection ------------------------------------------------------------------------------
    def __enter__(self) -> "Cluster":
        try:
            from distributed import Client, LocalCluster  # Dask: optional (the cluster extra), only with --cluster
        except ImportError as exc:
            raise ClusterError(f"--cluster needs Dask ({exc}): pip install -e '.[cluster]'") from None

        if self.kind == "local":
            n = self._arg
            threads = max(1, (os.cpu_count() or 1) // n)  # TensorFlow threads per worker: the cores shared out
            self._local = LocalCluster(
                n_workers=n, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None,
                silence_logs=logging.ERROR, env={TF_THREADS_VAR: str(threads)})
            self.client = Client(self._local)
            self.log(f"local Dask cluster: {n} worker process(es) on 127.0.0.1 "
                     f"({self._local.scheduler_address})")
        else:
            sec = _security(self._arg)
            try:
                self.client = Client(self._arg, security=sec, timeout=30)
            except (OSError, TimeoutError) as exc:
                raise ClusterError(f"--cluster {self._arg}: cannot reach the scheduler ({exc})") from None
            n = len(self.client.scheduler_info().get("workers", {}))
            self.log(f"connected to {self._arg}: {n} worker(s)")
            if self._arg.startswith("tcp://") and not re.match(r"tcp://(127\.|localhost|\[::1\])", self._arg):
                self.log(f"warning: {self._arg} is not encrypted; {SECURITY_NOTE}")
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self.client is not None:
            self.client.close()
            self.client = None
        if self._local is not None:
            self._local.close()
            self._local = None

    @property
    def n_workers(self) -> int:
        return len(self.client.scheduler_info().get("workers", {}))

    @property
    def n_slots(self) -> int:
        """Tasks the cluster runs at once (worker threads, all workers together)."""
        return max(1, sum(int(w.get("nthreads", 1)) for w in self.client.scheduler_info()["workers"].values()))

    # -- work ------------------------------------------------------------------------------------
    def map_unordered(self, fn: Callable, tasks: Sequence[tuple], shared: dict[str, Any] | None = None
                      ) -> Iterator[tuple[int, Any]]:
        """Run ``fn(**shared, *task)`` for every task on the cluster; yield ``(task index, result)`` as each
        ends. ``shared`` values (e.g. the feature matrix) are sent to every worker ONCE, not with each task.
        A failing task raises here; the tasks not yet finished are cancelled."""
        from distributed import as_completed  # Dask: optional (the cluster extra), only with --cluster

        tag = uuid.uuid4().hex[:10]
        shared = shared or {}
        futs_shared = {}
        if shared:
            keyed = self.client.scatter({f"fer-shared-{name}-{tag}": v for name, v in shared.items()},
                                        broadcast=True, hash=False)
            futs_shared = {name: keyed[f"fer-shared-{name}-{tag}"] for name in shared}
        futs = [self.client.submit(_call, fn, futs_shared, task, key=f"fer-task-{tag}-{i}", pure=False)
                for i, task in enumerate(tasks)]
        index = {f.key: i for i, f in enumerate(futs)}
        try:
            for fut in as_completed(futs):
                yield index[fut.key], fut.result()
        finally:
            self.client.cancel([f for f in futs if not f.done()])
            self.client.cancel(list(futs_shared.values()))


def _call(fn: Callable, shared: dict[str, Any], task: Iterable) -> Any:
    return fn(*task, **shared)


def open_cluster(address: str | None, *, shard_size: int | None = None, gather: bool = False, log=None):
    """A ``Cluster`` context for ``address`` (see :func:`cluster_address`), or a no-op context giving None."""
    if address is None:
        return contextlib.nullcontext(None)
    return Cluster(address, shard_size=shard_size, gather=gather, log=log)


__all__ = ["Cluster", "ClusterError", "auto_shard_size", "cluster_address", "open_cluster", "parse_address",
           "DEFAULT_SHARD_SIZE",
           "ENV_VAR", "SECURITY_NOTE"]
