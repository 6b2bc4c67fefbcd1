"""Listing clusters probes their schedulers in parallel: N slow schedulers cost about one
timeout, not N. Slow: a real socket that listens and never answers (the TCP handshake
completes, Dask's does not); dead: a port where nothing listens. The records name this
test process as owner (alive), so every one of them is probed. Each path is timed: the
control path (``ClusterControl.summaries``), ``workbench clusters list`` in a
subprocess, and ``GET /workbench/api/clusters`` over real HTTP with the token on a real
Jupyter server."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import psutil
import pytest

from workbench.clusters import ClusterControl, ClusterRecord, RecordStore

from ._timing import Timings

SLOW = 12
DEAD = 3
#: The probe timeout of ``workbench clusters list`` and of the REST route.
LIST_TIMEOUT = 2.0


@pytest.fixture
def slow_and_dead() -> Iterator[list[ClusterRecord]]:
    listeners = []
    records = []
    me = psutil.Process()
    for i in range(SLOW + DEAD):
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        if i < SLOW:
            sock.listen(64)  # accepts the connection, never says a word
            listeners.append(sock)
        else:
            sock.close()  # nothing listens there any more
        record = ClusterRecord(
            id=f"{'slow' if i < SLOW else 'dead'}{i:06d}",
            profile="local-cpu",
            backend="local",
            scheduler_address=f"tcp://127.0.0.1:{port}",
            owner_pid=me.pid,
            owner_create_time=me.create_time(),
        )
        RecordStore().add(record)
        records.append(record)
    yield records
    for record in records:
        RecordStore().remove(record.id)
    for sock in listeners:
        sock.close()


def check(summaries: list[dict[str, Any]], records: list[ClusterRecord]) -> None:
    by_id = {s["id"]: s for s in summaries}
    assert set(by_id) == {r.id for r in records}
    for record in records:
        summary = by_id[record.id]
        assert summary["status"] == "unreachable", summary
        if record.id.startswith("dead"):
            assert "does not accept connections" in summary["problem"]
        else:
            assert "answer" in summary["problem"], summary["problem"]


def bound(timeout: float) -> float:
    """Generous, and still far below the SLOW * timeout of probing one by one."""
    return SLOW * timeout / 3


def test_control_path_probes_in_parallel(
    slow_and_dead: list[ClusterRecord], timings: Timings
) -> None:
    timeout = 1.0
    began = time.perf_counter()
    summaries = ClusterControl().summaries(timeout=timeout)
    took = time.perf_counter() - began
    timings.record(f"list {SLOW} slow + {DEAD} dead (control path)", took)
    check(summaries, slow_and_dead)
    assert timeout <= took < bound(timeout), f"{took:.1f}s for {SLOW} slow schedulers"


def test_cli_list_takes_one_timeout(
    slow_and_dead: list[ClusterRecord], subprocess_env: dict[str, str], timings: Timings
) -> None:
    cli = [sys.executable, "-m", "workbench", "clusters", "list", "--json"]
    began = time.perf_counter()
    out = subprocess.run(
        cli, env=subprocess_env, capture_output=True, text=True, timeout=120, check=True
    )
    took = time.perf_counter() - began
    timings.record(f"workbench clusters list, {SLOW} slow + {DEAD} dead", took)
    check(json.loads(out.stdout), slow_and_dead)
    assert took < bound(LIST_TIMEOUT) + 5, f"{took:.1f}s (the interpreter's start included)"


async def test_rest_list_takes_one_timeout(
    slow_and_dead: list[ClusterRecord], api: Callable[..., Any], timings: Timings
) -> None:
    began = time.perf_counter()
    reply = await api("GET", "clusters")
    took = time.perf_counter() - began
    timings.record(f"GET /workbench/api/clusters, {SLOW} slow + {DEAD} dead", took)
    assert reply.status == 200
    check(reply.data["clusters"], slow_and_dead)
    assert took < bound(LIST_TIMEOUT), f"{took:.1f}s for {SLOW} slow schedulers"


def test_a_list_asks_owners_on_the_probes_connections(
    slow_and_dead: list[ClusterRecord], timings: Timings
) -> None:
    """With ``owner_info`` (the REST list's cost column) each owner is asked on its probe's
    connection: a cluster started outside workbench (a plain LocalCluster, whose scheduler
    has no workbench handlers) is running and has no cost estimate; the slow and
    dead ones are summed up as before, within one timeout."""
    from distributed import LocalCluster

    from workbench.accounting import cost_from_owner
    from workbench.clusters.gateway import GatewayBackend
    from workbench.clusters.local import LocalBackend

    assert LocalBackend.probes_on_shared_loop() and not GatewayBackend.probes_on_shared_loop()
    me = psutil.Process()
    with LocalCluster(
        n_workers=1,
        threads_per_worker=1,
        processes=False,
        protocol="tcp",
        host="127.0.0.1",
        dashboard_address="127.0.0.1:0",  # None means port 8787, maybe busy
    ) as plain:
        record = ClusterRecord(
            id="plain000001",
            profile="local-cpu",
            backend="local",
            scheduler_address=plain.scheduler_address,
            owner_pid=me.pid,
            owner_create_time=me.create_time(),
        )
        RecordStore().add(record)
        try:
            began = time.perf_counter()
            probed = ClusterControl().probe(timeout=1.0, owner_info=True)
            took = time.perf_counter() - began
        finally:
            RecordStore().remove(record.id)
    timings.record(f"list 1 live + {SLOW} slow + {DEAD} dead, owners asked", took)
    by_id = {p.record.id: p for p in probed}
    live = by_id.pop(record.id)
    assert live.summary["status"] == "running", live.summary["problem"]
    assert live.summary["workers"] == 1
    # asked on the probe's connection: a scheduler without workbench's handlers has no cost
    assert live.owner_asked and live.owner is None
    assert cost_from_owner(record, live.owner)[1].startswith("its owner keeps no cost estimate")
    check([p.summary for p in by_id.values()], slow_and_dead)
    assert not any(p.owner_asked for p in by_id.values())  # not running: not asked
    assert took < bound(1.0 + 3.0), f"{took:.1f}s"
