"""The served dashboard in real headless chromium, against a running 2-worker cluster.

``workbench dashboard --cluster ID`` runs as its own process, as a user would start
it; a computation keeps the workers busy; the test reads the plots' data out of
BokehJS in the page over time and compares screenshots. Screenshots are saved in
``artifacts/``.
"""

from __future__ import annotations

import signal
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from workbench.gpus import detect_gpus

from ._dashboard_fixtures import DashCluster, wait_for
from .conftest import WORKBENCH

pytestmark = [pytest.mark.browser, pytest.mark.slow]

# What the page's BokehJS holds: per plot data source, its points and newest time; legends.
PLOT_STATE = """() => {
  const out = {sources: [], legends: []};
  for (const doc of Bokeh.documents) for (const m of doc._all_models.values()) {
    if (m.type == "ColumnDataSource" && m.data.time && m.data.time.length)
      out.sources.push([m.data.time.length, Math.max(...m.data.time)]);
    if (m.type == "LegendItem") out.legends.push(m.label.value);
  }
  return out;
}"""


def _spin(seconds: float) -> int:
    end = time.perf_counter() + seconds
    n = 0
    while time.perf_counter() < end:
        n += 1
    return n


@pytest.fixture
def served(
    dash_cluster: DashCluster, subprocess_env: dict[str, str], tmp_path: Path
) -> Iterator[str]:
    env = {**subprocess_env, "WORKBENCH_STATE_DIR": str(dash_cluster.state_dir)}
    # stderr to a file: an unread pipe fills up with the server's logs and blocks it
    log = (tmp_path / "dashboard.log").open("w+")
    proc = subprocess.Popen(
        [
            *WORKBENCH,
            "dashboard",
            "--cluster",
            dash_cluster.handle.id,
            "--port",
            "0",
            "--interval",
            "0.5",
        ],
        stdout=subprocess.PIPE,
        stderr=log,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert first.startswith(f"dashboard of cluster at {dash_cluster.address}: "), (
            first + Path(log.name).read_text()
        )
        yield first.rsplit(": ", 1)[1].strip()
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=60)
        log.close()
        assert proc.returncode == 0, Path(log.name).read_text()[-5000:]


def _state(page: Any) -> dict[str, Any]:
    return dict(page.evaluate(PLOT_STATE))


def test_dashboard_updates_live_in_chromium(
    served: str, dash_cluster: DashCluster, chromium: Any, artifacts: Path
) -> None:
    client = dash_cluster.handle.client
    work = client.map(_spin, [1.5] * 16, pure=False)  # ~12 s of work on 2 threads
    page = chromium.new_page(viewport={"width": 1400, "height": 1500})
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    try:
        page.goto(served)
        has_gpu = detect_gpus().count > 0
        if not has_gpu:
            # the dashboard opens on the Cluster tab when no GPU is visible
            wait_for(lambda: len(_state(page)["sources"]) >= 6, timeout=60, what="cluster plots")
        first = _state(page)
        shot1 = page.screenshot(full_page=True)
        newest = max(t for _, t in first["sources"])
        points = sum(n for n, _ in first["sources"])
        # the plots move on: newer samples (2 s of them) and more points, drawn in the page
        time.sleep(2)
        wait_for(
            lambda: (
                (state := _state(page))
                and max(t for _, t in state["sources"]) >= newest + 2000
                and sum(n for n, _ in state["sources"]) > points
                and state
            ),
            timeout=60,
            what="the plots to update with 2 s of new samples",
        )
        page.wait_for_timeout(1000)  # BokehJS redraws on the next animation frames
        shot2 = page.screenshot(full_page=True, path=str(artifacts / "dashboard-cluster.png"))
        assert shot1 != shot2
        wait_for(  # a line gets its legend once its first samples are drawn
            lambda: {"executing", "processing", "host CPU"} <= set(_state(page)["legends"]),
            timeout=30,
            what=f"aggregate legends (first: {first['legends']})",
        )

        # per-worker view: one line per worker
        page.get_by_text("Per worker / device", exact=True).first.click()
        wait_for(
            lambda: (
                {"worker 0 · executing", "worker 1 · executing"} <= set(_state(page)["legends"])
            ),
            timeout=30,
            what="per-worker legends",
        )
        page.screenshot(full_page=True, path=str(artifacts / "dashboard-per-worker.png"))

        page.get_by_text("Aggregate", exact=True).first.click()

        page.get_by_text("Network", exact=True).first.click()
        wait_for(
            lambda: "sent" in _state(page)["legends"],
            timeout=30,
            what="the Network tab's Dask transfer plot",
        )
        page.screenshot(full_page=True, path=str(artifacts / "dashboard-network.png"))

        page.get_by_text("GPU", exact=True).first.click()
        if not has_gpu:
            notice = page.get_by_text("No GPUs are visible to this dashboard")
            notice.wait_for(timeout=30_000)
            assert page.get_by_text("NVML could not start").first.is_visible()
        page.screenshot(full_page=True, path=str(artifacts / "dashboard-gpu.png"))
        assert not errors, errors
    finally:
        page.close()
        client.gather(work)

    # the same server exports Prometheus metrics with a label per worker
    with urllib.request.urlopen(served + "metrics", timeout=30) as response:
        text = response.read().decode()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    executing = families["workbench_dask_worker_tasks_executing"].samples
    assert {s.labels["worker_name"] for s in executing} == {"0", "1"}


def test_a_plot_whose_first_samples_come_after_the_page_opened_is_drawn(chromium: Any) -> None:
    """A plot that has no samples when the page opens (a slow machine, a worker that
    reports late) shows its note, then appears in the open page, legend and all, while
    the plot beside it, drawn from the start, goes on."""
    import threading

    from workbench.dashboards import DashboardServer
    from workbench.metrics import SampleRing
    from workbench.metrics.store import HOST_SOURCE, MetricsStore, Source

    host_cpu = "workbench_cpu_utilization_percent"  # "Host CPU (%)": line "host CPU"
    process_cpu = "workbench_process_cpu_percent"  # "Process CPU (% of one core)"
    # A store that samples nothing itself: this test feeds its host source.
    store = MetricsStore(None, interval=0.3, sample_host=False).start()
    ring = SampleRing(600)
    store.sources[HOST_SOURCE] = Source(HOST_SOURCE, "host", ring, host="here", name="host")
    late = threading.Event()
    stop = threading.Event()

    def feed() -> None:
        while not stop.wait(0.3):
            values = {host_cpu: 25.0}
            if late.is_set():
                values[process_cpu] = 80.0
            ring.append(time.time(), values)

    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    server = DashboardServer(store, 0)
    page = chromium.new_page(viewport={"width": 1400, "height": 1500})
    try:
        page.goto(server.url)
        wait_for(lambda: "host CPU" in _state(page)["legends"], timeout=60, what="host CPU")
        page.get_by_text("Process CPU (% of one core)").first.wait_for(timeout=30_000)  # its note
        assert "process CPU" not in _state(page)["legends"]
        started = time.monotonic()
        late.set()
        wait_for(
            lambda: {"host CPU", "process CPU"} <= set(_state(page)["legends"]),
            timeout=30,
            what="the late plot in the open page",
        )
        print(f"late plot drawn {time.monotonic() - started:.1f} s after its first samples")
    finally:
        stop.set()
        feeder.join(timeout=10)
        page.close()
        server.stop()
        store.close()
