"""Dask state: per-worker task and memory figures (on the worker) and cluster figures
(read on the scheduler).

``cluster_state`` runs on the scheduler (the handler that
:class:`~workbench.metrics.plugin.ClusterStatePlugin` installs); it only
touches per-worker and per-task-prefix aggregates, so it costs O(workers + prefixes),
never O(tasks), on the scheduler's event loop.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from .base import MetricSpec, SamplerContext, define, series_key
from .rates import CounterRates

WORKER_SPECS = define(
    MetricSpec(
        "workbench_dask_worker_tasks_executing",
        "Tasks running on the worker's threads.",
        "count",
        scope="process",
        tab="Cluster",
        plot="Worker tasks",
        label="executing",
    ),
    MetricSpec(
        "workbench_dask_worker_tasks_ready",
        "Tasks ready to run, waiting for a free thread.",
        "count",
        scope="process",
        tab="Cluster",
        plot="Worker tasks",
        label="ready",
    ),
    MetricSpec(
        "workbench_dask_worker_managed_bytes",
        "Bytes of task results the worker holds (Dask's managed memory).",
        "bytes",
        scope="process",
        tab="Cluster",
        plot="Dask memory",
        label="managed",
    ),
    MetricSpec(
        "workbench_dask_worker_spilled_bytes",
        "Bytes of task results spilled to the worker's local disk.",
        "bytes",
        scope="process",
        tab="Storage",
        plot="Spilled to disk",
        label="spilled",
    ),
    MetricSpec(
        "workbench_dask_worker_memory_limit_bytes",
        "The worker's memory limit.",
        "bytes",
        scope="process",
    ),
    MetricSpec(
        "workbench_dask_worker_transfer_sent_bytes_per_second",
        "Bytes per second this worker sent to other workers (task dependencies).",
        "bytes/s",
        scope="process",
        tab="Network",
        plot="Dask transfers between workers",
        label="sent",
    ),
    MetricSpec(
        "workbench_sampler_cpu_seconds_total",
        "CPU time spent by workbench's metrics sampling in this process.",
        "seconds",
        kind="counter",
        scope="process",
    ),
    MetricSpec(
        "workbench_sampler_samples_total",
        "Samples taken by workbench's metrics sampling in this process.",
        "count",
        kind="counter",
        scope="process",
    ),
)

CLUSTER_SPECS = define(
    MetricSpec(
        "workbench_cluster_workers",
        "Workers connected to the scheduler.",
        "count",
        scope="cluster",
        tab="Cluster",
        plot="Cluster",
        label="workers",
    ),
    MetricSpec(
        "workbench_cluster_threads",
        "Worker threads in the cluster.",
        "count",
        scope="cluster",
        tab="Cluster",
        plot="Cluster",
        label="threads",
    ),
    MetricSpec(
        "workbench_cluster_tasks_processing",
        "Tasks assigned to workers (running or queued on a worker).",
        "count",
        scope="cluster",
        tab="Cluster",
        plot="Cluster tasks",
        label="processing",
    ),
    MetricSpec(
        "workbench_cluster_tasks_queued",
        "Root tasks queued on the scheduler, waiting for a worker thread.",
        "count",
        scope="cluster",
        tab="Cluster",
        plot="Cluster tasks",
        label="queued",
    ),
    MetricSpec(
        "workbench_cluster_tasks",
        "Tasks the scheduler knows, by state (from task-prefix counts).",
        "count",
        scope="cluster",
    ),
    MetricSpec(
        "workbench_cluster_memory_bytes",
        "Managed memory of all workers, as reported in their heartbeats.",
        "bytes",
        scope="cluster",
        tab="Cluster",
        plot="Cluster memory",
        label="managed",
    ),
    MetricSpec(
        "workbench_cluster_spilled_bytes",
        "Bytes spilled to disk on all workers, as reported in their heartbeats.",
        "bytes",
        scope="cluster",
        tab="Cluster",
        plot="Cluster memory",
        label="spilled",
    ),
    MetricSpec(
        "workbench_cluster_memory_limit_bytes",
        "Sum of the workers' memory limits.",
        "bytes",
        scope="cluster",
        tab="Cluster",
        plot="Cluster memory",
        label="limit",
    ),
)


class DaskWorkerSampler:
    """Task and memory figures of the Dask worker this sampler runs in (on its loop)."""

    name = "dask-worker"
    blocking = False
    metrics = WORKER_SPECS

    def __init__(self, context: SamplerContext) -> None:
        self.worker = context.worker
        self.reason: str | None = None if self.worker is not None else "not in a Dask worker"
        self._rates = CounterRates()

    def sample(self, now: float) -> dict[str, float]:
        w = self.worker
        if w is None:
            return {}
        state = w.state
        out = {
            "workbench_dask_worker_tasks_executing": float(state.executing_count),
            "workbench_dask_worker_tasks_ready": float(len(state.ready) + len(state.constrained)),
            "workbench_dask_worker_managed_bytes": float(state.nbytes),
        }
        spilled = getattr(w.data, "spilled_total", None)
        if spilled is not None:
            out["workbench_dask_worker_spilled_bytes"] = float(spilled.disk)
        limit = getattr(getattr(w, "memory_manager", None), "memory_limit", None)
        if limit:
            out["workbench_dask_worker_memory_limit_bytes"] = float(limit)
        sent = getattr(w, "transfer_outgoing_bytes_total", None)
        if sent is not None:
            r = self._rates.rate("sent", float(sent), now)
            if r is not None:
                out["workbench_dask_worker_transfer_sent_bytes_per_second"] = r
        return out

    def close(self) -> None:
        self.worker = None


def cluster_state(dask_scheduler: Any) -> dict[str, float]:
    """Cluster figures, computed on the scheduler."""
    s = dask_scheduler
    workers = list(s.workers.values())
    states: Counter[str] = Counter()
    for prefix in s.task_prefixes.values():
        states.update({k: v for k, v in prefix.states.items() if v})
    managed = spilled = 0.0
    for ws in workers:
        metrics = ws.metrics or {}
        managed += float(metrics.get("managed_bytes", 0) or 0)
        spilled += float((metrics.get("spilled_bytes") or {}).get("disk", 0) or 0)
    out = {
        "workbench_cluster_workers": float(len(workers)),
        "workbench_cluster_threads": float(sum(ws.nthreads for ws in workers)),
        "workbench_cluster_tasks_processing": float(sum(len(ws.processing) for ws in workers)),
        "workbench_cluster_tasks_queued": float(len(getattr(s, "queued", ()))),
        "workbench_cluster_memory_bytes": managed,
        "workbench_cluster_spilled_bytes": spilled,
        "workbench_cluster_memory_limit_bytes": float(sum(ws.memory_limit or 0 for ws in workers)),
    }
    for state, count in states.items():
        out[series_key("workbench_cluster_tasks", {"state": state})] = float(count)
    return out


def cluster_state_from_identity(identity: dict[str, Any]) -> dict[str, float]:
    """Fewer cluster figures from ``Scheduler.identity`` (when the scheduler has no plugin)."""
    workers = identity.get("workers", {}).values()
    managed = spilled = 0.0
    executing = 0.0
    for w in workers:
        metrics = w.get("metrics") or {}
        managed += float(metrics.get("managed_bytes", 0) or 0)
        spilled += float((metrics.get("spilled_bytes") or {}).get("disk", 0) or 0)
        executing += float((metrics.get("task_counts") or {}).get("executing", 0) or 0)
    return {
        "workbench_cluster_workers": float(len(workers)),
        "workbench_cluster_threads": float(sum(w.get("nthreads", 0) for w in workers)),
        "workbench_cluster_tasks_processing": executing,
        "workbench_cluster_memory_bytes": managed,
        "workbench_cluster_spilled_bytes": spilled,
        "workbench_cluster_memory_limit_bytes": float(
            sum(w.get("memory_limit", 0) or 0 for w in workers)
        ),
    }
