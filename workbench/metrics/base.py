"""Metric catalog, series keys and the sampler plug-in registry.

A *sampler* reads one source of measurements (NVML, /proc, /sys, a Dask worker's
state) and returns a flat ``{series key: float}`` dict per call. A *series key* is
a Prometheus-style name with optional labels, ``workbench_gpu_power_watts{gpu="0"}``,
so the same key serves the ring buffers, the plots and the ``/metrics`` endpoint.

Every metric name a sampler emits is described once by a :class:`MetricSpec`
(help text, unit, how to aggregate, which dashboard tab and plot shows it). The
dashboards are driven by this catalog, so a new sampler's metrics appear on their
tab without dashboard code.

Samplers are registered by name, fsspec-style: the registry maps a name to a class
or to a lazily imported ``"module:Class"`` string::

    from workbench.metrics import register_sampler
    register_sampler("data-io", "workbench.data.iostats:IOStatsSampler", roles=("worker", "host"))
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import logging
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

logger = logging.getLogger(__name__)

Kind = Literal["gauge", "counter"]
#: How series of one metric from many sources are combined in aggregate views:
#: ``gpu`` series are unique per GPU UUID (deduplicated across workers that share a GPU),
#: ``host`` series are unique per host (workers on one host report the same value once),
#: ``process`` series belong to one worker process, ``cluster`` to the whole cluster.
Scope = Literal["gpu", "host", "process", "cluster"]
Agg = Literal["sum", "mean", "max"]
Role = Literal["worker", "host"]
Tab = Literal["GPU", "Storage", "Network", "Cluster", "Energy"]

TABS: tuple[Tab, ...] = ("GPU", "Storage", "Network", "Cluster", "Energy")
#: The page of each tab on a dashboard server (``/gpu``...), one JupyterLab pane each.
TAB_PAGES: dict[Tab, str] = {tab: tab.lower() for tab in TABS}


@dataclass(frozen=True)
class MetricSpec:
    """What one metric name means and where the dashboard shows it."""

    name: str
    help: str
    unit: str  # "percent", "bytes", "bytes/s", "celsius", "watts", "joules", "count", "seconds"
    kind: Kind = "gauge"
    scope: Scope = "host"
    agg: Agg = "sum"
    tab: Tab | None = None
    #: Title of the plot this metric is drawn in; metrics sharing a title share a plot.
    plot: str = ""
    #: Short legend label within the plot ("read", "write", "rx").
    label: str = ""
    #: Counters whose plot shows the increase over the visible window (energy), not a rate.
    show_increase: bool = False


_catalog: dict[str, MetricSpec] = {}
_catalog_lock = threading.Lock()


def define(*specs: MetricSpec) -> tuple[MetricSpec, ...]:
    """Add metric specs to the catalog (idempotent for identical specs)."""
    with _catalog_lock:
        for spec in specs:
            old = _catalog.get(spec.name)
            if old is not None and old != spec:
                raise ValueError(f"metric {spec.name!r} is already defined differently")
            _catalog[spec.name] = spec
    return specs


def metric_spec(name: str) -> MetricSpec | None:
    return _catalog.get(name)


def catalog() -> dict[str, MetricSpec]:
    """Every metric defined so far (samplers define theirs when their module is imported)."""
    load_builtin_specs()
    with _catalog_lock:
        return dict(_catalog)


# -- series keys ---------------------------------------------------------------------------
def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def series_key(name: str, labels: dict[str, str] | None = None) -> str:
    """``name{k="v",...}`` with labels in the given order (Prometheus text syntax)."""
    if not labels:
        return name
    inner = ",".join(f'{k}="{_escape(str(v))}"' for k, v in labels.items())
    return f"{name}{{{inner}}}"


@functools.lru_cache(maxsize=16384)
def parse_key(key: str) -> tuple[str, tuple[tuple[str, str], ...]]:
    """Inverse of :func:`series_key`: ``(name, ((label, value), ...))``."""
    brace = key.find("{")
    if brace < 0:
        return key, ()
    name, body = key[:brace], key[brace + 1 : -1]
    labels: list[tuple[str, str]] = []
    i = 0
    while i < len(body):
        eq = body.index("=", i)
        label = body[i:eq]
        j = eq + 2  # skip ="
        value: list[str] = []
        while body[j] != '"':
            if body[j] == "\\":
                nxt = body[j + 1]
                value.append("\n" if nxt == "n" else nxt)
                j += 2
            else:
                value.append(body[j])
                j += 1
        labels.append((label, "".join(value)))
        i = j + 2  # skip ",
    return name, tuple(labels)


# -- samplers ------------------------------------------------------------------------------
@dataclass
class SamplerContext:
    """Where a sampler runs: on a Dask worker (``worker`` is the Worker) or on a host."""

    role: Role
    worker: Any = None
    options: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class Sampler(Protocol):
    """One source of measurements.

    ``reason`` is ``None`` when the sampler works, else why it cannot (shown in the
    dashboard: "NVML could not start ..."). ``sample`` must not raise for a missing
    field; it returns what it could read. ``blocking`` samplers (NVML, /proc reads)
    run off the worker's event loop; non-blocking ones (Dask worker state) run on it.
    """

    name: str
    reason: str | None
    blocking: bool
    #: The metrics this sampler may emit (sent to viewers that lack the sampler's module).
    metrics: tuple[MetricSpec, ...]

    def sample(self, now: float) -> dict[str, float]: ...

    def close(self) -> None: ...


SamplerFactory = Callable[[SamplerContext], Sampler]


@dataclass
class _Entry:
    target: str | SamplerFactory
    roles: tuple[Role, ...]


_registry: dict[str, _Entry] = {}
_registry_lock = threading.Lock()

#: The built-in samplers; the order is the order their values are read each tick.
_BUILTIN: dict[str, tuple[str, tuple[Role, ...]]] = {
    "host": ("workbench.metrics.host:HostSampler", ("worker", "host")),
    "process": ("workbench.metrics.host:ProcessSampler", ("worker", "host")),
    "disk": ("workbench.metrics.host:DiskSampler", ("worker", "host")),
    "network": ("workbench.metrics.host:NetworkSampler", ("worker", "host")),
    "infiniband": ("workbench.metrics.sysfs:InfinibandSampler", ("worker", "host")),
    "rapl": ("workbench.metrics.sysfs:RaplSampler", ("worker", "host")),
    "gpu": ("workbench.metrics.nvml:GPUSampler", ("worker", "host")),
    "dask-worker": ("workbench.metrics.dask_state:DaskWorkerSampler", ("worker",)),
    # IO of workbench.data loads done in the process (worker or notebook host).
    "data-io": ("workbench.metrics.data_io:IOStatsSampler", ("worker", "host")),
}


def register_sampler(
    name: str,
    target: str | SamplerFactory,
    roles: Iterable[Role] = ("worker", "host"),
    clobber: bool = False,
) -> None:
    """Register a sampler under ``name``.

    ``target`` is a class/factory taking a :class:`SamplerContext`, or ``"module:attr"``
    imported on first use (so registering costs nothing). ``roles`` says where it runs
    by default: on every Dask worker, on the notebook host, or both.
    """
    with _registry_lock:
        if name in _registry and not clobber:
            raise ValueError(f"a sampler named {name!r} is already registered")
        _registry[name] = _Entry(target, tuple(roles))


def _ensure_builtins() -> None:
    with _registry_lock:
        for name, (target, roles) in _BUILTIN.items():
            _registry.setdefault(name, _Entry(target, roles))


def known_samplers(role: Role | None = None) -> list[str]:
    """Registered sampler names (those that run in ``role`` by default, if given)."""
    _ensure_builtins()
    with _registry_lock:
        return [n for n, e in _registry.items() if role is None or role in e.roles]


def get_sampler_factory(name: str) -> SamplerFactory:
    _ensure_builtins()
    with _registry_lock:
        entry = _registry.get(name)
    if entry is None:
        raise KeyError(
            f"no sampler named {name!r}; registered: {', '.join(known_samplers()) or 'none'}"
        )
    target = entry.target
    if isinstance(target, str):
        module, _, attr = target.partition(":")
        factory: SamplerFactory = getattr(importlib.import_module(module), attr)
        return factory
    return target


def create_samplers(names: Iterable[str] | None, context: SamplerContext) -> list[Sampler]:
    """Instantiate samplers by name (default: every sampler for the context's role).

    A sampler whose construction fails is logged and left out: monitoring must not
    take a worker down.
    """
    out: list[Sampler] = []
    for name in known_samplers(context.role) if names is None else names:
        try:
            out.append(get_sampler_factory(name)(context))
        except Exception:
            logger.exception("workbench metrics: sampler %r could not start", name)
    return out


def load_builtin_specs() -> None:
    """Import the built-in sampler modules so their metric specs are in the catalog."""
    for target, _ in _BUILTIN.values():
        module = target.partition(":")[0]
        with contextlib.suppress(ImportError):
            importlib.import_module(module)
