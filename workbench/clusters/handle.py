"""``workbench.launch`` and the handle it returns."""

from __future__ import annotations

import asyncio
import contextlib
import html
import logging
import os
import sys
import threading
import time
import uuid
import warnings
import weakref
from typing import TYPE_CHECKING, Any, ClassVar

import psutil

from ..errors import (
    ClusterUnreachableError,
    SharedHostRiskWarning,
    WorkbenchError,
    WorkersTimeoutError,
)
from ..host_sharing import shared_host_warnings
from . import lifecycle
from .backend import Backend, WaitState
from .backend_registry import get_backend_class
from .cost import CostEstimate, CostMeter
from .dashboard_tls import browser_link
from .profiles import Profile, get_profile
from .record import ClusterRecord
from .record_store import RecordStore

if TYPE_CHECKING:
    from distributed import Client
    from distributed.deploy.adaptive import Adaptive
    from distributed.deploy.cluster import Cluster

logger = logging.getLogger(__name__)


class ClusterHandle:
    """A running cluster launched from a profile.

    Use it as a context manager, or call :meth:`close`. Its ``client`` is created on
    first use. Other processes see it in ``workbench clusters list`` until it is closed.
    Nothing is left running when the kernel exits, is restarted or is killed (see
    :mod:`workbench.clusters.lifecycle`); with the profile option ``idle_timeout`` it
    closes itself after that many seconds without tasks.
    """

    #: Seconds between two samples of the worker count for :meth:`cost`.
    cost_interval: ClassVar[float] = 1.0

    def __init__(
        self,
        cluster: Cluster,
        backend: Backend,
        profile: Profile,
        overrides: dict[str, Any] | None = None,
        store: RecordStore | None = None,
        detached: bool = False,
    ) -> None:
        self.id = uuid.uuid4().hex[:10]
        self.cluster = cluster
        self._backend = backend
        self.profile = profile.name
        self.overrides = dict(overrides or {})
        self.store = store or RecordStore()
        self._client: Client | None = None
        self._closed = False
        self._worker_gpus: tuple[tuple[str, ...], list[str]] | None = None
        #: Why the scheduler is not answering (None while it answers).
        self._lost_reason: str | None = None
        #: Why the cluster was closed other than by close() (idle, stopped elsewhere).
        self.end_reason: str | None = None
        self._lock = threading.RLock()
        self._cost = CostMeter(
            self.n_workers,
            getattr(backend.options, "price_per_worker_hour", None),
            interval=self.cost_interval,
        ).start()
        self._install_control_handlers()
        me = psutil.Process()
        self.record = ClusterRecord(
            id=self.id,
            profile=self.profile,
            backend=backend.name,
            scheduler_address=self.scheduler_address,
            dashboard_link=self.dashboard_link,
            owner_pid=me.pid,
            owner_create_time=me.create_time(),
            gpus=self._backend.gpus,  # workers' own GPUs are added once they connect
            worker_pids=backend.worker_processes(cluster),
            extra=backend.record_extra(cluster),
            detached=detached,
            log_file=os.environ.get("WORKBENCH_DETACHED_LOG"),
            idle_timeout=self.idle_timeout,
            max_workers=self.max_workers,
        )
        self.store.add(self.record)
        lifecycle.register(self)
        self.record.watchdog = lifecycle.start_watchdog(self.record, self.store)
        if self.record.watchdog is not None:
            self.store.update(self.id, watchdog=self.record.watchdog)
        self._monitor = lifecycle.Monitor(self, self.store).start()

    # -- what the cluster is ---------------------------------------------------------
    @property
    def backend(self) -> str:
        """Name of the backend that started it (``local``, ``slurm``, ...)."""
        return self._backend.name

    @property
    def gpus(self) -> list[str]:
        """UUIDs of the GPUs the workers use; empty for a CPU cluster.

        Where the workers run out of this process's sight (dask-gateway, Kubernetes) they are
        asked: NVML on each worker, one round trip per new set of connected workers.
        """
        if not self._backend.gpus_from_workers:
            return self._backend.gpus
        from ..gpus import worker_gpus

        workers = tuple(sorted(self.cluster.scheduler_info.get("workers", {})))
        if self._closed or not workers:
            return []
        if self._worker_gpus is None or self._worker_gpus[0] != workers:
            self._worker_gpus = (workers, worker_gpus(self.client))
        return list(self._worker_gpus[1])

    @property
    def scheduler_address(self) -> str:
        return str(self.cluster.scheduler_address)

    @property
    def dashboard_link(self) -> str | None:
        return self._backend.dashboard_link(self.cluster)

    @property
    def status(self) -> str:
        """``closed``, ``lost`` (the scheduler stopped answering), or the cluster's own."""
        if self._closed:
            return "closed"
        if self._lost_reason:
            return "lost"
        status = getattr(self.cluster, "status", "unknown")  # an enum, or a str (gateway)
        return str(getattr(status, "name", status))

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def idle_timeout(self) -> float | None:
        """Seconds without tasks after which the cluster closes itself (None: never)."""
        return getattr(self._backend.options, "idle_timeout", None) or None

    @property
    def max_workers(self) -> int | None:
        """The most workers scale() and adapt() may ask for (the profile's max_workers)."""
        value = getattr(self._backend.options, "max_workers", None)
        return int(value) if value else None

    def _bound(self, workers: int, what: str) -> None:
        limit = self.max_workers
        if limit is not None and workers > limit:
            raise ValueError(
                f"cluster {self.id}: {what} would be {workers} workers, above the profile's "
                f"max_workers ({limit}); raise max_workers in profile {self.profile!r} to "
                "allow more"
            )

    def _usable(self) -> None:
        """Raise a clear error when the cluster cannot take requests."""
        if self._closed:
            why = f" ({self.end_reason})" if self.end_reason else ""
            raise WorkbenchError(f"cluster {self.id} is closed{why}")
        if self._lost_reason:
            raise ClusterUnreachableError(self._lost_reason)

    @property
    def client(self) -> Client:
        """A ``distributed.Client`` connected to this cluster (created on first use)."""
        with self._lock:
            self._usable()
            if self._client is None:
                self._client = self._backend.get_client(self.cluster)
            return self._client

    def n_workers(self) -> int:
        return len(self.cluster.scheduler_info.get("workers", {}))

    def cost(self) -> CostEstimate:
        """Worker-hours so far and their cost at the profile's ``price_per_worker_hour``.

        Integrated from the actual number of connected workers over time (sampled every
        ``cost_interval`` seconds), so scaling and adaptive scaling are accounted for.
        """
        return self._cost.estimate()

    def connect_code(self) -> str:
        """Python code that connects a client to this cluster from another kernel.

        Credentials appear only as references (``env:NAME``...), resolved where the code runs.
        """
        return self._backend.connect_code(self.record)

    # -- lifecycle ----------------------------------------------------------------------
    def wait_for_workers(
        self, n: int = 1, timeout: float | None = 60, progress: str = "auto"
    ) -> ClusterHandle:
        """Block until ``n`` workers are connected; returns the handle.

        While waiting, a status line shows how many workers are connected and what the
        others wait for (for batch backends, the queue state and PENDING reason) in the
        notebook or terminal (``progress``: "auto", "notebook", "terminal" or "off").
        On timeout, workers that have not started are given up (queued jobs are
        cancelled) and WorkersTimeoutError says what they were waiting for.
        """
        from .progress import WaitDisplay

        display = WaitDisplay(progress)
        start = time.monotonic()
        deadline = None if timeout is None else start + timeout
        state = WaitState()
        next_poll = start + min(0.5, self._backend.wait_poll_interval)
        try:
            while True:
                have = self.n_workers()
                if have >= n:
                    break
                now = time.monotonic()
                if now >= next_poll:
                    state = self._backend.wait_state(self.cluster)
                    next_poll = now + self._backend.wait_poll_interval
                    if state.error:
                        cancelled = self._backend.cancel_pending(self.cluster)
                        note = f" Cancelled: {', '.join(cancelled)}." if cancelled else ""
                        raise WorkersTimeoutError(
                            f"cluster {self.id} ({self.profile}): {have} of {n} workers "
                            f"connected, and waiting longer will not help.{note}\n{state.error}"
                        )
                status = f"; {state.summary}" if state.summary else ""
                display.update(
                    f"workbench {self.id}: {have}/{n} workers after {now - start:.0f}s{status}"
                )
                if deadline is not None and now >= deadline:
                    state = self._backend.wait_state(self.cluster)
                    cancelled = self._backend.cancel_pending(self.cluster)
                    note = (
                        f" Cancelled what had not started: {', '.join(cancelled)}."
                        if cancelled
                        else ""
                    )
                    waiting = f" Still waiting on: {state.summary}." if state.summary else ""
                    raise WorkersTimeoutError(
                        f"cluster {self.id} ({self.profile}): only {have} of {n} workers "
                        f"connected within {timeout:g}s.{waiting}{note} "
                        "Wait longer (timeout=...), or ask for fewer resources."
                    )
                time.sleep(0.1)
        finally:
            have = self.n_workers()
            display.close(
                f"workbench {self.id}: {have}/{n} workers after {time.monotonic() - start:.1f}s"
            )
        # The cluster object learns of a started worker just after the scheduler does.
        spec_deadline = time.monotonic() + 5
        while self._started_workers() < n and time.monotonic() < spec_deadline:
            time.sleep(0.05)
        self._refresh_record()
        return self

    def _started_workers(self) -> int:
        """Workers the cluster object has started (a batch job's group counts each)."""
        started = getattr(self.cluster, "workers", None)
        if not isinstance(started, dict):
            return 1 << 30
        spec = getattr(self.cluster, "worker_spec", {}) or {}
        return sum(len(spec.get(name, {}).get("group") or [name]) for name in started)

    def scale(self, n: int | None = None, *, jobs: int | None = None) -> ClusterHandle:
        """Ask for ``n`` workers, or for ``jobs`` batch jobs (stops adaptive scaling)."""
        if (n is None) == (jobs is None):
            raise ValueError("scale: pass a number of workers, or jobs=N (not both)")
        for value, what in ((n, "workers"), (jobs, "jobs")):
            if value is not None and value < 0:
                raise ValueError(f"cannot scale to {value} {what}")
        per_job = int(getattr(self._backend, "processes", None) or 1)
        self._bound(n if n is not None else (jobs or 0) * per_job, "scale")
        self._usable()
        self._cost.sample()
        adaptive = getattr(self.cluster, "_adaptive", None)  # distributed's Cluster.adapt
        if adaptive is not None:
            adaptive.stop()  # else it would undo this request at its next round
        self._backend.scale(self.cluster, n=n, jobs=jobs)
        self._refresh_record()
        return self

    def job_script(self) -> str | None:
        """The batch script each job of this cluster runs (None for backends without jobs)."""
        return self._backend.job_script(self.cluster)

    def adapt(self, minimum: int = 0, maximum: int | None = None, **kwargs: Any) -> Adaptive:
        """Scale between ``minimum`` and ``maximum`` workers with the load."""
        if maximum is not None and maximum < minimum:
            raise ValueError(f"adapt: maximum ({maximum}) is below minimum ({minimum})")
        self._bound(minimum if maximum is None else maximum, "adapt")
        if maximum is None and self.max_workers is not None:
            maximum = self.max_workers  # adaptive scaling stays within the bound too
        self._usable()
        kw: dict[str, Any] = {"minimum": minimum, **kwargs}
        if maximum is not None:
            kw["maximum"] = maximum
        return self.cluster.adapt(**kw)

    def dashboard(self, **settings: Any) -> Any:
        """Live GPU / Storage / Network / Cluster / Energy dashboards of this cluster.

        Returns a Panel layout that updates itself (display it in a notebook cell).
        ``settings``: ``refresh`` (s), ``window`` (s of history), ``mode``
        (``"Aggregate"`` or ``"Per worker / device"``), ``interval`` (s between
        samples). Every dashboard of this cluster in this process shares one sampler.
        Needs the ``dashboards`` extra.
        """
        if self._closed:
            raise WorkbenchError(f"cluster {self.id} is closed")
        from ..dashboards import dashboard

        return dashboard(self, **settings)

    def close(self, timeout: float = 30) -> None:
        """Close the client and the cluster and forget the cluster's record. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._monitor.stop()
        store = sys.modules.get("workbench.metrics.store")
        if store is not None:  # stop collecting before the scheduler goes away
            with contextlib.suppress(Exception):
                store.close_store(self.scheduler_address)
        try:
            if self._client is not None:
                with contextlib.suppress(Exception):
                    self._client.close()
            self._cost.stop()
            self._backend.close_cluster(self.cluster, timeout=timeout)
        finally:
            self._cost.stop()
            self.store.remove(self.id)
            lifecycle.unregister(self)

    def abort(self) -> None:
        """Release what the cluster holds at once (cancel queued jobs, stop a gateway
        cluster): the first step when the process is shutting down. close() follows."""
        if not self._closed:
            self._backend.abort(self.cluster)

    # -- what the monitor reports (lifecycle.Monitor) ------------------------------------
    def _lost(self, exc: BaseException) -> None:
        if self._lost_reason is None:
            self._lost_reason = (
                f"cluster {self.id}: its scheduler at {self.scheduler_address} has not "
                f"answered for {lifecycle.LOST_AFTER_S:g}s ({type(exc).__name__}: {exc}); it "
                "was stopped or killed. close() releases what is left."
            )
            logger.warning(self._lost_reason)

    def _found(self) -> None:
        if self._lost_reason is not None:
            logger.info("cluster %s: its scheduler answers again", self.id)
            self._lost_reason = None

    def _stopped_elsewhere(self) -> None:
        self.end_reason = "stopped from another process"
        logger.info("cluster %s was stopped from another process; closing its handle", self.id)
        with contextlib.suppress(Exception):
            self.close()

    def _idle_timeout_reached(self, idle_for: float) -> None:
        self.end_reason = f"closed after {idle_for:.0f}s without tasks (idle_timeout)"
        logger.info("cluster %s: %s", self.id, self.end_reason)
        self.close()

    def __enter__(self) -> ClusterHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _refresh_record(self) -> None:
        with contextlib.suppress(Exception):
            self.store.update(
                self.id,
                gpus=self.gpus,
                worker_pids=self._backend.worker_processes(self.cluster),
                extra=self._backend.record_extra(self.cluster),
            )

    # -- requests from other processes (CLI, JupyterLab server) ---------------------------
    def _install_control_handlers(self) -> None:
        scheduler = getattr(self.cluster, "scheduler", None)
        handlers = getattr(scheduler, "handlers", None)
        if not isinstance(handlers, dict):
            return  # scheduler in another process: only this process can control it
        ref = weakref.ref(self)

        def workbench_close() -> str:
            handle = ref()
            if handle is not None:
                threading.Thread(target=handle.close, name="workbench-close", daemon=True).start()
            return "closing"

        async def workbench_scale(n: int | None = None, jobs: int | None = None) -> str:
            handle = ref()
            if handle is not None:
                if jobs is not None:
                    await asyncio.to_thread(handle.scale, jobs=int(jobs))
                else:
                    await asyncio.to_thread(handle.scale, int(n or 0))
            return "ok"

        async def workbench_adapt(minimum: int = 0, maximum: int | None = None) -> str:
            handle = ref()
            if handle is not None:
                await asyncio.to_thread(handle.adapt, int(minimum), maximum)
            return "ok"

        def workbench_info() -> dict[str, Any]:
            handle = ref()
            return (
                {}
                if handle is None
                else {
                    "id": handle.id,
                    "profile": handle.profile,
                    "backend": handle.backend,
                    "gpus": handle.gpus,
                    "cost": handle.cost().to_dict(),
                }
            )

        handlers.update(
            workbench_close=workbench_close,
            workbench_scale=workbench_scale,
            workbench_adapt=workbench_adapt,
            workbench_info=workbench_info,
        )

    # -- display --------------------------------------------------------------------------
    def __repr__(self) -> str:
        gpus = f"{len(self.gpus)} GPU(s)" if self.gpus else "CPU"
        return (
            f"<ClusterHandle {self.id} profile={self.profile!r} backend={self.backend!r} "
            f"{gpus} workers={self.n_workers()} status={self.status}>"
        )

    def _repr_html_(self) -> str:
        info = self._backend.describe()
        rows = [
            ("Profile", self.profile),
            (
                "Backend",
                f"{self.backend} ({info.get('kind', '')})" if info.get("kind") else self.backend,
            ),
            ("GPUs", ", ".join(info.get("gpu_names") or []) or "none (CPU workers)"),
            ("Workers", str(self.n_workers())),
            ("Scheduler", self.scheduler_address),
            ("Status", self.status),
        ]
        if info.get("cpu_fallback_reason"):
            rows.append(("CPU fallback", str(info["cpu_fallback_reason"])))
        rows += [(str(k), str(v)) for k, v in info.get("details") or []]
        rows.append(("Cost so far", str(self.cost())))
        link = self.dashboard_link
        if link and self._backend.tls_paths and link.startswith("https://"):
            # mutual TLS: the browser opens it through the Jupyter server's route
            shown = browser_link(self.id)
            dash = (
                f'<a href="{html.escape(shown)}" target="_blank">{html.escape(shown)}</a> '
                "(through JupyterLab: only holders of the cluster's certificate reach "
                f"{html.escape(link)})"
            )
        elif link:
            dash = f'<a href="{html.escape(link)}" target="_blank">{html.escape(link)}</a>'
        else:
            dash = "not available"
        body = "".join(
            f"<tr><th style='text-align:left'>{html.escape(k)}</th>"
            f"<td style='text-align:left'>{html.escape(v)}</td></tr>"
            for k, v in rows
        )
        return (
            "<div class='workbench-cluster'>"
            f"<strong>workbench cluster {html.escape(self.id)}</strong>"
            f"<table>{body}<tr><th style='text-align:left'>Dashboard</th>"
            f"<td style='text-align:left'>{dash}</td></tr></table></div>"
        )


def launch(
    profile: str = "local",
    *,
    wait: bool | int = False,
    timeout: float = 120,
    store: RecordStore | None = None,
    detached: bool = False,
    progress: str = "auto",
    **overrides: Any,
) -> ClusterHandle:
    """Start a cluster from a named profile; keyword arguments override its options.

    ``wait=True`` (or a number of workers) blocks until the workers are connected,
    showing what they wait for; if they do not connect within ``timeout`` seconds the
    cluster is closed and WorkersTimeoutError says why. ``progress`` is where that wait
    is shown: "auto" (notebook or terminal), "notebook", "terminal" or "off".
    """
    prof = get_profile(profile)
    options = prof.resolve(**overrides)
    for risk in shared_host_warnings(options, prof.name):
        warnings.warn(risk, SharedHostRiskWarning, stacklevel=2)
    backend = get_backend_class(prof.backend)(options, profile=prof.name)
    backend.check()
    start = time.perf_counter()
    cluster = backend.create_cluster()
    try:
        handle = ClusterHandle(cluster, backend, prof, overrides, store=store, detached=detached)
    except BaseException:
        cluster.close()
        backend.forget_security()
        raise
    logger.info("cluster %s (%s) started in %.1fs", handle.id, profile, time.perf_counter() - start)
    if wait:
        # SpecCluster's plan counts workers (a batch job may run several).
        planned = getattr(cluster, "plan", None) or getattr(cluster, "worker_spec", None) or ()
        n = wait if isinstance(wait, int) and not isinstance(wait, bool) else max(1, len(planned))
        try:
            handle.wait_for_workers(n, timeout=timeout, progress=progress)
        except BaseException:
            handle.close()  # nothing half-started is left behind (queued jobs included)
            raise
    return handle
