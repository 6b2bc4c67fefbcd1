"""Cluster registry at scale: listing 10, 100 and 1000 cluster records.

What is listed: records in a private state directory, mixed as a user's would be. Live
clusters are real Dask schedulers (``distributed.Scheduler``, up to 100, hosted by one
helper process, benchmarks/_schedulers.py; no workers); the other records are stale
(their owner process has exited: no probe needed) and a few dead (owner alive, nothing
listens on the scheduler's port any more). Slow schedulers (a socket that never
answers) are not in this curve: each costs its timeout, once for the whole list (the
parallel probe), as tests/test_cluster_list_parallel.py shows.

Series, interleaved in rounds:

* ``workbench``: ``ClusterControl().summaries()``, what ``workbench clusters list`` does
  (every record read, every live scheduler asked for its workers in parallel);
* ``raw``: the same schedulers asked with distributed's own ``rpc(...).identity()``,
  all at once on one event loop (the least any list of them can cost);
* ``workbench clusters list`` as a command (a new Python process each time);
* ``GET /workbench/api/clusters`` over real HTTP, token auth on, from a real Jupyter
  server with the workbench extension.

    python benchmarks/registry.py [--quick]
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _scale import RAW, WORKBENCH, Curve, Point, ScaleOptions, interleave

CLI = "workbench clusters list (process)"
REST = "GET /workbench/api/clusters"
#: The issue's target: under this many seconds to list 100 live clusters.
TARGET_100_LIVE_S = 1.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _mix(records: int) -> tuple[int, int, int]:
    """(live, stale, dead) for a number of records."""
    live = min(records, 100) if records != 10 else 7
    dead = max(1, records // 50) if records > live else 0
    return live, records - live - dead, dead


def _write_records(state: Path, addresses: list[str], stale: int, dead: int) -> None:
    import psutil

    from workbench.clusters import ClusterRecord, RecordStore

    store = RecordStore(state / "clusters")
    me = psutil.Process()
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()  # an owner that has exited
    gone_created = time.time() - 60

    def add(cluster_id: str, address: str, owner: int, created: float) -> None:
        store.add(
            ClusterRecord(
                id=cluster_id,
                profile="local-cpu",
                backend="local",
                scheduler_address=address,
                owner_pid=owner,
                owner_create_time=created,
            )
        )

    for i, address in enumerate(addresses):
        add(f"live{i:06d}", address, me.pid, me.create_time())
    for i in range(stale):
        add(f"stale{i:05d}", f"tcp://127.0.0.1:{_free_port()}", gone.pid, gone_created)
    for i in range(dead):
        add(f"dead{i:06d}", f"tcp://127.0.0.1:{_free_port()}", me.pid, me.create_time())


def _raw(addresses: list[str]) -> float:
    from distributed.core import rpc

    async def ask(address: str) -> Any:
        async with rpc(address, timeout=2) as r:
            return await r.identity()

    async def all_of_them() -> list[Any]:
        return await asyncio.gather(*(ask(a) for a in addresses))

    began = time.perf_counter()
    asyncio.run(all_of_them())
    return time.perf_counter() - began


class _Jupyter:
    """A ``jupyter server`` with the workbench extension and token auth."""

    def __init__(self, env: dict[str, str], root: Path) -> None:
        self.port = _free_port()
        self.token = secrets.token_hex(16)
        args = [
            str(Path(sys.executable).parent / "jupyter"),
            "server",
            "--no-browser",
            "--ServerApp.ip=127.0.0.1",
            f"--ServerApp.port={self.port}",
            "--ServerApp.port_retries=0",
            f"--ServerApp.root_dir={root}",
            f"--IdentityProvider.token={self.token}",
        ]
        if os.getuid() == 0:
            args.append("--allow-root")
        self.log = root / "jupyter.log"
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"jupyter server exited: {self.log.read_text()[-2000:]}")
            with contextlib.suppress(OSError):
                self.get("api/status")
                return
            time.sleep(0.3)
        raise RuntimeError("jupyter server did not start within 120 s")

    def get(self, path: str) -> Any:
        req = urllib.request.Request(
            f"http://127.0.0.1:{self.port}/{path}",
            headers={"Authorization": f"token {self.token}"},
        )
        with urllib.request.urlopen(req, timeout=120) as reply:
            return json.loads(reply.read())

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)


def scale(options: ScaleOptions) -> list[Curve]:
    from workbench.clusters import ClusterControl, RecordStore

    sizes = [10, 100] if options.quick else [10, 100, 1000]
    rounds = options.repeats(2)
    curve = Curve(
        key="registry-list",
        title="Listing clusters: ClusterControl.summaries vs distributed rpc identity",
        x_label="records",
        workbench="workbench (control path)",
        raw="distributed rpc identity, all at once",
        kind="time",
        target=3.0,
        y_label="seconds to list",
        unit="ms",
        logx=True,
    )
    live_max = max(_mix(n)[0] for n in sizes)
    hosts = subprocess.Popen(
        [sys.executable, str(Path(__file__).parent / "_schedulers.py"), str(live_max)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    work = Path(tempfile.mkdtemp(prefix="wb-registry-"))
    began = time.perf_counter()
    try:
        assert hosts.stdout is not None
        addresses = json.loads(hosts.stdout.readline())
        state = work / "state"
        env = {**os.environ, "WORKBENCH_STATE_DIR": str(state), "PYTHONUNBUFFERED": "1"}
        os.environ["WORKBENCH_STATE_DIR"] = str(state)
        jupyter = _Jupyter(env, work)
        try:
            cli = [sys.executable, "-m", "workbench", "clusters", "list", "--json"]
            for n in sizes:
                shutil.rmtree(state / "clusters", ignore_errors=True)
                live, stale, dead = _mix(n)
                _write_records(state, addresses[:live], stale, dead)
                control = ClusterControl(RecordStore(state / "clusters"))
                checked: dict[str, Any] = {}

                def ours(
                    control: ClusterControl = control, checked: dict[str, Any] = checked
                ) -> None:
                    out = control.summaries()
                    checked["running"] = sum(1 for s in out if s["status"] == "running")

                def rest(checked: dict[str, Any] = checked) -> None:
                    out = jupyter.get("workbench/api/clusters")["clusters"]
                    checked["rest"] = sum(1 for s in out if s["status"] == "running")

                def command() -> None:
                    subprocess.run(cli, env=env, capture_output=True, check=True, timeout=300)

                ours()  # warm up: imports, first connections
                rest()
                samples = interleave(
                    {
                        WORKBENCH: ours,
                        RAW: lambda live=live: _raw(addresses[:live]),
                        REST: rest,
                        CLI: command,
                    },
                    rounds,
                )
                if checked.get("running") != live or checked.get("rest") != live:
                    raise RuntimeError(f"expected {live} running clusters, listed {checked}")
                curve.points.append(
                    Point(f"{n} ({live} live)", n, samples, note=f"{stale} stale, {dead} dead")
                )
                print(f"  {n} records: done", flush=True)
        finally:
            jupyter.close()
    finally:
        if hosts.stdin is not None:
            hosts.stdin.close()
        hosts.wait(60)
        shutil.rmtree(work, ignore_errors=True)
    curve.elapsed = time.perf_counter() - began
    at_100 = [p for p in curve.points if p.x == 100]
    verdicts = []
    for p in at_100:
        for series, label in ((WORKBENCH, "control path"), (REST, "REST"), (CLI, "CLI")):
            med = p.median(series)
            ok = "met" if med < TARGET_100_LIVE_S else "**missed**"
            verdicts.append(f"{label} {med:.2f} s ({ok})")
    curve.notes += [
        f"Target: under {TARGET_100_LIVE_S:g} s at 100 live clusters: "
        + ", ".join(verdicts)
        + ". The CLI's time includes starting Python and importing workbench.",
        "Live: real `distributed.Scheduler`s (no workers) in one helper process; stale: "
        "owner exited (not probed); dead: owner alive, nothing listens on the port. "
        "Ratio target (3x the raw rpc calls) chosen here: workbench also reads every record "
        "and checks every owner.",
        "Slow schedulers (a listening socket that never answers) cost one timeout for the "
        "whole list: tests/test_cluster_list_parallel.py times 12 of them.",
    ]
    return [curve]


def main() -> None:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    os.environ.setdefault("WORKBENCH_STATE_DIR", tempfile.mkdtemp(prefix="wb-bench-"))
    for curve in scale(ScaleOptions(quick=args.quick)):
        print(curve.markdown())


if __name__ == "__main__":
    main()
