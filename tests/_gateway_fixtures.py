"""A real dask-gateway-server on 127.0.0.1, started once per test session.

It runs dask-gateway's UnsafeLocalBackend (schedulers and workers are local processes
of this user) behind its own Go proxy (shipped in the dask-gateway-server wheel), with
a SimpleAuthenticator that requires a password. Its cluster options mimic a typical
deployment: worker_cores, worker_memory (GiB), worker_gpus (none here: max 0) and image.
"""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
import textwrap
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

GATEWAY_PASSWORD_ENV = "WB_TEST_GATEWAY_PASSWORD"
ADMIN_PASSWORD_ENV = "WB_TEST_GATEWAY_ADMIN_PASSWORD"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class GatewayServer:
    address: str
    proxy_address: str
    password: str
    log: Path
    process: subprocess.Popen[bytes]

    def profile(self, name: str = "gw", **options: object) -> str:
        """YAML for a user profile file with one gateway profile on this server."""
        import yaml

        opts = {
            "address": self.address,
            "proxy_address": self.proxy_address,
            "auth": "basic",
            "username": "alice",
            "password": f"env:{GATEWAY_PASSWORD_ENV}",
            "worker_cores": 1,
            "worker_memory": "512MiB",
            "request_timeout": 30,
            "start_timeout": 120,
            **options,
        }
        return yaml.safe_dump({"profiles": {name: {"backend": "gateway", "options": opts}}})

    def running_clusters(self) -> list[str]:
        from workbench.clusters.gateway import open_gateway

        os.environ[ADMIN_PASSWORD_ENV] = self.password  # the tests' own view, not a profile's
        spec = {
            "address": self.address,
            "proxy_address": self.proxy_address,
            "auth": "basic",
            "username": "alice",
            "password": f"env:{ADMIN_PASSWORD_ENV}",
        }
        with open_gateway(spec) as gateway:
            return [c.name for c in gateway.list_clusters()]


CONFIG = """
import sys
from dask_gateway_server.options import Float, Integer, Options, String

c.DaskGateway.backend_class = "dask_gateway_server.backends.local.UnsafeLocalBackend"
c.DaskGateway.authenticator_class = "dask_gateway_server.auth.SimpleAuthenticator"
c.SimpleAuthenticator.password = {password!r}
c.Proxy.address = "127.0.0.1:{http_port}"
c.Proxy.tcp_address = "127.0.0.1:{tcp_port}"
c.DaskGateway.address = "127.0.0.1:0"
c.LocalBackend.clusters_directory = {clusters!r}
c.ClusterConfig.scheduler_cmd = [sys.executable, "-m", "distributed.cli.dask_scheduler"]
c.ClusterConfig.worker_cmd = [sys.executable, "-m", "distributed.cli.dask_worker"]
c.ClusterConfig.idle_timeout = 600
c.Backend.check_timeouts_period = 1.0


def options_handler(options):
    return {{
        "worker_cores": options.worker_cores,
        "worker_memory": int(options.worker_memory * 2**30),
    }}


c.Backend.cluster_options = Options(
    Integer("worker_cores", 1, min=1, max=2, label="Worker cores"),
    Float("worker_memory", 0.5, min=0.25, max=2, label="Worker memory (GiB)"),
    Integer("worker_gpus", 0, min=0, max=0, label="Worker GPUs"),
    String("image", "local", label="Image (ignored by the local backend)"),
    handler=options_handler,
)
"""


def _healthy(address: str) -> bool:
    try:
        with urllib.request.urlopen(f"{address}/api/health", timeout=2) as resp:
            return bool(resp.status == 200)
    except OSError:
        return False


@pytest.fixture(scope="session")
def gateway_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayServer]:
    root = tmp_path_factory.mktemp("gateway")
    password = "gw-" + secrets.token_hex(8)
    http_port, tcp_port = free_port(), free_port()
    config = root / "dask_gateway_config.py"
    config.write_text(
        textwrap.dedent(
            CONFIG.format(
                password=password,
                http_port=http_port,
                tcp_port=tcp_port,
                clusters=str(root / "clusters"),
            )
        )
    )
    log = root / "gateway.log"
    address = f"http://127.0.0.1:{http_port}"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "dask_gateway_server", "-f", str(config)],
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=root,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    try:
        deadline = time.monotonic() + 90
        while not _healthy(address):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    f"dask-gateway-server did not start (exit {proc.poll()}):\n"
                    + log.read_text(errors="replace")[-3000:]
                )
            time.sleep(0.2)
        yield GatewayServer(address, f"gateway://127.0.0.1:{tcp_port}", password, log, proc)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture
def gateway_password(gateway_server: GatewayServer, monkeypatch: pytest.MonkeyPatch) -> str:
    """The gateway's password, in the environment variable the profiles reference."""
    monkeypatch.setenv(GATEWAY_PASSWORD_ENV, gateway_server.password)
    return gateway_server.password


@pytest.fixture
def silent_server() -> Iterator[str]:
    """An address that accepts TCP connections and never answers (a hung service)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(16)
        yield f"127.0.0.1:{s.getsockname()[1]}"


@pytest.fixture
def closed_port() -> int:
    """A local port nothing listens on: connections are refused at once."""
    return free_port()
