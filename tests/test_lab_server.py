"""The workbench REST API over real HTTP, with Jupyter's token auth on.

Clusters are real: detached processes launched through the API, and clusters started
in this process (as a notebook would) that the API must find in the record store.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from tornado import web

import workbench
from workbench.clusters import ClusterControl, ClusterRecord, RecordStore
from workbench.server import API_PREFIX

from ._lab_fixtures import IN_PROCESS_CLUSTER

pytestmark = pytest.mark.usefixtures("stop_clusters_after")

METHODS = ("get", "post", "put", "patch", "delete")


def _sample_path(pattern: str) -> str:
    """A concrete URL path for a route regex (each group replaced by a sample value)."""
    path = re.sub(r"\(\?P<[^>]+>[^)]*\)|\([^)]*\)", "x", pattern)
    return path.replace("/?$", "").replace("$", "").rstrip("?")


def _workbench_routes(serverapp: Any) -> list[tuple[str, type]]:
    """Every handler registered under {base_url}workbench/api, from tornado's own router."""
    prefix = serverapp.base_url.rstrip("/") + "/" + API_PREFIX
    found = []
    for host_rule in serverapp.web_app.default_router.rules:
        for rule in getattr(host_rule.target, "rules", []):
            regex = getattr(rule.matcher, "regex", None)
            if regex is not None and regex.pattern.startswith(prefix):
                found.append((regex.pattern, rule.target))
    return found


async def _open_routes(serverapp: Any, client: Any) -> tuple[list[str], int]:
    """(what answered without valid credentials, how many requests were tried)."""
    problems, tried = [], 0
    for pattern, handler in _workbench_routes(serverapp):
        for method in METHODS:
            if getattr(handler, method) is getattr(web.RequestHandler, method):
                continue  # not implemented: tornado answers 405 whoever asks
            body = b"{}" if method in ("post", "put", "patch") else None
            for headers in ({}, {"Authorization": "token wrong-token"}):
                response = await client.fetch(
                    _sample_path(pattern),
                    method=method.upper(),
                    body=body,
                    headers=headers,
                    raise_error=False,
                    follow_redirects=False,
                )
                tried += 1
                if response.code not in (401, 403):
                    problems.append(
                        f"{method.upper()} {pattern} ({handler.__name__}) answered "
                        f"{response.code} without valid credentials"
                    )
    return problems, tried


async def test_every_route_refuses_unauthenticated_requests(
    jp_serverapp: Any, http_server_client: Any
) -> None:
    # The routes of this issue at least; any route added later is checked the same way.
    routes = _workbench_routes(jp_serverapp)
    assert len(routes) >= 16
    names = {handler.__name__ for _, handler in routes}
    assert {
        "TemplatesHandler",
        "TemplateHandler",
        "DatasetsHandler",
        "DatasetHandler",
        "MetricsHandler",
        "PrometheusHandler",
        "ClusterDashboardHandler",
    } <= names
    problems, tried = await _open_routes(jp_serverapp, http_server_client)
    assert problems == []
    assert tried >= 2 * 23  # 23 (route, method) pairs today


async def test_the_route_check_catches_an_unauthenticated_handler(
    jp_serverapp: Any, http_server_client: Any
) -> None:
    from jupyter_server.base.handlers import APIHandler
    from jupyter_server.utils import url_path_join

    class Open(APIHandler):
        async def get(self) -> None:  # no @web.authenticated
            self.finish("{}")

    path = url_path_join(jp_serverapp.base_url, API_PREFIX, "open-probe")
    jp_serverapp.web_app.add_handlers(".*$", [(path, Open)])
    problems, _ = await _open_routes(jp_serverapp, http_server_client)
    assert (
        problems
        == [
            f"GET {path}$ (Open) answered 200 without valid credentials",
        ]
        * 2
    )


async def test_profiles_list_and_show_with_schema(api: Any, user_profiles: Any) -> None:
    user_profiles(
        "profiles:\n"
        "  small:\n    backend: local\n    description: one worker\n"
        "    extends: local-cpu\n    options: {n_workers: 1}\n"
        "  broken:\n    backend: local\n    options: {gpus: lots}\n"
    )
    reply = await api("GET", "profiles")
    assert reply.status == 200
    by_name = {p["name"]: p for p in reply.data["profiles"]}
    assert {"local", "local-cpu", "small", "broken"} <= set(by_name)
    assert by_name["small"]["valid"] and by_name["small"]["scope"] == "user"
    assert not by_name["broken"]["valid"]
    assert any("key 'options.gpus'" in p for p in by_name["broken"]["problems"])
    assert any("options.gpus" in p for p in reply.data["problems"])

    reply = await api("GET", "profiles/small")
    assert reply.status == 200
    assert reply.data["effective_options"]["n_workers"] == 1
    assert reply.data["effective_options"]["gpus"] == "none"
    schema = reply.data["schema"]
    assert schema["properties"]["n_workers"]["anyOf"][0] == {"minimum": 0, "type": "integer"}
    assert schema["additionalProperties"] is False


async def test_profile_errors(api: Any, user_profiles: Any) -> None:
    user_profiles("profiles:\n  broken:\n    backend: local\n    options: {gpus: lots}\n")
    reply = await api("GET", "profiles/locl")
    assert reply.status == 404
    assert "unknown profile 'locl'" in reply.data["message"]
    assert "Did you mean 'local'" in reply.data["message"]
    reply = await api("GET", "profiles/broken")
    assert reply.status == 400
    assert reply.data["message"] == "profile 'broken' is invalid"
    assert any("options.gpus" in p for p in reply.data["problems"])


async def test_launch_rejects_bad_input(api: Any, caplog: pytest.LogCaptureFixture) -> None:
    cases: list[tuple[Any, int, str]] = [
        ({"profile": "nope"}, 404, "unknown profile 'nope'"),
        ({"profile": "local-cpu", "options": {"n_workers": -3}}, 400, "n_workers"),
        ({"profile": "local-cpu", "options": {"bogus": 1}}, 400, "unknown option"),
        ({"profile": "local", "options": {"gpus": 99}}, 400, "asks for 99 GPUs"),
        ({"profile": "local-cpu", "options": {"api_token": "hunter2"}}, 400, "literal credential"),
        ({"options": {}}, 400, "profile: Field required"),
        ({"profile": "local-cpu", "options": [1]}, 400, "options: Input should be a valid dict"),
        ({"profile": "local-cpu", "extra": 1}, 400, "extra: Extra inputs are not permitted"),
        ([1, 2], 400, "must be a JSON object"),
    ]
    for body, status, message in cases:
        reply = await api("POST", "clusters", body=body)
        assert reply.status == status, (body, reply.data)
        text = " ".join([reply.data["message"], *reply.data.get("problems", [])])
        assert message in text, (body, reply.data)
    reply = await api("POST", "clusters", raw_body="{not json")
    assert reply.status == 400 and "not valid JSON" in reply.data["message"]
    # a literal secret is never echoed back
    reply = await api(
        "POST", "clusters", body={"profile": "local-cpu", "options": {"token": "s3cr3t"}}
    )
    assert "s3cr3t" not in json.dumps(reply.data)
    reply = await api("POST", "clusters", body={"profile": "local-cpu", "password": "s3cr3t"})
    assert (
        reply.status == 400 and "password: Extra inputs are not permitted" in reply.data["message"]
    )
    assert "s3cr3t" not in json.dumps(reply.data)
    assert "s3cr3t" not in caplog.text and "hunter2" not in caplog.text
    assert "workbench: POST" in caplog.text  # the errors were logged, without the secrets
    assert ClusterControl().list() == []  # nothing was started


async def test_unknown_cluster_is_404_everywhere(api: Any) -> None:
    for method, path, body in [
        ("GET", "clusters/nope", None),
        ("DELETE", "clusters/nope", None),
        ("POST", "clusters/nope/scale", {"n": 1}),
        ("POST", "clusters/nope/adapt", {"minimum": 0, "maximum": 2}),
        ("GET", "clusters/nope/connect", None),
        ("GET", "clusters/nope/health", None),
    ]:
        reply = await api(method, path, body=body)
        assert reply.status == 404, (method, path, reply.data)
        assert "no running cluster with id 'nope'" in reply.data["message"]


async def test_invalid_scale_and_adapt_requests(api: Any) -> None:
    for body, message in [
        ({"n": -1}, "n: Input should be greater than or equal to 0"),
        ({"n": 1.5}, "n: Input should be a valid integer"),
        ({"n": "2"}, "n: Input should be a valid integer"),
        ({"n": True}, "n: Input should be a valid integer"),
        ({}, "n: Field required"),
        ({"n": 1, "m": 2}, "m: Extra inputs are not permitted"),
    ]:
        reply = await api("POST", "clusters/nope/scale", body=body)
        assert reply.status == 400, (body, reply.data)
        assert message in reply.data["message"], (body, reply.data)
    reply = await api("POST", "clusters/nope/adapt", body={"minimum": 3, "maximum": 1})
    assert reply.status == 400
    assert "maximum (1) is below minimum (3)" in reply.data["message"]
    reply = await api("POST", "clusters/nope/adapt", body={"minimum": -1})
    assert reply.status == 400


async def _wait_workers(api: Any, cluster_id: str, n: int, timeout: float = 90) -> dict[str, Any]:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        reply = await api("GET", f"clusters/{cluster_id}")
        assert reply.status == 200, reply.data
        if reply.data["workers"] == n:
            return dict(reply.data)
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"cluster {cluster_id} has {reply.data['workers']} workers")
        await asyncio.sleep(0.3)


def _run_code(code: str, extra: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code + "\n" + extra],
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.slow
async def test_launch_scale_adapt_connect_stop_a_detached_cluster(
    api: Any, jp_base_url: str, small_profile: str
) -> None:
    launching = asyncio.ensure_future(api("POST", "clusters", body={"profile": small_profile}))
    # The launch runs in a thread: the server keeps answering while the cluster starts.
    await asyncio.sleep(0.5)
    assert not launching.done()
    started = asyncio.get_running_loop().time()
    assert (await api("GET", "profiles")).status == 200
    assert asyncio.get_running_loop().time() - started < 3
    assert not launching.done()
    reply = await launching
    assert reply.status == 201, reply.data
    cluster = reply.data
    cid = cluster["id"]
    assert cluster["status"] == "running" and cluster["workers"] == 1
    assert cluster["detached"] and cluster["profile"] == small_profile
    assert cluster["n_gpus"] == 0 and cluster["gpus"] == []
    # It runs outside the server process, in a session of its own.
    record = ClusterControl().get(cid)
    assert record.owner_pid != os.getpid()
    assert os.getsid(record.owner_pid) == record.owner_pid

    listing = await api("GET", "clusters")
    assert [c["id"] for c in listing.data["clusters"]] == [cid]

    reply = await api("POST", f"clusters/{cid}/scale", body={"n": 2})
    assert reply.status == 200 and reply.data == {"id": cid, "requested_workers": 2}
    await _wait_workers(api, cid, 2)

    reply = await api("POST", f"clusters/{cid}/adapt", body={"minimum": 1, "maximum": 1})
    assert reply.status == 200
    await _wait_workers(api, cid, 1)

    reply = await api("GET", f"clusters/{cid}/connect")
    assert reply.status == 200
    code = reply.data["code"]
    # TLS by default: the cell references the cluster's credential files, never their content.
    assert f"Client({record.scheduler_address!r}, security=security)" in code
    assert record.extra["security"]["tls_client_key"] in code and "PRIVATE KEY" not in code
    done = await asyncio.to_thread(
        _run_code, code, "print('answer', client.submit(lambda: 6 * 7).result())"
    )
    assert "answer 42" in done.stdout, done.stderr

    health = await api("GET", f"clusters/{cid}/health", params={"page_host": "10.1.2.3"})
    assert health.status == 200
    checks = {c["name"]: c for c in health.data["checks"]}
    assert checks["scheduler port"]["status"] == "ok"
    assert checks["scheduler"]["status"] == "ok"
    # mutual TLS: the dashboard answers the server, which holds the cluster's certificate
    assert record.dashboard_link and record.dashboard_link.startswith("https://127.0.0.1:")
    assert checks["dashboard from the server"]["status"] == "ok", checks
    assert "mutual TLS" in checks["dashboard from the server"]["summary"]
    # the browser gets it through workbench's own route, which really answers
    assert health.data["dashboard"]["url"] == (
        f"{jp_base_url}workbench/api/clusters/{cid}/view/dask/status"
    )
    assert checks["dashboard through workbench's route"]["status"] == "ok", checks
    assert health.data["ok"] is True

    reply = await api("DELETE", f"clusters/{cid}")
    assert reply.status == 200 and reply.data == {"id": cid, "stopped": True}
    assert ClusterControl().list() == []
    reply = await api("GET", f"clusters/{cid}")
    assert reply.status == 404


@pytest.mark.slow
async def test_cluster_started_in_a_notebook_is_listed_and_controllable(api: Any) -> None:
    handle = await asyncio.to_thread(
        workbench.launch,
        "local-cpu",
        wait=True,
        **{**IN_PROCESS_CLUSTER, "protocol": "tcp", "security": "none"},
    )
    try:
        listing = await api("GET", "clusters")
        (cluster,) = listing.data["clusters"]
        assert cluster["id"] == handle.id and cluster["status"] == "running"
        assert cluster["workers"] == 1 and cluster["threads"] == 1
        assert not cluster["detached"]
        reply = await api("POST", f"clusters/{handle.id}/scale", body={"n": 2})
        assert reply.status == 200
        await _wait_workers(api, handle.id, 2)
        assert handle.n_workers() == 2
    finally:
        await asyncio.to_thread(handle.close)


async def test_stale_and_foreign_clusters_give_clear_errors(api: Any, tmp_path: Path) -> None:
    control = ClusterControl()
    stale = ClusterRecord(
        id="deadbeef00",
        profile="local-cpu",
        backend="local",
        scheduler_address="tcp://127.0.0.1:9",
        owner_pid=2**22 + 7,  # no such process
    )
    control.store.add(stale)
    listing = await api("GET", "clusters")
    (c,) = listing.data["clusters"]
    assert c["status"] == "stale" and c["workers"] is None
    reply = await api("POST", "clusters/deadbeef00/scale", body={"n": 1})
    assert reply.status == 409 and "is stale" in reply.data["message"]
    health = await api("GET", "clusters/deadbeef00/health")
    checks = {c["name"]: c for c in health.data["checks"]}
    assert checks["owner process"]["status"] == "fail"
    assert checks["scheduler port"]["status"] == "fail"
    assert "nothing accepts connections at tcp://127.0.0.1:9" in checks["scheduler port"]["summary"]
    assert checks["dashboard link"]["status"] == "fail"
    assert health.data["ok"] is False
    reply = await api("DELETE", "clusters/deadbeef00")
    assert reply.status == 200
    assert control.list() == []


@pytest.mark.slow
async def test_health_explains_an_unreachable_dashboard_and_a_prefix_mismatch(
    api: Any, jp_base_url: str
) -> None:
    from distributed import LocalCluster

    cluster = await asyncio.to_thread(
        LocalCluster,
        n_workers=0,
        processes=False,
        protocol="tcp",
        dashboard_address="127.0.0.1:0",  # None would mean port 8787, maybe busy
    )
    try:
        control = ClusterControl()
        base = dict(profile="x", backend="local", scheduler_address=cluster.scheduler_address)
        control.store.add(
            ClusterRecord(
                id="nodash0001",
                dashboard_link="http://127.0.0.1:9/status",
                owner_pid=os.getpid(),
                **base,
            )
        )
        control.store.add(
            ClusterRecord(
                id="prefix0001",
                dashboard_link="/user/alice/proxy/8787/status",
                owner_pid=os.getpid(),
                **base,
            )
        )
        health = await api("GET", "clusters/nodash0001/health")
        checks = {c["name"]: c for c in health.data["checks"]}
        assert checks["scheduler"]["status"] == "ok"
        dash = checks["dashboard from the server"]
        assert dash["status"] == "fail"
        assert "cannot be reached from the Jupyter server" in dash["summary"]
        assert health.data["ok"] is False

        health = await api("GET", "clusters/prefix0001/health")
        checks = {c["name"]: c for c in health.data["checks"]}
        prefix = checks["proxy prefix"]
        assert prefix["status"] == "fail"
        assert (
            "/user/alice/" in prefix["summary"]
            and f"runs under {jp_base_url!r}" in prefix["summary"]
        )
        assert "distributed.dashboard.link" in prefix["advice"]
    finally:
        # These records name this test process as owner: forget them, nothing to stop.
        for cid in ("nodash0001", "prefix0001"):
            RecordStore().remove(cid)
        await asyncio.to_thread(cluster.close)


async def test_server_health_reports_proxy_and_doctor(api: Any) -> None:
    reply = await api("GET", "health")
    assert reply.status == 200
    assert reply.data["version"] == workbench.__version__
    assert reply.data["proxy"]["installed"] and reply.data["proxy"]["enabled"]
    assert {c["name"] for c in reply.data["checks"]} >= {"GPUs", "profiles"}


async def test_connect_code_refuses_secret_material(api: Any) -> None:
    RecordStore().add(
        ClusterRecord(
            id="tlssecret1",
            profile="p",
            backend="local",
            scheduler_address="tls://127.0.0.1:9",
            extra={"security": {"tls_client_key": "-----BEGIN PRIVATE KEY-----\nabc"}},
        )
    )
    reply = await api("GET", "clusters/tlssecret1/connect")
    assert reply.status == 409
    assert "never writes secrets into a notebook" in reply.data["message"]
    assert "abc" not in json.dumps(reply.data)
