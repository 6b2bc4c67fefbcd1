"""What a cluster's GPUs do now, and how long they sat idle: one summary of a store.

The status bar of JupyterLab, the cluster cards and the dashboards' status line show
the same few figures, computed here from the newest sample of each source (no history
is scanned, so the cost does not grow with the time window):

* ``gpus``: GPUs of the cluster's workers (each counted once, by UUID, however many
  workers see it); ``idle_now``: how many of them are under
  :data:`~workbench.metrics.nvml.IDLE_UTILIZATION_PERCENT` in their newest reading;
* ``utilization``: mean compute utilization (percent), ``memory_used``/``memory_total``
  in bytes, summed over the GPUs;
* ``idle_seconds``: GPU-seconds spent allocated but idle since the workers started
  sampling (the ``workbench_gpu_idle_seconds_total`` counter of each GPU, summed).

A store with a scheduler address counts its workers only (the notebook host's own GPUs
are not the cluster's); a store without one counts this host.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from .base import parse_key
from .nvml import IDLE_UTILIZATION_PERCENT

if TYPE_CHECKING:
    from .store import MetricsStore

UTILIZATION = "workbench_gpu_utilization_percent"
MEMORY_USED = "workbench_gpu_memory_used_bytes"
MEMORY_TOTAL = "workbench_gpu_memory_total_bytes"
IDLE = "workbench_gpu_idle_seconds_total"
_NAMES = (UTILIZATION, MEMORY_USED, MEMORY_TOTAL, IDLE)


@dataclass(frozen=True)
class GPUSummary:
    gpus: int = 0
    idle_now: int = 0
    utilization: float | None = None
    memory_used: float | None = None
    memory_total: float | None = None
    idle_seconds: float = 0.0
    #: Utilization under this percentage counts as idle.
    idle_threshold: float = IDLE_UTILIZATION_PERCENT

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def short(self) -> str:
        """A few words for status lines: GPUs idle now and idle GPU-hours so far."""
        if not self.gpus:
            return "no GPUs"
        return (
            f"{self.idle_now}/{self.gpus} GPUs idle now · "
            f"{format_duration(self.idle_seconds)} GPU idle time"
        )


def format_duration(seconds: float) -> str:
    """``42 s``, ``3.5 min``, ``2.25 h``."""
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.2f} h"


def gpu_summary(store: MetricsStore) -> GPUSummary:
    """The store's GPUs now (newest sample of each source) and their idle time so far."""
    sources = store.snapshot_sources()
    if store.scheduler_address is not None:
        sources = [s for s in sources if s.kind == "worker"]
    # uuid -> (sample time, {metric: value}); a GPU seen by several sources: the newest
    # reading for the gauges, the largest idle counter (the longest-sampling process).
    latest: dict[str, tuple[float, dict[str, float]]] = {}
    idle: dict[str, float] = {}
    for source in sources:
        newest = source.ring.latest()
        if newest is None:
            continue
        t, values = newest
        per_gpu: dict[str, dict[str, float]] = {}
        for key, value in values.items():
            name, labels = parse_key(key)
            if name not in _NAMES or value != value:  # NaN: not read this time
                continue
            uuid = dict(labels).get("uuid")
            if uuid is None or "mig" in dict(labels):
                continue
            per_gpu.setdefault(uuid, {})[name] = float(value)
        for uuid, readings in per_gpu.items():
            if IDLE in readings:
                idle[uuid] = max(idle.get(uuid, 0.0), readings[IDLE])
            if source.gone:
                continue
            if uuid not in latest or latest[uuid][0] < t:
                latest[uuid] = (t, readings)
    utils = [r[UTILIZATION] for _, r in latest.values() if UTILIZATION in r]
    used = [r[MEMORY_USED] for _, r in latest.values() if MEMORY_USED in r]
    total = [r[MEMORY_TOTAL] for _, r in latest.values() if MEMORY_TOTAL in r]
    return GPUSummary(
        gpus=len(latest),
        idle_now=sum(1 for u in utils if u < IDLE_UTILIZATION_PERCENT),
        utilization=sum(utils) / len(utils) if utils else None,
        memory_used=sum(used) if used else None,
        memory_total=sum(total) if total else None,
        idle_seconds=sum(idle.values()),
    )
