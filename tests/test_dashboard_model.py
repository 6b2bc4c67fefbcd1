"""Dashboard logic without a browser: plots from the catalog, aggregation, notices, views."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pandas as pd
import panel as pn
import pytest
from bokeh.document import Document

from workbench.dashboards import DashboardState, create_view, plot_frame, plot_specs
from workbench.dashboards.model import AGGREGATE, DETAIL, FRAMES, PlotSpec, display_unit
from workbench.metrics import MetricSpec, SampleRing, define, series_key
from workbench.metrics.base import _catalog
from workbench.metrics.store import MetricsStore, Source, get_store


def _plot(tab: str, title: str) -> PlotSpec:
    return next(p for p in plot_specs(tab) if p.title == title)


def test_tabs_get_their_plots_from_the_metric_catalog() -> None:
    titles = {tab: [p.title for p in plot_specs(tab)] for tab in ("GPU", "Storage", "Network")}
    assert titles["GPU"][:4] == [
        "GPU utilization (%)",
        "GPU memory",
        "PCIe throughput",
        "NVLink throughput",
    ]
    assert "Disk throughput" in titles["Storage"] and "Spilled to disk" in titles["Storage"]
    assert "InfiniBand throughput" in titles["Network"]
    energy = [p.title for p in plot_specs("Energy")]
    assert energy[:2] == ["GPU power (W)", "GPU energy in window"]
    # a new source's metrics (the data loader's, say) appear on their tab by themselves
    spec = MetricSpec(
        "test_loader_read_bytes_per_second",
        "Bytes per second read by a test loader.",
        "bytes/s",
        scope="process",
        tab="Storage",
        plot="Test loader IO",
        label="read",
    )
    define(spec)
    try:
        plot = _plot("Storage", "Test loader IO")
        assert plot.metrics == (spec,) and plot.unit == "bytes/s"
    finally:
        _catalog.pop(spec.name)


def test_display_units_follow_the_largest_value() -> None:
    assert display_unit("bytes/s", 2.5e9) == ("GB/s", 1e9)
    assert display_unit("bytes/s", 3e6) == ("MB/s", 1e6)
    assert display_unit("bytes/s", 0.0) == ("B/s", 1.0)
    assert display_unit("bytes", 3 * 2**30) == ("GiB", 2**30)
    assert display_unit("joules", 7200.0) == ("Wh", 3600.0)
    assert display_unit("percent", 50.0) == ("%", 1.0)


def _store_with(sources: list[Source]) -> MetricsStore:
    store = MetricsStore("tcp://example:8786", interval=1.0, sample_host=False)
    for s in sources:
        store.sources[s.id] = s
    return store


def _source(sid: str, host: str, rows: list[dict[str, float]], t0: float) -> Source:
    ring = SampleRing(100)
    for i, values in enumerate(rows):
        ring.append(t0 + i, values)
    return Source(sid, "worker", ring, host=host, name=f"{host}{sid[-1]}")


def test_aggregate_counts_host_and_gpu_series_once_and_sums_processes() -> None:
    now = time.time()
    t0 = now - 5
    disk = series_key("workbench_disk_read_bytes_per_second", {"disk": "nvme0n1"})
    gpu = {"gpu": "0", "uuid": "GPU-x"}
    util = series_key("workbench_gpu_utilization_percent", gpu)
    energy = series_key("workbench_gpu_energy_joules_total", gpu)
    proc = "workbench_process_read_bytes_per_second"

    def rows(d: float, p: float, u: float | None = None) -> list[dict[str, float]]:
        out = []
        for i in range(5):
            values = {disk: d, proc: p}
            if u is not None:
                values[util] = u
                values[energy] = 100.0 + 60.0 * i
            out.append(values)
        return out

    # two workers on host a (same disk, same GPU), one on host b
    store = _store_with(
        [
            _source("tcp://a:1", "a", rows(100e6, 10e6, 80.0), t0),
            _source("tcp://a:2", "a", rows(100e6, 20e6, 80.0), t0 + 0.3),
            _source("tcp://b:1", "b", rows(50e6, 30e6), t0 + 0.6),
        ]
    )
    frame = plot_frame(store, _plot("Storage", "Disk throughput"), 60, AGGREGATE, now=now)
    assert set(frame.series) == {"read"}
    assert frame.value.iloc[-1] == pytest.approx(150.0)  # host a once + host b
    assert frame.attrs["unit"] == "MB/s"
    frame = plot_frame(store, _plot("Storage", "Process storage IO"), 60, AGGREGATE, now=now)
    assert frame.value.iloc[-1] == pytest.approx(60.0)  # every process counts
    frame = plot_frame(store, _plot("GPU", "GPU utilization (%)"), 60, AGGREGATE, now=now)
    assert frame[frame.series == "compute"].value.iloc[-1] == pytest.approx(80.0)
    frame = plot_frame(store, _plot("Energy", "GPU energy in window"), 60, AGGREGATE, now=now)
    assert frame.value.iloc[-1] == pytest.approx(4 * 60.0)  # joules used in the window
    assert frame.attrs["unit"] == "J"

    detail = plot_frame(store, _plot("Storage", "Disk throughput"), 60, DETAIL, now=now)
    assert sorted(detail.series.unique()) == ["a · read · nvme0n1", "b · read · nvme0n1"]
    detail = plot_frame(store, _plot("Storage", "Process storage IO"), 60, DETAIL, now=now)
    assert sorted(detail.series.unique()) == [
        "worker a1 · read",
        "worker a2 · read",
        "worker b1 · read",
    ]
    detail = plot_frame(store, _plot("GPU", "GPU utilization (%)"), 60, DETAIL, now=now)
    assert list(detail.series.unique()) == ["a GPU 0 · compute"]
    assert pd.api.types.is_datetime64_any_dtype(detail.time)
    # the time window cuts old samples
    short = plot_frame(store, _plot("Storage", "Disk throughput"), 2.5, DETAIL, now=now)
    assert (
        0
        < len(short)
        < len(plot_frame(store, _plot("Storage", "Disk throughput"), 60, DETAIL, now=now))
    )


def test_notices_say_why_there_is_no_gpu_and_why_a_plot_is_empty() -> None:
    info = {
        "unavailable": {"gpu": "NVML could not start (Driver Not Loaded)"},
        "specs": [
            {
                "name": "workbench_infiniband_receive_bytes_per_second",
                "help": "x",
                "unit": "bytes/s",
                "kind": "gauge",
                "scope": "host",
                "agg": "sum",
                "tab": "Network",
                "plot": "InfiniBand throughput",
                "label": "rx",
                "show_increase": False,
                "sampler": "infiniband",
            }
        ],
    }
    info["unavailable"]["infiniband"] = "no InfiniBand ports with counters under /sys/x"
    source = _source("tcp://a:1", "a", [], time.time())
    source.info = info
    store = _store_with([source])
    store._merge_specs(info)
    state = DashboardState(store)
    notice = state.gpu_notice()
    assert notice and "worker a1: NVML could not start (Driver Not Loaded)" in notice
    assert "no InfiniBand ports" in state.missing(_plot("Network", "InfiniBand throughput"))
    source.info = {"samplers": {"gpu": {"gpus": [{"uuid": "GPU-1"}]}}}
    assert state.gpu_notice() is None
    assert "1 GPUs" in state.status() and "1 workers" in state.status()


def test_viewers_share_one_frame_per_store_version() -> None:
    """Every viewer of a store draws the same frame of a plot until the store collects
    again: computed once (a miss), then handed out (hits); a new collection recomputes it."""
    disk = series_key("workbench_disk_read_bytes_per_second", {"disk": "nvme0n1"})
    store = _store_with([_source("tcp://a:1", "a", [{disk: 1e6}] * 3, time.time() - 3)])
    plot = _plot("Storage", "Disk throughput")
    first_viewer, second_viewer = DashboardState(store), DashboardState(store)
    hits, misses = FRAMES.hits, FRAMES.misses
    frame = first_viewer.frame(plot)
    assert second_viewer.frame(plot) is frame and first_viewer.frame(plot) is frame
    assert (FRAMES.hits - hits, FRAMES.misses - misses) == (2, 1)
    assert frame.value.iloc[-1] == pytest.approx(1.0) and frame.attrs["unit"] == "MB/s"
    store.version += 1  # what a collection does
    assert second_viewer.frame(plot) is not frame
    assert (FRAMES.hits - hits, FRAMES.misses - misses) == (2, 2)
    # another window or mode is another frame
    second_viewer.mode = DETAIL
    assert second_viewer.frame(plot) is not first_viewer.frame(plot)


@pytest.fixture
def host_store() -> Iterator[MetricsStore]:
    from workbench.metrics.store import close_store

    store = get_store(None, interval=0.3)
    store.wait_for(lambda s: len(s.sources["host"].ring) >= 3, timeout=30)
    yield store
    close_store(None)


def test_view_redraws_plots_without_a_browser(host_store: MetricsStore) -> None:
    view = create_view(host_store, window=60.0)
    layout = view.panel()
    doc = Document()
    doc.add_root(layout.get_root(doc))
    pn.state.curdoc = doc
    try:
        # no cluster: plots only a cluster can fill are not offered
        assert "Cluster tasks" not in view.slots[view.active_tab]
        view.tabs.active = 3  # Cluster tab: host CPU and memory
        slot = view.slots["Cluster"]["Host CPU (%)"]
        assert slot.showing_plot and slot.series == ("host CPU",)
        points = slot.points
        version = host_store.version
        host_store.wait_for(lambda s: s.version > version + 1)
        view.update()
        assert slot.points > points  # new samples reached the plot's stream
        assert slot.rebuilds == 1
        view.state.mode = DETAIL
        assert slot.rebuilds == 2 and slot.series[0].endswith("· host CPU")
        if host_store.gpu_status()[0] == 0:
            view.tabs.active = 0
            gpu = view.notices["GPU"]
            assert gpu.visible and "NVML" in gpu.object
            assert not view.grids["GPU"].visible
    finally:
        view.stop()
        pn.state.curdoc = None
