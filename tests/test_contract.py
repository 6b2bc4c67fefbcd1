"""The backend contract: what every backend promises, tested once, for every backend.

Parametrized over ``local``, ``slurm`` (the real single-node SLURM), ``gateway`` (the real
dask-gateway-server) and ``kubernetes`` (the Kubernetes API STAND-IN of
tests/_kube_standin.py, since no Kubernetes can run here; the Dask scheduler and workers
behind it are real). The environments are in tests/_contract.py; a new backend is done
when an environment for it passes this module.

Each test times what it measures (see the "timings measured by the tests" summary).
"""

from __future__ import annotations

import json
import operator
import os
import signal
import subprocess
import sys
import textwrap
import time
import urllib.request
from collections.abc import Iterator
from http import HTTPStatus
from pathlib import Path
from typing import Any

import pytest

import workbench
from workbench.clusters import ClusterControl, ClusterHandle, RecordStore
from workbench.clusters.record import ClusterRecord, process_alive
from workbench.server.upstreams import dask_upstream, fetch_upstream

from ._contract import PROFILE, BackendEnv, make_env, wait_until
from ._lab_fixtures import JupyterProcess
from ._timing import Timings
from .conftest import WORKBENCH

BACKENDS = [
    pytest.param("local", id="local"),
    pytest.param("slurm", marks=pytest.mark.slurm, id="slurm"),
    pytest.param("gateway", id="gateway"),
    pytest.param("kubernetes", id="kubernetes"),
]
#: Code a fresh process runs after a cluster's connect code.
CHECK = "\nprint('answer', client.submit(lambda: 6 * 7).result(timeout=60), flush=True)\n"

pytestmark = [pytest.mark.slow]


@pytest.fixture(params=BACKENDS)
def env(request: pytest.FixtureRequest, user_profiles: Any, tmp_path: Path) -> Iterator[BackendEnv]:
    backend_env = make_env(request.param, request, tmp_path)
    user_profiles(backend_env.profile_yaml())
    yield backend_env
    control = ClusterControl()
    for record in control.list():  # a failed test's leftovers, released before the next test
        try:
            control.stop(record.id, timeout=30)
        except Exception as exc:
            print(f"contract teardown: could not stop {record.id}: {exc}")


def _launch(**overrides: Any) -> ClusterHandle:
    return workbench.launch(PROFILE, wait=1, timeout=180, progress="off", **overrides)


def _cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*WORKBENCH, "clusters", *args],
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _run_code(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        capture_output=True,
        text=True,
        timeout=180,
    )


def test_launch_compute_close(env: BackendEnv, timings: Timings) -> None:
    with timings.measure("launch until 1 worker"):
        handle = _launch()
    control = ClusterControl()
    try:
        record = control.get(handle.id)
        assert record.backend == env.backend and control.status(record) == "running"
        assert env.held(record), "a running cluster holds something outside its owner"
        with timings.measure("first task"):
            assert handle.client.submit(operator.mul, 6, 7).result(timeout=60) == 42
        assert control.info(record)["workers"] >= 1
        assert record.watchdog is not None and process_alive(*record.watchdog)
    finally:
        with timings.measure("close()"):
            handle.close()
    timings.record("released after close()", env.wait_released(record, 60))
    assert control.list() == []
    # The watchdog saw the record go and exited.
    assert record.watchdog is not None
    timings.record(
        "watchdog exited after close()",
        wait_until(lambda: not process_alive(*record.watchdog), 10),  # type: ignore[misc]
    )


def test_scale_and_adapt(env: BackendEnv, timings: Timings) -> None:
    handle = _launch()
    try:
        with timings.measure("scale 1 -> 2 workers"):
            handle.scale(2).wait_for_workers(2, timeout=180, progress="off")
        with timings.measure("scale 2 -> 1 worker"):
            handle.scale(1)
            wait_until(lambda: handle.n_workers() == 1, 120)
        with timings.measure("adapt minimum 2: 1 -> 2 workers"):
            handle.adapt(minimum=2, maximum=2)
            wait_until(lambda: handle.n_workers() == 2, 180)
        with timings.measure("adapt maximum 1: 2 -> 1 worker"):
            handle.adapt(minimum=1, maximum=1)
            wait_until(lambda: handle.n_workers() == 1, 180)
        assert handle.client.submit(operator.add, 1, 2).result(timeout=60) == 3
    finally:
        handle.close()
    env.wait_released(handle.record, 60)


def test_control_from_another_process(env: BackendEnv, timings: Timings) -> None:
    handle = _launch()
    record = handle.record
    try:
        with timings.measure("CLI scale 1 -> 2 workers"):
            out = _cli("scale", handle.id, "2")
            assert out.returncode == 0, out.stderr
            wait_until(lambda: handle.n_workers() == 2, 180)
        with timings.measure("CLI adapt 2 -> 1 worker"):
            out = _cli("adapt", handle.id, "--minimum", "1", "--maximum", "1")
            assert out.returncode == 0, out.stderr
            wait_until(lambda: handle.n_workers() == 1, 180)
        listed = json.loads(_cli("list", "--json").stdout)
        assert [(c["id"], c["status"]) for c in listed] == [(handle.id, "running")]
        if env.backend == "slurm":
            out = _cli("scale", handle.id, "2", "--jobs")
            assert out.returncode == 0, out.stderr
            wait_until(lambda: handle.n_workers() == 2, 180)
        else:
            out = _cli("scale", handle.id, "2", "--jobs")
            assert out.returncode == 1 and "runs no batch jobs" in out.stderr
        with timings.measure("CLI stop until the owner's handle is closed"):
            out = _cli("stop", handle.id)
            assert out.returncode == 0 and f"stopped {handle.id}" in out.stdout, out.stderr
            wait_until(lambda: handle.status == "closed", 60)
        timings.record("released after CLI stop", env.wait_released(record, 60))
    finally:
        handle.close()
    assert ClusterControl().list() == []


OWNER = """
import json, sys, time, workbench
if __name__ == "__main__":
    h = workbench.launch({profile!r}, wait=1, timeout=180, progress="off")
    print(json.dumps(h.record.to_dict()), flush=True)
    time.sleep(600)
"""


def test_owner_killed_releases_everything(
    env: BackendEnv, timings: Timings, tmp_path: Path
) -> None:
    script = tmp_path / "owner.py"
    script.write_text(textwrap.dedent(OWNER.format(profile=PROFILE)))
    with subprocess.Popen(
        [sys.executable, str(script)],
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.PIPE,
        text=True,
    ) as owner:
        try:
            assert owner.stdout is not None
            line = owner.stdout.readline()
            assert line, "the owner did not start its cluster"
            record = ClusterRecord.from_dict(json.loads(line))
            assert env.held(record)
        finally:
            os.kill(owner.pid, signal.SIGKILL)
            owner.wait()
    killed = time.monotonic()
    timings.record("released after the owner's SIGKILL", env.wait_released(record, 60))
    store = RecordStore()
    wait_until(lambda: not store.exists(record.id), 60 - (time.monotonic() - killed))
    timings.record("record released by the watchdog after SIGKILL", time.monotonic() - killed)
    ended = store.ended(record.id)
    assert ended is not None and "killed or crashed" in ended[1]["reason"]
    out = _cli("stop", record.id)
    assert out.returncode == 1 and "is gone" in out.stderr and "killed or crashed" in out.stderr
    assert record.watchdog is not None and not process_alive(*record.watchdog)


def test_connect_code_in_a_fresh_process(env: BackendEnv, timings: Timings) -> None:
    handle = _launch()
    try:
        code = ClusterControl().connect_code(handle.id)
        assert code == handle.connect_code()
        with timings.measure("connect code in a fresh process"):
            out = _run_code(code + CHECK)
        assert out.returncode == 0, out.stderr[-3000:]
        assert "answer 42" in out.stdout
        assert handle.n_workers() >= 1 and handle.status != "closed"  # still running
    finally:
        handle.close()
    env.wait_released(handle.record, 60)


def _wait_workers(lab: JupyterProcess, cluster_id: str, n: int, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while True:
        reply = lab.request("GET", f"workbench/api/clusters/{cluster_id}")
        if reply.status == 200 and reply.data["workers"] == n:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"cluster {cluster_id}: {reply.data}")
        time.sleep(0.3)


def _fetch(url: str) -> int:
    with urllib.request.urlopen(url, timeout=30) as reply:
        return int(reply.status)


def test_the_same_through_the_rest_routes(
    env: BackendEnv, timings: Timings, lab_process: Any
) -> None:
    """Every REST route of a cluster's life, against ``jupyter lab`` started as users start
    it: a process of its own from the venv, a fresh interpreter that imported nothing of
    the tests (an in-process server shares pytest's imports and hid the SLURM launch's
    "signal only works in main thread")."""
    lab: JupyterProcess = lab_process("lab")
    api = "workbench/api/"
    started = time.perf_counter()
    reply = lab.request("POST", api + "clusters", {"profile": PROFILE, "options": {}}, timeout=300)
    timings.record("REST launch (detached) until ready", time.perf_counter() - started)
    assert reply.status == 201, reply.data
    cid = reply.data["id"]
    assert reply.data["status"] == "running" and reply.data["backend"] == env.backend
    record = ClusterControl().get(cid)
    listing = lab.request("GET", api + "clusters")
    assert [c["id"] for c in listing.data["clusters"]] == [cid]

    # The advertised dashboard is where the dashboard answers: the record's link (the one
    # the CLI prints and the sidebar shows), fetched from here, and the server's checks.
    link = reply.data["dashboard_link"]
    assert link and link == record.dashboard_link, (link, record.dashboard_link)
    if env.tls == "workbench":  # HTTPS for holders of the cluster's certificate only
        assert link.startswith("https://"), link
        assert fetch_upstream(dask_upstream(record), "status")[0] == HTTPStatus.OK, link
    else:
        assert _fetch(link) == HTTPStatus.OK, link
    # ... and the browser's way: workbench's own route on the Jupyter server
    page = lab.request("GET", api + f"clusters/{cid}/view/dask/status")
    assert page.status == HTTPStatus.OK and "bokeh" in str(page.data).lower(), page.status
    health = lab.request("GET", api + f"clusters/{cid}/health")
    assert health.status == 200, health.data
    failed = [c for c in health.data["checks"] if c["status"] == "fail"]
    assert not failed, failed
    panes = lab.request("GET", api + f"clusters/{cid}/panes")
    assert panes.status == 200, panes.data
    assert panes.data["dask"]["problem"] is None, panes.data
    assert any(p["route"] == "individual-task-stream" for p in panes.data["dask"]["plots"])

    started = time.perf_counter()
    reply = lab.request("POST", api + f"clusters/{cid}/scale", {"n": 2})
    assert reply.status == 200 and reply.data == {"id": cid, "requested_workers": 2}, reply.data
    _wait_workers(lab, cid, 2)
    timings.record("REST scale 1 -> 2 workers", time.perf_counter() - started)

    started = time.perf_counter()
    reply = lab.request("POST", api + f"clusters/{cid}/adapt", {"minimum": 1, "maximum": 1})
    assert reply.status == 200, reply.data
    _wait_workers(lab, cid, 1)
    timings.record("REST adapt 2 -> 1 worker", time.perf_counter() - started)

    reply = lab.request("GET", api + f"clusters/{cid}/connect")
    assert reply.status == 200
    # the backend's own code (run in a fresh process by test_connect_code_in_a_fresh_process)
    assert reply.data["code"] == ClusterControl().connect_code(cid)

    started = time.perf_counter()
    reply = lab.request("DELETE", api + f"clusters/{cid}")
    assert reply.status == 200 and reply.data == {"id": cid, "stopped": True}, reply.data
    env.wait_released(record, 60)
    timings.record("REST stop until released", time.perf_counter() - started)
    assert lab.request("GET", api + f"clusters/{cid}").status == 404
    wait_until(lambda: not process_alive(record.owner_pid, record.owner_create_time), 30)
    assert not lab.workbench_errors(), lab.workbench_errors()


def test_idle_timeout_closes_and_releases(env: BackendEnv, timings: Timings) -> None:
    idle = 4.0
    handle = _launch(idle_timeout=idle)
    record = handle.record
    assert record.idle_timeout == idle
    assert handle.client.submit(operator.mul, 3, 3).result(timeout=60) == 9
    done = time.monotonic()
    wait_until(lambda: handle.status == "closed", 60)
    closed_after = time.monotonic() - done
    timings.record(f"closed after idle (idle_timeout {idle:g}s)", closed_after)
    assert closed_after >= idle - 1.5, "closed before it was idle for idle_timeout"
    assert handle.end_reason is not None and "idle_timeout" in handle.end_reason
    timings.record("released after idle close", env.wait_released(record, 60))
    wait_until(lambda: ClusterControl().list() == [], 30)  # close() ends by forgetting it


# -- secure by default (issue 14): TLS with per-cluster credentials --------------------------
REFUSED = """
import sys
from distributed import Client
from distributed.security import Security
mine = Security.temporary()  # a certificate of its own: not the cluster's
security = Security(tls_ca_file={ca!r}, tls_client_cert=mine.tls_client_cert,
                    tls_client_key=mine.tls_client_key, require_encryption=True)
for name, kwargs in (("plain", {{"address": {plain!r}}}),
                     ("own certificate", {{"address": {address!r}, "security": security}})):
    try:
        Client(timeout=5, **kwargs).close()
    except Exception as exc:
        print("refused", name, type(exc).__name__, flush=True)
    else:
        print("ACCEPTED", name, flush=True)
"""


def test_tls_refuses_clients_without_the_credentials(env: BackendEnv, timings: Timings) -> None:
    if env.tls is None:
        pytest.skip(
            f"{env.backend}: the Kubernetes STAND-IN's fake operator starts plain-TCP "
            "schedulers; the real operator's TLS is not workbench's to set"
        )
    handle = _launch()
    try:
        record = ClusterControl().get(handle.id)
        if env.tls == "gateway":
            # dask-gateway's TLS proxy, and the gateway's credentials, kept as they are.
            assert record.scheduler_address.startswith(("gateway://", "tls://"))
            assert "security=cluster.security" in handle.connect_code()
            return
        assert record.scheduler_address.startswith("tls://"), record.scheduler_address
        paths = record.extra["security"]
        for path in {paths["tls_ca_file"], paths["tls_client_key"]}:
            assert os.stat(path).st_mode & 0o777 == 0o600, path
            assert os.stat(os.path.dirname(path)).st_mode & 0o777 == 0o700
        key = Path(paths["tls_client_key"]).read_text()
        assert "PRIVATE KEY" in key and key not in json.dumps(record.to_dict())
        assert key not in handle.connect_code()
        plain = record.scheduler_address.replace("tls://", "tcp://")
        with timings.measure("clients without the credentials refused"):
            out = _run_code(
                REFUSED.format(
                    ca=paths["tls_ca_file"], plain=plain, address=handle.scheduler_address
                )
            )
        assert out.stdout.count("refused") == 2 and "ACCEPTED" not in out.stdout, (
            out.stdout + out.stderr[-2000:]
        )
        # With the credentials (the connect cell, the control path): it works.
        out = _run_code(handle.connect_code() + CHECK)
        assert "answer 42" in out.stdout, out.stderr[-3000:]
        assert ClusterControl().info(record)["workers"] >= 1
        folder = Path(paths["tls_client_key"]).parent
    finally:
        handle.close()
    env.wait_released(handle.record, 60)
    assert not folder.exists(), "the cluster's credentials outlive it"
