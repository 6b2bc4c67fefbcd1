"""``/workbench/api/clusters/<id>/dashboard``: workbench's Panel dashboards of a cluster.

The dashboards run in a process of their own, never in the Jupyter server: the same
``workbench dashboard --cluster ID`` as in a terminal, started in a new session on a
free loopback port, logging to ``<state dir>/logs/``. Its pid, port and allowed
websocket origins are kept in ``<state dir>/dashboards/<cluster id>.json``, so one
dashboard process per cluster is shared by every tab and survives a restart of the
Jupyter server. It exits by itself once its cluster is gone (``--exit-with-cluster``);
stopping the cluster through the API stops it at once.

The browser reaches it through jupyter-server-proxy at ``{base_url}proxy/<port>/``.
Panel's pages use relative URLs, so the prefix needs no configuration; Bokeh checks
the websocket's ``Origin``, so the origins the browser uses (this server's host as the
browser sees it) are passed with ``--allow-websocket-origin``; a request from a new
origin restarts the process with it added.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import re
import signal
import socket
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import urlparse

import psutil

from .. import config
from ..checks import Check
from ..clusters.control import ClusterControl
from ..clusters.detached import LaunchError
from ..clusters.record import ClusterRecord
from ..errors import MissingDependencyError
from ..private import private_dir, write_private
from ..processes import reap_in_background, spawn_detached
from .base import RequestError
from .probes import ProbeHandler, fetch

#: What ``workbench dashboard`` prints once it serves.
READY_MARKER = "Press Ctrl-C"
START_TIMEOUT_S = 120.0
_ORIGIN = re.compile(r"^[A-Za-z0-9.\-]+(:\d{1,5})?$|^\[[0-9A-Fa-f:.]+\](:\d{1,5})?$")
_locks: dict[str, threading.Lock] = {}
_locks_lock = threading.Lock()


@dataclass
class DashboardProcess:
    """A dashboard process as recorded in the state directory."""

    cluster_id: str
    scheduler_address: str
    pid: int
    create_time: float
    port: int
    log: str
    origins: list[str] = field(default_factory=list)
    started: float = field(default_factory=time.time)

    def alive(self) -> bool:
        """Whether the recorded process still runs (and is that process, not a reused pid)."""
        try:
            proc = psutil.Process(self.pid)
            return (
                abs(proc.create_time() - self.create_time) < 1.0
                and proc.status() != psutil.STATUS_ZOMBIE
            )
        except psutil.Error:
            return False

    def listening(self) -> bool:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), 2):
            return True
        return False


def _state_file(cluster_id: str) -> Path:
    return config.state_dir() / "dashboards" / f"{cluster_id}.json"


def read_state(cluster_id: str) -> DashboardProcess | None:
    path = _state_file(cluster_id)
    try:
        return DashboardProcess(**json.loads(path.read_text()))
    except (OSError, ValueError, TypeError):
        return None


def _write_state(proc: DashboardProcess) -> None:
    write_private(_state_file(proc.cluster_id), json.dumps(asdict(proc)))


def _lock(cluster_id: str) -> threading.Lock:
    with _locks_lock:
        return _locks.setdefault(cluster_id, threading.Lock())


def panel_missing() -> str | None:
    """Why the dashboards cannot run here, or None."""
    if importlib.util.find_spec("panel") is None:
        return (
            "the workbench dashboards need Panel, which is not installed in the Jupyter "
            "server's environment: pip install 'workbench[dashboards]'"
        )
    return None


def browser_origins(headers: Any, server_url: str) -> list[str]:
    """The ``host[:port]`` origins a browser may open the proxied dashboard from."""
    found: list[str] = []
    origin = headers.get("Origin")
    if origin and origin != "null":
        found.append(urlparse(origin).netloc)
    for name in ("X-Forwarded-Host", "Host"):
        value = headers.get(name)
        if value:
            found.append(value.split(",")[0].strip())
    found.append(urlparse(server_url).netloc)
    out: list[str] = []
    for item in found:
        if item and _ORIGIN.match(item) and item not in out:
            out.append(item)
    return out


def stop_dashboard(cluster_id: str, timeout: float = 10.0) -> bool:
    """Stop the cluster's dashboard process, if it runs. Returns whether one was stopped."""
    state = read_state(cluster_id)
    stopped = False
    if state is not None and state.alive():
        with contextlib.suppress(ProcessLookupError):
            os.kill(state.pid, signal.SIGTERM)
        with contextlib.suppress(psutil.Error):
            try:
                psutil.Process(state.pid).wait(timeout)
            except psutil.TimeoutExpired:
                os.kill(state.pid, signal.SIGKILL)
        stopped = True
    with contextlib.suppress(FileNotFoundError):
        _state_file(cluster_id).unlink()
    return stopped


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _spawn(record: ClusterRecord, origins: list[str]) -> DashboardProcess:
    logs = private_dir(config.state_dir() / "logs")
    log = logs / f"dashboard-{record.id}-{int(time.time() * 1000)}.log"
    port = _free_port()
    args = [
        sys.executable,
        "-m",
        "workbench",
        "dashboard",
        "--cluster",
        record.id,
        "--port",
        str(port),
        "--address",
        "127.0.0.1",
        "--exit-with-cluster",
    ]
    for origin in origins:
        args += ["--allow-websocket-origin", origin]
    proc = spawn_detached(
        args, log, env={"PYTHONUNBUFFERED": "1"}, unset=["WORKBENCH_DETACHED_LOG"]
    )
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log.read_text(errors="replace").strip().splitlines()[-15:]
            raise LaunchError(
                f"the dashboard process of cluster {record.id} exited (log: {log}):\n"
                + "\n".join(tail),
                log,
            )
        if READY_MARKER in log.read_text(errors="replace"):
            reap_in_background(proc)
            state = DashboardProcess(
                cluster_id=record.id,
                scheduler_address=record.scheduler_address,
                pid=proc.pid,
                create_time=psutil.Process(proc.pid).create_time(),
                port=port,
                log=str(log),
                origins=origins,
            )
            _write_state(state)
            return state
        time.sleep(0.2)
    proc.terminate()
    reap_in_background(proc)
    raise LaunchError(
        f"the dashboards of cluster {record.id} did not start within {START_TIMEOUT_S:.0f}s; "
        f"log: {log}",
        log,
    )


def ensure_dashboard(cluster_id: str, origins: list[str]) -> tuple[DashboardProcess, bool]:
    """The cluster's running dashboard process (started if needed) and whether it is new."""
    missing = panel_missing()
    if missing:
        raise MissingDependencyError(missing)
    record = ClusterControl().running(cluster_id)  # 404 unknown, 409 stale/unreachable
    with _lock(record.id):
        state = read_state(record.id)
        if (
            state is not None
            and state.alive()
            and state.listening()
            and state.scheduler_address == record.scheduler_address
        ):
            if set(origins) <= set(state.origins):
                return state, False
            origins = sorted(set(origins) | set(state.origins))
        stop_dashboard(record.id)
        return _spawn(record, origins), True


def dashboard_url(base_url: str, port: int, proxy_enabled: bool) -> str:
    if proxy_enabled:
        return f"{base_url.rstrip('/')}/proxy/{port}/"
    return f"http://127.0.0.1:{port}/"


def dashboard_checks(
    cluster_id: str, base_url: str, proxy_enabled: bool, server_url: str, auth: dict[str, str]
) -> list[Check]:
    """Why the cluster's workbench dashboards can or cannot be shown (for the health route)."""
    name = "workbench dashboards"
    missing = panel_missing()
    if missing:
        return [Check(name, "warn", "the workbench dashboards cannot run here", missing)]
    state = read_state(cluster_id)
    if state is None:
        return [Check(name, "ok", "not started (the Dashboards button starts them)")]
    if not state.alive():
        return [
            Check(
                name,
                "fail",
                f"the dashboard process (pid {state.pid}) has exited",
                f"open Dashboards again to restart it; its log: {state.log}",
            )
        ]
    if not state.listening():
        return [
            Check(
                name,
                "fail",
                f"the dashboard process (pid {state.pid}) does not accept connections on "
                f"port {state.port}",
                f"it may still be starting or be stuck; its log: {state.log}",
            )
        ]
    checks = [Check(name, "ok", f"pid {state.pid} serves 127.0.0.1:{state.port}")]
    if not proxy_enabled:
        checks.append(
            Check(
                "workbench dashboards through the proxy",
                "fail",
                "jupyter-server-proxy is not enabled, so the dashboards are only reachable "
                f"from this machine at http://127.0.0.1:{state.port}/",
                "pip install jupyter-server-proxy and restart the Jupyter server",
            )
        )
        return checks
    url = server_url.rstrip("/") + dashboard_url(base_url, state.port, True)
    code, err = fetch(url, auth, timeout=10, origin=server_url)
    if 200 <= code < 400:
        checks.append(
            Check("workbench dashboards through the proxy", "ok", f"{url} answers (HTTP {code})")
        )
    else:
        checks.append(
            Check(
                "workbench dashboards through the proxy",
                "fail",
                f"{url} answers {f'HTTP {code} ' if code else ''}{err}".strip(),
                f"see the dashboard process's log: {state.log}",
            )
        )
    return checks


class ClusterDashboardHandler(ProbeHandler):
    auth_resource = "workbench:dashboards"
    auth_actions: ClassVar[dict[str, str]] = {"post": "execute"}

    def _reply_for(self, state: DashboardProcess, started: bool) -> dict[str, Any]:
        proxy = self._proxy()
        return {
            "id": state.cluster_id,
            "url": dashboard_url(self._base_url, state.port, proxy.enabled),
            "proxied": proxy.enabled,
            "port": state.port,
            "pid": state.pid,
            "started": started,
            "origins": state.origins,
            "log": state.log,
        }

    async def get(self, cluster_id: str) -> None:
        record = await self.run(ClusterControl().get, cluster_id)
        state = read_state(record.id)
        if state is None or not state.alive():
            self.reply({"id": record.id, "running": False, "url": None})
            return
        self.reply({**self._reply_for(state, False), "running": True})

    async def post(self, cluster_id: str) -> None:
        if self.request.body and self.request.body.strip() not in (b"", b"{}"):
            raise RequestError("this request takes no body")
        origins = browser_origins(self.request.headers, self._server_url())
        state, started = await self.run(ensure_dashboard, cluster_id, origins)
        self.reply({**self._reply_for(state, started), "running": True})

    async def delete(self, cluster_id: str) -> None:
        record = await self.run(ClusterControl().get, cluster_id)
        stopped = await self.run(stop_dashboard, record.id)
        self.reply({"id": record.id, "stopped": stopped})
