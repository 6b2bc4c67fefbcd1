"""``/workbench/api/clusters/<id>/dashboard``: workbench's Panel dashboards of a cluster.

The dashboards run in a process of their own, never in the Jupyter server: the same
``workbench dashboard --cluster ID`` as in a terminal, started in a new session, serving
on a **Unix socket in the user's 0700 temporary directory** (``$TMPDIR/workbench-<uid>/
run/``; no port another user could read or squat), logging to ``<state dir>/logs/``. Its
pid and socket are kept in ``<state dir>/dashboards/<cluster id>.json``, so one dashboard
process per cluster is shared by every tab and survives a restart of the Jupyter server.
It exits by itself once its cluster is gone (``--exit-with-cluster``); stopping the
cluster through the API stops it at once.

The browser reaches it through workbench's own route,
``{base_url}workbench/api/clusters/<id>/view/dashboards/``
(:mod:`workbench.server.dashboard_proxy`), which sends it no credential of Jupyter's.
Panel's pages use relative URLs, so the prefix needs no configuration.
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

import psutil

from .. import config
from ..checks import Check
from ..clusters.control import ClusterControl
from ..clusters.detached import LaunchError
from ..clusters.record import ClusterRecord
from ..errors import MissingDependencyError
from ..private import private_dir, private_tmp_dir, write_private
from ..processes import reap_in_background, spawn_detached
from .base import RequestError
from .probes import ProbeHandler
from .upstreams import DashboardUnreachableError, Upstream, fetch_upstream, unix_upstream, view_url

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
    socket: str
    log: str
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
        with contextlib.suppress(OSError), socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(2)
            sock.connect(self.socket)
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


def socket_path(cluster_id: str) -> Path:
    """Where a cluster's dashboard process listens: a socket in the user's 0700 directory
    (short: a Unix socket's path has at most 107 bytes)."""
    return private_tmp_dir("run") / f"dashboard-{cluster_id}.sock"


def _spawn(record: ClusterRecord) -> DashboardProcess:
    logs = private_dir(config.state_dir() / "logs")
    log = logs / f"dashboard-{record.id}-{int(time.time() * 1000)}.log"
    sock = socket_path(record.id)
    with contextlib.suppress(FileNotFoundError):
        sock.unlink()  # a dead process's socket
    args = [
        sys.executable,
        "-m",
        "workbench",
        "dashboard",
        "--cluster",
        record.id,
        "--unix-socket",
        str(sock),
        "--exit-with-cluster",
    ]
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
                socket=str(sock),
                log=str(log),
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


def ensure_dashboard(cluster_id: str) -> tuple[DashboardProcess, bool]:
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
            return state, False
        stop_dashboard(record.id)
        return _spawn(record), True


def _upstream_of(state: DashboardProcess) -> Upstream:
    return unix_upstream(state.socket, f"the workbench dashboards of cluster {state.cluster_id}")


def dashboards_upstream(record: ClusterRecord) -> Upstream:
    """The cluster's running dashboard process, on its Unix socket."""
    state = read_state(record.id)
    if state is None or not state.alive():
        raise DashboardUnreachableError(
            f"the workbench dashboards of cluster {record.id} are not running; open "
            "Dashboards again to start them"
        )
    return _upstream_of(state)


def dashboard_checks(cluster_id: str) -> list[Check]:
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
                f"{state.socket}",
                f"it may still be starting or be stuck; its log: {state.log}",
            )
        ]
    checks = [Check(name, "ok", f"pid {state.pid} serves {state.socket}")]
    code, _, err = fetch_upstream(_upstream_of(state), "")
    if 200 <= code < 400:
        checks.append(Check("workbench dashboards through workbench's route", "ok", f"HTTP {code}"))
    else:
        checks.append(
            Check(
                "workbench dashboards through workbench's route",
                "fail",
                f"{f'HTTP {code} ' if code else ''}{err}".strip(),
                f"see the dashboard process's log: {state.log}",
            )
        )
    return checks


class ClusterDashboardHandler(ProbeHandler):
    auth_resource = "workbench:dashboards"
    auth_actions: ClassVar[dict[str, str]] = {"post": "execute"}

    def _reply_for(self, state: DashboardProcess, started: bool) -> dict[str, Any]:
        return {
            "id": state.cluster_id,
            "url": view_url(self._base_url, state.cluster_id, "dashboards"),
            "proxied": True,  # through workbench's route, always
            "pid": state.pid,
            "started": started,
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
        state, started = await self.run(ensure_dashboard, cluster_id)
        self.reply({**self._reply_for(state, started), "running": True})

    async def delete(self, cluster_id: str) -> None:
        record = await self.run(ClusterControl().get, cluster_id)
        stopped = await self.run(stop_dashboard, record.id)
        self.reply({"id": record.id, "stopped": stopped})
