"""Metrics from a real Dask cluster: the worker plugin, the shared store, Prometheus.

Every test here talks to real scheduler and worker processes (``local-cpu``).
"""

from __future__ import annotations

import re
import threading
import time
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

import workbench
from workbench.errors import MetricsError
from workbench.metrics import get_store, render_prometheus, serve_prometheus
from workbench.metrics.store import MetricsStore, close_store

from ._dashboard_fixtures import DashCluster, wait_for


def _busy(seconds: float) -> float:
    """Spin for ``seconds`` of wall time; return the CPU time this thread got."""
    start = time.thread_time()
    end = time.perf_counter() + seconds
    x = 0.0
    while time.perf_counter() < end:
        x += 1.0
    return time.thread_time() - start


def _cpu_seconds(store: MetricsStore, since: float) -> float:
    """CPU seconds of all worker processes since ``since``, from the sampled CPU rates."""
    total = 0.0
    for w in store.worker_sources():
        last = None
        for t, values in w.ring:
            if t < since:
                continue
            rate = values.get("workbench_process_cpu_percent")
            if last is not None and rate is not None:
                total += rate / 100.0 * (t - last)
            last = t
    return total


def _gpu_sampler_reason() -> str | None:
    """On a worker: why a GPU sampler there samples nothing (None: it samples)."""
    from workbench.metrics.base import SamplerContext
    from workbench.metrics.nvml import GPUSampler

    sampler = GPUSampler(SamplerContext(role="worker"))
    try:
        return sampler.reason
    finally:
        sampler.close()


def test_every_worker_samples_into_the_shared_store(
    dash_cluster: DashCluster, dash_store: MetricsStore
) -> None:
    workers = dash_store.worker_sources()
    addresses = set(dash_cluster.handle.client.scheduler_info(n_workers=-1)["workers"])
    assert {w.id for w in workers} == addresses
    # what each worker's own GPU sampler says: sampling GPUs, or why not (no driver here)
    reasons = dash_cluster.handle.client.run(_gpu_sampler_reason)
    for w in workers:
        assert w.name in ("0", "1") and w.host
        if reasons[w.id] is None:
            assert "gpu" in w.info["samplers"] and "gpu" not in w.unavailable
        else:
            assert w.unavailable["gpu"] == reasons[w.id] and "gpu" not in w.info["samplers"]
        _, latest = w.ring.latest() or (0, {})
        assert latest["workbench_dask_worker_memory_limit_bytes"] == 1 << 30
        assert latest["workbench_process_memory_rss_bytes"] > 0
        assert "workbench_cpu_utilization_percent" in latest
    # the notebook host is a source too
    assert (
        "workbench_memory_total_bytes" in (dash_store.sources["host"].ring.latest() or (0, {}))[1]
    )
    # one store per cluster per process: a second viewer gets the same one
    assert get_store(dash_cluster.address) is dash_store
    collectors = [t for t in threading.enumerate() if t.name == "workbench-metrics-collector"]
    assert len(collectors) == 1


def test_task_load_shows_in_worker_and_cluster_metrics(
    dash_cluster: DashCluster, dash_store: MetricsStore
) -> None:
    client = dash_cluster.handle.client
    started = time.time()
    futures = client.map(_busy, [3.0] * 4, pure=False)

    def executing_everywhere() -> bool:
        return all(
            (w.ring.latest() or (0, {}))[1].get("workbench_dask_worker_tasks_executing") == 1.0
            for w in dash_store.worker_sources()
        )

    wait_for(executing_everywhere, timeout=30, what="a task executing on each worker")
    cluster = wait_for(
        lambda: (
            (latest := dash_store.cluster.latest())
            and latest[1].get("workbench_cluster_tasks_processing", 0) >= 2
            and latest[1]
        ),
        timeout=30,
        what="the scheduler reporting processing tasks",
    )
    assert cluster["workbench_cluster_workers"] == 2.0
    assert cluster["workbench_cluster_threads"] == 2.0
    assert cluster['workbench_cluster_tasks{state="processing"}'] >= 2
    task_cpu = sum(client.gather(futures))
    after = time.time() + 2 * dash_store.interval
    wait_for(
        lambda: all((w.ring.last_time() or 0) > after for w in dash_store.worker_sources()),
        what="samples after the tasks",
    )
    # The sampled CPU rates of the worker processes add up to at least the CPU time the
    # tasks measured themselves (plus the workers' own overhead): rates are right.
    sampled = _cpu_seconds(dash_store, started)
    assert 0.9 * task_cpu <= sampled <= 1.5 * task_cpu + 3.0, (sampled, task_cpu)
    # the workers measure their own sampling cost
    for w in dash_store.worker_sources():
        _, latest = w.ring.latest() or (0, {})
        samples = latest["workbench_sampler_samples_total"]
        assert samples >= 3
        assert latest["workbench_sampler_cpu_seconds_total"] / samples < 0.05
    # deltas are compact: a few hundred bytes per worker per update
    assert 0 < dash_store.last_pull_bytes < 4000


def test_prometheus_endpoint_over_http_has_per_worker_labels(
    dash_cluster: DashCluster, dash_store: MetricsStore
) -> None:
    server = serve_prometheus(dash_store, port=0)
    try:
        with urllib.request.urlopen(server.url, timeout=10) as response:
            assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
            text = response.read().decode()
        with pytest.raises(urllib.error.HTTPError, match="404"):
            urllib.request.urlopen(server.url.replace("/metrics", "/other"), timeout=10)
    finally:
        server.close()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    rss = families["workbench_process_memory_rss_bytes"]
    assert rss.type == "gauge" and rss.documentation
    workers = {s.labels["worker"] for s in rss.samples if "worker" in s.labels}
    assert workers == {w.id for w in dash_store.worker_sources()}
    for sample in rss.samples:
        assert sample.labels["scheduler"] == dash_cluster.address
        assert sample.value > 0
    names = {s.labels.get("worker_name") for s in rss.samples}
    assert {"0", "1"} <= names
    assert any(s.labels.get("source") == "notebook" for s in rss.samples)
    energy = families.get("workbench_sampler_cpu_seconds")  # a counter: _total is a suffix
    assert energy is not None and energy.type == "counter"
    cluster = families["workbench_cluster_workers"]
    assert [s.value for s in cluster.samples] == [2.0]
    # every series is unique (a scrape with duplicates is rejected by Prometheus)
    series = [
        (s.name, tuple(sorted(s.labels.items()))) for f in families.values() for s in f.samples
    ]
    assert len(series) == len(set(series))
    assert text.count("# TYPE") == len(families)
    assert "# TYPE workbench_process_memory_rss_bytes gauge" in render_prometheus(dash_store)


def test_a_new_worker_gets_the_plugin_and_a_gone_worker_leaves_the_export() -> None:
    with workbench.launch(
        "local-cpu",
        n_workers=1,
        threads_per_worker=1,
        memory_limit="1GiB",
        dashboard_address=":0",
        wait=1,
    ) as handle:
        store = get_store(handle.scheduler_address, interval=0.5)
        store.wait_for(
            lambda s: len(s.worker_sources()) == 1 and len(s.worker_sources()[0].ring) > 0
        )
        handle.scale(2).wait_for_workers(2, timeout=60)
        store.wait_for(
            lambda s: sum(1 for w in s.worker_sources() if len(w.ring) > 0 and not w.gone) == 2,
            timeout=60,
        )
        handle.scale(1)
        store.wait_for(lambda s: sum(1 for w in s.worker_sources() if w.gone) == 1, timeout=60)
        families = {f.name: f for f in text_string_to_metric_families(render_prometheus(store))}
        workers = {
            s.labels["worker"]
            for s in families["workbench_process_memory_rss_bytes"].samples
            if "worker" in s.labels
        }
        assert len(workers) == 1
    # closing the handle stopped the store it had
    assert not store.running
    close_store(handle.scheduler_address)


def test_unreachable_scheduler_is_a_clear_error() -> None:
    with pytest.raises(MetricsError, match=r"cannot reach the Dask scheduler at tcp://127.0.0.1:9"):
        get_store("tcp://127.0.0.1:9")
    with pytest.raises(MetricsError, match="has no port"):
        get_store("tcp://127.0.0.1")


def test_handle_dashboard_returns_a_live_layout_on_the_shared_store(
    dash_cluster: DashCluster, dash_store: MetricsStore
) -> None:
    import panel as pn

    layout = dash_cluster.handle.dashboard(window=60.0, mode="Per worker / device")
    assert isinstance(layout, pn.layout.Column)
    tabs = next(o for o in layout.objects if isinstance(o, pn.Tabs))
    assert list(tabs._names) == ["GPU", "Storage", "Network", "Cluster", "Energy"]
    # the layout draws from the store every other viewer uses
    assert get_store(dash_cluster.address) is dash_store
    status = next(o for o in layout.objects if "workers" in str(getattr(o, "object", "")))
    assert "2 workers" in status.object and dash_cluster.address in status.object
    # the running cost estimate of the handle (no price in local-cpu: worker-hours)
    assert re.search(r"\d+\.\d{3} worker-hours", status.object), status.object


def test_data_loader_reads_are_sampled_on_the_workers_that_read(
    dash_cluster: DashCluster, dash_store: MetricsStore, tmp_path
) -> None:
    """workbench.data.load through the cluster: the workers' data-io samplers count the
    bytes their tasks read, and the total matches the loader's own IO statistics."""
    pd = pytest.importorskip("pandas")
    from workbench.data import iostats, load, manifest_of

    folder = tmp_path / "io"
    folder.mkdir()
    for i in range(4):
        pd.DataFrame({"x": range(i * 50_000, (i + 1) * 50_000)}).to_parquet(
            folder / f"part-{i}.parquet"
        )

    def worker_bytes() -> float:
        total = 0.0
        for w in dash_store.worker_sources():
            _, latest = w.ring.latest() or (0, {})
            total += latest.get('workbench_data_read_bytes_total{protocol="file"}', 0.0)
        return total

    before = worker_bytes()
    df = load(str(folder), client=dash_cluster.handle)
    assert int(dash_cluster.handle.client.compute(df["x"].sum(), sync=True)) == sum(range(200_000))
    load_id = manifest_of(df).load_id
    stats = iostats.get(load_id)
    read_on_workers = stats["bytes_read"] - stats["plan_bytes_read"]
    assert read_on_workers > 0
    wait_for(
        lambda: worker_bytes() - before >= read_on_workers,
        timeout=30,
        what="the workers' data-io samples to count the load's reads",
    )
    families = {f.name: f for f in text_string_to_metric_families(render_prometheus(dash_store))}
    rate = families["workbench_data_read_bytes_per_second"]
    # each worker's series is labelled with the worker (other protocols may have been read
    # in this test process earlier: those are the notebook host's series)
    on_workers = {s.labels["protocol"] for s in rate.samples if "worker" in s.labels}
    assert on_workers == {"file"}
