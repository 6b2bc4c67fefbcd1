"""What workbench remembers about one running cluster: its :class:`ClusterRecord`.

A record holds everything another process needs to find, control and clean up a
cluster without its owner: where the scheduler is, which process owns it (pid and start
time, on which host), the worker processes on that host, and the backend's own facts
(``extra``: batch job ids and name, a gateway cluster's name and auth references, a
DaskCluster's name and namespace). It never holds a secret: credentials appear only as
references (``env:NAME``...).

Records are kept on disk by :class:`~workbench.clusters.record_store.RecordStore` and
acted on by :class:`~workbench.clusters.control.ClusterControl`.
"""

from __future__ import annotations

import copy
import getpass
import socket
import time
from dataclasses import dataclass, field
from typing import Any, Literal

import psutil

#: running: the owner lives and the scheduler answers; stale: the owner is gone (a killed
#: kernel, or another host that stopped refreshing its records); unreachable: the owner
#: lives but the scheduler does not answer.
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
    #: (pid, create_time) of the watchdog that releases the cluster if the owner dies.
    watchdog: tuple[int, float] | None = None
    #: Seconds without tasks after which the owner closes the cluster (None: never).
    idle_timeout: float | None = None
    #: The most workers scale and adapt may ask for (the profile's max_workers).
    max_workers: int | None = None

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ClusterRecord:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        known["worker_pids"] = [tuple(p) for p in known.get("worker_pids", [])]
        if known.get("watchdog") is not None:
            known["watchdog"] = tuple(known["watchdog"])
        return cls(**known)

    def to_dict(self) -> dict[str, Any]:
        """Plain data, a copy (as ``dataclasses.asdict`` makes, without its deep walk of
        every field: a list of many clusters builds one per record)."""
        data = {name: getattr(self, name) for name in self.__dataclass_fields__}
        data["gpus"] = list(self.gpus)
        data["worker_pids"] = [tuple(p) for p in self.worker_pids]
        data["extra"] = copy.deepcopy(self.extra)
        return data

    @property
    def on_this_host(self) -> bool:
        """Whether the owner runs on this machine (its pid can be checked here)."""
        return self.hostname == socket.gethostname()

    def owner_alive(self) -> bool:
        """Whether the owning process still runs (only answerable on its own host)."""
        return process_alive(self.owner_pid, self.owner_create_time)


def process_alive(pid: int, create_time: float) -> bool:
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
