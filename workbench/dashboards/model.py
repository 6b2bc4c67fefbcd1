"""Dashboard logic, testable without a browser: which plots a tab has and their data.

Plots come from the metric catalog (``MetricSpec.tab`` / ``.plot``), so a sampler
registered later (the data loader's IO metrics, say) shows up on its tab with no
code here. :func:`plot_frame` turns the store's rings into a long DataFrame
``(time, series, value)`` for one plot, in one of two modes:

* ``Aggregate``: one line per metric across the cluster. GPU series are counted once
  per GPU UUID and host series once per host, however many workers report them; then
  they are summed (bytes, rates), averaged (utilization) or maxed (temperature) on a
  common time grid.
* ``Per worker / device``: one line per worker process, per host or per GPU.

Frames are cached per store version, so many viewers with the same settings cost one
computation per collection.
"""

from __future__ import annotations

import datetime as _dt
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import param

from ..metrics.accounting import gpu_summary
from ..metrics.base import TABS, MetricSpec, catalog, parse_key

if TYPE_CHECKING:
    from ..metrics.store import MetricsStore, Source

AGGREGATE = "Aggregate"
DETAIL = "Per worker / device"
WINDOWS: dict[str, float] = {"1 min": 60.0, "5 min": 300.0, "15 min": 900.0, "1 hour": 3600.0}
REFRESH: dict[str, float] = {"0.5 s": 0.5, "1 s": 1.0, "2 s": 2.0, "5 s": 5.0, "10 s": 10.0}

#: Display units for each metric unit, largest first: a plot uses the largest unit
#: its biggest value reaches (so 3 MB/s is not drawn as 0.003 GB/s).
UNITS: dict[str, list[tuple[str, float]]] = {
    "bytes": [("TiB", 2.0**40), ("GiB", 2.0**30), ("MiB", 2.0**20), ("KiB", 2.0**10), ("B", 1)],
    "bytes/s": [("GB/s", 1e9), ("MB/s", 1e6), ("kB/s", 1e3), ("B/s", 1.0)],
    "joules": [("kWh", 3.6e6), ("Wh", 3600.0), ("J", 1.0)],
    "percent": [("%", 1.0)],
    "celsius": [("°C", 1.0)],
    "watts": [("W", 1.0)],
    "count": [("count", 1.0)],
    "seconds": [("s", 1.0)],
}


def display_unit(unit: str, largest: float) -> tuple[str, float]:
    """``(label, divisor)`` for values of ``unit`` whose largest magnitude is ``largest``."""
    choices = UNITS.get(unit, [(unit or "value", 1.0)])
    for label, divisor in choices:
        if abs(largest) >= divisor:
            return label, divisor
    return choices[-1]


#: Preferred plot order per tab; plots not named here follow in catalog order.
ORDER: dict[str, list[str]] = {
    "GPU": ["GPU utilization (%)", "GPU memory", "PCIe throughput", "NVLink throughput"],
    "Storage": ["Disk throughput", "Process storage IO", "Spilled to disk"],
    "Network": ["Network throughput", "InfiniBand throughput", "Dask transfers between workers"],
    "Cluster": [
        "Cluster tasks",
        "Worker tasks",
        "Cluster memory",
        "Dask memory",
        "Host CPU (%)",
        "Process CPU (% of one core)",
        "Host memory",
        "Process memory (RSS)",
        "Cluster",
    ],
    "Energy": ["GPU power (W)", "GPU energy in window", "CPU power (RAPL)"],
}

FRAME_COLUMNS = ["time", "series", "value"]
#: Points per line of an aggregate view, at most (longer windows average more samples).
MAX_POINTS = 400


@dataclass(frozen=True)
class PlotSpec:
    """One plot: its title, tab, display unit and the metrics drawn in it."""

    title: str
    tab: str
    metrics: tuple[MetricSpec, ...]

    @property
    def unit(self) -> str:
        """The metrics' own unit ("bytes/s"); frames carry the display unit they chose."""
        return self.metrics[0].unit

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(m.name for m in self.metrics)


def plot_specs(tab: str | None = None) -> list[PlotSpec]:
    """The plots of ``tab`` (or of every tab), in display order."""
    groups: dict[tuple[str, str], list[MetricSpec]] = {}
    for spec in catalog().values():
        if spec.tab is None or not spec.plot:
            continue
        groups.setdefault((spec.tab, spec.plot), []).append(spec)
    out: list[PlotSpec] = []
    for t in TABS if tab is None else (tab,):
        mine = [
            PlotSpec(title, t, tuple(specs)) for (tt, title), specs in groups.items() if tt == t
        ]
        order = ORDER.get(t, [])
        mine.sort(key=lambda p: order.index(p.title) if p.title in order else len(order))
        out.extend(mine)
    return out


def needs_cluster(spec: MetricSpec) -> bool:
    """Metrics only a Dask cluster produces (scheduler figures, worker task state)."""
    return spec.scope == "cluster" or spec.name.startswith("workbench_dask_")


# -- series extraction ------------------------------------------------------------------------
@dataclass
class _Series:
    metric: MetricSpec
    source: Source | None  # None: the cluster ring
    key: str
    labels: dict[str, str]
    t: np.ndarray[Any, Any]
    v: np.ndarray[Any, Any]


_Found = tuple[str, str, dict[str, str], np.ndarray[Any, Any], np.ndarray[Any, Any]]


def _extract(
    keys: list[str], times: np.ndarray, values: np.ndarray, names: set[str]
) -> list[_Found]:
    """The series of ``names`` in a ring's window (``values[i, k]``: key k at times[i])."""
    out: list[_Found] = []
    if not len(times):
        return out
    for idx, key in enumerate(keys):
        name, labels = parse_key(key)
        if name not in names:
            continue
        v = values[:, idx]
        ok = ~np.isnan(v)
        if ok.any():
            out.append((name, key, dict(labels), times[ok], v[ok]))
    return out


def collect_series(store: MetricsStore, plot: PlotSpec, since: float) -> list[_Series]:
    """Every series of the plot's metrics since ``since``, deduplicated by scope."""
    specs = {m.name: m for m in plot.metrics}
    names = set(specs)
    found: list[_Series] = []
    if any(m.scope == "cluster" for m in plot.metrics):
        for name, key, labels, t, v in _extract(*store.cluster.window(since), names):
            found.append(_Series(specs[name], None, key, labels, t, v))
    if any(m.scope != "cluster" for m in plot.metrics):
        # Worker sources first: on a shared host their copy of host series is kept.
        sources = sorted(store.snapshot_sources(), key=lambda s: (s.kind != "worker", s.id))
        for source in sources:
            for name, key, labels, t, v in _extract(*source.ring.window(since), names):
                found.append(_Series(specs[name], source, key, labels, t, v))
    kept: dict[tuple[str, ...], _Series] = {}
    for s in found:
        scope = s.metric.scope
        if scope == "gpu":
            ident: tuple[str, ...] = ("gpu", s.key)
        elif scope == "host":
            ident = ("host", s.source.host if s.source else "", s.key)
        elif scope == "process":
            ident = ("process", s.source.id if s.source else "", s.key)
        else:
            ident = ("cluster", s.key)
        old = kept.get(ident)
        if old is None or len(s.t) > len(old.t):
            kept[ident] = s
    return list(kept.values())


def _who(s: _Series) -> str:
    scope = s.metric.scope
    src = s.source
    if scope == "cluster" or src is None:
        return "cluster"
    if scope == "gpu":
        gpu = f"{src.host} GPU {s.labels.get('gpu', '?')}"
        mig = s.labels.get("mig")
        return f"{gpu} {mig[:12]}" if mig else gpu
    if scope == "host":
        return src.host or src.label
    return src.label


def _extra_labels(s: _Series) -> str:
    skip = {"gpu", "uuid", "mig"}
    return " ".join(v for k, v in s.labels.items() if k not in skip)


def _utc_offset() -> float:
    offset = _dt.datetime.now().astimezone().utcoffset() or _dt.timedelta(0)
    return offset.total_seconds()


def _local_times(t: np.ndarray[Any, Any]) -> pd.DatetimeIndex:
    return pd.to_datetime(t + _utc_offset(), unit="s")


def epoch_seconds(local: Any) -> float:
    """Seconds since the epoch of a frame's ``time`` value (local clock time)."""
    return float(pd.Timestamp(local).value) / 1e9 - _utc_offset()


def aggregate_step(store: MetricsStore, window: float) -> float:
    """Seconds per point of the aggregate views: at most ~400 points per line."""
    return max(store.interval, window / MAX_POINTS)


def streamable(plot: PlotSpec) -> bool:
    """Whether new points of ``plot`` can be appended to what a view shows: not when a
    metric shows its increase over the window (every point moves as the window slides)."""
    return not any(m.show_increase for m in plot.metrics)


#: Buckets a missing sample is carried forward into, when a source lags a collection.
FILL_LIMIT = 2


def _aggregate(
    group: list[_Series], step: float, how: str, increase: bool
) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    """One line across sources: each source's samples averaged per ``step`` bucket, a
    missing bucket carried forward from the source's last (up to :data:`FILL_LIMIT`
    buckets), then summed, averaged or maxed over sources. Returns ``(bucket start
    times, values)`` of the buckets with any value. numpy throughout: its cost grows
    with the samples, not with a pandas object per source."""
    times = [np.floor(s.t / step) * step for s in group]
    values = [s.v - s.v[0] if increase else s.v for s in group]
    t = np.concatenate(times)
    grid, row = np.unique(t, return_inverse=True)
    col = np.concatenate([np.full(len(v), i) for i, v in enumerate(values)])
    width = len(group)
    cell = row * width + col
    size = len(grid) * width
    sums = np.bincount(cell, weights=np.concatenate(values), minlength=size)
    counts = np.bincount(cell, minlength=size)
    flat = np.full(size, np.nan)
    has = counts > 0
    flat[has] = sums[has] / counts[has]
    table = flat.reshape(len(grid), width)
    filled = table.copy()
    for k in range(1, FILL_LIMIT + 1):
        prev = np.full_like(table, np.nan)
        prev[k:] = table[:-k]
        gap = np.isnan(filled) & ~np.isnan(prev)
        filled[gap] = prev[gap]
    valid = ~np.isnan(filled)
    n = valid.sum(axis=1)
    keep = n > 0
    total = np.where(valid, filled, 0.0).sum(axis=1)
    if how == "mean":
        out = total[keep] / n[keep]
    elif how == "max":
        out = np.where(valid, filled, -np.inf).max(axis=1)[keep]
    else:
        out = total[keep]
    return grid[keep], out


def plot_frame(
    store: MetricsStore,
    plot: PlotSpec,
    window: float,
    mode: str = AGGREGATE,
    now: float | None = None,
    since: float | None = None,
    divisor: float | None = None,
) -> pd.DataFrame:
    """``(time, series, value)`` rows of one plot over the last ``window`` seconds.

    ``since`` (seconds since the epoch): only the rows after it, computed from the
    samples since then (what a streaming view appends). ``divisor``: scale values by it
    rather than by the display unit the data would choose; ``attrs["divisor"]`` is the
    divisor used, ``attrs["natural_divisor"]`` the one the data would choose.
    """
    now = time.time() if now is None else now
    start = now - window
    step = aggregate_step(store, window)
    if since is not None:
        # a few steps before ``since``: the aggregate's forward fill needs the samples
        start = max(start, since - 3 * step)
    series = collect_series(store, plot, start)
    if not series:
        empty = pd.DataFrame({c: [] for c in FRAME_COLUMNS})
        label, natural = display_unit(plot.unit, 0.0)
        empty.attrs.update(unit=label, divisor=divisor or natural, natural_divisor=natural)
        return empty
    parts: list[pd.DataFrame] = []
    if mode == AGGREGATE:
        by_metric: dict[str, list[_Series]] = {}
        for s in series:
            by_metric.setdefault(s.metric.name, []).append(s)
        for name, group in by_metric.items():
            metric = group[0].metric
            grid, values = _aggregate(group, step, metric.agg, metric.show_increase)
            label = metric.label or name
            parts.append(
                pd.DataFrame(
                    {
                        "time": _local_times(grid),
                        "series": label,
                        "value": values,
                    }
                )
            )
    else:
        for s in series:
            v = s.v - s.v[0] if s.metric.show_increase else s.v
            label = " · ".join(
                p for p in (_who(s), s.metric.label or s.metric.name, _extra_labels(s)) if p
            )
            parts.append(
                pd.DataFrame(
                    {
                        "time": _local_times(s.t),
                        "series": label,
                        "value": v,
                    }
                )
            )
    frame = pd.concat(parts, ignore_index=True)
    if since is not None:
        frame = frame[frame["time"] > _local_times(np.array([since]))[0]]
    frame = frame.sort_values(["series", "time"], kind="stable").reset_index(drop=True)
    largest = float(frame["value"].abs().max()) if len(frame) else 0.0
    label, natural = display_unit(plot.unit, largest)
    if divisor is not None:
        label = next((u for u, d in UNITS.get(plot.unit, []) if d == divisor), label)
    else:
        divisor = natural
    if divisor != 1.0:
        frame["value"] = frame["value"] / divisor
    frame.attrs.update(unit=label, divisor=divisor, natural_divisor=natural)
    return frame


class _FrameCache:
    """Frames per (store, version, plot, window, mode): one computation per collection."""

    def __init__(self, size: int = 256) -> None:
        self.size = size
        self._data: OrderedDict[tuple[Any, ...], pd.DataFrame] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(
        self,
        store: MetricsStore,
        plot: PlotSpec,
        window: float,
        mode: str,
        since: float | None = None,
        divisor: float | None = None,
    ) -> pd.DataFrame:
        key = (id(store), store.version, plot.title, plot.tab, window, mode, since, divisor)
        with self._lock:
            frame = self._data.get(key)
            if frame is not None:
                self.hits += 1
                self._data.move_to_end(key)
                return frame
        frame = plot_frame(store, plot, window, mode, since=since, divisor=divisor)
        with self._lock:
            self.misses += 1
            self._data[key] = frame
            while len(self._data) > self.size:
                self._data.popitem(last=False)
        return frame


FRAMES = _FrameCache()


class DashboardState(param.Parameterized):
    """One viewer's settings and everything its view shows, without Panel."""

    refresh: param.Selector[float] = param.Selector(
        objects=REFRESH, default=1.0, doc="Seconds between redraws."
    )
    window: param.Selector[float] = param.Selector(
        objects=WINDOWS, default=300.0, doc="Seconds of history shown."
    )
    mode: param.Selector[str] = param.Selector(objects=[AGGREGATE, DETAIL], default=AGGREGATE)

    def __init__(
        self, store: MetricsStore, cost: Callable[[], Any] | None = None, **params: Any
    ) -> None:
        super().__init__(**params)
        self.store = store
        #: The running cost estimate of the cluster (``ClusterHandle.cost``), when known.
        self.cost = cost

    def plots(self, tab: str) -> list[PlotSpec]:
        """The tab's plots; without a cluster, those that only a cluster can fill are left out."""
        plots = plot_specs(tab)
        if self.store.scheduler_address is None:
            plots = [p for p in plots if not all(needs_cluster(m) for m in p.metrics)]
        return plots

    def frame(self, plot: PlotSpec) -> pd.DataFrame:
        return FRAMES.get(self.store, plot, float(self.window), str(self.mode))

    def new_points(self, plot: PlotSpec, since: float, divisor: float) -> pd.DataFrame:
        """The plot's rows after ``since`` (epoch seconds), scaled by ``divisor``: what a
        streaming view appends. Shared by every viewer at the same point (cached)."""
        return FRAMES.get(self.store, plot, float(self.window), str(self.mode), since, divisor)

    def points_per_line(self) -> int:
        """How many points of one line the window holds (the views' rollover)."""
        window = float(self.window)
        if self.mode == AGGREGATE:
            step = aggregate_step(self.store, window)
        else:
            step = min(self.store.interval, self.store.worker_interval)
        return int(np.ceil(window / step)) + 2

    def missing(self, plot: PlotSpec) -> str:
        """Why a plot has no data: the samplers' reasons, else that samples are due."""
        reasons: list[str] = []
        for m in plot.metrics:
            for r in self.store.why_missing(m.name):
                if r not in reasons:
                    reasons.append(r)
        if reasons:
            return "not measured here: " + "; ".join(reasons)
        return "waiting for the first samples"

    def gpu_notice(self) -> str | None:
        """None when GPUs are seen; else why there is none, source by source."""
        count, reasons = self.store.gpu_status()
        if count:
            return None
        if not reasons:
            return "No GPU data yet."
        return "No GPUs are visible to this dashboard:\n" + "\n".join(f"- {r}" for r in reasons)

    def status(self) -> str:
        """One line: what is watched, how many workers/GPUs, last update, errors."""
        store = self.store
        workers = [s for s in store.worker_sources() if not s.gone]
        gpus, _ = store.gpu_status()
        where = f"cluster {store.scheduler_address}" if store.scheduler_address else "this host"
        parts = [where, f"{len(workers)} workers", f"{gpus} GPUs"]
        summary = gpu_summary(store)
        if summary.gpus:
            # money burning on idle GPUs: how many idle now, and for how long so far
            parts.append(summary.short())
        latest = max(
            (t for s in store.snapshot_sources() if (t := s.ring.last_time()) is not None),
            default=None,
        )
        if latest is not None:
            parts.append("updated " + time.strftime("%H:%M:%S", time.localtime(latest)))
        if store.scheduler_address:
            parts.append(f"{store.last_pull_bytes} B/update")
        if self.cost is not None:
            try:
                parts.append(self.cost().short())
            except Exception as exc:  # a closed cluster: say so rather than break the view
                parts.append(f"cost unknown ({exc})")
        return " · ".join(parts)

    def problems(self) -> list[str]:
        out = []
        if self.store.error:
            out.append(self.store.error)
        if self.store.plugin_error:
            out.append(self.store.plugin_error)
        return out
