"""Metrics and the workbench dashboards through the REST API, against a real cluster.

The metrics route reads :mod:`workbench.metrics` (host samples, and the workers' when a
cluster is named); the dashboard route starts ``workbench dashboard`` in a process of
its own and the tests reach it through jupyter-server-proxy, as the browser does.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Iterator
from typing import Any

import psutil
import pytest

import workbench
from workbench.clusters import ClusterControl, ClusterRecord, RecordStore
from workbench.server import dashboards as dash
from workbench.server.metrics import metrics_snapshot

from ._lab_fixtures import IN_PROCESS_CLUSTER

pytestmark = pytest.mark.usefixtures("stop_clusters_after", "close_collectors")


@pytest.fixture
def close_collectors() -> Iterator[None]:
    """The metrics collectors the in-process test server started end with the test."""
    from workbench.metrics.store import close_all
    from workbench.server import metrics

    yield
    metrics._used.clear()
    close_all()


async def test_unknown_cluster_is_404_for_metrics_and_dashboards(api: Any) -> None:
    for method, path, params in [
        ("GET", "metrics", {"cluster": "nope"}),
        ("GET", "metrics/prometheus", {"cluster": "nope"}),
        ("POST", "clusters/nope/dashboard", None),
        ("GET", "clusters/nope/dashboard", None),
        ("DELETE", "clusters/nope/dashboard", None),
    ]:
        reply = await api(method, path, params=params)
        assert reply.status == 404, (method, path, reply.data)
        assert "no running cluster with id 'nope'" in reply.data["message"]


async def test_host_metrics_and_prometheus_text(api: Any, jp_fetch: Any) -> None:
    reply = await api("GET", "metrics")
    assert reply.status == 200, reply.data
    data = reply.data
    assert data["cluster"] is None and data["workers"] == []
    host = data["host"]
    assert host["kind"] == "host" and host["age"] < 10
    assert 0 <= host["values"]["workbench_cpu_utilization_percent"] <= 100
    assert host["values"]["workbench_memory_total_bytes"] > 0
    assert data["metrics"]["workbench_memory_total_bytes"]["unit"] == "bytes"
    response = await jp_fetch("workbench", "api", "metrics", "prometheus")
    assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    text = response.body.decode()
    assert "# TYPE workbench_memory_total_bytes gauge" in text
    assert 'source="notebook"' in text


@pytest.mark.slow
async def test_cluster_metrics_and_dashboards_through_workbenchs_route(
    api: Any, jp_fetch: Any, jp_base_url: str
) -> None:
    handle = await asyncio.to_thread(
        workbench.launch,
        "local-cpu",
        wait=True,
        **{**IN_PROCESS_CLUSTER, "protocol": "tcp", "security": "none"},
    )
    cid = handle.id
    try:
        # metrics: the host, the worker and the cluster figures, from workbench.metrics
        reply = await api("GET", "metrics", params={"cluster": cid[:6]})
        assert reply.status == 200, reply.data
        data = reply.data
        assert data["cluster"] == cid
        assert data["scheduler_address"] == handle.scheduler_address
        (worker,) = data["workers"]
        assert worker["kind"] == "worker" and not worker["gone"]
        # the worker samples itself (an in-process worker has no memory limit to report)
        assert "workbench_dask_worker_tasks_executing" in worker["values"], worker
        assert "workbench_dask_worker_memory_limit_bytes" not in worker["values"], worker
        assert data["cluster_state"]["values"], data
        assert data["host"]["values"]
        text = (
            await jp_fetch("workbench", "api", "metrics", "prometheus", params={"cluster": cid})
        ).body.decode()
        assert f'scheduler="{handle.scheduler_address}"' in text and 'worker="' in text

        # dashboards: a process of its own on a Unix socket, reached through workbench's route
        reply = await api("GET", f"clusters/{cid}/dashboard")
        assert reply.status == 200 and reply.data["running"] is False
        reply = await api("POST", f"clusters/{cid}/dashboard")
        assert reply.status == 200, reply.data
        info = reply.data
        assert info["started"] and info["proxied"]
        assert info["url"] == f"{jp_base_url}workbench/api/clusters/{cid}/view/dashboards/"
        proc = psutil.Process(info["pid"])
        assert info["pid"] != os.getpid() and os.getsid(info["pid"]) == info["pid"]
        assert "dashboard" in proc.cmdline() and "--exit-with-cluster" in proc.cmdline()
        # no port: a Unix socket in a directory of this user's alone
        state = dash.read_state(cid)
        assert state is not None and state.socket.endswith(f"dashboard-{cid}.sock")
        assert not [c for c in proc.net_connections("tcp") if c.status == psutil.CONN_LISTEN]
        folder = os.path.dirname(state.socket)
        assert os.stat(folder).st_mode & 0o777 == 0o700
        assert os.stat(folder).st_uid == os.getuid()

        page = await jp_fetch("workbench", "api", "clusters", cid, "view", "dashboards", "gpu")
        html = page.body.decode()
        assert "workbench live metrics" in html and "bokeh" in html.lower()
        # relative static URLs: they resolve under the proxy prefix
        assert 'src="static/js/bokeh.min.js' in html

        again = await api("POST", f"clusters/{cid}/dashboard")
        assert again.status == 200 and not again.data["started"]
        assert again.data["pid"] == info["pid"]  # one process per cluster, shared

        health = await api("GET", f"clusters/{cid}/health")
        checks = {c["name"]: c for c in health.data["checks"]}
        assert checks["workbench dashboards"]["status"] == "ok"
        assert checks["workbench dashboards through workbench's route"]["status"] == "ok", checks

        # stopped or killed, the health route says why the tab is blank
        os.kill(info["pid"], 9)
        await asyncio.to_thread(_wait_gone, info["pid"])
        health = await api("GET", f"clusters/{cid}/health")
        checks = {c["name"]: c for c in health.data["checks"]}
        assert checks["workbench dashboards"]["status"] == "fail"
        assert "has exited" in checks["workbench dashboards"]["summary"]
        assert health.data["ok"] is False

        # a new request starts a new process; closing the cluster ends it by itself
        reply = await api("POST", f"clusters/{cid}/dashboard")
        assert reply.status == 200 and reply.data["started"]
        pid = reply.data["pid"]
    finally:
        await asyncio.to_thread(handle.close)
    await asyncio.to_thread(_wait_gone, pid, 30)
    assert ClusterControl().list() == []


def _wait_gone(pid: int, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return
        except psutil.NoSuchProcess:
            return
        time.sleep(0.1)
    with contextlib.suppress(psutil.Error):
        psutil.Process(pid).kill()
    raise AssertionError(f"process {pid} still runs after {timeout}s")


def test_metrics_of_a_stale_cluster_say_so(workbench_home: Any) -> None:
    from workbench.errors import WorkbenchError

    RecordStore().add(
        ClusterRecord(
            id="deadbeef01",
            profile="local-cpu",
            backend="local",
            scheduler_address="tcp://127.0.0.1:9",
            owner_pid=2**22 + 9,
        )
    )
    with pytest.raises(WorkbenchError, match="is stale"):
        metrics_snapshot("deadbeef01")
    with pytest.raises(WorkbenchError, match="is stale"):
        dash.ensure_dashboard("deadbeef01")
