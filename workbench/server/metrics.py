"""``/workbench/api/metrics``: the newest samples of this machine and of a cluster's workers.

The numbers come from :mod:`workbench.metrics` (:func:`~workbench.metrics.store.get_store`):
one collector per cluster in the Jupyter server process, shared with every other reader
in it. A collector starts on the first request for its cluster (or for this host) and
is closed after :data:`IDLE_CLOSE_S` seconds without a request, so an idle server samples
nothing. ``/metrics/prometheus`` serves the same store in the Prometheus text format.
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
from typing import Any

from ..clusters.control import ClusterControl
from ..clusters.record import ClusterRecord
from ..errors import WorkbenchError
from .base import RequestError, WorkbenchHandler

#: A collector nobody asked for in this long is closed.
IDLE_CLOSE_S = 300.0
#: How long the first request for a collector waits for its first samples.
FIRST_SAMPLES_S = 8.0

_used: dict[str | None, float] = {}
_used_lock = threading.Lock()


_reaper: threading.Thread | None = None


def _reap_idle(now: float) -> None:
    from ..metrics.store import close_store

    with _used_lock:
        idle = [k for k, t in _used.items() if now - t > IDLE_CLOSE_S]
        for key in idle:
            del _used[key]
    for key in idle:
        close_store(key)


def _reap_forever() -> None:
    while True:
        time.sleep(min(30.0, IDLE_CLOSE_S / 2))
        with contextlib.suppress(Exception):
            _reap_idle(time.time())


def _start_reaper() -> None:
    global _reaper
    with _used_lock:
        if _reaper is None or not _reaper.is_alive():
            _reaper = threading.Thread(
                target=_reap_forever, name="workbench-metrics-reaper", daemon=True
            )
            _reaper.start()


def forget(scheduler_address: str) -> None:
    """Close the collector of a cluster that was stopped (if this server had one)."""
    from ..metrics.store import close_store

    with _used_lock:
        known = _used.pop(scheduler_address, None) is not None
    if known:
        close_store(scheduler_address)


def _cluster_record(cluster_id: str) -> ClusterRecord:
    """The running cluster's record: 404 when unknown, 409 (saying why) when not running."""
    return ClusterControl().running(cluster_id)


def _ready(store: Any) -> bool:
    sources = store.snapshot_sources()
    if not sources or any(len(s.ring) < 2 for s in sources if s.kind == "host"):
        return False
    if store.scheduler_address is None:
        return True
    workers = store.worker_sources()
    return bool(workers) and all(len(w.ring) for w in workers) and len(store.cluster) > 0


def collector(scheduler_address: str | None) -> Any:
    """The shared store for ``scheduler_address`` (None: this host), with first samples."""
    from ..metrics.store import get_store

    now = time.time()
    _start_reaper()
    _reap_idle(now)
    with _used_lock:
        _used[scheduler_address] = now
    store = get_store(scheduler_address, interval=1.0)  # MetricsError: cluster unreachable
    if not _ready(store):
        # Answer with what there is after that; "warming_up" says so.
        with contextlib.suppress(WorkbenchError):
            store.wait_for(_ready, timeout=FIRST_SAMPLES_S)
    return store


_starting: set[str] = set()


def watched(scheduler_address: str) -> Any | None:
    """The cluster's collector if it runs (this use keeps it alive); else one is started in
    the background and None is answered (the next call finds it). For the cluster list,
    which must answer at once."""
    from ..metrics.store import existing_store, get_store

    _start_reaper()
    with _used_lock:
        _used[scheduler_address] = time.time()
    store = existing_store(scheduler_address)
    if store is not None:
        return store
    with _used_lock:
        if scheduler_address in _starting:
            return None
        _starting.add(scheduler_address)

    def start() -> None:
        try:
            get_store(scheduler_address, interval=1.0)
        except Exception:  # an unreachable cluster: the list says so by itself
            pass
        finally:
            with _used_lock:
                _starting.discard(scheduler_address)

    threading.Thread(target=start, name="workbench-metrics-start", daemon=True).start()
    return None


def cluster_figures(store: Any) -> dict[str, Any]:
    """Workers and tasks (processing or queued) now, from the scheduler's newest sample."""
    latest = store.cluster.latest()
    values = _finite(latest[1]) if latest is not None else {}
    workers = values.get("workbench_cluster_workers")
    tasks = [
        values.get(k)
        for k in ("workbench_cluster_tasks_processing", "workbench_cluster_tasks_queued")
    ]
    return {
        "workers": int(workers) if workers is not None else None,
        "tasks": int(sum(t for t in tasks if t is not None))
        if any(t is not None for t in tasks)
        else None,
    }


def _finite(values: dict[str, float]) -> dict[str, float]:
    return {k: v for k, v in values.items() if isinstance(v, int | float) and math.isfinite(v)}


def _source(source: Any, now: float) -> dict[str, Any]:
    latest = source.ring.latest()
    t, values = latest if latest is not None else (None, {})
    return {
        "id": source.id,
        "kind": source.kind,
        "label": source.label,
        "host": source.host,
        "name": source.name,
        "gone": source.gone,
        "time": t,
        "age": None if t is None else round(now - t, 3),
        "values": _finite(values),
        "unavailable": source.unavailable,
    }


def metrics_snapshot(cluster_id: str | None) -> dict[str, Any]:
    """The newest sample of every source: ``host``, ``workers`` and the ``cluster`` figures."""
    from ..metrics.base import metric_spec, parse_key

    record = _cluster_record(cluster_id) if cluster_id else None
    store = collector(record.scheduler_address if record else None)
    now = time.time()
    sources = store.snapshot_sources()
    host = next((s for s in sources if s.kind == "host"), None)
    workers = sorted((s for s in sources if s.kind == "worker"), key=lambda s: s.name)
    cluster_latest = store.cluster.latest() if record else None
    out: dict[str, Any] = {
        "cluster": record.id if record else None,
        "scheduler_address": record.scheduler_address if record else None,
        "time": now,
        "interval": store.interval,
        "warming_up": not _ready(store),
        "host": _source(host, now) if host is not None else None,
        "workers": [_source(w, now) for w in workers],
        "cluster_state": (
            {"time": cluster_latest[0], "values": _finite(cluster_latest[1])}
            if cluster_latest is not None
            else None
        ),
        "error": store.error,
        "plugin_error": store.plugin_error,
    }
    names = set()
    for src in [out["host"], *out["workers"], out["cluster_state"]]:
        for key in (src or {}).get("values", {}):
            names.add(parse_key(key)[0])
    specs = {}
    for name in sorted(names):
        spec = metric_spec(name)
        if spec is not None:
            specs[name] = {"help": spec.help, "unit": spec.unit, "kind": spec.kind}
    out["metrics"] = specs
    return out


def prometheus_text(cluster_id: str | None) -> str:
    from ..metrics.prometheus import render

    record = _cluster_record(cluster_id) if cluster_id else None
    return render(collector(record.scheduler_address if record else None))


def cluster_status(cluster_id: str) -> dict[str, Any]:
    """The small reply of ``view=summary``: workers, tasks, cost and GPU idle time."""
    from ..accounting import cluster_accounting

    record = _cluster_record(cluster_id)
    store = collector(record.scheduler_address)
    return {
        "cluster": record.id,
        **cluster_figures(store),
        "accounting": cluster_accounting(record, store),
        "warming_up": not _ready(store),
        "error": store.error,
    }


def kernel_status(kernel_manager: Any, kernel_id: str) -> dict[str, Any]:
    """What the status bar shows for a kernel: the cluster it is connected to (the one it
    was auto-connected to first), its workers and tasks, cost and GPU idle time."""
    from ..accounting import cluster_accounting
    from .autoconnect import kernel_autoconnect
    from .kernels import connected_clusters, kernel_pid

    pid = kernel_pid(kernel_manager, kernel_id)
    control = ClusterControl()
    running = [r for r in control.list() if control.status(r) == "running"]
    found = connected_clusters(pid, running)
    auto = kernel_autoconnect(kernel_id)
    if auto is not None and auto["status"] == "connected":
        found = [(r, "auto-connect" if r.id == auto["cluster"] else how) for r, how in found]
        found.sort(key=lambda f: f[1] != "auto-connect")
    out: dict[str, Any] = {
        "kernel": {
            "id": kernel_id,
            "clusters": [r.id for r, _ in found],
            "how": found[0][1] if found else None,
            "autoconnect": auto,
        },
        "cluster": None,
        "workers": None,
        "tasks": None,
        "accounting": None,
        "warming_up": False,
        "error": None,
    }
    if not found:
        return out
    record = found[0][0]
    out["cluster"] = record.id
    try:
        store = collector(record.scheduler_address)
    except WorkbenchError as exc:
        out["error"] = str(exc)
        return out
    out.update(cluster_figures(store))
    out["accounting"] = cluster_accounting(record, store)
    out["warming_up"] = not _ready(store)
    out["error"] = store.error
    return out


VIEWS = ("full", "summary")


class MetricsHandler(WorkbenchHandler):
    auth_resource = "workbench:metrics"

    async def get(self) -> None:
        cluster = self.get_query_argument("cluster", None) or None
        kernel = self.get_query_argument("kernel", None) or None
        view = self.get_query_argument("view", "full")
        if view not in VIEWS:
            raise RequestError(f"view must be one of {', '.join(VIEWS)}, not {view!r}")
        if kernel is not None:
            if cluster is not None or view != "summary":
                raise RequestError("kernel=ID takes view=summary and no cluster")
            self.reply(await self.run(kernel_status, self.kernel_manager, kernel))
        elif view == "summary":
            if cluster is None:
                raise RequestError("view=summary needs cluster=ID or kernel=ID")
            self.reply(await self.run(cluster_status, cluster))
        else:
            self.reply(await self.run(metrics_snapshot, cluster))


class PrometheusHandler(WorkbenchHandler):
    auth_resource = "workbench:metrics"

    async def get(self) -> None:
        from ..metrics.prometheus import CONTENT_TYPE

        cluster = self.get_query_argument("cluster", None) or None
        text = await self.run(prometheus_text, cluster)
        self.finish(text, set_content_type=CONTENT_TYPE)
