"""The connect cell: code that reaches a real scheduler, TLS included, with no secrets inline."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from workbench.clusters import ClusterRecord, RecordStore
from workbench.clusters.connect import connect_code

pytestmark = pytest.mark.usefixtures("stop_clusters_after")

# Tries to connect without any security first: a TLS scheduler must refuse that.
PROBE = """
import sys
from distributed import Client
try:
    Client({address!r}, timeout=5)
except Exception as exc:
    print("plain connection refused:", type(exc).__name__)
else:
    sys.exit("a TLS scheduler accepted a client without TLS settings")
"""
CHECK = "print('answer', client.submit(lambda: 6 * 7).result()); client.close()"


def _record(address: str, **extra: Any) -> ClusterRecord:
    return ClusterRecord(
        id="conn000001",
        profile="secure",
        backend="local",
        scheduler_address=address,
        owner_pid=os.getpid(),
        extra=extra,
    )


def test_tcp_cluster_code_is_just_the_address() -> None:
    code = connect_code(_record("tcp://10.0.0.5:8786"))
    assert code.splitlines()[1:] == [
        "from distributed import Client",
        "",
        "client = Client('tcp://10.0.0.5:8786')",
        "client",
    ]
    assert code.startswith("# workbench cluster conn000001 (profile 'secure'")
    compile(code, "<connect cell>", "exec")
    ucx = connect_code(_record("ucx://10.0.0.5:8786"))
    assert "distributed-ucxx" in ucx and "Client('ucx://10.0.0.5:8786')" in ucx


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    from distributed.security import Security

    temporary = Security.temporary()
    folder = tmp_path_factory.mktemp("tls")
    files = {}
    for name, pem in [
        ("ca", temporary.tls_ca_file),
        ("cert", temporary.tls_client_cert),
        ("key", temporary.tls_client_key),
    ]:
        path = folder / f"{name}.pem"
        path.write_text(str(pem))
        path.chmod(0o600)
        files[name] = str(path)
    return files


@pytest.fixture
def tls_cluster(tls_files: dict[str, str]) -> Iterator[Any]:
    from distributed import LocalCluster
    from distributed.security import Security

    security = Security(
        tls_ca_file=tls_files["ca"],
        tls_scheduler_cert=tls_files["cert"],
        tls_scheduler_key=tls_files["key"],
        tls_worker_cert=tls_files["cert"],
        tls_worker_key=tls_files["key"],
        tls_client_cert=tls_files["cert"],
        tls_client_key=tls_files["key"],
        require_encryption=True,
    )
    cluster = LocalCluster(
        n_workers=1,
        threads_per_worker=1,
        processes=False,
        protocol="tls",
        security=security,
        dashboard_address="127.0.0.1:0",  # None would mean port 8787, maybe busy
    )
    try:
        yield cluster
    finally:
        cluster.close()


def _run(code: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )


@pytest.mark.slow
async def test_tls_connect_cell_references_the_cert_files_and_connects(
    api: Any, tls_files: dict[str, str], tls_cluster: Any
) -> None:
    address = tls_cluster.scheduler_address
    assert address.startswith("tls://")
    security = {
        "tls_ca_file": tls_files["ca"],
        "tls_client_cert": tls_files["cert"],
        "tls_client_key": tls_files["key"],
    }
    RecordStore().add(_record(address, security=security))
    reply = await api("GET", "clusters/conn000001/connect")
    assert reply.status == 200, reply.data
    code = reply.data["code"]
    for path in security.values():
        assert repr(path) in code
    assert "BEGIN" not in code and "PRIVATE KEY" not in code
    assert Path(tls_files["key"]).read_text().splitlines()[1] not in code
    assert f"client = Client({address!r}, security=security)" in code
    out = await asyncio.to_thread(_run, PROBE.format(address=address) + "\n" + code + "\n" + CHECK)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "plain connection refused" in out.stdout
    assert "answer 42" in out.stdout


@pytest.mark.slow
def test_tls_without_recorded_files_uses_the_dask_tls_config(
    tls_files: dict[str, str], tls_cluster: Any
) -> None:
    address = tls_cluster.scheduler_address
    code = connect_code(_record(address))
    assert "security = Security(require_encryption=True)" in code
    assert "distributed.comm.tls.ca-file" in code
    env = {
        "DASK_DISTRIBUTED__COMM__TLS__CA_FILE": tls_files["ca"],
        "DASK_DISTRIBUTED__COMM__TLS__CLIENT__CERT": tls_files["cert"],
        "DASK_DISTRIBUTED__COMM__TLS__CLIENT__KEY": tls_files["key"],
    }
    out = _run(code + "\n" + CHECK, env)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "answer 42" in out.stdout
    # and without that configuration the same cell fails instead of connecting in clear
    out = _run(code + "\n" + CHECK)
    assert out.returncode != 0 and "answer" not in out.stdout


def test_secret_material_is_never_written_into_the_cell() -> None:
    from workbench.errors import WorkbenchError

    for value in ["-----BEGIN CERTIFICATE-----\nMIIC", "line1\nline2", 42]:
        record = _record("tls://127.0.0.1:9", security={"tls_client_cert": value})
        with pytest.raises(WorkbenchError, match="never writes secrets into a notebook"):
            connect_code(record)
    with pytest.raises(WorkbenchError, match="malformed 'security' entry"):
        connect_code(_record("tls://127.0.0.1:9", security="env:CERT"))
