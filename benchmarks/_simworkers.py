"""Simulated Dask workers feeding the real metrics store at 1 Hz (for the dashboard
benchmarks): each worker is a real :class:`~workbench.metrics.ring.SampleRing` producer
with the series a real CPU worker reports (this machine's host, process, disk and
network samplers, taken once, plus the Dask worker figures), each on its own host; every
tick appends one row per worker and the store mirrors the deltas through
:meth:`MetricsStore.ingest`, the same code that mirrors what the scheduler's broadcast
returns from real workers. The cluster figures go to the store's cluster ring. No GPU
series (this machine has none).

The store is never started (no collector thread, no scheduler): the benchmark drives its
ticks so that each one can be timed.
"""

from __future__ import annotations

import random
import threading
import time
from typing import Any

from workbench.metrics import SamplerContext, SamplingLoop, create_samplers, known_samplers
from workbench.metrics.ring import SampleRing
from workbench.metrics.store import MetricsStore

#: The Dask worker figures a real worker's ``dask-worker`` sampler reports.
DASK_WORKER = {
    "workbench_dask_worker_tasks_executing": 1.0,
    "workbench_dask_worker_tasks_ready": 4.0,
    "workbench_dask_worker_managed_bytes": 2.0e8,
    "workbench_dask_worker_spilled_bytes": 0.0,
    "workbench_dask_worker_memory_limit_bytes": 4.0e9,
    "workbench_dask_worker_transfer_sent_bytes_per_second": 1.0e6,
}


def template() -> tuple[dict[str, float], dict[str, Any]]:
    """One real sample of a CPU worker's samplers on this machine, and their info."""
    names = [n for n in known_samplers("worker") if n != "dask-worker"]
    loop = SamplingLoop(create_samplers(names, SamplerContext(role="worker")), capacity=4)
    try:
        loop.sample_all(time.time())
        time.sleep(0.2)
        loop.sample_all(time.time())
        latest = loop.ring.latest()
        values = dict(latest[1]) if latest else {}
        info = loop.info()
    finally:
        loop.close()
    values.update(DASK_WORKER)
    return values, info


#: Rows each simulated worker keeps for the store to pull (the worker plugin's default).
PRODUCER_ROWS = 600


class SimulatedCluster:
    """``workers`` simulated workers at 1 Hz feeding ``store`` (a fresh one by default)."""

    def __init__(
        self,
        workers: int,
        store: MetricsStore | None = None,
        *,
        capacity: int = 3600,
        seed: int = 0,
        start: float | None = None,
    ) -> None:
        self.values, info = template()
        self.store = store or MetricsStore(
            "tcp://simulated-scheduler:8786", capacity=capacity, sample_host=False
        )
        self.rng = random.Random(seed)
        self.workers: list[tuple[str, SampleRing, dict[str, Any]]] = []
        for i in range(workers):
            address = f"tcp://10.0.{i // 250}.{i % 250 + 1}:40000"
            winfo = dict(info, host=f"node{i:04d}", name=f"worker-{i}")
            self.workers.append((address, SampleRing(min(capacity, PRODUCER_ROWS)), winfo))
        self.t = time.time() - 1 if start is None else start
        self.sent_info: set[str] = set()

    def _row(self) -> dict[str, float]:
        jitter = self.rng.random
        return {k: v * (0.5 + jitter()) if v else jitter() for k, v in self.values.items()}

    def produce(self, rows: int = 1) -> dict[str, Any]:
        """Each worker samples ``rows`` times (1 s apart); returns their deltas for the
        store, as the scheduler's broadcast would."""
        for _ in range(rows):
            self.t += 1.0
            for _, ring, _ in self.workers:
                ring.append(self.t + self.rng.random() * 0.5, self._row())
        replies: dict[str, Any] = {}
        for address, ring, info in self.workers:
            delta = ring.delta_for(self.store.consumer)
            if address not in self.sent_info:
                delta["info"] = info
                self.sent_info.add(address)
            replies[address] = delta
        return replies

    def cluster_row(self) -> dict[str, float]:
        n = float(len(self.workers))
        return {
            "workbench_cluster_workers": n,
            "workbench_cluster_threads": n,
            "workbench_cluster_tasks_processing": n * self.rng.random(),
            "workbench_cluster_tasks_queued": 4 * n * self.rng.random(),
            "workbench_cluster_memory_bytes": n * 2e8,
            "workbench_cluster_spilled_bytes": 0.0,
            "workbench_cluster_memory_limit_bytes": n * 4e9,
        }

    def ingest(self, replies: dict[str, Any]) -> float:
        """The store's part of one collection (mirror the deltas, the cluster figures,
        a new version); returns its CPU seconds."""
        began = time.process_time()
        self.store.ingest(replies)
        self.store.cluster.append(self.t, self.cluster_row())
        self.store.version += 1
        return time.process_time() - began

    def tick(self) -> float:
        """One 1 Hz collection; returns the store's CPU seconds for it."""
        return self.ingest(self.produce())

    def prefill(self, seconds: int) -> None:
        """``seconds`` of history, pulled in chunks of what the workers keep."""
        self.t -= seconds
        left = seconds - 1
        while left > 0:
            rows = min(left, PRODUCER_ROWS)
            replies = self.produce(rows)
            self.store.ingest(replies)
            for k in range(rows):
                self.store.cluster.append(self.t - rows + 1 + k, self.cluster_row())
            left -= rows
        self.tick()


class Session:
    """One browser session of a dashboard view, without a browser: the view's layout in
    its own Bokeh document, and what Bokeh's server would send it. Every change the
    view makes to the document is serialized as the server does (a ``PATCH-DOC``
    message: header, metadata, content and binary buffers), and its bytes counted."""

    def __init__(self, view: Any) -> None:
        import panel as pn
        from bokeh.document import Document

        self.view = view
        self.doc = Document()
        self.events: list[Any] = []
        self.doc.add_root(view.panel().get_root(self.doc))
        self.doc.on_change(self.events.append)
        # As a connected session: Panel drops the events of a document no browser has
        # connected to yet (the browser would get the whole document when it connects).
        # and updated on the session's own thread, as a server's periodic callback is
        pn.state._connected[self.doc] = True
        pn.state._thread_id_[self.doc] = threading.get_ident()
        self._pn = pn

    def update(self) -> tuple[float, int]:
        """One refresh of the view: (CPU seconds, bytes sent to the browser), the
        serialization of the patch included."""
        from bokeh.protocol import Protocol

        pn = self._pn
        began = time.process_time()
        pn.state.curdoc = self.doc
        try:
            self.view.update()
        finally:
            pn.state.curdoc = None
        events = [e for e in self.events if hasattr(e, "to_serializable")]
        self.events.clear()
        size = 0
        if events:
            msg = Protocol().create("PATCH-DOC", events)
            size = len(msg.header_json) + len(msg.metadata_json) + len(msg.content_json)
            size += sum(len(b.to_bytes()) for b in msg.buffers)
        return time.process_time() - began, size
