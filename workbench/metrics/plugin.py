"""The Dask worker plugin that samples on every worker.

Each worker runs the samplers on a periodic callback of its own event loop and keeps
the samples in a bounded :class:`~workbench.metrics.ring.SampleRing`. Blocking
samplers (NVML, /proc reads) run on one helper thread so the worker's event loop is
never held up by a slow driver call; samplers of the worker's own state run on the
loop. Viewers pull compact deltas through the scheduler with the worker handler
``workbench_metrics`` (see :class:`~workbench.metrics.store.MetricsStore`).

The plugin measures its own cost (thread CPU time per sample) and reports it as
``workbench_sampler_cpu_seconds_total``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from distributed.diagnostics.plugin import SchedulerPlugin, WorkerPlugin

from .base import Sampler, SamplerContext, create_samplers
from .host import process_info
from .ring import SampleRing

logger = logging.getLogger(__name__)

PLUGIN_NAME = "workbench-metrics"
HANDLER = "workbench_metrics"
SCHEDULER_HANDLER = "workbench_cluster_state"


class SamplingLoop:
    """Samplers + ring + self-accounting; shared by the worker plugin and the host sampler."""

    def __init__(self, samplers: list[Sampler], capacity: int) -> None:
        self.samplers = samplers
        self.ring = SampleRing(capacity)
        self.cpu_seconds = 0.0
        self.samples = 0

    def sample_blocking(self, now: float) -> dict[str, float]:
        return self._sample([s for s in self.samplers if s.blocking], now)

    def sample_inline(self, now: float) -> dict[str, float]:
        return self._sample([s for s in self.samplers if not s.blocking], now)

    def _sample(self, samplers: list[Sampler], now: float) -> dict[str, float]:
        start = time.thread_time()
        out: dict[str, float] = {}
        for sampler in samplers:
            if sampler.reason:
                continue
            try:
                out.update(sampler.sample(now))
            except Exception:  # a broken sampler must not stop the others
                logger.exception("workbench metrics: sampler %r failed", sampler.name)
        self.cpu_seconds += time.thread_time() - start
        return out

    def commit(self, now: float, values: dict[str, float]) -> None:
        self.samples += 1
        values["workbench_sampler_cpu_seconds_total"] = self.cpu_seconds
        values["workbench_sampler_samples_total"] = float(self.samples)
        self.ring.append(now, values)

    def sample_all(self, now: float | None = None) -> dict[str, float]:
        """One synchronous sample of every sampler (host process, benchmarks)."""
        now = time.time() if now is None else now
        values = self.sample_blocking(now)
        values.update(self.sample_inline(now))
        self.commit(now, values)
        return values

    def info(self) -> dict[str, Any]:
        """Facts viewers need once: host, why samplers are off, the metric specs."""
        unavailable = {s.name: s.reason for s in self.samplers if s.reason}
        extra: dict[str, Any] = {}
        for s in self.samplers:
            describe = getattr(s, "info", None)
            if callable(describe) and not s.reason:
                extra[s.name] = describe()
        specs = [
            {**dataclasses.asdict(m), "sampler": s.name} for s in self.samplers for m in s.metrics
        ]
        return {**process_info(), "unavailable": unavailable, "samplers": extra, "specs": specs}

    def close(self) -> None:
        for s in self.samplers:
            with contextlib.suppress(Exception):
                s.close()


class MetricsWorkerPlugin(WorkerPlugin):
    """Sample every ``interval`` seconds on each worker into a ring of ``capacity`` rows.

    ``samplers`` names registered samplers (default: every sampler registered for the
    ``worker`` role). ``options`` reach the samplers through their context.
    """

    name = PLUGIN_NAME

    def __init__(
        self,
        interval: float = 1.0,
        capacity: int = 600,
        samplers: list[str] | None = None,
        options: dict[str, Any] | None = None,
    ) -> None:
        if interval <= 0:
            raise ValueError(f"sampling interval must be positive, not {interval}")
        self.interval = interval
        self.capacity = capacity
        self.sampler_names = samplers
        self.options = dict(options or {})
        self.loop: SamplingLoop | None = None
        self._callback: Any = None
        self._executor: ThreadPoolExecutor | None = None
        self._busy = False
        self._worker: Any = None

    def setup(self, worker: Any) -> None:
        from tornado.ioloop import PeriodicCallback

        self._worker = worker
        context = SamplerContext(role="worker", worker=worker, options=self.options)
        self.loop = SamplingLoop(create_samplers(self.sampler_names, context), self.capacity)
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="workbench-metrics")
        worker.handlers[HANDLER] = self.pull
        self._callback = PeriodicCallback(self.tick, self.interval * 1000)
        worker.periodic_callbacks[PLUGIN_NAME] = self._callback
        self._callback.start()

    async def tick(self) -> None:
        loop = self.loop
        if loop is None or self._busy or self._executor is None:
            return  # the previous sample is still running (a hung driver call)
        self._busy = True
        try:
            now = time.time()
            values = await asyncio.get_running_loop().run_in_executor(
                self._executor, loop.sample_blocking, now
            )
            values.update(loop.sample_inline(now))
            loop.commit(now, values)
        finally:
            self._busy = False

    def pull(self, consumer: str = "", reset: Any = None) -> dict[str, Any]:
        """Worker handler: the rows ``consumer`` has not had (everything when reset)."""
        if self.loop is None:
            return {}
        mine = bool(reset) and (reset is True or self._worker.address in reset)
        delta = self.loop.ring.delta_for(consumer, reset=mine)
        if delta["key_offset"] == 0 or delta["keys"]:
            # first contact, or new series appeared: samplers may know more about themselves
            delta["info"] = {
                **self.loop.info(),
                "name": str(self._worker.name),
                "address": self._worker.address,
            }
        return delta

    def teardown(self, worker: Any) -> None:
        if self._callback is not None:
            self._callback.stop()
            worker.periodic_callbacks.pop(PLUGIN_NAME, None)
        if worker.handlers.get(HANDLER) == self.pull:
            del worker.handlers[HANDLER]
        if self._executor is not None:
            self._executor.shutdown(wait=False)
            self._executor = None
        if self.loop is not None:
            self.loop.close()
            self.loop = None


class ClusterStatePlugin(SchedulerPlugin):
    """Adds the scheduler handler ``workbench_cluster_state``: cluster figures on request.

    A handler, unlike ``run_on_scheduler``, leaves no line in the scheduler's log per call.
    """

    name = PLUGIN_NAME

    def __init__(self) -> None:
        self._scheduler: Any = None

    async def start(self, scheduler: Any) -> None:
        from .dask_state import cluster_state

        self._scheduler = scheduler

        def handler() -> dict[str, float]:
            return cluster_state(scheduler)

        scheduler.handlers[SCHEDULER_HANDLER] = handler

    async def close(self) -> None:
        if self._scheduler is not None:
            self._scheduler.handlers.pop(SCHEDULER_HANDLER, None)


def installed_plugins(dask_scheduler: Any, name: str = PLUGIN_NAME) -> dict[str, bool]:
    """Which workbench metrics plugins a scheduler has (run through run_on_scheduler)."""
    return {
        "worker": name in getattr(dask_scheduler, "worker_plugins", {}),
        "scheduler": SCHEDULER_HANDLER in getattr(dask_scheduler, "handlers", {}),
    }
