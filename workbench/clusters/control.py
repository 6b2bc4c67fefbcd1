"""The one control path: every request about a running cluster, from any process.

The CLI (``workbench clusters ...``), the JupyterLab server's REST routes, a cluster's
watchdog and the server's start-up sweep all go through :class:`ClusterControl`:

- it finds the cluster's :class:`~workbench.clusters.record.ClusterRecord` in the
  :class:`~workbench.clusters.record_store.RecordStore`;
- it says what state the cluster is in (:meth:`ClusterControl.status`), and when a
  request cannot be served, why (:meth:`ClusterControl.running`);
- it dispatches stop, scale (workers or jobs), adapt, info, connect code and cleanup to
  the record's backend class (``Backend.remote_*``, ``connect_code``,
  ``cleanup_orphans``), which knows where that backend's scheduler runs: in the owner's
  process (``local``, ``slurm``), on a dask-gateway, or in a Kubernetes cluster.

The notebook's own :class:`~workbench.clusters.handle.ClusterHandle` acts on its cluster
object directly and serves the requests this path sends to its process.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any, TypeVar

import psutil

from ..errors import (
    ClusterStaleError,
    ClusterStateError,
    ClusterUnreachableError,
    ResourceError,
    WorkbenchError,
)
from .backend import Backend, facts_of, owner_error
from .backend_registry import get_backend_class
from .comm import PORT_TIMEOUT_S, port_open, port_open_async
from .record import ClusterRecord, Status, process_alive
from .record_store import STALE_AFTER_S, RecordStore


def backend_class(record: ClusterRecord) -> type[Backend]:
    """The backend class of a record; the generic base when its plugin is not installed
    here (requests then go to the owner's scheduler handlers, which every backend whose
    scheduler runs in its owner's process serves)."""
    try:
        return get_backend_class(record.backend)
    except WorkbenchError:
        return Backend


def reap(worker_pids: builtins.list[tuple[int, float]], timeout: float = 5.0) -> list[int]:
    """Terminate (then kill) the still-running processes among ``worker_pids``."""
    procs = []
    for pid, created in worker_pids:
        if process_alive(pid, created):
            with contextlib.suppress(psutil.Error):
                procs.append(psutil.Process(pid))
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            proc.terminate()
    _, alive = psutil.wait_procs(procs, timeout=timeout)
    for proc in alive:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    return [p.pid for p in procs]


R = TypeVar("R")

#: Clusters of a list probed at once: a thread each, mostly waiting on one scheduler's
#: socket. More slow schedulers than this wait for a free thread, within the deadline.
PROBE_THREADS = 64
#: Seconds a list waits beyond the probes' own timeout (the port check, thread start).
PROBE_MARGIN_S = 1.5


def probe_all(
    records: Sequence[ClusterRecord],
    probe: Callable[[ClusterRecord], R],
    deadline: float,
    late: Callable[[ClusterRecord], R],
) -> builtins.list[R]:
    """``probe(record)`` of every record in parallel (a bounded thread pool), in order.

    The whole takes about the slowest probe and at most ``deadline`` seconds: a dead or
    slow scheduler adds its timeout once, not once per cluster. A probe still running at
    the deadline is answered by ``late(record)`` (it ends in the background, within its
    own timeout). An error a probe raises is raised here.
    """
    if not records:
        return []
    pool = ThreadPoolExecutor(
        max_workers=min(PROBE_THREADS, len(records)), thread_name_prefix="workbench-probe"
    )
    try:
        futures = [pool.submit(probe, record) for record in records]
        done, _ = wait(futures, timeout=deadline)
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
    return [f.result() if f in done else late(r) for r, f in zip(records, futures, strict=True)]


#: Seconds a list (``owner_info``) and the cost display wait for an owner's answer.
OWNER_INFO_TIMEOUT_S = 3.0


@dataclass
class Probed:
    """One cluster of a list: its record, its summary (:meth:`ClusterControl.summary`)
    and, when ``owner_asked``, what its owner answered to ``workbench_info`` (the reply,
    or the :class:`~workbench.errors.WorkbenchError` asking raised). Owners are asked
    only about running clusters."""

    record: ClusterRecord
    summary: dict[str, Any]
    owner: Any = None
    owner_asked: bool = False


class ClusterControl:
    """List, inspect, stop, scale, adapt, connect to and clean up clusters by record."""

    def __init__(self, store: RecordStore | None = None) -> None:
        self.store = store or RecordStore()

    # -- finding ---------------------------------------------------------------------------
    def list(self) -> builtins.list[ClusterRecord]:
        return self.store.list()

    def get(self, cluster_id: str) -> ClusterRecord:
        """The record whose id is ``cluster_id`` or a unique prefix of it."""
        return self.store.get(cluster_id)

    def status(self, record: ClusterRecord) -> Status:
        """running: owner alive and scheduler port open; stale: owner gone; else unreachable.

        On the owner's host the owner's pid tells; for a record written on another host
        (a second login node sharing $HOME) its heartbeat does.
        """
        if self.owner_gone(record):
            return "stale"
        return "running" if port_open(record.scheduler_address) else "unreachable"

    def owner_gone(self, record: ClusterRecord) -> bool:
        """Whether the record is stale (its owner is gone); asks nothing over the network."""
        if record.on_this_host:
            return not record.owner_alive()
        return self.store.heartbeat_age(record) > STALE_AFTER_S

    def stale_reason(self, record: ClusterRecord) -> str:
        if record.on_this_host:
            return (
                f"the process that owned it (pid {record.owner_pid} on {record.hostname}) "
                "has exited"
            )
        age = self.store.heartbeat_age(record)
        return (
            f"its owner on {record.hostname} (pid {record.owner_pid}) has not refreshed the "
            f"record for {age:.0f}s"
        )

    def running(self, cluster_id: str, probe: bool = False, exact: bool = False) -> ClusterRecord:
        """The record of a cluster that can take requests now, or an error that says why not:
        ClusterNotFoundError (unknown or ended), ClusterStaleError, ClusterUnreachableError.

        Without ``probe`` the scheduler's port is enough; with it the backend is asked for
        the live facts too (a gateway's proxy answers for a scheduler that is gone).
        With ``exact`` only the full id matches (requests that stop or remove workers).
        """
        record = self.store.get(cluster_id, exact=exact)
        status = self.status(record)
        if status == "stale":
            raise ClusterStaleError(
                f"cluster {record.id} is stale: {self.stale_reason(record)}. Stop it to clean "
                f"up what it left (workbench clusters stop {record.id}); its watchdog does so "
                "by itself within seconds."
            )
        if status == "unreachable":
            raise ClusterUnreachableError(
                f"cluster {record.id}: its scheduler at {record.scheduler_address} does not "
                f"accept connections, though its owner (pid {record.owner_pid}) runs. The "
                "scheduler was stopped or killed; stop the cluster to release the rest."
            )
        if probe:
            self.info(record)
        return record

    def info(self, record: ClusterRecord, timeout: float = 3.0) -> dict[str, Any]:
        """Live facts (workers, threads, memory). Raises ClusterUnreachableError."""
        return backend_class(record).remote_info(record, timeout=timeout)

    def summary(
        self, record: ClusterRecord, timeout: float = 2.0, status: Status | None = None
    ) -> dict[str, Any]:
        """The record with its status (``status``: already known), live facts and, when
        not running, the reason."""
        status = status or self.status(record)
        info: dict[str, Any] = {}
        problem = None
        if status == "running":
            try:
                info = self.info(record, timeout=timeout)
            except WorkbenchError as exc:
                status, problem = "unreachable", str(exc)
        elif status == "stale":
            problem = f"stale: {self.stale_reason(record)}"
        else:
            problem = f"its scheduler at {record.scheduler_address} does not accept connections"
        return self._summary_of(record, status, info, problem)

    @staticmethod
    def _summary_of(
        record: ClusterRecord, status: Status, info: dict[str, Any], problem: str | None
    ) -> dict[str, Any]:
        data = record.to_dict()
        data.pop("worker_pids", None)
        return {
            **data,
            "status": status,
            "workers": info.get("workers"),
            "threads": info.get("threads"),
            "memory": info.get("memory"),
            "n_gpus": len(record.gpus),
            "problem": problem,
        }

    def summaries(
        self, records: Sequence[ClusterRecord] | None = None, timeout: float = 2.0
    ) -> builtins.list[dict[str, Any]]:
        """:meth:`summary` of every record (default: all), probed at once (:meth:`probe`):
        the list takes about one ``timeout`` however many schedulers are slow or dead."""
        return [p.summary for p in self.probe(records, timeout)]

    def probe(
        self,
        records: Sequence[ClusterRecord] | None = None,
        timeout: float = 2.0,
        owner_info: bool = False,
    ) -> builtins.list[Probed]:
        """Every record (default: all) with its summary, and with ``owner_info`` its
        owner's ``workbench_info`` reply, in order.

        Stale records are summed up without a probe. The schedulers of backends with the
        default probe (:meth:`Backend.probes_on_shared_loop`: ``local``, ``slurm``) are
        asked all at once on one event loop, in a helper thread (one connection each, the
        owner's question on the same connection); the others in parallel threads
        (:func:`probe_all`). A dead or slow scheduler adds its timeout once to the list.
        """
        records = self.list() if records is None else builtins.list(records)
        deadline = timeout + PORT_TIMEOUT_S + PROBE_MARGIN_S
        if owner_info:
            deadline += OWNER_INFO_TIMEOUT_S
        gone = {r.id for r in records if self.owner_gone(r)}
        on_loop: builtins.list[ClusterRecord] = []
        threaded: builtins.list[ClusterRecord] = []
        for r in records:
            if r.id not in gone:
                (on_loop if backend_class(r).probes_on_shared_loop() else threaded).append(r)
        helper = ThreadPoolExecutor(max_workers=1, thread_name_prefix="workbench-probe-loop")
        try:
            looped = (
                helper.submit(
                    asyncio.run, self._probe_on_loop(on_loop, timeout, owner_info, deadline)
                )
                if on_loop
                else None
            )
            # stale records need no probe: summed up here while the probes wait on sockets
            done = {
                r.id: Probed(r, self.summary(r, status="stale")) for r in records if r.id in gone
            }
            for p in probe_all(
                threaded,
                lambda r: self._probe_one(r, timeout, owner_info),
                deadline,
                lambda r: Probed(r, self.late_summary(r, deadline)),
            ):
                done[p.record.id] = p
            for p in looped.result() if looped is not None else []:
                done[p.record.id] = p
        finally:
            helper.shutdown(wait=False)
        return [done[r.id] for r in records]

    def _probe_one(self, record: ClusterRecord, timeout: float, owner_info: bool) -> Probed:
        """One cluster's probe, blocking (a backend with a probe of its own)."""
        summary = self.summary(record, timeout=timeout)
        if not owner_info or summary["status"] != "running":
            return Probed(record, summary)
        try:
            owner = backend_class(record).ask_owner(
                record, "workbench_info", timeout=OWNER_INFO_TIMEOUT_S
            )
        except WorkbenchError as exc:
            owner = exc
        return Probed(record, summary, owner, owner_asked=True)

    async def _probe_on_loop(
        self,
        records: Sequence[ClusterRecord],
        timeout: float,
        owner_info: bool,
        deadline: float,
    ) -> builtins.list[Probed]:
        """The probes of ``records``, all at once on this event loop; those not done by
        ``deadline`` seconds are answered by :meth:`late_summary`."""
        tasks = [asyncio.ensure_future(self._probe_async(r, timeout, owner_info)) for r in records]
        finished, pending = await asyncio.wait(tasks, timeout=deadline)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending)
        return [
            t.result() if t in finished else Probed(r, self.late_summary(r, deadline))
            for r, t in zip(records, tasks, strict=True)
        ]

    async def _probe_async(self, record: ClusterRecord, timeout: float, owner_info: bool) -> Probed:
        """:meth:`summary` of a cluster whose owner is alive, with the owner's answer."""
        from distributed.core import rpc

        address = record.scheduler_address
        if not await port_open_async(address):
            return Probed(record, self.summary(record, status="unreachable"))
        owner: Any = None
        try:
            args = backend_class(record).connection_args(record)
            async with rpc(address, timeout=timeout, connection_args=args) as r:
                identity = await asyncio.wait_for(r.identity(), timeout)
                if owner_info:
                    try:
                        owner = await asyncio.wait_for(r.workbench_info(), OWNER_INFO_TIMEOUT_S)
                    except Exception as exc:
                        owner = owner_error(record, "workbench_info", exc)
        except (OSError, asyncio.TimeoutError, ValueError) as exc:
            problem = (
                f"cluster {record.id}: its scheduler at {address} does not answer "
                f"({type(exc).__name__}: {exc})"
            )
            return Probed(record, self._summary_of(record, "unreachable", {}, problem))
        summary = self._summary_of(record, "running", facts_of(identity), None)
        return Probed(record, summary, owner, owner_asked=owner_info)

    def late_summary(self, record: ClusterRecord, waited: float) -> dict[str, Any]:
        """The summary of a cluster whose probe did not return within ``waited`` seconds."""
        return self._summary_of(
            record,
            "unreachable",
            {},
            f"its scheduler at {record.scheduler_address} did not answer within {waited:.0f}s",
        )

    # -- requests ----------------------------------------------------------------------------
    def stop(self, cluster_id: str, timeout: float = 30.0) -> ClusterRecord:
        """Stop a cluster: through its backend (its owner, gateway or Kubernetes), or by
        cleaning up after an owner that is gone."""
        record = self.store.get(cluster_id, exact=True)  # destructive: no prefix match
        if self.status(record) == "stale":
            self.release(record, f"stopped on request after {self.stale_reason(record)}")
            return record
        cls = backend_class(record)
        try:
            stopped = cls.remote_close(record, timeout=timeout)
        except ClusterStateError:
            if port_open(record.scheduler_address):
                raise
            # Nothing listens any more: release what is left.
            self.release(record, "stopped on request; its scheduler had already gone")
            return record
        if stopped:
            self.store.remove(record.id)
            return record
        self._wait_closed_by_owner(record, timeout)
        return record

    def _wait_closed_by_owner(self, record: ClusterRecord, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.store.exists(record.id) and not port_open(record.scheduler_address):
                return
            if record.on_this_host and not record.owner_alive():
                break
            time.sleep(0.1)
        owner_alive = not record.on_this_host or record.owner_alive()
        if port_open(record.scheduler_address) and owner_alive:
            raise ClusterStateError(
                f"cluster {record.id} did not stop within {timeout:.0f}s; its owner process "
                f"{record.owner_pid} on {record.hostname} is still running"
            )
        if self.store.exists(record.id):
            self.release(record, "its owner exited while closing it")

    def scale(
        self,
        cluster_id: str,
        n: int | None = None,
        *,
        jobs: int | None = None,
        timeout: float = 30.0,
    ) -> ClusterRecord:
        """Ask the cluster for ``n`` workers, or for ``jobs`` batch jobs."""
        if (n is None) == (jobs is None):
            raise ValueError("scale: pass a number of workers, or jobs=N (not both)")
        count = n if jobs is None else jobs
        if count is None or count < 0:
            raise ValueError(f"cannot scale to {count} {'jobs' if jobs is not None else 'workers'}")
        record = self.running(cluster_id, probe=True, exact=True)  # may remove workers
        if jobs is None and record.max_workers is not None and count > record.max_workers:
            raise ResourceError(
                f"cluster {record.id}: {count} workers is above its profile's max_workers "
                f"({record.max_workers})"
            )
        cls = backend_class(record)
        if jobs is not None and not cls.has_jobs:
            raise ClusterStateError(
                f"cluster {record.id} ({record.backend}) runs no batch jobs: scale it in workers"
            )
        cls.remote_scale(record, n=n, jobs=jobs, timeout=timeout)
        return record

    def adapt(
        self,
        cluster_id: str,
        minimum: int = 0,
        maximum: int | None = None,
        timeout: float = 30.0,
    ) -> ClusterRecord:
        """Let the cluster scale itself between ``minimum`` and ``maximum`` workers."""
        if minimum < 0 or (maximum is not None and maximum < minimum):
            raise ValueError(f"adapt: need 0 <= minimum <= maximum (got {minimum}, {maximum})")
        record = self.running(cluster_id, probe=True, exact=True)  # may remove workers
        bound = record.max_workers
        if bound is not None and max(minimum, maximum or 0) > bound:
            raise ResourceError(
                f"cluster {record.id}: adapt up to {max(minimum, maximum or 0)} workers is "
                f"above its profile's max_workers ({bound})"
            )
        backend_class(record).remote_adapt(record, minimum, maximum, timeout=timeout)
        return record

    def connect_code(self, cluster: str | ClusterRecord) -> str:
        """Python code that connects a client to the cluster from another kernel."""
        record = cluster if isinstance(cluster, ClusterRecord) else self.get(cluster)
        return backend_class(record).connect_code(record)

    # -- clusters whose owner is gone ----------------------------------------------------------
    def release(self, record: ClusterRecord, reason: str | None = None) -> None:
        """Release what a cluster left behind (worker processes on this host, batch jobs, a
        gateway cluster, a DaskCluster), then forget it, keeping a note of ``reason``.

        When the backend cannot release its part now, the record is kept (it is the only
        trace of what may still run) and WorkbenchError says why.
        """
        if record.on_this_host:
            reap(record.worker_pids)
        try:
            cls: type[Backend] | None = get_backend_class(record.backend)
        except WorkbenchError:
            cls = None  # a plugin backend that is gone: nothing more can be released
        if cls is not None:
            try:
                cls.cleanup_orphans(record)
            except WorkbenchError as exc:
                raise WorkbenchError(
                    f"cluster {record.id} ({record.backend}): could not release what its dead "
                    f"owner left: {exc} The record is kept; fix this and run "
                    "'workbench clusters cleanup' again."
                ) from exc
        self.store.end(record, reason or f"released after {self.stale_reason(record)}")

    def cleanup(self) -> builtins.list[ClusterRecord]:
        """Release every stale cluster (owner gone); returns them.

        A record whose leftovers cannot be released is kept, and after the others are
        cleaned a WorkbenchError says why.
        """
        cleaned = []
        errors = []
        for record in self.list():
            if self.status(record) == "stale":
                try:
                    self.release(record, f"cleaned up after {self.stale_reason(record)}")
                except WorkbenchError as exc:
                    errors.append(str(exc))
                    continue
                cleaned.append(record)
        if errors:
            done = f"cleaned {len(cleaned)} cluster(s); " if cleaned else ""
            raise WorkbenchError(done + "\n".join(errors))
        return cleaned
