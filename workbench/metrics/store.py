"""The process-wide metrics store: one collector per cluster, shared by every viewer.

A :class:`MetricsStore` samples this machine (the notebook host) and, when it has a
scheduler address, installs :class:`~workbench.metrics.plugin.MetricsWorkerPlugin`
on the cluster and pulls the workers' new rows through the scheduler once per
``interval``. Each source (a worker, this host) gets a mirror ring; cluster figures
from the scheduler get their own. Dashboards in any number of browser tabs, the
notebook view and the Prometheus endpoint all read the same store: nothing is
sampled per viewer.

    store = get_store("tcp://10.0.0.5:8786")      # started on first use, then shared
    store.sources                                  # {source id: Source}
    store.cluster.latest()                         # newest cluster figures
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..errors import MetricsError
from .base import MetricSpec, SamplerContext, create_samplers, define, metric_spec
from .host import hostname
from .ring import SampleRing
from .tiered_ring import TieredRing

logger = logging.getLogger(__name__)

HOST_SOURCE = "host"


@dataclass
class Source:
    """One place samples come from: a Dask worker or this (the notebook's) host."""

    id: str
    kind: str  # "worker" or "host"
    ring: SampleRing | TieredRing
    host: str = ""
    name: str = ""
    info: dict[str, Any] = field(default_factory=dict)
    last_pull: float = 0.0
    gone: bool = False

    @property
    def label(self) -> str:
        if self.kind == "host":
            return f"notebook host {self.host}" if self.host else "notebook host"
        return f"worker {self.name}" if self.name not in ("", self.id) else self.id

    @property
    def unavailable(self) -> dict[str, str]:
        out = self.info.get("unavailable") or {}
        return dict(out) if isinstance(out, dict) else {}


class MetricsStore:
    """Samples the host, pulls the workers, and keeps every series in bounded rings.

    ``interval``: seconds between collections. ``capacity``: rows' worth of time kept per
    source (3600 = an hour at 1 Hz); the workers' and the cluster's rows are mirrored in
    :class:`~workbench.metrics.tiered_ring.TieredRing` (the newest 5 minutes as sampled,
    older rows merged). ``worker_interval``/``worker_capacity`` configure the
    worker plugin when this store installs it. ``sample_host``: also sample this
    process's machine. The collector runs on its own thread with its own event loop.
    """

    def __init__(
        self,
        scheduler_address: str | None = None,
        *,
        interval: float = 1.0,
        capacity: int = 3600,
        sample_host: bool = True,
        host_samplers: list[str] | None = None,
        worker_interval: float | None = None,
        worker_capacity: int = 600,
        worker_samplers: list[str] | None = None,
        sampler_options: dict[str, Any] | None = None,
        connect_timeout: float = 10.0,
    ) -> None:
        if interval <= 0:
            raise ValueError(f"interval must be positive, not {interval}")
        self.scheduler_address = scheduler_address
        self.interval = interval
        self.capacity = capacity
        self.sample_host = sample_host
        self.host_samplers = host_samplers
        self.worker_interval = worker_interval or interval
        self.worker_capacity = worker_capacity
        self.worker_samplers = worker_samplers
        self.sampler_options = dict(sampler_options or {})
        self.connect_timeout = connect_timeout
        self.consumer = f"store-{uuid.uuid4().hex[:8]}"
        self.sources: dict[str, Source] = {}
        self.cluster: SampleRing | TieredRing = TieredRing(capacity)
        #: Increases after every collection; views re-render only when it moved.
        self.version = 0
        #: Why the last collection from the cluster failed, or None.
        self.error: str | None = None
        #: Bytes of worker deltas received in the last collection (msgpack-encoded size).
        self.last_pull_bytes = 0
        self.plugin_error: str | None = None
        #: Which sampler emits each metric (from the sources' info), to explain gaps.
        self.metric_samplers: dict[str, str] = {}
        self._lock = threading.RLock()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._started = threading.Event()
        self._start_error: BaseException | None = None
        self._listeners: list[Callable[[MetricsStore], None]] = []
        self._reset: set[str] = set()
        self._host_loop: Any = None
        self._closed = False
        self._scheduler_handler = True

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> MetricsStore:
        """Start collecting. With a scheduler, raise MetricsError if it cannot be reached."""
        with self._lock:
            if self._thread is not None:
                return self
            if self._closed:
                raise MetricsError("this metrics store is closed; get a new one with get_store()")
            if self.sample_host:
                from .plugin import SamplingLoop

                context = SamplerContext(role="host", options=self.sampler_options)
                samplers = create_samplers(self.host_samplers, context)
                self._host_loop = SamplingLoop(samplers, self.capacity)
                source = Source(
                    HOST_SOURCE, "host", self._host_loop.ring, host=hostname(), name="host"
                )
                source.info = self._host_loop.info()
                self._merge_specs(source.info)
                self.sources[HOST_SOURCE] = source
            self._thread = threading.Thread(
                target=self._thread_main, name="workbench-metrics-collector", daemon=True
            )
            self._thread.start()
        self._started.wait(self.connect_timeout + 30)
        if self._start_error is not None:
            error = self._start_error
            self.close()
            raise error
        return self

    def close(self) -> None:
        """Stop collecting (the worker plugin stays installed for other viewers)."""
        with self._lock:
            self._closed = True
            loop, stop, thread = self._loop, self._stop, self._thread
        if loop is not None and stop is not None:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(stop.set)
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=15)
        if self._host_loop is not None:
            self._host_loop.close()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive() and not self._closed

    def subscribe(self, callback: Callable[[MetricsStore], None]) -> Callable[[], None]:
        """Call ``callback(store)`` after each collection (from the collector thread)."""
        with self._lock:
            self._listeners.append(callback)

        def unsubscribe() -> None:
            with self._lock, contextlib.suppress(ValueError):
                self._listeners.remove(callback)

        return unsubscribe

    def wait_for(self, predicate: Callable[[MetricsStore], bool], timeout: float = 30.0) -> None:
        """Block until ``predicate(store)`` holds after a collection; MetricsError on timeout."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(Exception):
                if predicate(self):
                    return
            if not self.running:
                raise MetricsError(f"the metrics collector stopped: {self.error}")
            time.sleep(min(0.1, self.interval))
        raise MetricsError(f"metrics condition not met within {timeout:.0f}s ({self.error})")

    # -- reading -----------------------------------------------------------------------------
    def worker_sources(self) -> list[Source]:
        with self._lock:
            return [s for s in self.sources.values() if s.kind == "worker"]

    def snapshot_sources(self) -> list[Source]:
        with self._lock:
            return list(self.sources.values())

    def gpu_status(self) -> tuple[int, list[str]]:
        """(GPUs seen across all sources, reasons sources gave for seeing none)."""
        uuids: set[str] = set()
        reasons: list[str] = []
        for source in self.snapshot_sources():
            gpus = (source.info.get("samplers") or {}).get("gpu", {}).get("gpus", [])
            uuids.update(g["uuid"] for g in gpus)
            reason = source.unavailable.get("gpu")
            if reason and f"{source.label}: {reason}" not in reasons:
                reasons.append(f"{source.label}: {reason}")
        return len(uuids), reasons

    # -- collecting ----------------------------------------------------------------------------
    def _thread_main(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # surfaced through start() or .error
            logger.debug("metrics collector ended", exc_info=True)
            if not self._started.is_set():
                self._start_error = exc
            self.error = str(exc)
        finally:
            self._started.set()

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        client = None
        if self.scheduler_address:
            client = await self._connect()
        self._started.set()
        try:
            while not self._stop.is_set():
                began = time.monotonic()
                await self._collect(client)
                self.version += 1
                for listener in list(self._listeners):
                    try:
                        listener(self)
                    except Exception:
                        logger.exception("metrics listener failed")
                wait = max(0.0, self.interval - (time.monotonic() - began))
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), wait)
        finally:
            if client is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(client.close(), 10)

    async def _connect(self) -> Any:
        from distributed import Client

        address = str(self.scheduler_address)
        refused = await asyncio.to_thread(_refused, address)
        if refused:
            raise MetricsError(
                f"cannot reach the Dask scheduler at {address}: {refused}. "
                "Is the cluster running? 'workbench clusters list' shows the running ones."
            )
        from ..clusters.record_store import security_for_address

        try:
            client = await asyncio.wait_for(
                Client(
                    address,
                    security=security_for_address(address),
                    asynchronous=True,
                    set_as_default=False,
                    timeout=self.connect_timeout,
                    name="workbench-metrics",
                ),
                self.connect_timeout + 5,
            )
        except (OSError, asyncio.TimeoutError, ValueError) as exc:
            raise MetricsError(
                f"cannot reach the Dask scheduler at {address} ({type(exc).__name__}: {exc}). "
                "Is the cluster running? 'workbench clusters list' shows the running ones."
            ) from exc
        await self._install_plugin(client)
        return client

    async def _install_plugin(self, client: Any) -> None:
        from .plugin import PLUGIN_NAME, ClusterStatePlugin, MetricsWorkerPlugin, installed_plugins

        try:
            present = await client.run_on_scheduler(installed_plugins)
        except Exception:
            present = {"worker": False, "scheduler": False}
        if not present.get("scheduler"):
            try:
                await client.register_plugin(ClusterStatePlugin(), name=PLUGIN_NAME)
            except Exception as exc:  # cluster figures then come from Scheduler.identity
                logger.info("metrics: no scheduler plugin (%s)", exc)
                self._scheduler_handler = False
        if present.get("worker"):
            return  # another viewer installed it; replacing it would reset every ring
        plugin = MetricsWorkerPlugin(
            interval=self.worker_interval,
            capacity=self.worker_capacity,
            samplers=self.worker_samplers,
            options=self.sampler_options,
        )
        try:
            await client.register_plugin(plugin, name=PLUGIN_NAME)
        except Exception as exc:
            self.plugin_error = (
                f"could not install the metrics plugin on the workers ({exc}); "
                "install workbench in the workers' environment to see per-worker metrics"
            )
            logger.warning(self.plugin_error)

    async def _collect(self, client: Any) -> None:
        now = time.time()
        if self._host_loop is not None:
            await asyncio.to_thread(self._host_loop.sample_all, now)
        if client is None:
            return
        try:
            await asyncio.wait_for(
                asyncio.gather(self._pull_workers(client), self._pull_cluster(client)),
                max(5.0, 3 * self.interval),
            )
            self.error = None
        except Exception as exc:
            self.error = f"cluster at {self.scheduler_address} did not answer: {exc!r}"
            logger.debug("metrics collection failed", exc_info=True)

    async def _pull_workers(self, client: Any) -> None:
        from .plugin import HANDLER

        reset = sorted(self._reset)
        self._reset.clear()
        replies = await client.scheduler.broadcast(
            msg={"op": HANDLER, "consumer": self.consumer, "reset": reset},
            on_error="ignore",
        )
        self.ingest(replies, measure=True)

    def ingest(self, replies: dict[str, Any], measure: bool = False) -> None:
        """Mirror the workers' deltas (``{worker address: delta}``, as their plugin
        answers); workers missing from ``replies`` are marked gone. ``measure``: record
        the msgpack size of the deltas in ``last_pull_bytes``."""
        import msgpack

        size = 0
        now = time.time()
        with self._lock:
            seen = set()
            for address, delta in replies.items():
                if not isinstance(delta, dict) or "epoch" not in delta:
                    continue
                seen.add(address)
                if measure:
                    with contextlib.suppress(Exception):
                        size += len(msgpack.packb(delta, use_bin_type=True))
                source = self.sources.get(address)
                if source is None:
                    source = self.sources[address] = Source(
                        address, "worker", TieredRing(self.capacity)
                    )
                if "info" in delta:
                    source.info = delta["info"]
                    source.host = str(source.info.get("host", ""))
                    source.name = str(source.info.get("name", address))
                    self._merge_specs(source.info)
                if not source.ring.apply(delta):
                    self._reset.add(address)
                source.last_pull = now
                source.gone = False
            for source in self.sources.values():
                if source.kind == "worker" and source.id not in seen:
                    source.gone = True
        self.last_pull_bytes = size

    async def _pull_cluster(self, client: Any) -> None:
        from .dask_state import cluster_state_from_identity
        from .plugin import SCHEDULER_HANDLER

        values = None
        if self._scheduler_handler:
            try:
                values = await getattr(client.scheduler, SCHEDULER_HANDLER)()
            except Exception:
                # No handler (the scheduler cannot import workbench): do not ask again,
                # each unknown request would put a warning in the scheduler's log.
                self._scheduler_handler = False
        if values is None:
            identity = await client.scheduler.identity()
            values = cluster_state_from_identity(identity)
        self.cluster.append(time.time(), values)

    def _merge_specs(self, info: dict[str, Any]) -> None:
        for raw in info.get("specs", ()):
            raw = dict(raw)
            sampler = raw.pop("sampler", None)
            name = raw.get("name", "")
            if sampler:
                self.metric_samplers[name] = str(sampler)
            if metric_spec(name) is None:
                with contextlib.suppress(Exception):
                    define(MetricSpec(**raw))

    def why_missing(self, metric: str) -> list[str]:
        """Why sources report no values of ``metric``: their sampler's reasons."""
        sampler = self.metric_samplers.get(metric)
        out: list[str] = []
        if sampler is None:
            return out
        for source in self.snapshot_sources():
            reason = source.unavailable.get(sampler)
            if not reason:
                details = (source.info.get("samplers") or {}).get(sampler) or {}
                reason = (details.get("unsupported") or {}).get(metric)
            if reason and reason not in out:
                out.append(reason)
        return out


def _refused(address: str, timeout: float = 3.0) -> str | None:
    """Why a TCP scheduler address surely cannot be reached (fast), else None."""
    import socket
    from urllib.parse import urlparse

    parsed = urlparse(address if "://" in address else f"tcp://{address}")
    if parsed.scheme not in ("tcp", "tls"):
        return None  # ucx, inproc, ...: let Dask try
    if not parsed.port:
        return f"the address has no port (expected e.g. tcp://{parsed.hostname or 'host'}:8786)"
    try:
        with socket.create_connection((parsed.hostname or "127.0.0.1", parsed.port), timeout):
            return None
    except socket.gaierror as exc:
        return f"unknown host {parsed.hostname!r} ({exc.strerror})"
    except ConnectionRefusedError:
        return f"nothing listens on port {parsed.port} of {parsed.hostname}"
    except OSError:
        return None  # slow or filtered: let Dask try within its timeout


# -- the process-wide registry ----------------------------------------------------------------
_stores: dict[str, MetricsStore] = {}
_stores_lock = threading.Lock()


def get_store(scheduler_address: str | None = None, **options: Any) -> MetricsStore:
    """The running store for ``scheduler_address`` (``None``: this host only), started on
    first use and shared by every caller in this process. ``options`` apply only when the
    store is created."""
    key = scheduler_address or "<host>"
    with _stores_lock:
        store = _stores.get(key)
        if store is not None and store.running:
            return store
        store = MetricsStore(scheduler_address, **options)
        _stores[key] = store
    try:
        return store.start()
    except BaseException:
        with _stores_lock:
            if _stores.get(key) is store:
                del _stores[key]
        raise


def existing_store(scheduler_address: str | None = None) -> MetricsStore | None:
    """The running store for ``scheduler_address`` if there is one (nothing is started)."""
    with _stores_lock:
        store = _stores.get(scheduler_address or "<host>")
    return store if store is not None and store.running else None


def close_store(scheduler_address: str | None = None) -> None:
    """Stop and forget the store for ``scheduler_address``, if there is one."""
    with _stores_lock:
        store = _stores.pop(scheduler_address or "<host>", None)
    if store is not None:
        store.close()


def close_all() -> None:
    with _stores_lock:
        stores = list(_stores.values())
        _stores.clear()
    for store in stores:
        store.close()
