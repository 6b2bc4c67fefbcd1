"""The routes behind the dockable panes and the status bar, against real clusters and
real kernels of the in-process Jupyter server.

* ``clusters/<id>/panes``: the scheduler's individual Dask plots (from its
  ``/individual-plots.json``) and the workbench dashboard pages; a listed plot loads
  through workbench's own route as the pane's iframe does.
* which cluster a kernel is connected to: from the kernel's pid and its TCP connections.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterator
from typing import Any

import pytest

import workbench
from workbench.metrics import TAB_PAGES
from workbench.server import kernels
from workbench.server.panes import dashboard_root, dask_plots

from ._kernels import execute, kernel_of
from ._lab_fixtures import IN_PROCESS_CLUSTER

pytestmark = pytest.mark.usefixtures("stop_clusters_after", "close_collectors")


@pytest.fixture
def close_collectors() -> Iterator[None]:
    from workbench.metrics.store import close_all
    from workbench.server import metrics

    yield
    metrics._used.clear()
    close_all()


def _launch() -> Any:
    return workbench.launch(
        "local-cpu",
        wait=True,
        **{**IN_PROCESS_CLUSTER, "protocol": "tcp", "security": "none"},
    )


def test_dask_plot_listing_and_roots() -> None:
    listing = {
        "Individual Task Stream": "/individual-task-stream",
        "Individual Gpu Memory": "/individual-gpu-memory",
        "Individual Cluster Map": "/statics/individual-cluster-map.html",
        "Status": "/status",
        "Odd": 3,
    }
    assert dask_plots(listing) == [
        {"label": "Cluster Map", "route": "statics/individual-cluster-map.html"},
        {"label": "Gpu Memory", "route": "individual-gpu-memory"},
        {"label": "Task Stream", "route": "individual-task-stream"},
    ]
    assert dashboard_root("/user/a/proxy/8787/status") == "/user/a/proxy/8787/"
    assert dashboard_root("http://10.0.0.5:8787/status?x=1") == "http://10.0.0.5:8787/"
    assert dashboard_root("http://10.0.0.5:8787/") == "http://10.0.0.5:8787/"


@pytest.mark.slow
async def test_panes_of_a_cluster_load_through_workbenchs_route(
    api: Any, jp_fetch: Any, jp_base_url: str
) -> None:
    reply = await api("GET", "clusters/nope/panes")
    assert reply.status == 404 and "no running cluster" in reply.data["message"]
    handle = await asyncio.to_thread(_launch)
    try:
        started = time.perf_counter()
        reply = await api("GET", f"clusters/{handle.id}/panes")
        took = time.perf_counter() - started
        assert reply.status == 200, reply.data
        panes = reply.data
        assert panes["id"] == handle.id
        assert panes["dask"]["problem"] is None, panes["dask"]
        root = f"{jp_base_url}workbench/api/clusters/{handle.id}/view/dask/"
        assert panes["dask"]["root"] == root
        labels = {p["label"]: p["route"] for p in panes["dask"]["plots"]}
        # what the issue names: task stream, progress, worker memory, GPU plots
        assert labels["Task Stream"] == "individual-task-stream"
        assert labels["Progress"] == "individual-progress"
        assert labels["Workers Memory"] == "individual-workers-memory"
        assert {"Gpu Utilization", "Gpu Memory"} <= set(labels)
        assert panes["workbench"] == {
            "pages": [{"label": tab, "route": path} for tab, path in TAB_PAGES.items()],
            "problem": None,
        }
        # the pane's iframe: the plot's page through workbench's route
        page = await jp_fetch(
            "workbench", "api", "clusters", handle.id, "view", "dask", "individual-task-stream"
        )
        assert page.code == 200 and "bokeh" in page.body.decode().lower()
        print(f"panes route answered in {took:.2f}s")
    finally:
        await asyncio.to_thread(handle.close)


# -- kernels ---------------------------------------------------------------------------------
@pytest.mark.slow
async def test_the_cluster_a_kernel_is_connected_to(jp_serverapp: Any) -> None:
    async with kernel_of(jp_serverapp) as (kernel_id, client):
        await _connected(jp_serverapp, kernel_id, client)


async def _connected(jp_serverapp: Any, kernel_id: str, client: Any) -> None:
    manager = jp_serverapp.kernel_manager
    with pytest.raises(Exception, match="no kernel with id 'nope'"):
        kernels.kernel_pid(manager, "nope")
    pid = kernels.kernel_pid(manager, kernel_id)
    assert pid is not None and pid != os.getpid()
    assert "ipykernel" in " ".join(__import__("psutil").Process(pid).cmdline())
    first, second = await asyncio.gather(asyncio.to_thread(_launch), asyncio.to_thread(_launch))
    try:
        records = [first.record, second.record]
        assert kernels.connected_clusters(pid, records) == []
        # a client made by hand in the kernel, with the address as a notebook has it
        address = second.scheduler_address.replace("127.0.0.1", "localhost")
        printed = await execute(
            client,
            "from distributed import Client\n"
            f"client = Client({address!r})\n"
            "print(len(client.scheduler_info()['workers']))",
        )
        assert printed.strip() == "1"
        started = time.perf_counter()
        found = kernels.connected_clusters(pid, records)
        took = time.perf_counter() - started
        assert [(r.id, how) for r, how in found] == [(second.id, "connection")]
        # this process launched both clusters: it owns them
        mine = kernels.connected_clusters(os.getpid(), records)
        assert {(r.id, how) for r, how in mine} == {(first.id, "owner"), (second.id, "owner")}
        await execute(client, "client.close()")
        assert kernels.connected_clusters(pid, records) == []
        assert kernels.connected_clusters(None, records) == []
        print(f"kernel -> cluster lookup took {took * 1000:.1f} ms")
    finally:
        await asyncio.gather(asyncio.to_thread(first.close), asyncio.to_thread(second.close))


def test_addresses_that_match_no_connection() -> None:
    from types import SimpleNamespace

    odd = [
        SimpleNamespace(owner_pid=1, hostname="h", scheduler_address=a)
        for a in ("tcp://h:notaport", "tcp://h:99999", "inproc://192.0.2.1/1/2", "")
    ]
    assert kernels.connected_clusters(os.getpid(), odd) == []
    assert kernels.scheduler_endpoints("tcp://localhost:8786") >= {("127.0.0.1", 8786)}
    assert kernels.scheduler_endpoints("tls://[::ffff:10.0.0.5]:8786") == {("10.0.0.5", 8786)}
