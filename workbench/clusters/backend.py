"""The small interface every cluster backend implements.

A backend is tiny: a pydantic ``Options`` model (what a profile may say, with
defaults) and ``create_cluster`` (turn those options into a running
``distributed.deploy.Cluster``). Heavy dependencies are imported inside
``create_cluster`` so that profiles validate, and ``workbench profiles`` works,
on machines without them.

The second half of the interface serves other processes (the CLI, the JupyterLab
server, a cluster's watchdog) which have only the cluster's
:class:`~workbench.clusters.record.ClusterRecord`: ``remote_close``, ``remote_scale``,
``remote_adapt``, ``remote_info``, ``connect_code`` and ``cleanup_orphans`` are
classmethods on a record. :class:`~workbench.clusters.control.ClusterControl`
dispatches every request through them. Their defaults suit backends whose scheduler
runs in the owner's process (``local``, ``slurm``): the request goes to the owner
through handlers the handle installs on that scheduler, so the owner does the work as
if its own notebook had asked. Backends whose scheduler runs elsewhere (a gateway,
Kubernetes) override them and talk to that service.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import re
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ..errors import (
    BackendError,
    ClusterStateError,
    ClusterUnreachableError,
    MissingDependencyError,
    WorkbenchError,
)
from .comm import port_open, scheduler_call
from .connect import connect_code
from .record import ClusterRecord

if TYPE_CHECKING:
    from distributed import Client
    from distributed.deploy.cluster import Cluster

#: The most workers a cluster may be scaled to unless its profile says otherwise.
DEFAULT_MAX_WORKERS = 64
#: Seconds a scheduler has to answer the owner's idle probe.
IDLE_PROBE_TIMEOUT_S = 3.0


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def no_control_chars(value: Any) -> Any:
    """Reject newlines and other control characters in a value that is not shell by
    design (a partition, a path, an argument): in a job script a newline would start a
    new command. Lists are checked item by item."""
    items = value if isinstance(value, list) else [value]
    for item in items:
        if isinstance(item, str) and _CONTROL.search(item):
            raise ValueError(
                "must not contain newlines or other control characters "
                f"(found {_CONTROL.search(item).group()!r})"  # type: ignore[union-attr]
            )
    return value


def scheduler_facts(
    address: str, connection_args: dict[str, Any], timeout: float, unreachable: str
) -> dict[str, Any]:
    """Workers, threads and memory the scheduler at ``address`` reports (its ``identity``).

    Raises ClusterUnreachableError, ``unreachable`` followed by why, when it does not answer.
    """
    try:
        ident = scheduler_call(
            address, "identity", timeout=timeout, connection_args=connection_args
        )
    except (OSError, asyncio.TimeoutError, ValueError) as exc:
        raise ClusterUnreachableError(f"{unreachable} ({type(exc).__name__}: {exc})") from exc
    return facts_of(ident)


def facts_of(identity: dict[str, Any]) -> dict[str, Any]:
    """Workers, threads and memory from a scheduler's ``identity`` reply."""
    workers = identity.get("workers", {})
    return {
        "workers": len(workers),
        "threads": sum(w.get("nthreads", 0) for w in workers.values()),
        "memory": sum(w.get("memory_limit", 0) or 0 for w in workers.values()),
    }


def owner_error(record: ClusterRecord, op: str, exc: BaseException) -> WorkbenchError:
    """The error for request ``op`` to ``record``'s owner that failed with ``exc``."""
    if isinstance(exc, OSError | asyncio.TimeoutError):
        return ClusterUnreachableError(
            f"cluster {record.id}: its scheduler at {record.scheduler_address} does not answer "
            f"({type(exc).__name__}: {exc}). If its owner (pid {record.owner_pid} on "
            f"{record.hostname}) is busy, try again; stopping the cluster still works."
        )
    what = op.removeprefix("workbench_")  # the scheduler answered with an error
    return ClusterStateError(
        f"cluster {record.id} refused {what}: {exc}. Clusters not started by "
        "workbench accept only stop."
    )


class BackendOptions(BaseModel):
    """Options shared by every backend. Backends subclass this; unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    #: Options a launch from the JupyterLab sidebar (the REST API) may change when the
    #: profile does not say (its ``overridable:`` list): sizes, worker counts, walltime.
    SIDEBAR_OPTIONS: ClassVar[frozenset[str]] = frozenset({"idle_timeout"})
    #: Options only a profile file sets, never the sidebar or REST, whatever the profile
    #: lists: security level, bind addresses, limits, what runs (prologue, python,
    #: pre_import), where to connect and with which credentials. On a shared server the
    #: profile file is the administrator's or the user's own decision; a request is not.
    PROFILE_ONLY: ClassVar[frozenset[str]] = frozenset({"max_workers", "price_per_worker_hour"})

    price_per_worker_hour: float | None = Field(
        None,
        ge=0,
        description="What one worker costs per hour (any currency); the handle then reports "
        "a running cost estimate from the actual worker count over time.",
    )
    max_workers: int = Field(
        DEFAULT_MAX_WORKERS,
        ge=1,
        description="The most workers a launch, scale() and adapt() may ask for, from any "
        "process (a request for more is refused).",
    )
    idle_timeout: float | None = Field(
        None,
        ge=0,
        description="Close the cluster, releasing its workers, jobs or cloud resources, "
        "after this many seconds without tasks (null or 0: never).",
    )

    def launch_workers(self) -> int | None:
        """Workers the launch asks for, where the options say (None: decided at launch,
        e.g. one per GPU). Backends with a worker count override this."""
        return None

    @model_validator(mode="after")
    def _launch_within_max_workers(self) -> BackendOptions:
        n = self.launch_workers()
        if n is not None and n > self.max_workers:
            raise ValueError(
                f"the launch asks for {n} workers, above max_workers ({self.max_workers}): "
                "ask for fewer, or raise max_workers"
            )
        return self


@contextlib.contextmanager
def private_dask_scratch() -> Iterator[None]:
    """Inside, every Dask server this process creates (the scheduler; in-process workers)
    keeps its scratch space in the user's private temporary directory
    (:func:`workbench.private.private_tmp_dir`) instead of the machine's shared
    ``/tmp/dask-scratch-space``."""
    import dask

    from ..private import private_tmp_dir

    with dask.config.set({"temporary-directory": str(private_tmp_dir("dask-scratch"))}):
        yield


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
    #: Modules that set signal handlers when imported: the Jupyter server imports them on
    #: its main thread at start (workbench.server.preload_backend_modules), never first in a
    #: route's thread. tests/test_lab_process.py finds any other module that would need it.
    imports_at_server_start: ClassVar[tuple[str, ...]] = ()
    #: Seconds between two calls of :meth:`wait_state` while waiting for workers.
    wait_poll_interval: ClassVar[float] = 1.0
    #: The workers run where this process cannot see their GPUs: ``handle.gpus`` asks them.
    gpus_from_workers: ClassVar[bool] = False

    def __init__(self, options: BackendOptions, profile: str = "") -> None:
        self.options = options
        self.profile = profile
        #: Paths of this cluster's TLS credential files (set by backends that make them).
        self.tls_paths: dict[str, str] | None = None

    def make_security(self) -> Any:
        """New per-cluster TLS credentials (a ``Security``), or None where the profile says
        ``security: none``. Their paths go into the cluster's record."""
        if getattr(self.options, "security", "none") != "tls":
            return None
        from . import tls

        security, self.tls_paths = tls.create_credentials()
        return security

    def forget_security(self) -> None:
        """Delete this cluster's credential files (it did not start, or it is closed)."""
        from . import tls

        tls.remove_credentials(self.tls_paths)

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

    def dashboard_link(self, cluster: Cluster) -> str | None:
        """Where the cluster's Dask dashboard answers: distributed's link, with the host
        the profile's ``dashboard_address`` binds it to (distributed puts the scheduler's
        host there, which is not where a loopback dashboard listens)."""
        from .comm import dashboard_link_where_it_listens

        try:
            link = str(cluster.dashboard_link) or None
        except Exception:
            return None
        if link and self.tls_paths and link.startswith("http://"):
            # served over mutual TLS (workbench.clusters.dashboard_tls); distributed says
            # https only while its dashboard TLS settings are set, during the launch
            link = "https://" + link.removeprefix("http://")
        return dashboard_link_where_it_listens(
            link, getattr(self.options, "dashboard_address", None)
        )

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

    def get_client(self, cluster: Cluster) -> Client:
        """A ``distributed.Client`` for the cluster (backends with TLS add their security)."""
        from distributed import Client

        return Client(cluster, set_as_default=True)

    def close_cluster(self, cluster: Cluster, timeout: float = 30) -> None:
        """Stop the cluster and release everything it holds."""
        cluster.close(timeout=timeout)

    def abort(self, cluster: Cluster) -> None:
        """Release what the cluster holds at once, before the process exits.

        Called first when a kernel is shut down or terminated, for every open cluster at
        the same time, so that the quickest, most important step (cancelling queued batch
        jobs, stopping a cloud cluster) is done even if the process is killed while the
        clusters then close gracefully. The default does nothing.
        """

    def idle_since(self, cluster: Cluster) -> float | None:
        """When the scheduler last had work (its ``check_idle``); None while it is busy.

        Raises OSError (or asyncio.TimeoutError) when the scheduler does not answer.
        """
        from distributed.utils import sync

        comm: Any = cluster.scheduler_comm

        async def ask() -> Any:
            return await asyncio.wait_for(comm.check_idle(), IDLE_PROBE_TIMEOUT_S)

        loop: Any = cluster.loop
        value = sync(loop, ask)
        return None if value is None else float(value)

    def waiting_for_workers(self, cluster: Cluster) -> bool:
        """Whether workers the cluster asked for have not connected yet (queued jobs,
        starting processes): the idle clock does not run meanwhile."""
        requested = getattr(cluster, "requested", None)
        observed = getattr(cluster, "observed", None)
        if not isinstance(requested, set) or not isinstance(observed, set):
            return False
        return len(requested) > len(observed)

    def record_extra(self, cluster: Cluster) -> dict[str, Any]:
        """Facts to keep in the registry record so cleanup works without the owner."""
        return {}

    def describe(self) -> dict[str, Any]:
        """What the notebook repr and the registry show about this backend.

        Known keys: ``kind``, ``gpu_names``, ``cpu_fallback_reason`` and ``details``
        (more (label, value) rows for the notebook repr).
        """
        return {}

    # -- requests from other processes: the record is all they have ----------------------
    #: Whether clusters of this backend run batch jobs (``scale(jobs=N)``).
    has_jobs: ClassVar[bool] = False

    @classmethod
    def connection_args(cls, record: ClusterRecord) -> dict[str, Any]:
        """Arguments of every connection to the cluster's scheduler from another process
        (``distributed.core.rpc(connection_args=...)``): the cluster's TLS credentials,
        referenced by its record (:mod:`workbench.clusters.tls`); none without TLS."""
        from . import tls

        return tls.connection_args(record)

    @classmethod
    def ask_owner(cls, record: ClusterRecord, op: str, timeout: float, **kwargs: Any) -> Any:
        """Send request ``op`` to the owner through its scheduler's workbench handlers."""
        try:
            return scheduler_call(
                record.scheduler_address,
                op,
                timeout=timeout,
                connection_args=cls.connection_args(record),
                **kwargs,
            )
        except Exception as exc:
            raise owner_error(record, op, exc) from exc

    @classmethod
    def probes_on_shared_loop(cls) -> bool:
        """Whether this backend's :meth:`remote_info` is the default (its scheduler asked
        for ``identity`` over Dask's protocol, with :meth:`connection_args`), so that a
        list of many clusters can probe them all on one event loop."""
        return cls.remote_info.__func__ is Backend.remote_info.__func__  # type: ignore[attr-defined]

    @classmethod
    def remote_info(cls, record: ClusterRecord, timeout: float = 3.0) -> dict[str, Any]:
        """Live facts: workers, threads, memory. Raises ClusterUnreachableError."""
        return scheduler_facts(
            record.scheduler_address,
            cls.connection_args(record),
            timeout,
            f"cluster {record.id}: its scheduler at {record.scheduler_address} does not answer",
        )

    @classmethod
    def remote_close(cls, record: ClusterRecord, timeout: float = 30.0) -> bool:
        """Stop the cluster from another process.

        Returns True when it is stopped already, False when its owner was asked and
        closes it now (the caller waits for the owner to forget the record). The default
        asks the owner; a scheduler without workbench's handlers (a cluster started
        outside workbench) is shut down over Dask's protocol instead.
        """
        try:
            cls.ask_owner(record, "workbench_close", timeout=min(timeout, 10))
        except ClusterStateError as exc:
            if not port_open(record.scheduler_address):
                raise
            try:
                cls.ask_owner(record, "terminate", timeout=10)
            except ClusterStateError:
                raise exc from None
        return False

    @classmethod
    def remote_scale(
        cls,
        record: ClusterRecord,
        n: int | None = None,
        jobs: int | None = None,
        timeout: float = 30.0,
    ) -> None:
        """Ask for ``n`` workers (or ``jobs`` batch jobs) from another process."""
        kwargs = {"jobs": jobs} if jobs is not None else {"n": n}
        cls.ask_owner(record, "workbench_scale", timeout=timeout, **kwargs)

    @classmethod
    def remote_adapt(
        cls,
        record: ClusterRecord,
        minimum: int = 0,
        maximum: int | None = None,
        timeout: float = 30.0,
    ) -> None:
        """Scale between ``minimum`` and ``maximum`` workers with the load, from elsewhere."""
        cls.ask_owner(record, "workbench_adapt", timeout=timeout, minimum=minimum, maximum=maximum)

    @classmethod
    def connect_code(cls, record: ClusterRecord) -> str:
        """Python code another kernel runs to connect a client (never with secret values)."""
        return connect_code(record)

    @classmethod
    def cleanup_orphans(cls, record: ClusterRecord) -> None:
        """Release what a dead owner left behind (e.g. cancel batch jobs named in record.extra).

        Raises WorkbenchError when that cannot be done now; the record is then kept.
        """
