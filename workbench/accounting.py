"""Cost in sight: what a running cluster has cost so far and how long its GPUs sat idle.

Two sources, one summary (the cluster cards, the status bar and the dashboards' status
line show the same):

* the cost: the process that launched the cluster (its owner) integrates the worker
  count over time (:class:`~workbench.clusters.cost.CostMeter`) at the profile's
  ``price_per_worker_hour``. Other processes ask the owner for it through the control
  path (``Backend.ask_owner(record, "workbench_info")``, with the cluster's TLS
  settings), as they ask it to scale. Clusters whose scheduler does not run in their
  owner's process (``gateway``, ``kubernetes``) cannot relay the question: their cost is
  then shown where they were launched (``handle.cost()``) and the reason is given here;
* the GPU idle time: the workers' GPU samplers count the seconds each GPU is allocated
  but under 5% utilized (``workbench_gpu_idle_seconds_total``), read from a metrics
  store of the cluster (:func:`workbench.metrics.accounting.gpu_summary`).
"""

from __future__ import annotations

import threading
import time
from dataclasses import fields
from typing import Any

from .clusters.control import OWNER_INFO_TIMEOUT_S
from .clusters.cost import CostEstimate
from .errors import WorkbenchError
from .metrics.accounting import GPUSummary, gpu_summary

#: Seconds the owner has to answer about the cost (as when a cluster list asks it).
OWNER_TIMEOUT_S = OWNER_INFO_TIMEOUT_S


def owner_cost(record: Any, timeout: float = OWNER_TIMEOUT_S) -> tuple[CostEstimate | None, str]:
    """(the owner's running cost estimate, "") or (None, why it is not known here)."""
    from .clusters.control import backend_class

    cls = backend_class(record)
    try:
        info = cls.ask_owner(record, "workbench_info", timeout=timeout)
    except WorkbenchError as exc:
        return cost_from_owner(record, exc)
    return cost_from_owner(record, info)


def cost_from_owner(record: Any, reply: Any) -> tuple[CostEstimate | None, str]:
    """:func:`owner_cost` from the owner's ``workbench_info`` reply already asked for (a
    list asks every owner at once), or from the WorkbenchError asking raised."""
    if isinstance(reply, WorkbenchError):
        if record.backend in ("gateway", "kubernetes"):
            return None, (
                f"the {record.backend} scheduler does not relay it: the process that launched "
                f"the cluster (pid {record.owner_pid} on {record.hostname}) shows it with "
                "handle.cost()"
            )
        return None, f"its owner did not answer: {reply}"
    raw = reply.get("cost") if isinstance(reply, dict) else None
    if not isinstance(raw, dict):
        return None, (
            "its owner keeps no cost estimate (it is closing, or the cluster was not "
            "started by workbench)"
        )
    names = {f.name for f in fields(CostEstimate)}
    try:
        return CostEstimate(**{k: v for k, v in raw.items() if k in names}), ""
    except TypeError as exc:
        return None, f"its owner answered an unknown cost format: {exc}"


def cluster_accounting(
    record: Any, store: Any = None, cost: tuple[CostEstimate | None, str] | None = None
) -> dict[str, Any]:
    """``{cost, cost_reason, gpu, gpu_reason}`` of a running cluster; ``store``: its metrics
    store (None: the GPU part says none is watched yet); ``cost``: :func:`owner_cost`'s
    answer when already known (None: the owner is asked here)."""
    estimate, cost_reason = owner_cost(record) if cost is None else cost
    gpu: GPUSummary | None = None
    gpu_reason = ""
    if store is not None:
        gpu = gpu_summary(store)
        if not gpu.gpus:
            _, reasons = store.gpu_status()
            workers = [r for r in reasons if not r.startswith("notebook host")]
            gpu_reason = "the cluster has no GPUs" + (f" ({workers[0]})" if workers else "")
    elif record.gpus:
        gpu_reason = "the GPU idle time appears once the cluster's metrics are collected"
    else:
        gpu_reason = "the cluster has no GPUs"
    return {
        "cost": estimate.to_dict() if estimate is not None else None,
        "cost_reason": cost_reason or None,
        "gpu": gpu.to_dict() if gpu is not None else None,
        "gpu_reason": gpu_reason or None,
    }


class CachedCost:
    """``record``'s owner cost for status lines, asked at most every ``ttl`` seconds and
    never on the caller's thread: the dashboards' status line is redrawn every second by
    every viewer, on the dashboard server's event loop, which must not wait for an owner
    (and where the blocking RPC of :func:`owner_cost` cannot run)."""

    def __init__(self, record: Any, ttl: float = 5.0) -> None:
        self.record = record
        self.ttl = ttl
        self._lock = threading.Lock()
        self._at = -float("inf")
        self._asking = False
        self._value: tuple[CostEstimate | None, str] = (None, "asking its owner")

    def _refresh(self) -> None:
        value = owner_cost(self.record)
        with self._lock:
            self._value, self._at, self._asking = value, time.monotonic(), False

    def __call__(self) -> CostEstimate:
        """The newest estimate; WorkbenchError saying why when there is none."""
        with self._lock:
            if not self._asking and time.monotonic() - self._at > self.ttl:
                self._asking = True
                threading.Thread(target=self._refresh, name="workbench-cost", daemon=True).start()
            cost, reason = self._value
        if cost is None:
            raise WorkbenchError(reason)
        return cost
