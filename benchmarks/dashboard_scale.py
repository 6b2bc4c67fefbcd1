"""Dashboards and metrics at scale: 8, 64, 256 and 1024 simulated workers feeding the real
metrics store and the real dashboard model at 1 Hz (benchmarks/_simworkers.py).

Per 1 Hz update, interleaved in rounds:

* ``dashboard-store``: CPU of the store mirroring one row from every worker
  (``MetricsStore.ingest``, the code that mirrors the scheduler's broadcast), against a
  plain numpy ring buffer (one preallocated float64 array per worker) taking the same
  rows. Details: the store's memory for a one-hour window (traced allocations; measured
  at 8 and 24 workers: the rings are independent per worker, so the larger sizes are
  the store's fixed part plus the per-worker figure times the workers) and the numpy
  buffer's.
* ``dashboard-model``: CPU of the dashboard model computing the Cluster tab's new points
  for all viewers (``DashboardState.new_points`` of each plot, aggregate view, 5 min
  window), against building the same aggregate plots directly with pandas and hvplot
  from the window's samples. Details: CPU of each viewer (streaming the points) and the
  bytes one browser session receives per update (Bokeh ``PATCH-DOC`` messages,
  serialized as the server does).

    python benchmarks/dashboard_scale.py [--quick]
"""

from __future__ import annotations

import gc
import statistics
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np
from _scale import RAW, WORKBENCH, Curve, Point, ScaleOptions
from _simworkers import Session, SimulatedCluster

HOUR = 3600
WINDOW = 300
#: Sizes up to this one get their store memory measured (an hour of rows each).
MEMORY_MEASURED = 32
#: Two sizes measured for the line (per worker, fixed) that larger sizes are given by.
MEMORY_FIT = (8, 24)
#: Store memory target at 1024 workers for one hour (bytes).
STORE_TARGET = 200 * 2**20


def _raw_ring(sim: SimulatedCluster) -> tuple[dict[str, Any], Any]:
    """A numpy ring per worker with the store's columns; returns (buffers, writer)."""
    keys = list(sim.values)
    index = {k: i for i, k in enumerate(keys)}
    bufs = {a: np.full((WINDOW, len(keys) + 1), np.nan) for a, _, _ in sim.workers}
    pos = dict.fromkeys(bufs, 0)

    def write(replies: dict[str, Any]) -> float:
        began = time.process_time()
        for address, delta in replies.items():
            buf = bufs[address]
            cols = [index[k] + 1 for k in delta["keys"]] if delta["keys"] else None
            for t, row in zip(delta["t"], delta["rows"], strict=True):
                i = pos[address] % WINDOW
                buf[i, 0] = t
                if cols is not None and len(row) == len(cols):
                    buf[i, cols] = [np.nan if v is None else v for v in row]
                else:
                    buf[i, 1 : len(row) + 1] = [np.nan if v is None else v for v in row]
                pos[address] += 1
        return time.process_time() - began

    return bufs, write


def _store_memory(workers: int) -> tuple[float, float]:
    """(bytes of the store holding an hour of ``workers`` workers, of numpy float64)."""
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        sim = SimulatedCluster(workers, capacity=HOUR)
        producers = sum(r.capacity for _, r, _ in sim.workers)
        sim.prefill(HOUR)
        gc.collect()  # what is held, not the garbage the collector has not reached yet
        held = tracemalloc.get_traced_memory()[0] - before
        # what the simulated workers hold is not the store's: measure and subtract it
        worker_bytes = 0
        for _, ring, _ in sim.workers:
            worker_bytes += sum(
                sys.getsizeof(item) + sys.getsizeof(item[2]) + 28 + 24 for item in ring._rows
            )
        del producers
    finally:
        tracemalloc.stop()
    width = len(sim.values) + 1
    raw = workers * HOUR * width * 8
    return held - worker_bytes, raw


def _raw_plots(sim: SimulatedCluster, plots: list[Any]) -> float:
    """The same aggregate plots built directly: the window's samples in one long pandas
    frame, bucketed, aggregated over workers, drawn with hvplot and rendered by Bokeh."""
    import holoviews as hv
    import pandas as pd
    from hvplot import hvPlotTabular

    began = time.process_time()
    now = sim.t
    for plot in plots:
        parts = []
        for metric in plot.metrics:
            if metric.scope == "cluster":
                keys, times, rows = sim.store.cluster.window(now - WINDOW)
            else:
                keys, times, rows = [], [], []
            if metric.scope == "cluster":
                if metric.name in keys:
                    i = keys.index(metric.name)
                    parts.append(
                        pd.DataFrame(
                            {"time": times, "series": metric.name, "value": [r[i] for r in rows]}
                        )
                    )
                continue
            for source in sim.store.worker_sources():
                keys, times, rows = source.ring.window(now - WINDOW)
                if metric.name in keys:
                    i = keys.index(metric.name)
                    parts.append(
                        pd.DataFrame(
                            {
                                "time": np.floor(times),
                                "series": metric.name,
                                "value": [r[i] if i < len(r) else np.nan for r in rows],
                            }
                        )
                    )
        if not parts:
            continue
        frame = pd.concat(parts)
        how = {"mean": "mean", "max": "max"}.get(plot.metrics[0].agg, "sum")
        agg = frame.groupby(["series", "time"])["value"].agg(how).reset_index()
        agg["time"] = pd.to_datetime(agg["time"], unit="s")
        element = hvPlotTabular(agg).line(x="time", y="value", by="series")
        hv.renderer("bokeh").get_plot(element)
    return time.process_time() - began


def scale(options: ScaleOptions) -> list[Curve]:
    from workbench.dashboards import create_view
    from workbench.dashboards.model import FRAMES

    sizes = [8, 64] if options.quick else [8, 64, 256, 1024]
    updates = options.repeats(4)
    store = Curve(
        key="dashboard-store",
        title="Metrics store: CPU per 1 Hz update vs a numpy ring buffer of the same rows",
        x_label="workers",
        workbench="MetricsStore.ingest",
        raw="numpy ring buffer",
        kind="time",
        target=5.0,
        y_label="CPU seconds per update",
        unit="ms",
        logx=True,
        detail_units={"store, 1 h": ("MB", 1.0), "numpy, 1 h": ("MB", 1.0)},
    )
    model = Curve(
        key="dashboard-model",
        title="Dashboard model: Cluster tab's new points per update vs pandas + hvplot plots",
        x_label="workers",
        workbench="DashboardState.new_points (all plots)",
        raw="pandas groupby + hvplot + Bokeh render",
        kind="time",
        target=1.0,
        y_label="CPU seconds per update",
        unit="ms",
        logx=True,
        detail_units={"to one browser": ("kB per update", 1e-3)},
    )
    began = time.perf_counter()
    memory: dict[int, tuple[float, float]] = {}
    for workers in sorted({*MEMORY_FIT, *(w for w in sizes if w <= MEMORY_MEASURED)}):
        memory[workers] = _store_memory(workers)
    # Each worker has its own ring; the store's own rings (the cluster's) are paid once:
    # a line through two measured sizes gives both, for the sizes too big to measure.
    small, large = MEMORY_FIT
    per_worker = (memory[large][0] - memory[small][0]) / (large - small)
    fixed = memory[small][0] - per_worker * small
    viewer_sizes: dict[int, float] = {}
    for workers in sizes:
        sim = SimulatedCluster(workers, capacity=HOUR)
        sim.prefill(WINDOW)
        _, raw_write = _raw_ring(sim)
        view = create_view(sim.store, tabs=["Cluster"])
        session = Session(view)
        plots = [s.plot for s in view.slots["Cluster"].values()]
        samples: dict[str, list[float]] = {WORKBENCH: [], RAW: []}
        msamples: dict[str, list[float]] = {WORKBENCH: [], RAW: []}
        viewer: list[float] = []
        sent: list[float] = []
        for i in range(updates + 1):
            replies = sim.produce()
            if i % 2:
                raw_cpu = raw_write(replies)
                cpu = sim.ingest(replies)
            else:
                cpu = sim.ingest(replies)
                raw_cpu = raw_write(replies)
            t0 = time.process_time()
            for slot in view.slots["Cluster"].values():
                if slot.last:
                    since = min(slot.last.values())
                    view.state.new_points(
                        slot.plot, since.timestamp() - _utc_offset(), slot.divisor
                    )
            model_cpu = time.process_time() - t0
            viewer_cpu, size = session.update()  # the frames are cached now: its own cost
            raw_model = _raw_plots(sim, plots) if i < 2 or workers <= 256 else float("nan")
            if i:  # the first update after the build catches up
                samples[WORKBENCH].append(cpu)
                samples[RAW].append(raw_cpu)
                msamples[WORKBENCH].append(model_cpu)
                if raw_model == raw_model:
                    msamples[RAW].append(raw_model)
                viewer.append(viewer_cpu)
                sent.append(size)
        FRAMES._data.clear()
        mem, raw_mem = memory.get(workers, (fixed + per_worker * workers, workers * HOUR * 8.0))
        if workers not in memory:
            raw_mem = workers * HOUR * (len(sim.values) + 1) * 8.0
        label = f"{workers} workers"
        store.points.append(
            Point(
                label,
                workers,
                samples,
                details={"store, 1 h": [mem / 2**20], "numpy, 1 h": [raw_mem / 2**20]},
            )
        )
        model.points.append(
            Point(
                label,
                workers,
                msamples,
                details={"each viewer's update": viewer, "to one browser": sent},
            )
        )
        viewer_sizes[workers] = statistics.median(sent)
        print(f"  {workers} workers: done", flush=True)
    elapsed = time.perf_counter() - began
    store.elapsed = model.elapsed = elapsed / 2
    big = max(sizes)
    mem_big = store.points[-1].details["store, 1 h"][0]
    per_w = [(p.x, statistics.median(p.samples[WORKBENCH]) / p.x * 1e6) for p in store.points]
    store.notes += [
        "CPU per worker per update (us): "
        + ", ".join(f"{w:g}: {c:.0f}" for w, c in per_w)
        + " (linear growth: a flat line).",
        f"Store memory for one hour at {big} workers: {mem_big:.0f} MB; target under "
        f"{STORE_TARGET / 2**20:.0f} MB: "
        + ("met" if mem_big * 2**20 < STORE_TARGET else "**missed**")
        + f". Measured (traced allocations) at {', '.join(map(str, memory))} workers; "
        f"larger sizes: {fixed / 2**20:.2f} MB for the store's own rings plus "
        f"{per_worker / 2**10:.0f} kB per worker (each worker has its own ring), the line "
        f"through {MEMORY_FIT[0]} and {MEMORY_FIT[1]} workers. Ratio target chosen here.",
    ]
    if 64 in viewer_sizes and big in viewer_sizes:
        r = viewer_sizes[big] / max(viewer_sizes[64], 1.0)
        model.notes.append(
            f"Bytes to one browser session per update, {big} vs 64 workers: {r:.2f}x "
            "(target under 2x: " + ("met" if r < 2 else "**missed**") + "): the aggregate "
            "views send one point per line per update, whatever the number of workers."
        )
    model.notes.append(
        "The model's cost is paid once per collection for every viewer (cached per store "
        "version); each viewer then only streams the points. The raw side builds the plots "
        "from scratch, as a view without streaming does on every refresh; at 1024 workers it "
        "is measured in the first round only."
    )
    return [store, model]


def _utc_offset() -> float:
    from workbench.dashboards.model import _utc_offset as offset

    return offset()


def main() -> None:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    for curve in scale(ScaleOptions(quick=args.quick)):
        print(curve.markdown())


if __name__ == "__main__":
    main()
