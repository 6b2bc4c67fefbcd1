"""Auto-connect: a cluster marked "use in new notebooks" is connected in every kernel
started afterwards, before any cell runs, with the cluster's TLS settings; it says so in
the first output; it is off by default, survives a restart of the Jupyter server, and a
failure says what went wrong without breaking the kernel.

Real kernels of the Jupyter server (in-process, pytest-jupyter; a ``jupyter server``
subprocess for the restart), real schedulers (tcp and TLS).
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import workbench
from workbench import autoconnect
from workbench.clusters import ClusterRecord, RecordStore

from ._kernels import execute, kernel_of
from ._lab_fixtures import IN_PROCESS_CLUSTER, JupyterProcess

pytestmark = pytest.mark.usefixtures("stop_clusters_after", "close_collectors")

FIRST_CELL = "print('answer', client.submit(lambda: 6 * 7).result())"


@pytest.fixture
def close_collectors() -> Iterator[None]:
    from workbench.metrics.store import close_all
    from workbench.server import metrics

    yield
    metrics._used.clear()
    close_all()


def _launch() -> Any:
    return workbench.launch("local-cpu", wait=True, **IN_PROCESS_CLUSTER)


async def test_the_mark_is_off_by_default_and_checked(api: Any) -> None:
    reply = await api("GET", "autoconnect")
    assert reply.status == 200 and reply.data == {"cluster": None, "since": None, "problem": None}
    reply = await api("PUT", "autoconnect", {"cluster": "nope"})
    assert reply.status == 404 and "no running cluster with id 'nope'" in reply.data["message"]
    for bad in ({}, {"cluster": ""}, {"cluster": 3}, {"cluster": "x", "also": 1}):
        reply = await api("PUT", "autoconnect", bad)
        assert reply.status == 400, (bad, reply.data)
    assert autoconnect.read_mark() is None
    # an unreadable mark file counts as off (and is left for the user to look at)
    autoconnect.mark_file().parent.mkdir(parents=True, exist_ok=True)
    autoconnect.mark_file().write_text("{not json")
    assert autoconnect.read_mark() is None
    assert (await api("GET", "autoconnect")).data["cluster"] is None


@pytest.mark.slow
async def test_new_kernels_get_a_client_without_a_connect_cell(api: Any, jp_serverapp: Any) -> None:
    handle = await asyncio.to_thread(_launch)
    try:
        # off: a new kernel has no client
        async with kernel_of(jp_serverapp) as (_, client):
            assert (await execute(client, "print('client' in globals())")).strip() == "False"

        reply = await api("PUT", "autoconnect", {"cluster": handle.id[:6]})
        assert reply.status == 200, reply.data
        assert reply.data["cluster"] == handle.id and reply.data["problem"] is None
        listed = (await api("GET", "clusters")).data["clusters"]
        assert [c["autoconnect"] for c in listed] == [True]

        started = time.perf_counter()
        async with kernel_of(jp_serverapp) as (kernel_id, client):
            ready = time.perf_counter() - started
            # the very first cell uses `client`: nobody ran a connect cell
            printed = await execute(client, FIRST_CELL)
            lines = printed.strip().splitlines()
            assert lines[0] == (
                f"workbench auto-connect: `client` is connected to cluster {handle.id} "
                "(profile 'local-cpu', 1 worker(s)). Untick 'Use in new notebooks' in the "
                "Workbench sidebar to stop this."
            )
            assert lines[1] == "answer 42"
            # said once: the second cell's output is its own
            assert (await execute(client, "print(client.status)")).strip() == "running"
            # the same code as the connect cell: the cluster's address, nothing else
            assert (
                await execute(client, "print(client.scheduler.address)")
            ).strip() == handle.scheduler_address
            status = (
                await api("GET", "metrics", params={"kernel": kernel_id, "view": "summary"})
            ).data
            assert status["cluster"] == handle.id
            assert status["kernel"]["how"] == "auto-connect"
            assert status["kernel"]["autoconnect"]["status"] == "connected"
            report = json.loads((autoconnect.report_dir() / f"{kernel_id}.json").read_text())
            assert report["status"] == "connected" and report["cluster"] == handle.id
        # the report of a kernel that was shut down is removed
        await asyncio.sleep(0.5)
        assert not (autoconnect.report_dir() / f"{kernel_id}.json").exists()

        reply = await api("DELETE", "autoconnect")
        assert reply.status == 200 and reply.data["cluster"] is None
        async with kernel_of(jp_serverapp) as (_, client):
            assert (await execute(client, "print('client' in globals())")).strip() == "False"

        # stopping the marked cluster turns auto-connect off
        assert (await api("PUT", "autoconnect", {"cluster": handle.id})).status == 200
        assert (await api("DELETE", f"clusters/{handle.id}")).status == 200
        assert autoconnect.read_mark() is None
        print(
            f"kernel with auto-connect ready in {ready:.1f}s ({report['seconds']:.2f}s connecting)"
        )
    finally:
        await asyncio.to_thread(handle.close)


@pytest.mark.slow
async def test_a_cluster_gone_since_it_was_marked_is_said_in_the_first_output(
    api: Any, jp_serverapp: Any
) -> None:
    handle = await asyncio.to_thread(_launch)
    assert (await api("PUT", "autoconnect", {"cluster": handle.id})).status == 200
    await asyncio.to_thread(handle.close)  # closed where it was launched, not through the API
    reply = await api("GET", "autoconnect")
    assert reply.data["cluster"] == handle.id
    assert f"no running cluster with id {handle.id!r}" in reply.data["problem"]
    async with kernel_of(jp_serverapp) as (kernel_id, client):
        errors: list[str] = []
        printed = await execute(client, "print('client' in globals())", stderr=errors)
        assert printed.strip() == "False"  # the kernel works, without a client
        said = "".join(errors)
        assert said.startswith(
            f"workbench auto-connect: no client for cluster {handle.id}: ClusterNotFoundError"
        ), said
        assert "Insert a connect cell from the Workbench sidebar" in said
        status = (await api("GET", "metrics", params={"kernel": kernel_id, "view": "summary"})).data
        assert status["cluster"] is None
        assert status["kernel"]["autoconnect"]["status"] == "failed"


# -- TLS ---------------------------------------------------------------------------------------
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


@pytest.mark.slow
async def test_a_tls_cluster_is_connected_with_its_security(
    api: Any, jp_serverapp: Any, tls_files: dict[str, str]
) -> None:
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
    cluster = await asyncio.to_thread(
        LocalCluster,
        n_workers=1,
        threads_per_worker=1,
        processes=False,
        protocol="tls",
        security=security,
        dashboard_address="127.0.0.1:0",
    )
    record = ClusterRecord(
        id="tls0000001",
        profile="secure",
        backend="local",
        scheduler_address=cluster.scheduler_address,
        owner_pid=os.getpid(),
        extra={
            "security": {
                "tls_ca_file": tls_files["ca"],
                "tls_client_cert": tls_files["cert"],
                "tls_client_key": tls_files["key"],
            }
        },
    )
    RecordStore().add(record)
    try:
        assert (await api("PUT", "autoconnect", {"cluster": record.id})).status == 200
        async with kernel_of(jp_serverapp) as (_, client):
            printed = await execute(client, FIRST_CELL + "\nprint(client.scheduler.address)")
            lines = printed.strip().splitlines()
            assert lines[0].startswith(
                "workbench auto-connect: `client` is connected to cluster tls0000001"
            )
            assert lines[1:] == ["answer 42", cluster.scheduler_address]
            # the security came from the record (file references), not the kernel's config
            ca = await execute(client, "print(client.security.tls_ca_file)")
            assert ca.strip() == tls_files["ca"]
    finally:
        RecordStore().remove(record.id)
        await asyncio.to_thread(cluster.close)


# -- a restarted Jupyter server ---------------------------------------------------------------
def _wait_for(path: Path, timeout: float = 120) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        report = autoconnect.read_report(path)
        if report is not None:
            return report
        time.sleep(0.2)
    raise AssertionError(f"no report at {path} after {timeout}s")


@pytest.mark.slow
def test_the_mark_survives_a_server_restart(lab_process: Any) -> None:
    handle = _launch()
    try:
        first: JupyterProcess = lab_process("server")
        reply = first.request("PUT", "workbench/api/autoconnect", {"cluster": handle.id})
        assert reply.status == 200, reply.data
        first.stop()
        second: JupyterProcess = lab_process("server")
        reply = second.request("GET", "workbench/api/autoconnect")
        assert reply.status == 200 and reply.data["cluster"] == handle.id
        assert reply.data["problem"] is None
        # a kernel of the restarted server connects by itself (it reports so)
        started = time.perf_counter()
        kernel = second.request("POST", "api/kernels", {"name": "python3"})
        assert kernel.status == 201, kernel.data
        report = _wait_for(autoconnect.report_dir() / f"{kernel.data['id']}.json")
        took = time.perf_counter() - started
        assert report["status"] == "connected", report
        assert report["cluster"] == handle.id
        assert "`client` is connected" in report["message"]
        second.request("DELETE", f"api/kernels/{kernel.data['id']}")
        print(f"restarted server: kernel connected {took:.1f}s after its start was asked")
    finally:
        handle.close()
