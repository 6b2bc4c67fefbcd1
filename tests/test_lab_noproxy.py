"""Diagnostics on a Jupyter server without jupyter-server-proxy enabled."""

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
async def test_without_the_proxy_a_remote_browser_is_told_why(api: Any) -> None:
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
        assert "not enabled" in reply.data["proxy"]["reason"]

        # A browser on this machine can open the dashboard directly.
        health = await api("GET", "clusters/noproxy001/health", params={"page_host": "localhost"})
        checks = {c["name"]: c for c in health.data["checks"]}
        assert checks["dashboard from the server"]["status"] == "ok"
        assert checks["proxy"]["status"] == "warn"
        assert "browser reach" not in checks
        assert health.data["dashboard"] == {"link": link, "proxied": None, "url": link}
        assert health.data["ok"] is True

        # A browser elsewhere cannot reach 127.0.0.1, and without the proxy nothing helps.
        health = await api(
            "GET", "clusters/noproxy001/health", params={"page_host": "lab.example.org"}
        )
        checks = {c["name"]: c for c in health.data["checks"]}
        reach = checks["browser reach"]
        assert reach["status"] == "fail"
        assert "your browser (at lab.example.org) cannot reach directly" in reach["summary"]
        assert "jupyter server extension enable jupyter_server_proxy" in reach["advice"]
        assert health.data["ok"] is False
    finally:
        RecordStore().remove("noproxy001")
        await asyncio.to_thread(cluster.close)
