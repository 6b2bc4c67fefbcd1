"""Time to a ready SLURM cluster: workbench.launch vs raw dask_jobqueue.SLURMCluster.

Both submit the same jobs (same cores, memory, walltime, job count) to the same SLURM and
count as ready when every worker has connected. workbench's time includes what it adds:
the checks against the live cluster (sinfo, sbatch --test-only), the registry record and
the queue-state polling while waiting. Runs alternate between the two; medians are
reported. Between runs, the next one waits until SLURM has released the node.

Needs a SLURM: `sudo scripts/slurm-up --cpus 32` (enough CPUs for 16 one-core jobs) and
export the SLURM_CONF it prints, then

    python benchmarks/slurm_launch.py [--repeats 5] [--jobs 2]

``scale(options)`` (``make bench-scale``, which starts such a SLURM when none is given):
1, 4 and 16 jobs, a table and a curve (benchmarks/_scale.py).
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
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _scale import RAW, WORKBENCH, Curve, Point, ScaleOptions, Unavailable, interleave

OPTIONS = {"cores": 1, "memory": "1GiB", "walltime": "00:10:00"}
SCALE_JOBS = (1, 4, 16)
SCALE_ROUNDS = {1: 7, 4: 4, 16: 2}


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


#: The extra series: workbench without TLS, as plain as the raw SLURMCluster above.
PLAIN = "workbench.launch, security: none"


def workbench_once(jobs: int, security: str = "tls") -> float:
    """A ready workbench SLURM cluster; ``security``: its default ``tls`` (per-cluster
    credentials, workers connect over TLS) or ``none`` (plain TCP, as the raw side)."""
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
        security=security,
        **OPTIONS,
    )
    elapsed = time.perf_counter() - start
    handle.close()
    wait_released(name)
    return elapsed


def slurm_cpus() -> int:
    """CPUs of the SLURM's largest node; Unavailable when no SLURM answers."""
    if shutil.which("sinfo") is None:
        raise Unavailable("no SLURM commands on PATH (see docs/slurm.md: scripts/slurm-up)")
    out = subprocess.run(["sinfo", "-h", "-o", "%c"], capture_output=True, text=True)
    if out.returncode or not out.stdout.strip():
        raise Unavailable(
            "no SLURM answers here: start one with `sudo scripts/slurm-up --cpus 32` and export "
            f"the SLURM_CONF it prints ({out.stderr.strip()[:200]})"
        )
    return max(int(c.rstrip("+")) for c in out.stdout.split())


def scale(options: ScaleOptions) -> list[Curve]:
    """Time to all workers ready for 1, 4 and 16 jobs: workbench.launch vs raw
    dask_jobqueue.SLURMCluster, interleaved on the same SLURM."""
    cpus = slurm_cpus()
    sizes = (1, 4) if options.quick else SCALE_JOBS
    if max(sizes) * int(str(OPTIONS["cores"])) > cpus:
        raise Unavailable(
            f"the SLURM node has {cpus} CPUs, too few for {max(sizes)} one-core jobs at once: "
            "start it with `scripts/slurm-up --cpus 32`"
        )
    logs = os.path.join(os.environ.get("WORKBENCH_STATE_DIR", tempfile.mkdtemp()), "raw-logs")
    curve = Curve(
        key="slurm-launch",
        title="SLURM: time until every worker is ready, workbench.launch('slurm') vs "
        "dask_jobqueue.SLURMCluster",
        x_label="jobs",
        workbench="workbench.launch",
        raw="SLURMCluster + wait_for_workers",
        kind="time",
        target=1.05,
        logx=True,
        notes=[
            f"one worker per job ({OPTIONS['cores']} core, {OPTIONS['memory']}), the same "
            f"single-node SLURM ({cpus} CPUs configured on a {os.cpu_count()}-core machine)",
            "workbench's time includes its checks against the live cluster (sinfo, sbatch "
            "--test-only), the registry record and the queue polling while it waits, and by "
            "default TLS with per-cluster credentials (the raw SLURMCluster is plain TCP); "
            f"'{PLAIN}' is workbench as plain as the raw side",
            "between runs, the next one starts once SLURM has released the previous jobs",
        ],
    )
    raw_once(1, logs)  # warm imports, the page cache and SLURM for both paths
    workbench_once(1)
    for jobs in sizes:
        runs = {
            RAW: lambda j=jobs: raw_once(j, logs),
            WORKBENCH: lambda j=jobs: workbench_once(j),
            PLAIN: lambda j=jobs: workbench_once(j, security="none"),
        }
        times = interleave(runs, options.repeats(SCALE_ROUNDS[jobs]))
        curve.points.append(Point(f"{jobs} job{'s' if jobs > 1 else ''}", jobs, times))
        print(
            f"  {jobs} jobs: raw {statistics.median(times[RAW]):.2f} s, "
            f"workbench {statistics.median(times[WORKBENCH]):.2f} s, "
            f"workbench without TLS {statistics.median(times[PLAIN]):.2f} s",
            flush=True,
        )
    return [curve]


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
