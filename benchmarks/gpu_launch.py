"""Time to a ready GPU cluster: workbench.launch('local') vs raw dask_cuda.LocalCUDACluster.

Both start the same cluster on the same GPUs (one worker per GPU, the same threads, cuDF
spilling on where cuDF is installed, else off on both) and count as ready when a Client sees
every worker. Runs alternate between the two to cancel drift; medians are reported for each
size (workers x threads). Target: workbench adds less than 5%.

    python benchmarks/gpu_launch.py [--repeats 3] [--json out.json]
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import time
from typing import Any

from _gpu import need_gpu, quiet_and_private, write_json


def raw_once(gpus: list[int], threads: int, spill: bool) -> float:
    from dask_cuda import LocalCUDACluster
    from distributed import Client

    start = time.perf_counter()
    cluster = LocalCUDACluster(
        CUDA_VISIBLE_DEVICES=",".join(map(str, gpus)),
        threads_per_worker=threads,
        enable_cudf_spill=spill,
        dashboard_address=":0",
    )
    client = Client(cluster)
    client.wait_for_workers(len(gpus))
    elapsed = time.perf_counter() - start
    client.close()
    cluster.close()
    return elapsed


def workbench_once(gpus: list[int], threads: int, spill: bool) -> float:
    import workbench

    start = time.perf_counter()
    handle = workbench.launch(
        "local",
        gpus=gpus,
        threads_per_worker=threads,
        enable_cudf_spill=spill,
        dashboard_address=":0",
        wait=len(gpus),
    )
    elapsed = time.perf_counter() - start
    handle.close()
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--json")
    args = parser.parse_args()
    quiet_and_private()
    inventory = need_gpu()
    spill = importlib.util.find_spec("cudf") is not None
    all_gpus = [g.index for g in inventory.gpus]
    sizes = sorted({(1, t) for t in args.threads} | {(len(all_gpus), t) for t in args.threads})
    results: list[dict[str, Any]] = []
    raw_once(all_gpus[:1], 1, spill)  # warm imports, CUDA and the page cache for both paths
    workbench_once(all_gpus[:1], 1, spill)
    print(f"{inventory.gpus[0].name} x{len(all_gpus)}; cuDF spilling {'on' if spill else 'off'}")
    print("median seconds to all workers ready")
    for workers, threads in sizes:
        gpus = all_gpus[:workers]
        raw, wb = [], []
        for _ in range(args.repeats):
            raw.append(raw_once(gpus, threads, spill))
            wb.append(workbench_once(gpus, threads, spill))
        r, w = statistics.median(raw), statistics.median(wb)
        results.append(
            {
                "workers": workers,
                "threads_per_worker": threads,
                "raw_s": r,
                "workbench_s": w,
                "ratio": w / r,
                "overhead_pct": 100 * (w / r - 1),
                "raw_all": raw,
                "workbench_all": wb,
            }
        )
        print(
            f"  {workers} worker(s) x {threads} thread(s): raw LocalCUDACluster {r:.3f} s, "
            f"workbench {w:.3f} s, ratio {w / r:.3f} ({100 * (w / r - 1):+.1f}%)"
        )
    write_json(
        args.json,
        {
            "benchmark": "gpu_launch",
            "gpu": inventory.gpus[0].name,
            "gpus": len(all_gpus),
            "cudf_spill": spill,
            "repeats": args.repeats,
            "target": "overhead under 5%",
            "results": results,
        },
    )


if __name__ == "__main__":
    main()
