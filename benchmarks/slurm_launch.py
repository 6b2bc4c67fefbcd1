"""Time to a ready SLURM cluster: workbench.launch vs raw dask_jobqueue.SLURMCluster.

Both submit the same jobs (same cores, memory, walltime, job count) to the same SLURM and
count as ready when every worker has connected. workbench's time includes what it adds:
the checks against the live cluster (sinfo, sbatch --test-only), the registry record and
the queue-state polling while waiting. Runs alternate between the two; medians are
reported. Between runs, the next one waits until SLURM has released the node.

Needs a SLURM: `sudo scripts/slurm-up` and export the SLURM_CONF it prints, then

    python benchmarks/slurm_launch.py [--repeats 5] [--jobs 2]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid

OPTIONS = {"cores": 1, "memory": "1GiB", "walltime": "00:10:00"}


def wait_released(name: str, timeout: float = 120) -> None:
    """Until squeue shows no job called ``name`` (completing ones included)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = subprocess.run(
            ["squeue", "-h", "-n", name, "-o", "%i"], capture_output=True, text=True, check=True
        )
        if not out.stdout.strip():
            return
        time.sleep(0.2)
    raise RuntimeError(f"jobs {name} still in squeue after {timeout}s")


def raw_once(jobs: int, logs: str) -> float:
    from dask_jobqueue import SLURMCluster
    from distributed import Client

    name = f"bench-raw-{uuid.uuid4().hex[:6]}"
    start = time.perf_counter()
    cluster = SLURMCluster(
        job_name=name,
        log_directory=logs,
        scheduler_options={"dashboard_address": ":0"},
        **OPTIONS,
    )
    cluster.scale(jobs=jobs)
    client = Client(cluster)
    client.wait_for_workers(jobs)
    elapsed = time.perf_counter() - start
    client.close()
    cluster.close()
    wait_released(name)
    return elapsed


def workbench_once(jobs: int) -> float:
    import workbench

    name = f"bench-wb-{uuid.uuid4().hex[:6]}"
    start = time.perf_counter()
    handle = workbench.launch(
        "slurm",
        jobs=jobs,
        job_name=name,
        dashboard_address=":0",
        wait=True,
        timeout=300,
        progress="off",
        **OPTIONS,
    )
    elapsed = time.perf_counter() - start
    handle.close()
    wait_released(name)
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args()
    if shutil.which("sinfo") is None or subprocess.run(["sinfo"], capture_output=True).returncode:
        sys.exit(
            "no SLURM answers here: start one with `sudo scripts/slurm-up` and export the "
            "SLURM_CONF it prints"
        )
    # Keep registry records and job logs out of the user's real state directory.
    state = tempfile.mkdtemp(prefix="wb-bench-")
    os.environ.setdefault("WORKBENCH_STATE_DIR", state)
    logs = os.path.join(state, "raw-logs")
    import logging

    logging.getLogger("distributed").setLevel(logging.WARNING)
    raw_once(args.jobs, logs)  # warm imports, the page cache and SLURM for both paths
    workbench_once(args.jobs)
    raw: list[float] = []
    wb: list[float] = []
    for _ in range(args.repeats):
        raw.append(raw_once(args.jobs, logs))
        wb.append(workbench_once(args.jobs))
    r, w = statistics.median(raw), statistics.median(wb)
    print(f"jobs={args.jobs} repeats={args.repeats} (median, seconds until every worker is ready)")
    print(f"  raw dask_jobqueue.SLURMCluster: {r:.3f} s  (min {min(raw):.3f}, max {max(raw):.3f})")
    print(f"  workbench.launch('slurm')     : {w:.3f} s  (min {min(wb):.3f}, max {max(wb):.3f})")
    print(f"ratio workbench/raw = {w / r:.3f}  (overhead {100 * (w / r - 1):+.1f}%)")


if __name__ == "__main__":
    main()
