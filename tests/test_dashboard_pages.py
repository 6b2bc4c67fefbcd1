"""GPU idle time from replayed NVML replies, the summary every status line shows, and the
dashboard server's pages (one per tab), drawn with hvplot."""

from __future__ import annotations

import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import holoviews as hv
import pandas as pd
import panel as pn
import pytest
from bokeh.document import Document

from workbench.dashboards import DashboardServer, DashboardState, create_view
from workbench.dashboards.model import plot_frame
from workbench.dashboards.plots import line_plot
from workbench.metrics import TAB_PAGES, TABS, SampleRing, nvml_replay, series_key
from workbench.metrics.accounting import GPUSummary, format_duration, gpu_summary
from workbench.metrics.base import SamplerContext
from workbench.metrics.nvml import IDLE_UTILIZATION_PERCENT, GPUSampler
from workbench.metrics.store import MetricsStore, Source, close_store, get_store

FIXTURES = Path(__file__).parent / "fixtures" / "nvml"
IDLE = "workbench_gpu_idle_seconds_total"


def _gpu_ticks(name: str) -> tuple[GPUSampler, list[float], list[dict[str, float]]]:
    recording = nvml_replay.load(FIXTURES / name)
    sampler = GPUSampler(SamplerContext(role="worker"), nvml=nvml_replay.ReplayNVML(recording))
    assert sampler.reason is None, sampler.reason
    times = list(recording["tick_times"])
    return sampler, times, [sampler.sample(t) for t in times]


def test_gpu_idle_seconds_count_the_time_before_each_idle_reading() -> None:
    sampler, times, ticks = _gpu_ticks("handwritten-h100.json")
    gpu = sampler.devices[0][0]
    labels = {"gpu": str(gpu.index), "uuid": gpu.uuid}
    util = [t[series_key("workbench_gpu_utilization_percent", labels)] for t in ticks]
    idle = [t[series_key(IDLE, labels)] for t in ticks]
    expected = [0.0]
    for i in range(1, len(times)):
        busy = util[i] >= IDLE_UTILIZATION_PERCENT
        expected.append(expected[-1] + (0.0 if busy else times[i] - times[i - 1]))
    assert idle == pytest.approx(expected)
    # the recording has idle ticks and a matmul: both kinds of step are exercised
    assert any(u >= IDLE_UTILIZATION_PERCENT for u in util[1:])
    assert any(u < IDLE_UTILIZATION_PERCENT for u in util[1:])
    assert 0 < idle[-1] < times[-1] - times[0]


def _worker(sid: str, host: str, times: list[float], ticks: list[dict[str, float]]) -> Source:
    ring = SampleRing(100)
    for t, values in zip(times, ticks, strict=True):
        ring.append(t, values)
    return Source(sid, "worker", ring, host=host, name=sid[-1])


def test_gpu_summary_counts_each_gpu_once_and_sums_idle_time() -> None:
    _, h100_times, h100 = _gpu_ticks("handwritten-h100.json")  # ends idle
    _, t4_times, t4 = _gpu_ticks("handwritten-t4.json")  # busy throughout
    store = MetricsStore("tcp://example:8786", interval=1.0, sample_host=False)
    # two workers on host a see the same H100; one on host b has a T4; a third worker
    # on host a saw the H100 for the first two ticks and is gone
    store.sources["w0"] = _worker("tcp://a:1/w0", "a", h100_times, h100)
    store.sources["w1"] = _worker("tcp://a:2/w1", "a", h100_times, h100)
    store.sources["w2"] = _worker("tcp://b:1/w2", "b", t4_times, t4)
    gone = _worker("tcp://a:3/w3", "a", h100_times[:2], h100[:2])
    gone.gone = True
    store.sources["w3"] = gone
    summary = gpu_summary(store)

    def last(name: str) -> list[float]:
        return [v for tick in (h100[-1], t4[-1]) for k, v in tick.items() if k.startswith(name)]

    util = last("workbench_gpu_utilization_percent{")
    assert summary.gpus == 2
    assert summary.utilization == pytest.approx(sum(util) / 2)
    assert summary.memory_used == sum(last("workbench_gpu_memory_used_bytes{"))
    assert summary.memory_total == sum(last("workbench_gpu_memory_total_bytes{"))
    assert summary.idle_seconds == pytest.approx(sum(last(IDLE + "{"))) and summary.idle_seconds > 0
    assert summary.idle_now == 1 == sum(u < IDLE_UTILIZATION_PERCENT for u in util)
    assert summary.to_dict()["idle_threshold"] == IDLE_UTILIZATION_PERCENT
    # the status line of every dashboard page says it
    status = DashboardState(store).status()
    assert "1/2 GPUs idle now" in status
    assert f"{format_duration(summary.idle_seconds)} GPU idle time" in status


def test_gpu_summary_without_gpus_and_of_the_notebook_host() -> None:
    store = MetricsStore("tcp://example:8786", interval=1.0, sample_host=False)
    assert gpu_summary(store) == GPUSummary()
    assert GPUSummary().short() == "no GPUs"
    _, times, ticks = _gpu_ticks("handwritten-h100.json")
    host = _worker("host", "nb", times, ticks)
    host.kind = "host"
    store.sources["host"] = host
    assert gpu_summary(store).gpus == 0  # the notebook host's GPU is not the cluster's
    local = MetricsStore(None, interval=1.0, sample_host=False)
    local.sources["host"] = host
    assert gpu_summary(local).gpus == 1  # ... but it is this host's
    assert [format_duration(s) for s in (42, 210, 8100)] == ["42 s", "3.5 min", "2.25 h"]


def test_plots_are_hvplot_lines_one_per_series() -> None:
    frame = pd.DataFrame(
        {
            "time": pd.to_datetime([0, 1, 2, 0, 1], unit="s"),
            "series": ["read", "read", "read", "write", "write"],
            "value": [1.0, 2.0, 3.0, 4.0, 5.0],
        }
    )
    overlay = line_plot(frame, "MB/s")
    assert isinstance(overlay, hv.NdOverlay)
    assert list(overlay.keys()) == ["read", "write"]
    assert list(overlay["write"].dimension_values("value")) == [4.0, 5.0]
    assert hv.Store.lookup_options("bokeh", overlay, "plot").kwargs["ylabel"] == "MB/s"
    empty = line_plot(frame.iloc[:0], "MB/s")
    assert len(empty) == 0


@pytest.fixture
def host_store() -> Iterator[MetricsStore]:
    store = get_store(None, interval=0.3)
    store.wait_for(lambda s: len(s.sources["host"].ring) >= 3, timeout=30)
    yield store
    close_store(None)


def test_one_tab_view_has_no_tab_headers(host_store: MetricsStore) -> None:
    with pytest.raises(ValueError, match="unknown dashboard tab"):
        create_view(host_store, tabs=["Disks"])
    view = create_view(host_store, tabs=["Cluster"], window=60.0)
    layout = view.panel()
    doc = Document()
    doc.add_root(layout.get_root(doc))
    pn.state.curdoc = doc
    try:
        assert view.tabs is None and view.active_tab == "Cluster"
        assert list(view.slots) == ["Cluster"]
        slot = view.slots["Cluster"]["Host CPU (%)"]
        assert slot.showing_plot
        frame = plot_frame(host_store, slot.plot, 60.0)
        assert slot.series == tuple(sorted(frame["series"].unique()))
    finally:
        view.stop()
        pn.state.curdoc = None


def test_server_serves_a_page_per_tab(host_store: MetricsStore) -> None:
    assert set(TAB_PAGES) == set(TABS)
    server = DashboardServer(host_store, 0)
    try:
        for tab in TABS:
            with urllib.request.urlopen(server.page_url(tab), timeout=60) as reply:
                page = reply.read().decode()
            assert reply.status == 200
            assert f"<title>workbench live metrics: {tab}</title>" in page
        with urllib.request.urlopen(server.url, timeout=60) as reply:
            assert "<title>workbench live metrics</title>" in reply.read().decode()
    finally:
        server.stop()


@pytest.mark.gpu
def test_gpu_idle_time_on_real_nvml() -> None:
    """On a GPU machine: the idle counter of every visible GPU follows its utilization."""
    sampler = GPUSampler(SamplerContext(role="host"))
    assert sampler.reason is None, sampler.reason
    times: list[float] = []
    ticks: list[dict[str, float]] = []
    for _ in range(5):
        times.append(time.time())
        ticks.append(sampler.sample(times[-1]))
        time.sleep(0.5)
    sampler.close()
    for gpu, _, _ in sampler.devices:
        labels = {"gpu": str(gpu.index), "uuid": gpu.uuid}
        util = [t[series_key("workbench_gpu_utilization_percent", labels)] for t in ticks]
        idle = [t[series_key(IDLE, labels)] for t in ticks]
        expected = [0.0]
        for i in range(1, len(times)):
            busy = util[i] >= IDLE_UTILIZATION_PERCENT
            expected.append(expected[-1] + (0.0 if busy else times[i] - times[i - 1]))
        assert idle == pytest.approx(expected), (gpu.name, util)
