"""Fixtures of the JupyterLab extension tests: Jupyter servers with workbench enabled.

``jp_server_config`` (pytest-jupyter) enables the workbench server extension and
jupyter-server-proxy in the in-process test server that ``jp_fetch`` talks to, with
token auth on. ``lab_process`` starts a real ``jupyter lab`` (or ``jupyter server``)
subprocess for the browser and restart tests.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

import workbench
from workbench.clusters import ClusterControl
from workbench.server import SWEEP_SETTING

BIN = Path(sys.executable).parent
#: Where workbench's own modules are: a traceback through them is workbench failing.
PACKAGE_DIR = str(Path(workbench.__file__).parent) + os.sep
#: Small, quick local clusters: one single-threaded worker, a dashboard on a free port.
SMALL_CLUSTER = {
    "n_workers": 1,
    "threads_per_worker": 1,
    "memory_limit": "1GiB",
    "dashboard_address": "127.0.0.1:0",
}
#: The same cluster with its worker in this process (no memory limit: Dask would count this
#: whole process's memory against it and pause the worker once a long test run grew).
IN_PROCESS_CLUSTER = {
    **{k: v for k, v in SMALL_CLUSTER.items() if k != "memory_limit"},
    "processes": False,
}


#: A team profile file with ``small``: SMALL_CLUSTER on CPUs. The sidebar and REST may not
#: change ``dashboard_address`` (a profile-file setting), so tests that launch through
#: REST launch this profile instead of overriding ``local-cpu``.
SMALL_PROFILE = "small"


@pytest.fixture
def small_profile(workbench_home: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """The ``small`` profile in a team profile file (the user's file stays the test's own);
    servers started afterwards inherit it through the environment."""
    import yaml

    team = workbench_home / "team-profiles.yaml"
    options = {"gpus": "none", **SMALL_CLUSTER}
    team.write_text(
        yaml.safe_dump({"profiles": {SMALL_PROFILE: {"backend": "local", "options": options}}})
    )
    monkeypatch.setenv("WORKBENCH_TEAM_PROFILES", str(team))
    return SMALL_PROFILE


@pytest.fixture
def jp_server_config() -> Any:
    from traitlets.config import Config

    return Config(
        {
            "ServerApp": {
                "jpserver_extensions": {
                    "workbench.server": True,
                    "jupyter_server_proxy": True,
                }
            }
        }
    )


@dataclass
class Reply:
    status: int
    data: Any
    headers: dict[str, str] = field(default_factory=dict)


@pytest.fixture
def api(jp_fetch: Any, jp_serverapp: Any) -> Callable[..., Any]:
    """``await api("GET", "clusters")``: a workbench route over real HTTP, with the token.

    Waits for the server's start-up sweep first: it releases stale records, and a test
    that adds one must not race it."""
    sweep = jp_serverapp.web_app.settings.get(SWEEP_SETTING)
    if sweep is not None:
        sweep.join(timeout=60)
        assert not sweep.is_alive(), "the start-up sweep of stale clusters still runs after 60 s"

    async def call(
        method: str,
        path: str,
        body: Any = None,
        params: dict[str, str] | None = None,
        raw_body: str | None = None,
    ) -> Reply:
        # Launching waits for workers, which takes more than jp_fetch's 20 s on a busy machine.
        kwargs: dict[str, Any] = {"method": method, "raise_error": False, "request_timeout": 300}
        if raw_body is not None:
            kwargs["body"] = raw_body
        elif body is not None:
            kwargs["body"] = json.dumps(body)
        elif method in ("POST", "PUT", "PATCH"):
            kwargs["body"] = ""
        response = await jp_fetch("workbench", "api", *path.split("/"), params=params, **kwargs)
        text = response.body.decode() if response.body else ""
        return Reply(response.code, json.loads(text) if text else None, dict(response.headers))

    return call


@pytest.fixture
def stop_clusters_after() -> Iterator[None]:
    """Stop every cluster a test left in its (private) record store."""
    yield
    control = ClusterControl()
    for record in control.list():
        with contextlib.suppress(Exception):
            control.stop(record.id, timeout=30)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _decoded(text: str, headers: Any) -> Any:
    """A reply's JSON, or its text where it is not JSON (Prometheus, HTML)."""
    if not text:
        return None
    if "json" in str(headers.get("Content-Type", "")):
        return json.loads(text)
    return text


@dataclass
class JupyterProcess:
    """A ``jupyter lab``/``jupyter server`` subprocess with token auth."""

    url: str
    token: str
    proc: subprocess.Popen[bytes]
    log: Path
    root: Path

    def request(self, method: str, path: str, body: Any = None, timeout: float = 180) -> Reply:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(
            self.url + path.lstrip("/"),
            data=data if data is not None else (b"" if method not in ("GET", "HEAD") else None),
            method=method,
            headers={"Authorization": f"token {self.token}", "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                return Reply(r.status, _decoded(r.read().decode(), r.headers), dict(r.headers))
        except urllib.error.HTTPError as exc:
            return Reply(exc.code, _decoded(exc.read().decode(), exc.headers), dict(exc.headers))

    def workbench_errors(self) -> list[str]:
        """What the server logged of workbench failing: each traceback through workbench's
        code, and each 5xx answer of a workbench route (others' noise, such as
        jupyter-server-proxy's reconnects to a stopped dashboard, is not counted)."""
        text = self.log.read_text(errors="replace")
        found = [
            line
            for line in text.splitlines()
            if re.match(r"\[[EW] .*\b5\d\d \w+ /workbench/", line)
        ]
        for block in re.split(r"\n(?=\[[A-Z] \d{4}-|\d{4}-\d\d-\d\d )", text):
            if "Traceback" in block and PACKAGE_DIR in block:
                found.append(block[-3000:])
        return found

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


@pytest.fixture
def lab_process(tmp_path: Path) -> Iterator[Callable[..., JupyterProcess]]:
    """Factory: start ``jupyter lab`` (or ``app="server"``) and wait until it answers."""
    started: list[JupyterProcess] = []

    def start(app: str = "lab", root: Path | None = None) -> JupyterProcess:
        port = free_port()
        token = secrets.token_hex(16)
        root = root or tmp_path / "notebooks"
        root.mkdir(exist_ok=True)
        jupyter = tmp_path / "jupyter"
        env = {
            **os.environ,
            "JUPYTER_CONFIG_DIR": str(jupyter / "config"),
            "JUPYTER_DATA_DIR": str(jupyter / "data"),
            "JUPYTER_RUNTIME_DIR": str(jupyter / "runtime"),
            "JUPYTERLAB_SETTINGS_DIR": str(jupyter / "lab-settings"),
            "JUPYTERLAB_WORKSPACES_DIR": str(jupyter / "lab-workspaces"),
            "PYTHONUNBUFFERED": "1",
        }
        args = [
            str(BIN / "jupyter"),
            app,
            "--no-browser",
            "--ServerApp.ip=127.0.0.1",
            f"--ServerApp.port={port}",
            "--ServerApp.port_retries=0",
            f"--ServerApp.root_dir={root}",
            f"--IdentityProvider.token={token}",
        ]
        if app == "lab":
            args += [
                "--LabApp.news_url=None",
                "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
            ]
        if os.getuid() == 0:
            args.append("--allow-root")
        # No "get notified about Jupyter news?" prompt over the page.
        news = jupyter / "lab-settings" / "@jupyterlab" / "apputils-extension"
        news.mkdir(parents=True, exist_ok=True)
        (news / "notification.jupyterlab-settings").write_text('{"fetchNews": "false"}')
        log = tmp_path / f"jupyter-{app}-{port}.log"
        with open(log, "wb") as out:
            proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=root)
        server = JupyterProcess(f"http://127.0.0.1:{port}/", token, proc, log, root)
        started.append(server)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise AssertionError(f"jupyter {app} exited:\n{log.read_text()[-3000:]}")
            with contextlib.suppress(OSError):
                if server.request("GET", "api/status", timeout=5).status == 200:
                    return server
            time.sleep(0.3)
        raise AssertionError(f"jupyter {app} did not start in 90s:\n{log.read_text()[-3000:]}")

    yield start
    for server in started:
        server.stop()
