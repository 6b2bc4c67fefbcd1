"""The per-user registry of running clusters, on disk.

Each cluster launched through workbench (in any kernel, the CLI or the server)
writes one JSON record under ``<state dir>/clusters/``. Any other process of the
same user can then list, scale and stop it: requests go to the owning process
through handlers workbench installs on the cluster's scheduler, so the owner
cleans up exactly as if the user had called ``close()``. Backends whose scheduler
runs elsewhere (dask-gateway, Kubernetes) serve these requests themselves from the
facts in the record (``Backend.control``). When the owner died (a killed kernel), the
record is *stale*: ``cleanup`` removes it and terminates any worker processes it left
behind, and the backend releases what it holds (``Backend.cleanup_orphans``).
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import getpass
import json
import os
import socket
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlparse

import psutil

from .. import config
from ..errors import ClusterNotFoundError, WorkbenchError

Status = Literal["running", "stale", "unreachable"]


@dataclass
class ClusterRecord:
    id: str
    profile: str
    backend: str
    scheduler_address: str
    dashboard_link: str | None = None
    owner_pid: int = 0
    owner_create_time: float = 0.0
    hostname: str = field(default_factory=socket.gethostname)
    user: str = field(default_factory=getpass.getuser)
    created: float = field(default_factory=time.time)
    gpus: list[str] = field(default_factory=list)
    #: (pid, create_time) of worker processes on this host, to reap orphans.
    worker_pids: list[tuple[int, float]] = field(default_factory=list)
    #: Backend-specific facts (e.g. batch job ids) needed to clean up without the owner.
    extra: dict[str, Any] = field(default_factory=dict)
    detached: bool = False
    log_file: str | None = None

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ClusterRecord:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        known["worker_pids"] = [tuple(p) for p in known.get("worker_pids", [])]
        return cls(**known)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _process_alive(pid: int, create_time: float) -> bool:
    """True if ``pid`` runs and is the same process (not a recycled pid)."""
    if pid <= 0:
        return False
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        return not create_time or abs(proc.create_time() - create_time) < 1.0
    except psutil.Error:
        return False


def _port_open(address: str, timeout: float = 1.0) -> bool:
    parsed = urlparse(address)
    if parsed.scheme not in ("tcp", "tls", "ucx", "ws", "wss", "gateway") or not parsed.port:
        return False
    try:
        with socket.create_connection((parsed.hostname or "127.0.0.1", parsed.port), timeout):
            return True
    except OSError:
        return False


def scheduler_call(address: str, op: str, timeout: float = 10.0, **kwargs: Any) -> Any:
    """Call a handler on a scheduler over Dask's own protocol (blocking)."""
    from distributed.core import rpc

    async def call() -> Any:
        async with rpc(address, timeout=timeout) as r:
            return await asyncio.wait_for(getattr(r, op)(**kwargs), timeout)

    return asyncio.run(call())


def _control(record: ClusterRecord, op: str, timeout: float, **kwargs: Any) -> Any:
    """The backend's own answer to ``op`` for this record, or NotImplemented."""
    from .registry import get_backend_class

    try:
        cls = get_backend_class(record.backend)
    except WorkbenchError:
        return NotImplemented
    return cls.control(record, op, timeout=timeout, **kwargs)


class ClusterRegistry:
    def __init__(self, root: Path | None = None) -> None:
        self.root = root or config.state_dir() / "clusters"

    def _ensure(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(OSError):
            os.chmod(self.root, 0o700)

    def _path(self, cluster_id: str) -> Path:
        return self.root / f"{cluster_id}.json"

    def add(self, record: ClusterRecord) -> None:
        self._ensure()
        tmp = self.root / f".{record.id}.{os.getpid()}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(record.to_dict(), f, indent=1)
        os.replace(tmp, self._path(record.id))

    def update(self, cluster_id: str, **fields: Any) -> None:
        try:
            record = self.get(cluster_id)
        except ClusterNotFoundError:
            return
        for key, value in fields.items():
            setattr(record, key, value)
        self.add(record)

    def remove(self, cluster_id: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._path(cluster_id).unlink()

    def list(self) -> builtins.list[ClusterRecord]:
        if not self.root.is_dir():
            return []
        out = []
        for path in sorted(self.root.glob("*.json")):
            try:
                out.append(ClusterRecord.from_dict(json.loads(path.read_text())))
            except (OSError, ValueError, TypeError):
                continue  # a record being written or removed right now
        return sorted(out, key=lambda r: r.created)

    def get(self, cluster_id: str) -> ClusterRecord:
        """The record whose id is ``cluster_id`` or starts with it (unambiguously)."""
        records = self.list()
        exact = [r for r in records if r.id == cluster_id]
        matches = exact or [r for r in records if r.id.startswith(cluster_id)]
        if len(matches) == 1:
            return matches[0]
        if not matches:
            known = ", ".join(r.id for r in records) or "none"
            raise ClusterNotFoundError(
                f"no running cluster with id {cluster_id!r} (known: {known})"
            )
        raise ClusterNotFoundError(
            f"cluster id {cluster_id!r} is ambiguous: {', '.join(r.id for r in matches)}"
        )

    def status(self, record: ClusterRecord) -> Status:
        """running: owner alive and scheduler answers; stale: owner gone; else unreachable."""
        local = record.hostname == socket.gethostname()
        if local and not _process_alive(record.owner_pid, record.owner_create_time):
            return "stale"
        return "running" if _port_open(record.scheduler_address) else "unreachable"

    def info(self, record: ClusterRecord, timeout: float = 3.0) -> dict[str, Any]:
        """Live facts from the scheduler: workers, threads, memory, GPUs (empty if unreachable)."""
        try:
            own = _control(record, "info", timeout=timeout)
        except Exception:
            return {}
        if own is not NotImplemented:
            return dict(own)
        try:
            ident = scheduler_call(record.scheduler_address, "identity", timeout=timeout)
        except (OSError, asyncio.TimeoutError, ValueError):
            return {}
        workers = ident.get("workers", {})
        return {
            "workers": len(workers),
            "threads": sum(w.get("nthreads", 0) for w in workers.values()),
            "memory": sum(w.get("memory_limit", 0) or 0 for w in workers.values()),
        }

    def _reap(self, record: ClusterRecord, timeout: float = 5.0) -> builtins.list[int]:
        """Terminate worker processes a dead owner left behind; return their pids."""
        procs = []
        for pid, created in record.worker_pids:
            if _process_alive(pid, created):
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

    def stop(self, cluster_id: str, timeout: float = 30.0) -> ClusterRecord:
        """Stop a cluster: ask its owner to close it, or clean up after a dead owner."""
        record = self.get(cluster_id)
        if self.status(record) == "stale":
            self._cleanup_stale(record)
            return record
        if _control(record, "close", timeout=timeout) is not NotImplemented:
            self.remove(record.id)
            return record
        try:
            scheduler_call(record.scheduler_address, "workbench_close", timeout=min(timeout, 10))
        except Exception as exc:
            if not _port_open(record.scheduler_address):
                self._cleanup_stale(record)
                return record
            # An owner without workbench handlers: shut the scheduler down over Dask's protocol.
            try:
                scheduler_call(record.scheduler_address, "terminate", timeout=10)
            except Exception:
                raise WorkbenchError(
                    f"cluster {record.id}: the scheduler at {record.scheduler_address} did not "
                    f"accept a stop request ({exc})"
                ) from exc
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self._path(record.id).exists() and not _port_open(record.scheduler_address):
                return record
            if not _process_alive(record.owner_pid, record.owner_create_time):
                break
            time.sleep(0.1)
        if _port_open(record.scheduler_address) and _process_alive(
            record.owner_pid, record.owner_create_time
        ):
            raise WorkbenchError(
                f"cluster {record.id} did not stop within {timeout:.0f}s; its owner process "
                f"{record.owner_pid} is still running"
            )
        self._cleanup_stale(record)
        return record

    def scale(
        self, cluster_id: str, n: int, jobs: bool = False, timeout: float = 10.0
    ) -> ClusterRecord:
        """Ask the cluster for ``n`` workers (``n`` batch jobs with ``jobs=True``), through
        its backend or its owner process."""
        record = self.get(cluster_id)
        kwargs = {"jobs": n} if jobs else {"n": n}
        if jobs and record.extra.get("cluster_name"):
            raise WorkbenchError(
                f"cluster {record.id} ({record.backend}) runs no batch jobs: scale it in workers"
            )
        if _control(record, "scale", timeout=timeout, **kwargs) is NotImplemented:
            try:
                scheduler_call(
                    record.scheduler_address, "workbench_scale", timeout=timeout, **kwargs
                )
            except OSError as exc:
                raise WorkbenchError(
                    f"cluster {record.id} is not reachable at {record.scheduler_address}: {exc}"
                ) from exc
        return record

    def _cleanup_stale(self, record: ClusterRecord) -> None:
        from .registry import get_backend_class

        self._reap(record)
        try:
            backend = get_backend_class(record.backend)
        except WorkbenchError:
            backend = None  # a plugin backend that is gone: nothing more can be released
        if backend is not None:
            try:
                backend.cleanup_orphans(record)
            except WorkbenchError as exc:
                # Keep the record: it is the only trace of what is still running (batch jobs).
                raise WorkbenchError(
                    f"cluster {record.id} ({record.backend}): could not release what its dead "
                    f"owner left: {exc} The record is kept; fix this and run "
                    "'workbench clusters cleanup' again."
                ) from exc
        self.remove(record.id)

    def cleanup(self) -> builtins.list[ClusterRecord]:
        """Remove every stale record (dead owner), reaping what it left. Returns them.

        A record whose leftovers cannot be released is kept, and after the others are
        cleaned a WorkbenchError says why.
        """
        cleaned = []
        errors = []
        for record in self.list():
            if self.status(record) == "stale":
                try:
                    self._cleanup_stale(record)
                except WorkbenchError as exc:
                    errors.append(str(exc))
                    continue
                cleaned.append(record)
        if errors:
            done = f"cleaned {len(cleaned)} cluster(s); " if cleaned else ""
            raise WorkbenchError(done + "\n".join(errors))
        return cleaned
