"""Cost of workbench's metrics sampling, against the raw psutil/NVML calls it makes.

1. In this process, the same readings three ways, interleaved over many rounds:
   raw psutil calls, raw NVML calls (where a GPU is visible), and workbench's worker
   samplers (the same readings plus rates, labels and the ring buffer append).
   CPU time per sample, and the share of one core that costs at 1 Hz.
2. On a real 2-worker cluster, the cost each worker measures for its own sampling
   (``workbench_sampler_cpu_seconds_total``, thread CPU time) at 1 Hz, and the bytes
   each update pulls from the workers (msgpack size of the deltas).
3. The server-side cost of one viewer of the Cluster tab at 8, 64 and 256 simulated
   workers: CPU per update and bytes sent to its browser, against building the same
   plots with hvplot on every refresh.

    python benchmarks/sampler.py [--rounds 300] [--seconds 20]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))


def _cpu(fn: Callable[[], Any], rounds: int) -> float:
    """CPU seconds per call (process CPU time, not wall time)."""
    start = time.process_time()
    for _ in range(rounds):
        fn()
    return (time.process_time() - start) / rounds


def raw_psutil() -> Callable[[], Any]:
    import psutil

    proc = psutil.Process()

    def read() -> Any:
        psutil.cpu_times()
        psutil.virtual_memory()
        with proc.oneshot():
            proc.cpu_times()
            proc.memory_info()
            proc.io_counters()
        psutil.disk_io_counters(perdisk=True)
        psutil.net_io_counters(pernic=True)

    return read


def raw_nvml() -> tuple[Callable[[], Any] | None, str]:
    try:
        import pynvml

        pynvml.nvmlInit()
    except Exception as exc:
        return None, f"NVML not available ({exc})"
    handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(pynvml.nvmlDeviceGetCount())]
    if not handles:
        return None, "NVML reports no GPU"

    calls: list[tuple[Callable[..., Any], tuple[Any, ...]]] = []
    for h in handles:
        calls += [
            (pynvml.nvmlDeviceGetUtilizationRates, (h,)),
            (pynvml.nvmlDeviceGetMemoryInfo, (h,)),
            (pynvml.nvmlDeviceGetTemperature, (h, 0)),
            (pynvml.nvmlDeviceGetPowerUsage, (h,)),
            (pynvml.nvmlDeviceGetTotalEnergyConsumption, (h,)),
        ]

    def read() -> Any:
        for fn, args in calls:
            with contextlib.suppress(pynvml.NVMLError):
                fn(*args)

    return read, f"{len(handles)} GPU(s)"


def in_process(rounds: int) -> None:
    from workbench.metrics import SamplerContext, SamplingLoop, create_samplers, known_samplers

    names = [n for n in known_samplers("worker") if n != "dask-worker"]
    loop = SamplingLoop(create_samplers(names, SamplerContext(role="worker")), capacity=600)
    psutil_read = raw_psutil()
    nvml_read, nvml_note = raw_nvml()
    ours = loop.sample_all
    for fn in (psutil_read, ours, *(f for f in (nvml_read,) if f)):
        fn()  # warm up
    raw_ps: list[float] = []
    raw_nv: list[float] = []
    wb: list[float] = []
    for _ in range(10):  # interleave to cancel drift on a shared machine
        raw_ps.append(_cpu(psutil_read, rounds // 10))
        if nvml_read:
            raw_nv.append(_cpu(nvml_read, rounds // 10))
        wb.append(_cpu(ours, rounds // 10))
    ps, nv, ws = (
        statistics.median(raw_ps),
        statistics.median(raw_nv) if raw_nv else 0.0,
        statistics.median(wb),
    )
    active = ", ".join(s.name for s in loop.samplers if not s.reason)
    print(f"[1] in-process, {rounds} samples each (median CPU time per sample)")
    print(f"    samplers active here: {active}; {nvml_note}")
    print(f"    raw psutil calls           : {ps * 1e6:8.1f} us")
    if raw_nv:
        print(f"    raw NVML calls             : {nv * 1e6:8.1f} us")
    print(f"    workbench samplers + ring  : {ws * 1e6:8.1f} us")
    print(f"    ratio workbench / raw      : {ws / (ps + nv):8.2f}")
    print(f"    at 1 Hz: {ws * 100:.3f}% of one core")
    loop.close()


def on_cluster(seconds: float) -> None:
    import workbench
    from workbench.metrics import get_store

    handle = workbench.launch(
        "local-cpu",
        n_workers=2,
        threads_per_worker=1,
        memory_limit="1GiB",
        dashboard_address=":0",
        wait=2,
    )
    try:
        store = get_store(handle.scheduler_address, interval=1.0)
        pulls: list[int] = []
        store.subscribe(lambda s: pulls.append(s.last_pull_bytes))
        store.wait_for(
            lambda s: sum(1 for w in s.worker_sources() if len(w.ring) >= 2) == 2, timeout=60
        )
        start = {w.id: (w.ring.latest() or (0, {}))[1] for w in store.worker_sources()}
        time.sleep(seconds)
        print(f"[2] real cluster, 2 workers sampling at 1 Hz for {seconds:.0f} s")
        for w in store.worker_sources():
            before, after = start[w.id], (w.ring.latest() or (0, {}))[1]
            n = after["workbench_sampler_samples_total"] - before["workbench_sampler_samples_total"]
            cpu = (
                after["workbench_sampler_cpu_seconds_total"]
                - before["workbench_sampler_cpu_seconds_total"]
            )
            print(
                f"    worker {w.name}: {n:.0f} samples, {cpu / n * 1e6:7.1f} us CPU per sample "
                f"= {cpu / n * 100:.3f}% of one core at 1 Hz"
            )
        steady = pulls[3:] or pulls
        per_update = statistics.median(steady)
        print(
            f"    bytes pulled per update (msgpack): {per_update:.0f} B for 2 workers "
            f"= {per_update / 2:.0f} B per worker (first full sync: {max(pulls)} B)"
        )
    finally:
        handle.close()


def render_cost(updates: int, sizes: tuple[int, ...] = (8, 64, 256)) -> None:
    """One viewer of the Cluster tab, at 1 s refresh, over simulated workers feeding the
    real store at 1 Hz (benchmarks/_simworkers.py): CPU per update of the first viewer
    (it computes the frames every viewer shares), of each further viewer, and the bytes
    each viewer's browser receives; against redrawing the same plot from scratch with
    hvplot each time (what a view without streaming does)."""
    import holoviews as hv
    from _simworkers import Session, SimulatedCluster

    from workbench.dashboards import create_view
    from workbench.dashboards.plots import bokeh_options, line_plot

    print("[3] one viewer of the Cluster tab, 5 min window, 1 s refresh (simulated workers)")
    print(
        "    workers | first viewer ms CPU/update | each further viewer | % core per viewer"
        " | bytes/update | raw hvplot redraw ms"
    )
    for workers in sizes:
        sim = SimulatedCluster(workers, capacity=600)
        sim.prefill(300)
        first = Session(create_view(sim.store, tabs=["Cluster"]))
        second = Session(create_view(sim.store, tabs=["Cluster"]))
        firsts, seconds, sizes_sent, raws = [], [], [], []
        slots = list(first.view.slots["Cluster"].values())
        renderer = hv.renderer("bokeh")
        for i in range(updates):
            sim.tick()
            cpu, size = first.update()
            cpu2, _ = second.update()
            if i:  # the first update after the build catches up
                firsts.append(cpu)
                seconds.append(cpu2)
                sizes_sent.append(size)
            began = time.process_time()  # the raw library: build and render every plot
            for slot in slots:
                frame = first.view.state.frame(slot.plot)
                if len(frame):
                    element = line_plot(frame, str(frame.attrs["unit"]))
                    renderer.get_plot(element.opts(*bokeh_options(slot.plot)))
            raws.append(time.process_time() - began)
        rebuilds = sum(s.rebuilds for s in slots)
        f, s2 = statistics.median(firsts), statistics.median(seconds)
        print(
            f"    {workers:7d} | {f * 1e3:26.1f} | {s2 * 1e3:19.1f} | {s2 * 100:17.2f}"
            f" | {statistics.median(sizes_sent):12.0f} | {statistics.median(raws) * 1e3:8.1f}"
            f"   ({len(slots)} plots, {rebuilds} builds)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=300)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--updates", type=int, default=10)
    parser.add_argument("--only", default="1,2,3", help="parts to run, e.g. 3")
    args = parser.parse_args()
    os.environ.setdefault("WORKBENCH_STATE_DIR", tempfile.mkdtemp(prefix="wb-bench-"))
    import logging

    logging.getLogger("distributed").setLevel(logging.WARNING)
    parts = set(args.only.split(","))
    if "1" in parts:
        in_process(args.rounds)
    if "2" in parts:
        on_cluster(args.seconds)
    if "3" in parts:
        render_cost(args.updates)


if __name__ == "__main__":
    main()
