"""Time to a ready local cluster: workbench.launch vs raw distributed.LocalCluster.

Both start the same cluster (same worker count, threads, memory limit; CPU workers so the
comparison is like for like on any machine) and count as ready when a Client sees every
worker. Runs alternate between the two to cancel drift; medians are reported.

    python benchmarks/launch.py [--repeats 7] [--workers 2]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time


def raw_once(workers: int) -> float:
    from distributed import Client, LocalCluster

    start = time.perf_counter()
    cluster = LocalCluster(
        n_workers=workers, threads_per_worker=1, memory_limit="2GiB", dashboard_address=":0"
    )
    client = Client(cluster)
    client.wait_for_workers(workers)
    elapsed = time.perf_counter() - start
    client.close()
    cluster.close()
    return elapsed


def workbench_once(workers: int) -> float:
    import workbench

    start = time.perf_counter()
    handle = workbench.launch(
        "local-cpu",
        n_workers=workers,
        threads_per_worker=1,
        memory_limit="2GiB",
        dashboard_address=":0",
        wait=workers,
    )
    elapsed = time.perf_counter() - start
    handle.close()
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    # Keep the benchmark's registry records out of the user's real state directory.
    os.environ.setdefault("WORKBENCH_STATE_DIR", tempfile.mkdtemp(prefix="wb-bench-"))
    import logging

    logging.getLogger("distributed").setLevel(logging.WARNING)
    raw_once(args.workers)  # warm imports and the OS page cache for both paths
    workbench_once(args.workers)
    raw: list[float] = []
    wb: list[float] = []
    for _ in range(args.repeats):
        raw.append(raw_once(args.workers))
        wb.append(workbench_once(args.workers))
    r, w = statistics.median(raw), statistics.median(wb)
    print(f"workers={args.workers} repeats={args.repeats} (median, seconds to all workers ready)")
    print(f"  raw distributed.LocalCluster : {r:.3f} s  (min {min(raw):.3f}, max {max(raw):.3f})")
    print(f"  workbench.launch('local-cpu'): {w:.3f} s  (min {min(wb):.3f}, max {max(wb):.3f})")
    print(f"ratio workbench/raw = {w / r:.3f}  (overhead {100 * (w / r - 1):+.1f}%)")


if __name__ == "__main__":
    main()
