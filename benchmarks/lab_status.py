"""The status bar's costs on the Jupyter server: the kernel-to-cluster lookup and the reply.

[1] ``workbench.server.kernels.connected_clusters`` (which of N running clusters a kernel
    process is connected to) against the raw ``psutil.Process.net_connections`` call it
    wraps, for N = 10, 100 and 1000 cluster records; the process holds one client
    connection to a real scheduler.
[2] the status reply (``metrics?kernel=...&view=summary``: workers, tasks, cost, GPU
    summary) against the full metrics snapshot (``metrics?cluster=...``) it replaces for
    the status bar, in JSON bytes, for clusters of 1 and 4 workers.

    python benchmarks/lab_status.py [--repeats 200]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import tempfile
import time
from typing import Any


def _median_us(fn: Any, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e6


def lookup(repeats: int) -> None:
    import psutil
    from distributed import Client, LocalCluster

    from workbench.clusters.record import ClusterRecord
    from workbench.server.kernels import connected_clusters

    print("[1] kernel -> cluster lookup (median per call)")
    with (
        LocalCluster(
            n_workers=1, processes=False, protocol="tcp", dashboard_address=":0"
        ) as cluster,
        Client(cluster) as client,
    ):
        assert client.scheduler_info()["workers"]
        pid = os.getpid()
        real = ClusterRecord(
            id="real000001",
            profile="p",
            backend="local",
            scheduler_address=cluster.scheduler_address,
            owner_pid=1,
        )
        raw = _median_us(lambda: psutil.Process(pid).net_connections(kind="tcp"), repeats)
        for n in (10, 100, 1000):
            records = [
                ClusterRecord(
                    id=f"other{i:05d}",
                    profile="p",
                    backend="local",
                    scheduler_address=f"tcp://127.0.0.1:{20000 + i}",
                    owner_pid=1,
                )
                for i in range(n - 1)
            ] + [real]
            assert [r.id for r, _ in connected_clusters(pid, records)] == ["real000001"]
            wrapped = _median_us(lambda records=records: connected_clusters(pid, records), repeats)
            print(
                f"    {n:5d} records: raw net_connections {raw:8.1f} us, "
                f"connected_clusters {wrapped:8.1f} us, ratio {wrapped / raw:5.2f}"
            )


def payload() -> None:
    import workbench
    from workbench.metrics.store import close_all
    from workbench.server.metrics import cluster_status, metrics_snapshot

    print("[2] status reply vs full metrics snapshot (JSON bytes)")
    for workers in (1, 4):
        handle = workbench.launch(
            "local-cpu",
            n_workers=workers,
            threads_per_worker=1,
            memory_limit="1GiB",
            processes=False,
            protocol="tcp",
            dashboard_address=":0",
            wait=workers,
        )
        try:
            full = len(json.dumps(metrics_snapshot(handle.id), default=str))
            small = len(json.dumps(cluster_status(handle.id), default=str))
            print(
                f"    {workers} worker(s): full snapshot {full:7d} B, status {small:5d} B, "
                f"ratio {small / full:.3f}"
            )
        finally:
            close_all()
            handle.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=200)
    args = parser.parse_args()
    os.environ.setdefault("WORKBENCH_STATE_DIR", tempfile.mkdtemp(prefix="wb-bench-"))
    logging.getLogger("distributed").setLevel(logging.WARNING)
    lookup(args.repeats)
    payload()


if __name__ == "__main__":
    main()
