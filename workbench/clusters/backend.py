"""The small interface every cluster backend implements.

A backend is tiny: a pydantic ``Options`` model (what a profile may say, with
defaults) and ``create_cluster`` (turn those options into a running
``distributed.deploy.Cluster``). Heavy dependencies are imported inside
``create_cluster`` so that profiles validate, and ``workbench profiles`` works,
on machines without them.
"""

from __future__ import annotations

import importlib.util
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field

from ..errors import BackendError, MissingDependencyError

if TYPE_CHECKING:
    from distributed import Client
    from distributed.deploy.cluster import Cluster

    from .running import ClusterRecord


class BackendOptions(BaseModel):
    """Options shared by every backend. Backends subclass this; unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    price_per_worker_hour: float | None = Field(
        None,
        ge=0,
        description="What one worker costs per hour (any currency); the handle then reports "
        "a running cost estimate from the actual worker count over time.",
    )


@dataclass
class WaitState:
    """What a cluster's missing workers wait for, as the backend sees it.

    ``summary`` is one line shown while waiting (e.g. the batch queue's state). ``error``
    says why waiting longer is pointless (a job failed before its worker started); the
    handle then stops waiting and raises it.
    """

    summary: str = ""
    error: str | None = None


class Backend(ABC):
    #: Name used in profiles (``backend: local``).
    name: ClassVar[str]
    #: Pydantic model of this backend's profile options.
    Options: ClassVar[type[BackendOptions]] = BackendOptions
    #: Importable modules this backend always needs, mapped to the install hint.
    requires: ClassVar[dict[str, str]] = {}
    #: Seconds between two calls of :meth:`wait_state` while waiting for workers.
    wait_poll_interval: ClassVar[float] = 1.0
    #: The workers run where this process cannot see their GPUs: ``handle.gpus`` asks them.
    gpus_from_workers: ClassVar[bool] = False

    def __init__(self, options: BackendOptions, profile: str = "") -> None:
        self.options = options
        self.profile = profile

    def require(self, modules: dict[str, str] | None = None) -> None:
        """Raise MissingDependencyError with an install hint for each missing module."""
        missing = {
            m: hint
            for m, hint in (self.requires if modules is None else modules).items()
            if importlib.util.find_spec(m) is None
        }
        if missing:
            names = ", ".join(missing)
            hints = sorted(set(missing.values()))
            raise MissingDependencyError(
                f"backend {self.name!r} (profile {self.profile!r}) needs {names}, "
                f"which is not installed. Install it with: {' or '.join(hints)}"
            )

    def check(self) -> None:
        """Validate the options against the real machine or service before starting."""

    @property
    def gpus(self) -> list[str]:
        """Identifiers of the GPUs the cluster's workers use (empty on CPU)."""
        return []

    @abstractmethod
    def create_cluster(self) -> Cluster:
        """Start and return the cluster (a ``distributed.deploy.Cluster``)."""

    def job_script(self, cluster: Cluster | None = None) -> str | None:
        """The batch script each job runs, for backends that submit jobs (else None).

        Without a cluster it is the preview of what would be submitted.
        """
        return None

    def scale(self, cluster: Cluster, n: int | None = None, jobs: int | None = None) -> None:
        """Ask for ``n`` workers, or ``jobs`` batch jobs where the backend has jobs."""
        if jobs is not None:
            raise BackendError(
                f"backend {self.name!r} runs no batch jobs: scale it in workers, e.g. scale(4)"
            )
        cluster.scale(n or 0)

    def wait_state(self, cluster: Cluster) -> WaitState:
        """What workers that have not connected yet are waiting for (queue state)."""
        return WaitState()

    def cancel_pending(self, cluster: Cluster) -> list[str]:
        """Give up on workers that have not started (e.g. cancel queued jobs); say which."""
        return []

    def worker_processes(self, cluster: Cluster) -> list[tuple[int, float]]:
        """(pid, create_time) of local worker processes, so orphans can be reaped."""
        return []

    @classmethod
    def cleanup_orphans(cls, record: ClusterRecord) -> None:
        """Release what a dead owner left behind (e.g. cancel batch jobs named in record.extra)."""

    def get_client(self, cluster: Cluster) -> Client:
        """A ``distributed.Client`` for the cluster (backends with TLS add their security)."""
        from distributed import Client

        return Client(cluster, set_as_default=True)

    def close_cluster(self, cluster: Cluster, timeout: float = 30) -> None:
        """Stop the cluster and release everything it holds."""
        cluster.close(timeout=timeout)

    @classmethod
    def control(cls, record: ClusterRecord, op: str, timeout: float = 10.0, **kwargs: Any) -> Any:
        """Serve ``op`` (``close``, ``scale``, ``adapt``, ``info``) from another process.

        Backends whose scheduler runs elsewhere (a gateway, Kubernetes) answer from the facts
        in ``record.extra``. The default, NotImplemented, sends the request to the owning
        process through the handlers workbench installs on an in-process scheduler.
        """
        return NotImplemented

    @classmethod
    def connect_code(cls, record: ClusterRecord) -> str:
        """Python code another kernel runs to connect a client (never with secret values)."""
        return (
            "from distributed import Client\n\n"
            f"client = Client({record.scheduler_address!r})  # workbench cluster {record.id}\n"
        )

    def record_extra(self, cluster: Cluster) -> dict[str, Any]:
        """Facts to keep in the registry record so cleanup works without the owner."""
        return {}

    def describe(self) -> dict[str, Any]:
        """What the notebook repr and the registry show about this backend.

        Known keys: ``kind``, ``gpu_names``, ``cpu_fallback_reason`` and ``details``
        (more (label, value) rows for the notebook repr).
        """
        return {}
