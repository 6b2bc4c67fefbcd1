"""A Jupyter server without jupyter-server-proxy: the dashboards still show, through
workbench's own route (which never needed the proxy)."""

from __future__ import annotations

import asyncio
import os
from typing import Any

import pytest

from workbench.clusters import ClusterRecord, RecordStore


@pytest.fixture
def jp_server_config() -> Any:
    from traitlets.config import Config

    return Config(
        {
            "ServerApp": {
                "jpserver_extensions": {"workbench.server": True, "jupyter_server_proxy": False}
            }
        }
    )


@pytest.mark.slow
async def test_without_the_proxy_the_dashboard_shows_through_workbenchs_route(
    api: Any, jp_fetch: Any, jp_base_url: str
) -> None:
    from distributed import LocalCluster

    cluster = await asyncio.to_thread(
        LocalCluster,
        n_workers=0,
        processes=False,
        protocol="tcp",
        host="127.0.0.1",
        dashboard_address="127.0.0.1:0",
    )
    try:
        link = cluster.dashboard_link
        RecordStore().add(
            ClusterRecord(
                id="noproxy001",
                profile="p",
                backend="local",
                scheduler_address=cluster.scheduler_address,
                dashboard_link=link,
                owner_pid=os.getpid(),
            )
        )
        reply = await api("GET", "health")
        assert reply.data["proxy"]["enabled"] is False

        # Wherever the browser is, the dashboard comes through this server's own route.
        health = await api(
            "GET", "clusters/noproxy001/health", params={"page_host": "lab.example.org"}
        )
        checks = {c["name"]: c for c in health.data["checks"]}
        assert checks["dashboard from the server"]["status"] == "ok"
        routed = f"{jp_base_url}workbench/api/clusters/noproxy001/view/dask/status"
        assert health.data["dashboard"] == {"link": link, "proxied": routed, "url": routed}
        assert checks["dashboard through workbench's route"]["status"] == "ok", checks
        assert health.data["ok"] is True
        page = await jp_fetch(
            "workbench", "api", "clusters", "noproxy001", "view", "dask", "status"
        )
        assert page.code == 200 and "bokeh" in page.body.decode().lower()
    finally:
        RecordStore().remove("noproxy001")
        await asyncio.to_thread(cluster.close)
