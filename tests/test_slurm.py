"""The slurm backend against a real single-node SLURM (scripts/slurm-up), real jobs,
real Dask workers in them. Each test gives its jobs a unique name and checks squeue for
that name, so leftovers of one test cannot hide in another's."""

from __future__ import annotations

import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest

import workbench
from workbench.clusters import ClusterControl, ClusterRecord
from workbench.errors import ResourceError, WorkbenchError, WorkersTimeoutError
from workbench.server.upstreams import dask_upstream, fetch_upstream

from ._slurm_fixtures import SlurmInstance
from .conftest import WORKBENCH

pytestmark = pytest.mark.slurm

# One core and 1 GiB per job: the node of a 2-core CI machine holds two jobs at once.
SMALL = {"cores": 1, "memory": "1GiB", "walltime": "00:10:00", "dashboard_address": ":0"}


def wait_until(predicate, timeout: float = 30.0, interval: float = 0.2) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s")


def slow_square(x: int) -> int:
    time.sleep(0.25)
    return x * x


def test_dry_run_prints_the_job_script_and_checks_it(slurm: SlurmInstance, subprocess_env) -> None:
    env = {**subprocess_env, "SLURM_CONF": slurm.conf}
    out = subprocess.run(
        [*WORKBENCH, "launch", "slurm-gpu", "--dry-run", "-o", "cores=2", "-o", "gpus_per_job=2"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("#!/usr/bin/env bash")
    assert "#SBATCH --gres=gpu:2" in out.stdout
    assert "-m dask_cuda.cli tcp://<scheduler-address>:8786" in out.stdout
    assert "passed the checks against the live cluster" in out.stderr
    assert "SLURM: would start" in out.stderr
    bad = subprocess.run(
        [*WORKBENCH, "launch", "slurm", "--dry-run", "-o", "partition=gpus"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode == 1
    assert "partition 'gpus', which this SLURM cluster does not have" in bad.stderr
    assert "Partitions: debug" in bad.stderr
    assert "#SBATCH -p gpus" in bad.stdout  # the script is still shown
    assert slurm.squeue("-u", os.environ.get("USER", "root"), "-n", "gpus") == []


@pytest.mark.slow
def test_two_jobs_compute_scale_adapt_and_close_leave_no_job(
    slurm: SlurmInstance, unique_name, subprocess_env, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = unique_name("wb-life")
    monkeypatch.setenv("JUPYTERHUB_API_TOKEN", "Zq7-hub-token")  # must not reach the jobs
    handle = workbench.launch("slurm", wait=True, timeout=120, jobs=2, job_name=name, **SMALL)
    try:
        assert handle.backend == "slurm" and handle.n_workers() == 2
        record = ClusterControl().get(handle.id)
        assert sorted(record.extra["job_ids"]) == sorted(slurm.jobs_named(name))
        assert len(record.extra["job_ids"]) == 2
        assert record.extra["job_name"].startswith(f"{name}-")  # the cluster's unique suffix
        assert handle.scheduler_address.startswith("tls://")  # TLS by default, on SLURM too
        tokens = handle.client.run(lambda: os.environ.get("JUPYTERHUB_API_TOKEN"))
        assert set(tokens.values()) == {None}, tokens
        assert record.extra["slurm_conf"] == slurm.conf
        # Real work on workers that run inside SLURM jobs.
        futures = handle.client.map(slow_square, range(8))
        assert handle.client.gather(futures) == [x * x for x in range(8)]
        where = handle.client.run(lambda: os.environ.get("SLURM_JOB_ID"))
        assert sorted(where.values()) == sorted(record.extra["job_ids"])
        # The jobs' log files are the user's alone (sbatch ran with a private umask).
        logs = sorted(Path(handle._backend.log_directory).glob(f"{record.extra['job_name']}*"))
        assert logs, handle._backend.log_directory
        assert {f"{p.name} {p.stat().st_mode & 0o777:o}" for p in logs} == {
            f"{p.name} 600" for p in logs
        }
        # Workers retire before the 10 minute walltime: 9 min +/- 30 s.
        lifetimes = handle.client.run(lambda dask_worker: dask_worker.lifetime)
        assert all(510 <= v <= 570 for v in lifetimes.values()), lifetimes
        assert "SLURM jobs: 2 RUNNING" in handle._repr_html_()
        # Scale in jobs, from another process, through the control path.
        scaled = subprocess.run(
            [*WORKBENCH, "clusters", "scale", handle.id, "1", "--jobs"],
            env={**subprocess_env, "SLURM_CONF": slurm.conf},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert scaled.returncode == 0, scaled.stderr
        wait_until(lambda: handle.n_workers() == 1 and len(slurm.jobs_named(name)) == 1, 60)
        # ... and in workers.
        handle.scale(2).wait_for_workers(2, timeout=120)
        assert len(slurm.jobs_named(name)) == 2
        with pytest.raises(ValueError, match="not both"):
            handle.scale(2, jobs=1)
        # Adaptive between 1 and 2 jobs: idle, it gives one job back...
        handle.adapt(minimum_jobs=1, maximum_jobs=2, interval="300ms", wait_count=2)
        wait_until(lambda: len(slurm.jobs_named(name)) == 1 and handle.n_workers() == 1, 60)
        # ... and a backlog of work brings it back.
        futures = handle.client.map(slow_square, range(100, 180))
        wait_until(lambda: handle.n_workers() == 2, 90)
        assert handle.client.gather(futures) == [x * x for x in range(100, 180)]
    finally:
        handle.close()
    slurm.wait_no_jobs(name)
    assert ClusterControl().list() == []


def _listening() -> list[tuple[str, int]]:
    import psutil

    return [
        (c.laddr.ip, c.laddr.port)
        for c in psutil.Process().net_connections("tcp")
        if c.status == psutil.CONN_LISTEN
    ]


def _private_files(dask_worker: Any) -> tuple[str, str, int, int]:
    mask = os.umask(0)
    os.umask(mask)
    return (
        str(dask_worker.local_directory),
        os.environ.get("TMPDIR", "/tmp"),
        os.getuid(),
        mask,
    )


def test_dashboard_link_answers_and_worker_http_servers_stay_on_loopback(
    slurm: SlurmInstance, unique_name
) -> None:
    """The built-in profile's dashboard is on 127.0.0.1 while the scheduler listens on the
    address compute nodes reach: the link (record, CLI, REST) is where the dashboard is,
    not the scheduler's host. Every worker's own HTTP server (/health, /metrics) is on its
    node's loopback only, never on the node's network address. Workers spill into a
    directory of the user's alone, with umask 077."""
    name = unique_name("wb-http")
    handle = workbench.launch(
        "slurm", wait=True, timeout=120, job_name=name, cores=1, memory="1GiB"
    )
    try:
        link = handle.dashboard_link
        assert link and link == ClusterControl().get(handle.id).dashboard_link
        assert urlparse(link).hostname == "127.0.0.1", (link, handle.scheduler_address)
        # HTTPS that answers the cluster's certificate holders only (mutual TLS)
        assert link.startswith("https://")
        record = ClusterControl().get(handle.id)
        assert fetch_upstream(dask_upstream(record), "status")[0] == 200
        anyone = ssl.create_default_context()
        anyone.check_hostname, anyone.verify_mode = False, ssl.CERT_NONE
        with pytest.raises((ssl.SSLError, urllib.error.URLError, ConnectionError)):
            urllib.request.urlopen(link, timeout=30, context=anyone)
        listening = handle.client.run(_listening)
        workers = handle.client.scheduler_info()["workers"]
        assert workers
        for address, worker in workers.items():
            port = worker["services"]["dashboard"]
            assert {ip for ip, p in listening[address] if p == port} == {"127.0.0.1"}
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=10) as r:
                assert r.read() == b"ok"
            with pytest.raises(urllib.error.HTTPError) as err:  # /health only
                urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10)
            assert err.value.code == 404
            err.value.close()
            if worker["host"] not in ("127.0.0.1", "localhost"):
                with pytest.raises(OSError):
                    socket.create_connection((worker["host"], port), timeout=5).close()
        # what the workers write (spilled data) is the user's alone on the node too
        for local, tmp, uid, umask in handle.client.run(_private_files).values():
            assert local.startswith(f"{tmp}/workbench-{uid}/"), local
            assert umask == 0o077
    finally:
        handle.close()
    slurm.wait_no_jobs(name)


def test_gpu_job_worker_gets_cuda_visible_devices(slurm: SlurmInstance, unique_name) -> None:
    """SLURM gives a --gres=gpu:1 job its GPU through CUDA_VISIBLE_DEVICES. dask-cuda cannot
    run without a driver, so a plain `dask worker` job asks for the GPU here; the dask-cuda
    command line of GPU profiles is checked in test_slurm_options.py."""
    name = unique_name("wb-gres")
    with workbench.launch(
        "slurm",
        wait=True,
        timeout=120,
        job_name=name,
        job_extra_directives=["--gres=gpu:1"],
        **SMALL,
    ) as handle:
        env = handle.client.run(
            lambda: (os.environ.get("CUDA_VISIBLE_DEVICES"), os.environ.get("SLURM_JOB_GPUS"))
        )
        ((visible, job_gpus),) = env.values()
        assert visible in {str(i) for i in range(slurm.gpus)}
        assert job_gpus == visible
    slurm.wait_no_jobs(name)


@pytest.mark.parametrize(
    ("overrides", "words"),
    [
        ({"gpus_per_job": 5}, "asks for 5 GPU(s) per job (--gres=gpu:5), but the nodes of "),
        ({"partition": "gpu-large"}, "partition 'gpu-large', which this SLURM cluster does not"),
        ({"walltime": "3-00:00:00"}, "above the limit of partition 'debug' (1-00:00:00)"),
        ({"cores": 512}, "asks for 512 cores per job"),
        ({"memory": "4TiB"}, "asks for 4TiB of memory per job"),
    ],
)
def test_rejected_jobs_give_a_clear_error_and_submit_nothing(
    slurm: SlurmInstance, unique_name, overrides: dict[str, object], words: str
) -> None:
    name = unique_name("wb-reject")
    options = {**SMALL, "job_name": name, **overrides}
    if "gpus_per_job" in overrides:
        options["cores"] = overrides["gpus_per_job"]
    with pytest.raises(ResourceError) as info:
        workbench.launch("slurm", wait=True, timeout=30, **options)
    assert words in str(info.value)
    assert slurm.jobs_named(name) == []
    assert ClusterControl().list() == []


def test_pending_jobs_show_their_reason_and_time_out_cancelling_them(
    slurm: SlurmInstance, unique_name, capsys
) -> None:
    name = unique_name("wb-pend")
    # A job holding every CPU of the node: ours have to wait for Resources.
    total = subprocess.run(
        ["sinfo", "-h", "-o", "%c"], env=slurm.env(), capture_output=True, text=True, check=True
    ).stdout.split()[0]
    blocker = slurm.sbatch(
        "-J", f"{name}-blocker", "-c", total, "--mem=64M", "-o", "/dev/null", "--wrap", "sleep 300"
    )
    try:
        wait_until(lambda: slurm.squeue("-j", blocker, "-o", "%T") == ["RUNNING"], 30)
        start = time.monotonic()
        with pytest.raises(WorkersTimeoutError) as info:
            workbench.launch(
                "slurm", wait=True, timeout=6, progress="terminal", job_name=name, **SMALL
            )
        assert time.monotonic() - start < 60
        message = str(info.value)
        assert "only 0 of 1 workers connected within 6s" in message
        assert "PENDING (Resources: waiting for free CPUs, memory or GPUs)" in message
        assert "Cancelled what had not started: job " in message
        shown = capsys.readouterr().err
        assert "0/1 workers" in shown and "PENDING (Resources" in shown
        slurm.wait_no_jobs(name)
        assert ClusterControl().list() == []
    finally:
        slurm.scancel(blocker)


def test_job_that_fails_on_the_node_is_reported_with_its_log(
    slurm: SlurmInstance, unique_name
) -> None:
    name = unique_name("wb-fail")
    start = time.monotonic()
    with pytest.raises(WorkersTimeoutError) as info:
        workbench.launch(
            "slurm",
            wait=True,
            timeout=120,
            job_name=name,
            python="/nonexistent/bin/python",
            **SMALL,
        )
    # Reported as soon as SLURM says the job ended, not after the timeout.
    assert time.monotonic() - start < 60
    message = str(info.value)
    assert "ended (FAILED) before its Dask worker connected" in message
    assert "/nonexistent/bin/python" in message  # the job's log, quoted
    slurm.wait_no_jobs(name)
    assert ClusterControl().list() == []


@pytest.mark.slow
def test_cancelling_a_worker_job_mid_computation_is_survived(
    slurm: SlurmInstance, unique_name
) -> None:
    name = unique_name("wb-kill")
    with workbench.launch("slurm", wait=True, timeout=120, jobs=2, job_name=name, **SMALL) as h:
        futures = h.client.map(slow_square, range(40))
        wait_until(lambda: sum(f.done() for f in futures) >= 4, 60, 0.05)
        ids = slurm.jobs_named(name)
        assert len(ids) == 2
        slurm.scancel(ids[0])
        # The lost worker's tasks run again on the other one: the result is complete.
        assert h.client.gather(futures, errors="raise") == [x * x for x in range(40)]
        wait_until(lambda: h.n_workers() == 1, 60)
        assert slurm.jobs_named(name) == [ids[1]]
        # Scaling back up replaces the lost job.
        h.scale(jobs=2).wait_for_workers(2, timeout=120)
        assert len(slurm.jobs_named(name)) == 2
    slurm.wait_no_jobs(name)


def _run_owner(tmp_path: Path, subprocess_env: dict[str, str], name: str) -> dict[str, str]:
    script = tmp_path / "owner.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import json, os, signal, workbench
            if __name__ == "__main__":
                # death_timeout: a worker that never finds its scheduler would wait 5 minutes
                h = workbench.launch("slurm", wait=True, timeout=120, jobs=2, job_name={name!r},
                                     cores=1, memory="1GiB", walltime="00:10:00",
                                     dashboard_address=":0", death_timeout=300)
                h.scale(jobs=3)  # a third job that stays PENDING: only 2 fit on the node
                print(json.dumps({{"id": h.id}}), flush=True)
                # The machine's worst case: the watchdog dies too (a reboot, an OOM killer),
                # so only a sweep or a stop can release the jobs.
                os.kill(h.record.watchdog[0], signal.SIGKILL)
                os.kill(os.getpid(), signal.SIGKILL)  # a kernel that dies: no atexit, no close
            """
        )
    )
    proc = subprocess.run(
        [sys.executable, str(script)],
        env=subprocess_env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


@pytest.mark.slow
@pytest.mark.parametrize("command", ["cleanup", "stop"])
def test_killed_kernel_and_watchdog_leave_no_job_after_cleanup_or_stop(
    slurm: SlurmInstance, unique_name, tmp_path: Path, subprocess_env, command: str
) -> None:
    name = unique_name("wb-orphan")
    env = {**subprocess_env, "SLURM_CONF": slurm.conf}
    owner = _run_owner(tmp_path, env, name)
    control = ClusterControl()
    record = control.get(owner["id"])
    assert control.status(record) == "stale"
    # Running workers notice the scheduler is gone and end their jobs soon, but the queued
    # job would start later and wait death_timeout for a scheduler that never comes.
    assert slurm.jobs_named(name)
    # Even from a shell without SLURM_CONF: the record remembers which SLURM it was.
    env_without = {k: v for k, v in env.items() if k != "SLURM_CONF"}
    args = ["cleanup"] if command == "cleanup" else ["stop", record.id]
    cleaned = subprocess.run(
        [*WORKBENCH, "clusters", *args],
        env=env_without,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert cleaned.returncode == 0, cleaned.stderr
    said = f"removed stale cluster {record.id}" if command == "cleanup" else f"stopped {record.id}"
    assert said in cleaned.stdout
    slurm.wait_no_jobs(name, timeout=30)  # the pending job too, though no record listed it
    assert control.list() == []


def test_kernel_exit_cancels_its_jobs(
    slurm: SlurmInstance, unique_name, tmp_path: Path, subprocess_env
) -> None:
    name = unique_name("wb-exit")
    script = tmp_path / "kernel.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import workbench
            if __name__ == "__main__":
                h = workbench.launch("slurm", wait=True, timeout=120, job_name={name!r},
                                     cores=1, memory="1GiB", walltime="00:10:00",
                                     dashboard_address=":0")
                print(h.client.submit(sum, [1, 2]).result(), flush=True)
                # no close(): the interpreter's exit cancels the job
            """
        )
    )
    out = subprocess.run(
        [sys.executable, str(script)],
        env={**subprocess_env, "SLURM_CONF": slurm.conf},
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "3"
    slurm.wait_no_jobs(name)
    assert ClusterControl().list() == []


def test_notebook_shows_the_queue_state_in_a_live_display(
    slurm: SlurmInstance, unique_name
) -> None:
    """In a real Jupyter kernel the wait is one display, updated in place."""
    from jupyter_client.manager import start_new_kernel

    name = unique_name("wb-nb")
    total = subprocess.run(
        ["sinfo", "-h", "-o", "%c"], env=slurm.env(), capture_output=True, text=True, check=True
    ).stdout.split()[0]
    blocker = slurm.sbatch(
        "-J", f"{name}-blocker", "-c", total, "--mem=64M", "-o", "/dev/null", "--wrap", "sleep 300"
    )
    km, kc = start_new_kernel(kernel_name="python3", startup_timeout=120)
    try:
        wait_until(lambda: slurm.squeue("-j", blocker, "-o", "%T") == ["RUNNING"], 30)
        code = textwrap.dedent(
            f"""
            import workbench
            try:
                workbench.launch("slurm", wait=True, timeout=5, job_name={name!r},
                                 cores=1, memory="1GiB", dashboard_address=":0")
            except workbench.errors.WorkersTimeoutError as exc:
                print("timed out:", "Resources" in str(exc))
            """
        )
        shown: list[str] = []
        kinds: list[str] = []
        stdout: list[str] = []

        def collect(msg: dict) -> None:  # type: ignore[type-arg]
            kind = msg["header"]["msg_type"]
            if kind in ("display_data", "update_display_data"):
                kinds.append(kind)
                shown.append(msg["content"]["data"].get("text/html", ""))
            elif kind == "stream":
                stdout.append(msg["content"]["text"])

        reply = kc.execute_interactive(code, timeout=120, output_hook=collect)
        assert reply["content"]["status"] == "ok"
        assert "timed out: True" in "".join(stdout)
        assert kinds[0] == "display_data" and "update_display_data" in kinds
        assert any("PENDING (Resources" in html for html in shown)
        assert "0/1 workers" in shown[-1]
        slurm.wait_no_jobs(name)
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
        slurm.scancel(blocker)


def test_doctor_sees_the_slurm_cluster(slurm: SlurmInstance, subprocess_env) -> None:
    out = subprocess.run(
        [*WORKBENCH, "doctor", "--json"],
        env={**subprocess_env, "SLURM_CONF": slurm.conf},
        capture_output=True,
        text=True,
        timeout=60,
    )
    checks = {c["name"]: c for c in json.loads(out.stdout)}
    assert checks["SLURM"]["status"] == "ok"
    assert "debug*" in checks["SLURM"]["summary"]
    assert f"gpu:{slurm.gpus}" in checks["SLURM"]["summary"]


def test_cleanup_that_cannot_cancel_keeps_the_record(slurm: SlurmInstance, tmp_path: Path) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    control = ClusterControl()
    control.store.add(
        ClusterRecord(
            id="slurmdead0",
            profile="slurm",
            backend="slurm",
            scheduler_address="tcp://127.0.0.1:9",
            owner_pid=dead.pid,
            extra={
                "job_name": "wb-never",
                "job_ids": ["999999"],
                "slurm_conf": str(tmp_path / "missing.conf"),
            },
        )
    )
    with pytest.raises(WorkbenchError, match="could not release what its dead owner left"):
        control.cleanup()
    assert [r.id for r in control.list()] == ["slurmdead0"]
    # Pointing it at the right SLURM lets the next cleanup through.
    control.store.update("slurmdead0", extra={"job_name": "wb-never", "slurm_conf": slurm.conf})
    assert [r.id for r in control.cleanup()] == ["slurmdead0"]
    assert control.list() == []


@pytest.mark.gpu
def test_gpu_jobs_run_dask_cuda_workers_with_split_memory(
    slurm: SlurmInstance, unique_name
) -> None:
    """On a GPU machine (slurm-up gives the node its real GPU count): a real dask-cuda
    worker per GPU, each with its share of the job's host memory."""
    pytest.importorskip("dask_cuda")
    name = unique_name("wb-cuda")
    with workbench.launch(
        "slurm-gpu",
        wait=True,
        timeout=180,
        job_name=name,
        gpus_per_job=1,
        cores=1,
        memory="4GiB",
        walltime="00:10:00",
        dashboard_address=":0",
    ) as h:
        info = h.client.scheduler_info()["workers"]
        assert len(info) == 1
        (worker,) = info.values()
        assert worker["memory_limit"] == 4 * 2**30
        visible = h.client.run(lambda: os.environ.get("CUDA_VISIBLE_DEVICES"))
        assert next(iter(visible.values())) in {str(i) for i in range(slurm.gpus)}
    slurm.wait_no_jobs(name)


def test_a_record_of_another_host_is_cleaned_once_its_heartbeat_stops(
    slurm: SlurmInstance, unique_name
) -> None:
    """A second login node sharing $HOME sees the record but cannot check the owner's pid:
    the owner's heartbeat (the record's mtime, refreshed every 10 s) tells; once it is
    older than a minute the record is stale there and its jobs are cancelled from there."""
    from workbench.clusters.record_store import STALE_AFTER_S

    name = unique_name("wb-other-host")
    job = slurm.sbatch("-J", name, "-t", "00:10:00", "--wrap", "sleep 600")
    control = ClusterControl()
    control.store.add(
        ClusterRecord(
            id="otherhost1",
            profile="slurm",
            backend="slurm",
            scheduler_address="tcp://login-2.example:8786",
            hostname="login-2.example",
            owner_pid=os.getpid(),  # a pid of *that* host: says nothing here
            extra={"job_name": name, "job_ids": [job], "slurm_conf": slurm.conf},
        )
    )
    record = control.get("otherhost1")
    assert control.status(record) == "unreachable"  # fresh heartbeat: not ours to clean
    assert control.cleanup() == []
    assert slurm.jobs_named(name) == [job]
    old = time.time() - STALE_AFTER_S - 5
    os.utime(control.store.path(record.id), (old, old))
    assert control.status(record) == "stale"
    assert "login-2.example" in control.stale_reason(record)
    assert [r.id for r in control.cleanup()] == ["otherhost1"]
    slurm.wait_no_jobs(name, timeout=30)
    assert control.list() == []


def test_idle_timeout_does_not_give_up_on_queued_jobs(slurm: SlurmInstance, unique_name) -> None:
    """The idle clock runs once the cluster has had a worker: a job that waits in the
    queue longer than idle_timeout is not given up; once it ran and the cluster is idle,
    the cluster closes and nothing stays queued."""
    name = unique_name("wb-idle-queue")
    handle = workbench.launch(
        "slurm",
        idle_timeout=2,
        job_name=name,
        job_extra_directives=["--begin=now+1hour"],  # queued until released below
        progress="off",
        **SMALL,
    )
    try:
        time.sleep(6)
        assert handle.status != "closed"
        (job,) = slurm.jobs_named(name)
        subprocess.run(
            ["scontrol", "update", f"JobId={job}", "StartTime=now"],
            env=slurm.env(),
            check=True,
            timeout=30,
        )
        handle.wait_for_workers(1, timeout=120, progress="off")
        started = time.monotonic()
        wait_until(lambda: handle.status == "closed", 60)
        assert time.monotonic() - started >= 1  # not before it was idle
        assert handle.end_reason is not None and "idle_timeout" in handle.end_reason
    finally:
        handle.close()
    slurm.wait_no_jobs(name)
