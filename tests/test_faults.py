"""Faults on the real components, each test timing what it measures.

- a Jupyter kernel killed with SIGKILL while it holds 2 running SLURM jobs and 2 held
  pending ones;
- a Jupyter kernel restarted as JupyterLab restarts it (a shutdown request, then SIGTERM
  and SIGKILL if it has not exited: jupyter_client's own sequence) while it holds three
  clusters, one with 10 SLURM jobs queued;
- a worker killed in the middle of a ``workbench.data.load`` computation;
- a scheduler killed under its cluster (gateway, and the Kubernetes STAND-IN of
  tests/_kube_standin.py): the handle, the CLI and the REST routes say so;
- the Jupyter server restarted: its clusters are still listed and controllable, and the
  start-up sweep releases what dead owners left.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
import yaml

import workbench
import workbench.data
from workbench.clusters import ClusterControl, ClusterRecord, RecordStore
from workbench.clusters.record import process_alive
from workbench.errors import ClusterUnreachableError

from ._contract import PROFILE, make_env, wait_until
from ._lab_fixtures import SMALL_CLUSTER, JupyterProcess
from ._slurm_fixtures import SlurmInstance
from ._timing import Timings
from .conftest import WORKBENCH

pytestmark = [pytest.mark.slow]

SLURM_JOB = {"cores": 1, "memory": "1GiB", "walltime": "00:10:00"}


# -- a real Jupyter kernel --------------------------------------------------------------------
@contextlib.contextmanager
def kernel(cwd: Path) -> Iterator[tuple[Any, Any]]:
    """A python3 kernel started by jupyter_client, as JupyterLab starts it."""
    from jupyter_client.manager import KernelManager

    km = KernelManager(kernel_name="python3")
    km.start_kernel(env={**os.environ, "PYTHONUNBUFFERED": "1"}, cwd=str(cwd))
    kc = km.client()
    kc.start_channels()
    try:
        kc.wait_for_ready(timeout=120)
        yield km, kc
    finally:
        kc.stop_channels()
        if km.has_kernel:
            km.shutdown_kernel(now=True)
        km.cleanup_resources()


def run_cell(kc: Any, code: str, timeout: float = 240) -> str:
    """Execute ``code`` in the kernel; its stdout, or AssertionError with the traceback."""
    out: list[str] = []

    def hook(msg: dict[str, Any]) -> None:
        if msg["msg_type"] == "stream":
            out.append(msg["content"]["text"])
        elif msg["msg_type"] == "error":
            out.append("\n".join(msg["content"]["traceback"]))

    reply = kc.execute_interactive(code, timeout=timeout, output_hook=hook)
    text = "".join(out)
    assert reply["content"]["status"] == "ok", text
    return text


def slurm_states(slurm: SlurmInstance, name: str) -> dict[str, tuple[str, str]]:
    """job id -> (state, reason) of the jobs called ``name`` (and the cluster's suffix)."""
    return slurm.job_states(name)


@pytest.mark.slurm
def test_kernel_killed_with_running_and_held_pending_jobs(
    slurm: SlurmInstance, unique_name: Any, tmp_path: Path, timings: Timings
) -> None:
    name = unique_name("wb-kill9")
    with kernel(tmp_path) as (_km, kc):
        out = run_cell(
            kc,
            f"""
import os, workbench
h = workbench.launch("slurm", wait=2, timeout=180, progress="off", jobs=2, job_name={name!r},
                     dashboard_address="127.0.0.1:0", **{SLURM_JOB!r})
h.scale(jobs=4)  # 2 more: the node's 2 cores are taken, so they queue
print("kernel", os.getpid(), h.id)
""",
        )
        kernel_pid, cluster_id = out.split()[-2:]
        wait_until(lambda: len(slurm_states(slurm, name)) == 4, 60)
        pending = [j for j, (state, _) in slurm_states(slurm, name).items() if state == "PENDING"]
        assert len(pending) == 2, slurm_states(slurm, name)
        # Held: they stay queued whatever happens (a busy queue that never reaches them).
        subprocess.run(["scontrol", "hold", *pending], env=slurm.env(), check=True, timeout=30)
        states = slurm_states(slurm, name)
        assert sorted(s for s, _ in states.values()) == ["PENDING", "PENDING", "RUNNING", "RUNNING"]
        assert all(states[j][1].startswith("JobHeld") for j in pending), states  # admin: root
        killed = time.monotonic()
        os.kill(int(kernel_pid), signal.SIGKILL)
        slurm.wait_no_jobs(name, timeout=60)
        timings.record("squeue empty after kill -9 (2 running, 2 held)", time.monotonic() - killed)
    ended = RecordStore().ended(cluster_id)
    assert ended is not None and "killed or crashed" in ended[1]["reason"]


def _three_profiles(slurm: SlurmInstance, gateway_server: Any, job_name: str) -> str:
    gateway = yaml.safe_load(gateway_server.profile(name="three-gw", n_workers=1))
    profiles = {
        "three-local": {
            "backend": "local",
            "options": {"gpus": "none", **SMALL_CLUSTER, "dashboard_address": "127.0.0.1:0"},
        },
        "three-slurm": {
            "backend": "slurm",
            "options": {**SLURM_JOB, "jobs": 0, "job_name": job_name, "death_timeout": 300},
        },
        **gateway["profiles"],
    }
    return yaml.safe_dump({"profiles": profiles})


@pytest.mark.slurm
def test_kernel_restart_with_three_clusters_releases_everything(
    slurm: SlurmInstance,
    gateway_server: Any,
    gateway_password: str,
    unique_name: Any,
    user_profiles: Any,
    tmp_path: Path,
    timings: Timings,
) -> None:
    name = unique_name("wb-restart")
    user_profiles(_three_profiles(slurm, gateway_server, name))
    with kernel(tmp_path) as (km, kc):
        out = run_cell(
            kc,
            """
import json, os, workbench
local = workbench.launch("three-local", wait=1, progress="off")
gw = workbench.launch("three-gw", wait=1, timeout=180, progress="off")
sl = workbench.launch("three-slurm", progress="off")
sl.scale(jobs=10)  # 2 run on the node's 2 cores, 8 stay queued
print(json.dumps([h.record.to_dict() for h in (local, gw, sl)]))
""",
        )
        records = [ClusterRecord.from_dict(r) for r in json.loads(out.strip().splitlines()[-1])]
        local, gw, _ = records
        wait_until(lambda: len(slurm_states(slurm, name)) == 10, 60)
        states = [s for s, _ in slurm_states(slurm, name).values()]
        assert states.count("PENDING") >= 8, states
        started = time.monotonic()
        km.restart_kernel(now=False)  # shutdown request; SIGTERM, then SIGKILL after 5 s
        restarted = time.monotonic() - started
        timings.record("kernel restart (jupyter_client: 5s shutdown wait)", restarted)
        slurm.wait_no_jobs(name, timeout=60)
        timings.record("10 SLURM jobs gone after restart began", time.monotonic() - started)
        wait_until(lambda: gw.extra["cluster_name"] not in gateway_server.running_clusters(), 60)
        timings.record("gateway cluster stopped after restart began", time.monotonic() - started)
        wait_until(lambda: not any(process_alive(*p) for p in local.worker_pids), 60)
        wait_until(lambda: ClusterControl().list() == [], 60 - (time.monotonic() - started))
        timings.record("all three released after restart began", time.monotonic() - started)
        # Who released them: the kernel itself (no note), or the watchdogs (a note each).
        by_watchdog = [r.id for r in records if RecordStore().ended(r.id) is not None]
        timings.record(f"clusters the watchdogs had to release: {len(by_watchdog)}", 0.0)
        # The restarted kernel works and starts clean.
        assert (
            run_cell(
                kc, "import workbench; print(len(workbench.clusters.RecordStore().list()))"
            ).strip()
            == "0"
        )


def test_worker_killed_in_the_middle_of_a_load(tmp_path: Path, timings: Timings) -> None:
    import pandas as pd

    data = tmp_path / "data"
    data.mkdir()
    for i in range(12):
        frame = pd.DataFrame({"x": range(i * 1000, (i + 1) * 1000), "part": i})
        frame.to_parquet(data / f"part-{i:02d}.parquet")
    expected = sum(range(12 * 1000))
    with workbench.launch(
        "local-cpu",
        wait=2,
        progress="off",
        n_workers=2,
        threads_per_worker=1,
        memory_limit="1GiB",
        dashboard_address="127.0.0.1:0",
    ) as handle:
        client = handle.client
        frame = workbench.data.load(str(data), backend="pandas", client=handle)
        slow = frame["x"].map_partitions(_slowly, meta=frame["x"]._meta).sum()
        started = time.monotonic()
        future = client.compute(slow)
        pids = client.run(os.getpid)
        victim_address = next(iter(pids))
        wait_until(lambda: bool(client.processing().get(victim_address)), 30, 0.05)
        os.kill(pids[victim_address], signal.SIGKILL)
        result = future.result(timeout=180)
        timings.record("load + sum with a worker killed mid-way", time.monotonic() - started)
        assert result == expected
        # The nanny restarted the worker: the cluster is whole again.
        wait_until(lambda: handle.n_workers() == 2, 60)
        future.release()  # so that the same graph is computed again, not fetched
        started = time.monotonic()
        assert client.compute(slow).result(timeout=180) == expected
        timings.record("the same load + sum, no fault", time.monotonic() - started)


def _slowly(part: Any) -> Any:
    time.sleep(0.4)
    return part


def _scheduler_pid(backend: str, env: Any, record: ClusterRecord) -> int:
    name = record.extra["cluster_name"]
    if backend == "kubernetes":
        return int(env.api.scheduler_pid(name))
    for proc in psutil.Process(env.server.process.pid).children(recursive=True):
        with contextlib.suppress(psutil.Error):
            if "dask_scheduler" in " ".join(proc.cmdline()) and proc.cwd().endswith(name):
                return proc.pid
    raise AssertionError(f"no scheduler process of gateway cluster {name}")


@pytest.mark.parametrize("backend", ["gateway", "kubernetes"])
async def test_scheduler_killed_the_handle_cli_and_rest_say_so(
    backend: str,
    request: pytest.FixtureRequest,
    user_profiles: Any,
    tmp_path: Path,
    timings: Timings,
    api: Any,
) -> None:
    env = make_env(backend, request, tmp_path)
    user_profiles(env.profile_yaml())
    handle = await asyncio.to_thread(workbench.launch, PROFILE, wait=1, timeout=180, progress="off")
    try:
        record = handle.record
        os.kill(_scheduler_pid(backend, env, record), signal.SIGKILL)
        killed = time.monotonic()
        await asyncio.to_thread(wait_until, lambda: handle.status == "lost", 60)
        timings.record(
            f"handle says 'lost' after the scheduler's kill -9 ({backend})",
            time.monotonic() - killed,
        )
        with pytest.raises(ClusterUnreachableError, match="scheduler"):
            handle.scale(2)
        listed = await asyncio.to_thread(_cli, "list", "--json")
        (cluster,) = json.loads(listed.stdout)
        assert cluster["status"] == "unreachable" and cluster["problem"], cluster
        scaled = await asyncio.to_thread(_cli, "scale", handle.id, "2")
        assert scaled.returncode == 1 and "scheduler" in scaled.stderr, scaled.stderr
        reply = await api("GET", f"clusters/{handle.id}")
        assert reply.data["status"] == "unreachable" and reply.data["problem"], reply.data
        reply = await api("POST", f"clusters/{handle.id}/scale", body={"n": 2})
        assert reply.status == 409 and "scheduler" in reply.data["message"], reply.data
        # Stopping still releases what is left.
        reply = await api("DELETE", f"clusters/{handle.id}")
        assert reply.status == 200, reply.data
        await asyncio.to_thread(env.wait_released, record, 60)
        timings.record(
            f"scheduler kill -9 until stopped and released ({backend})",
            time.monotonic() - killed,
        )
        await asyncio.to_thread(wait_until, lambda: handle.status == "closed", 30)
    finally:
        await asyncio.to_thread(handle.close)


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*WORKBENCH, "clusters", *args],
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_jupyter_server_restart_keeps_clusters_listed_and_controllable(
    lab_process: Any,
    gateway_server: Any,
    gateway_password: str,
    user_profiles: Any,
    small_profile: str,
    timings: Timings,
) -> None:
    user_profiles(gateway_server.profile(name="gw", n_workers=1))
    server: JupyterProcess = lab_process("server")
    launched = {}
    for profile in (small_profile, "gw"):
        reply = server.request("POST", "workbench/api/clusters", {"profile": profile})
        assert reply.status == 201, reply.data
        launched[profile] = reply.data["id"]
    # A cluster whose owner and watchdog both died (a reboot): only a sweep releases it.
    orphan = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    RecordStore().add(
        ClusterRecord(
            id="orphan0001",
            profile="local-cpu",
            backend="local",
            scheduler_address="tcp://127.0.0.1:9",
            owner_pid=dead.pid,
            worker_pids=[(orphan.pid, psutil.Process(orphan.pid).create_time())],
        )
    )
    try:
        server.stop()
        started = time.monotonic()
        server = lab_process("server")
        listing = server.request("GET", "workbench/api/clusters")
        timings.record(
            "Jupyter server restart until the clusters are listed", time.monotonic() - started
        )
        wait_until(lambda: orphan.poll() is not None, 30)
        wait_until(lambda: not RecordStore().exists("orphan0001"), 30)
        timings.record("start-up sweep released a dead owner's worker", time.monotonic() - started)
        listing = server.request("GET", "workbench/api/clusters")
        found = {c["id"]: c for c in listing.data["clusters"]}
        assert set(found) == set(launched.values()), found
        assert all(c["status"] == "running" and c["workers"] == 1 for c in found.values()), found
        for cid in launched.values():
            reply = server.request("POST", f"workbench/api/clusters/{cid}/scale", {"n": 2})
            assert reply.status == 200, reply.data
        wait_until(
            lambda: all(
                server.request("GET", f"workbench/api/clusters/{cid}").data["workers"] == 2
                for cid in launched.values()
            ),
            120,
        )
        for cid in launched.values():
            assert server.request("DELETE", f"workbench/api/clusters/{cid}").status == 200
        assert ClusterControl().list() == []
    finally:
        if orphan.poll() is None:
            orphan.kill()
        orphan.wait()


@pytest.mark.slurm
def test_sigterm_to_a_kernel_cancels_jobs_first_and_closes_clusters_at_once(
    slurm: SlurmInstance,
    gateway_server: Any,
    gateway_password: str,
    unique_name: Any,
    user_profiles: Any,
    tmp_path: Path,
    timings: Timings,
) -> None:
    """What JupyterLab sends a kernel that did not exit within half its shutdown wait: the
    kernel's SIGTERM handler releases every cluster itself (no watchdog note) and then
    ends as SIGTERM would have ended it."""
    name = unique_name("wb-sigterm")
    user_profiles(_three_profiles(slurm, gateway_server, name))
    with kernel(tmp_path) as (_km, kc):
        out = run_cell(
            kc,
            """
import json, os, workbench
hs = [workbench.launch(p, wait=1, timeout=180, progress="off") for p in ("three-local", "three-gw")]
sl = workbench.launch("three-slurm", progress="off")
sl.scale(jobs=10)
print(json.dumps({"pid": os.getpid(), "records": [h.record.to_dict() for h in (*hs, sl)]}))
""",
        )
        facts = json.loads(out.strip().splitlines()[-1])
        records = [ClusterRecord.from_dict(r) for r in facts["records"]]
        local, gw, _ = records
        wait_until(lambda: len(slurm_states(slurm, name)) == 10, 60)
        process = psutil.Process(facts["pid"])
        started = time.monotonic()
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == -signal.SIGTERM  # it ended as SIGTERM ends a process
        timings.record(
            "kernel exit after SIGTERM (3 clusters, 10 jobs)", time.monotonic() - started
        )
        slurm.wait_no_jobs(name, timeout=60)
        timings.record("10 SLURM jobs gone after SIGTERM", time.monotonic() - started)
        assert gw.extra["cluster_name"] not in gateway_server.running_clusters()
        assert not any(process_alive(*p) for p in local.worker_pids)
        assert ClusterControl().list() == []
        # Released by the kernel itself, not by the watchdogs (they leave a note).
        assert [RecordStore().ended(r.id) for r in records] == [None, None, None]
