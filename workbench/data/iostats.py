"""IO metrics of data loads: bytes read, files, throughput, in this process.

Pure Python with no third-party imports, so dashboards (``workbench.metrics``) can read it
without pulling in pandas, dask or Panel::

    from workbench.data import iostats

    iostats.snapshot()              # {"time": ..., "totals": {...}, "loads": [{...}, ...]}
    iostats.get(load_id)            # one load as a plain dict
    iostats.add_listener(callback)  # callback(event_dict) for every load and every file read

What is measured, honestly:

* ``bytes_read`` are the bytes that the storage layer handed to the readers, counted by a
  wrapper around the fsspec filesystem (``workbench.data.metering``) on whichever process
  read them (the workers of a Dask cluster, or this process). Reads served from the local
  cache of ``cache=True`` are not storage reads and are not counted; a cache fill is.
* Worker processes send one record per file they close to the scheduler as a Dask
  event (topic ``workbench.io``); the process that called ``load`` subscribes to it, so
  its numbers cover the whole cluster. Until a frame is computed only the client-side
  reads done while planning the load (listing, Parquet/ORC footers) are counted:
  ``bytes_planned`` is the size of the files, not what will be read.
* ``throughput_mb_s`` is the bytes read while computing the frame (``bytes_read`` less
  ``plan_bytes_read``, 10^6 bytes per MB) over ``busy_seconds``: the wall-clock time
  during which at least one of its files was open on some worker (the union of the
  open-to-close intervals, so idle time between two computations does not count). It is
  a read-phase rate that includes decoding interleaved with IO.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

logger = logging.getLogger(__name__)

#: Dask event topic workers publish file-read records on.
TOPIC = "workbench.io"
#: How many loads and how many file-read records are remembered.
MAX_LOADS = 256
MAX_READS = 4096

Listener = Callable[[dict[str, Any]], None]


@dataclass
class LoadStats:
    """IO of one ``workbench.data.load`` call (and every computation of its frame)."""

    load_id: str
    source: str
    format: str
    protocol: str
    started: float
    files_planned: int = 0
    bytes_planned: int = 0
    cache: str | None = None
    files_read: int = 0
    bytes_read: int = 0
    read_seconds: float = 0.0
    plan_bytes_read: int = 0
    first_read: float | None = None
    last_read: float | None = None
    workers: list[str] = field(default_factory=list)
    error: str | None = None
    _paths: set[str] = field(default_factory=set, repr=False)
    #: row counts of the Parquet footers readers parsed: ``{path: rows}``
    _rows: dict[str, int] = field(default_factory=dict, repr=False)
    _busy: list[list[float]] = field(default_factory=list, repr=False)

    @property
    def busy_seconds(self) -> float:
        return sum(end - start for start, end in self._busy)

    @property
    def throughput_mb_s(self) -> float | None:
        busy = self.busy_seconds
        nbytes = self.bytes_read - self.plan_bytes_read
        return nbytes / 1e6 / busy if busy > 0 and nbytes > 0 else None

    def add_interval(self, start: float, end: float) -> None:
        """Merge [start, end] into the union of busy intervals (kept sorted, disjoint)."""
        if end < start:
            start, end = end, start
        merged: list[list[float]] = []
        placed = False
        for a, b in self._busy:
            if b < start:
                merged.append([a, b])
            elif end < a:
                if not placed:
                    merged.append([start, end])
                    placed = True
                merged.append([a, b])
            else:
                start, end = min(a, start), max(b, end)
        if not placed:
            merged.append([start, end])
        merged.sort()
        self._busy = merged

    def to_dict(self) -> dict[str, Any]:
        data = {k: v for k, v in asdict(self).items() if not k.startswith("_")}
        data["busy_seconds"] = self.busy_seconds
        data["throughput_mb_s"] = self.throughput_mb_s
        return data


_lock = threading.RLock()
_loads: OrderedDict[str, LoadStats] = OrderedDict()
_reads: deque[dict[str, Any]] = deque(maxlen=MAX_READS)
_listeners: list[Listener] = []
_totals = {"loads": 0, "files_read": 0, "bytes_read": 0, "read_seconds": 0.0}


#: Reads done by *this* process (a worker's own reads, or the client's), per protocol:
#: ``{protocol: [bytes, reads, seconds]}``. Unlike the per-load numbers, which gather every
#: worker's reads in the process that called ``load``, these stay where the bytes were read,
#: so the metrics sampler on each worker reports that worker's IO.
_process: dict[str, list[float]] = {}


def _protocol_of(path: str) -> str:
    head, sep, _ = path.partition("://")
    return head if sep and head else "file"


def count_process_read(path: str, nbytes: int, seconds: float) -> None:
    """Count a read done in this process (called by the metered filesystem)."""
    protocol = _protocol_of(path)
    with _lock:
        counters = _process.setdefault(protocol, [0, 0, 0.0])
        counters[0] += nbytes
        counters[1] += 1
        counters[2] += seconds


def process_counters() -> dict[str, dict[str, float]]:
    """Cumulative reads of this process per protocol: ``bytes``, ``reads``, ``seconds``."""
    with _lock:
        return {p: {"bytes": c[0], "reads": c[1], "seconds": c[2]} for p, c in _process.items()}


def _notify(event: dict[str, Any]) -> None:
    for listener in list(_listeners):
        try:
            listener(event)
        except Exception:  # a broken dashboard must not break loading
            logger.exception("workbench.data.iostats listener %r failed", listener)


def start_load(
    load_id: str,
    *,
    source: str,
    format: str,
    protocol: str,
    files_planned: int = 0,
    bytes_planned: int = 0,
    cache: str | None = None,
) -> None:
    """Register a load (called by ``load``); reads carrying its id are counted against it."""
    stats = LoadStats(
        load_id=load_id,
        source=source,
        format=format,
        protocol=protocol,
        started=time.time(),
        files_planned=files_planned,
        bytes_planned=bytes_planned,
        cache=cache,
    )
    with _lock:
        previous = _loads.pop(load_id, None)
        if previous is not None:  # reads recorded while the load was being planned
            for name in ("files_read", "bytes_read", "read_seconds", "plan_bytes_read"):
                setattr(stats, name, getattr(previous, name))
            stats.first_read, stats.last_read = previous.first_read, previous.last_read
            stats._paths = previous._paths
            stats._busy = previous._busy
            stats.workers = previous.workers
        else:
            _totals["loads"] += 1
        _loads[load_id] = stats
        while len(_loads) > MAX_LOADS:
            _loads.popitem(last=False)
        event = {"type": "load", **stats.to_dict()}
    _notify(event)


def update_load(load_id: str, **fields: Any) -> None:
    """Set plan-time facts of a load (files and bytes planned, format)."""
    with _lock:
        stats = _loads.get(load_id)
        if stats is None:
            return
        for key, value in fields.items():
            setattr(stats, key, value)


def record_read(record: dict[str, Any]) -> None:
    """Count one file read. ``record`` is what ``workbench.data.metering`` emits:
    ``load_id, path, bytes, seconds, started, ended, worker, phase`` (``plan``/``read``),
    and ``rows`` when the bytes held a Parquet footer (its row count).
    """
    load_id = str(record.get("load_id", ""))
    nbytes = int(record.get("bytes", 0))
    seconds = float(record.get("seconds", 0.0))
    with _lock:
        _reads.append(dict(record))
        stats = _loads.get(load_id)
        if stats is None and load_id:
            # A read that arrives before ``start_load`` (planning) or for a load this
            # process did not start (another client on the same cluster).
            stats = LoadStats(load_id, str(record.get("path", "")), "", "", time.time())
            _loads[load_id] = stats
            _totals["loads"] += 1
        _totals["bytes_read"] += nbytes
        _totals["read_seconds"] += seconds
        if stats is not None:
            path = str(record.get("path", ""))
            if path not in stats._paths:
                stats._paths.add(path)
                stats.files_read += 1
                _totals["files_read"] += 1
            stats.bytes_read += nbytes
            stats.read_seconds += seconds
            started, ended = record.get("started"), record.get("ended")
            if record.get("phase") == "plan":
                stats.plan_bytes_read += nbytes
            elif isinstance(started, int | float) and isinstance(ended, int | float):
                stats.first_read = (
                    started if stats.first_read is None else min(stats.first_read, started)
                )
                stats.last_read = ended if stats.last_read is None else max(stats.last_read, ended)
                stats.add_interval(float(started), float(ended))
            rows = record.get("rows")
            if isinstance(rows, int) and not isinstance(rows, bool):
                stats._rows[path] = rows
            worker = record.get("worker")
            if worker and worker not in stats.workers:
                stats.workers.append(str(worker))
    _notify({"type": "read", **record})


def get(load_id: str) -> dict[str, Any]:
    """One load's IO as a plain dict. Raises KeyError for an unknown (or forgotten) id."""
    with _lock:
        return _loads[load_id].to_dict()


def footer_rows(load_id: str) -> dict[str, int]:
    """Row counts of the Parquet files of a load whose footers a reader (a worker, or
    this process) has parsed so far: ``{path URL: rows}``."""
    with _lock:
        stats = _loads.get(load_id)
        return dict(stats._rows) if stats is not None else {}


def loads() -> list[dict[str, Any]]:
    """Every remembered load, oldest first, as plain dicts."""
    with _lock:
        return [s.to_dict() for s in _loads.values()]


def recent_reads(n: int | None = None) -> list[dict[str, Any]]:
    """The last ``n`` file-read records (all remembered when ``n`` is None), oldest first."""
    with _lock:
        items = list(_reads)
    return items if n is None else items[-n:]


def totals() -> dict[str, Any]:
    """Counters since the process started (never decrease except on reset): for rates."""
    with _lock:
        return dict(_totals)


def snapshot() -> dict[str, Any]:
    """Everything, as JSON-serialisable plain data: ``time``, ``totals`` and ``loads``."""
    with _lock:
        return {
            "time": time.time(),
            "totals": dict(_totals),
            "loads": [s.to_dict() for s in _loads.values()],
        }


def add_listener(listener: Listener) -> Listener:
    """Call ``listener(event)`` for each new load (``type: load``) and each file read
    (``type: read``). Listeners run on the thread that recorded the event (for cluster
    reads, the Dask client's event-loop thread): keep them quick. Returns the listener.
    """
    with _lock:
        _listeners.append(listener)
    return listener


def remove_listener(listener: Listener) -> None:
    with _lock:
        if listener in _listeners:
            _listeners.remove(listener)


def reset() -> None:
    """Forget every load, record and total (listeners stay)."""
    with _lock:
        _loads.clear()
        _reads.clear()
        _totals.update(loads=0, files_read=0, bytes_read=0, read_seconds=0.0)


# -- receiving worker records -------------------------------------------------------------
_subscribed: set[int] = set()


def _on_event(event: Any) -> None:
    # distributed calls topic handlers with (timestamp, message).
    message = event[1] if isinstance(event, tuple | list) and len(event) == 2 else event
    if isinstance(message, dict):
        record_read(message)


def watch(client: Any) -> None:
    """Receive the file-read records of ``client``'s workers (``load`` does this for the
    client it finds). Idempotent per client. Uses the client's handler for topic
    ``workbench.io``: other code should use :func:`add_listener` rather than subscribing.
    """
    key = id(client)
    with _lock:
        if key in _subscribed and TOPIC in getattr(client, "_event_handlers", {}):
            return
        _subscribed.add(key)
    client.subscribe_topic(TOPIC, _on_event)
