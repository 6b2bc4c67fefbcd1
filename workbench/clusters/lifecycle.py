"""Nothing left running: what ties a cluster's resources to the process that owns it.

Four mechanisms, from the most to the least graceful:

1. **Shutdown of the owner** (the interpreter exits, ``atexit``; or the kernel gets
   SIGTERM, as JupyterLab sends when a kernel does not exit within its shutdown wait):
   every open cluster is first *aborted* (queued batch jobs cancelled, a gateway cluster
   stopped, a DaskCluster deleted), all at once in threads, then closed gracefully, again
   all at once. A kernel holding several clusters is done in about the time of the
   slowest, not of their sum.
2. **The watchdog** (:mod:`workbench.clusters.watchdog`): a small process per cluster,
   in a session of its own, that waits on the owner. When the owner ends without having
   closed its cluster (SIGKILL, a crash, the kill that follows a shutdown timeout), it
   releases what the cluster held through :class:`~workbench.clusters.control.ClusterControl`
   within seconds, busy queue or not: SLURM jobs running or pending are cancelled by id
   and by the cluster's unique job name.
3. **The owner's monitor** (:class:`Monitor`, a thread per handle): it refreshes the
   record's heartbeat (so other hosts can tell a live owner from a dead one), closes the
   cluster after ``idle_timeout`` seconds without tasks (counted once the cluster has had
   a worker, and not while workers it asked for are still queued), notices when another
   process stopped the cluster, and when the scheduler stops answering.
4. **Sweeps**: ``workbench clusters cleanup`` and the JupyterLab server at start-up
   release every stale record (a watchdog that was itself killed, a host that rebooted).
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import signal
import sys
import threading
import time
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import psutil

from .. import config
from ..private import private_dir
from ..processes import reap_in_background, spawn_detached
from .record import ClusterRecord
from .record_store import HEARTBEAT_S, RecordStore

if TYPE_CHECKING:
    from .handle import ClusterHandle

logger = logging.getLogger(__name__)

#: Seconds the abort step of a shutdown may take (all clusters at once).
ABORT_TIMEOUT_S = 3.0
#: Seconds each cluster then has to close gracefully (all at once).
CLOSE_TIMEOUT_S = 10.0
#: The scheduler counts as lost after not answering for this long.
LOST_AFTER_S = 5.0

_open_handles: weakref.WeakSet[ClusterHandle] = weakref.WeakSet()
_shutdown_lock = threading.Lock()
_shutdown_done = threading.Event()
_shutting_down = False
_previous_sigterm: Any = None


def register(handle: ClusterHandle) -> None:
    """Track an open handle: closed on exit and on SIGTERM."""
    _open_handles.add(handle)
    _install_sigterm_handler()


def unregister(handle: ClusterHandle) -> None:
    _open_handles.discard(handle)


def open_handles() -> list[ClusterHandle]:
    return list(_open_handles)


def _run_all(
    handles: list[ClusterHandle], action: Callable[[ClusterHandle], None], timeout: float
) -> None:
    """Run ``action`` for every handle at once (daemon threads); wait at most ``timeout``."""
    threads = []
    for handle in handles:

        def run(h: ClusterHandle = handle) -> None:
            try:
                action(h)
            except Exception as exc:  # shutting down: log and carry on with the others
                logger.warning("workbench cluster %s: %s", h.id, exc)

        thread = threading.Thread(target=run, name=f"workbench-shutdown-{handle.id}", daemon=True)
        thread.start()
        threads.append(thread)
    deadline = time.monotonic() + timeout
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))


def shutdown_all(
    abort_timeout: float = ABORT_TIMEOUT_S, close_timeout: float = CLOSE_TIMEOUT_S
) -> None:
    """Abort, then close, every open cluster of this process, all at once. Idempotent;
    a second caller (SIGTERM during atexit) waits for the first to finish."""
    global _shutting_down
    with _shutdown_lock:
        first = not _shutting_down
        _shutting_down = True
    if not first:
        _shutdown_done.wait(abort_timeout + close_timeout + 1)
        return
    try:
        handles = [h for h in open_handles() if not h.closed]
        if not handles:
            return
        started = time.monotonic()
        _run_all(handles, lambda h: h.abort(), abort_timeout)
        aborted = time.monotonic() - started
        _run_all(handles, lambda h: h.close(timeout=close_timeout), close_timeout + 1)
        logger.info(
            "workbench: %d cluster(s) aborted in %.2fs and closed in %.2fs",
            len(handles),
            aborted,
            time.monotonic() - started,
        )
    finally:
        _shutdown_done.set()


@atexit.register
def _close_all_at_exit() -> None:
    """Close every open handle when the interpreter (the kernel) exits."""
    shutdown_all()


def _on_sigterm(signum: int, frame: Any) -> None:
    shutdown_all()
    previous = _previous_sigterm
    if callable(previous):
        previous(signum, frame)
        return
    # Then end as SIGTERM would have ended the process without this handler.
    signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)
    os.kill(os.getpid(), signal.SIGTERM)


def _install_sigterm_handler() -> None:
    """Close clusters on SIGTERM too (JupyterLab's restart sends one to a slow kernel).

    Only in the main thread, and only where nobody else handles SIGTERM (the default
    action, or Python's): a program with its own handler (``workbench launch``) keeps it.
    """
    global _previous_sigterm
    if threading.current_thread() is not threading.main_thread():
        return
    with contextlib.suppress(ValueError, OSError):
        current = signal.getsignal(signal.SIGTERM)
        if current is _on_sigterm:
            return
        if current not in (signal.SIG_DFL, None):
            return
        _previous_sigterm = current
        signal.signal(signal.SIGTERM, _on_sigterm)


# -- the watchdog -------------------------------------------------------------------------
def start_watchdog(record: ClusterRecord, store: RecordStore) -> tuple[int, float] | None:
    """Start the watchdog process of ``record`` (a new session; it outlives the owner).

    Returns its (pid, create_time), or None when it cannot be started (logged: the
    cluster still works, and sweeps still clean up after it).
    """
    logs = config.state_dir() / "logs"
    args = [
        sys.executable,
        "-m",
        "workbench.clusters.watchdog",
        "--store",
        str(store.root),
        "--cluster",
        record.id,
        "--owner",
        str(record.owner_pid),
        "--owner-created",
        repr(record.owner_create_time),
    ]
    try:
        private_dir(logs)
        proc = spawn_detached(args, logs / f"watchdog-{record.id}.log")
    except OSError as exc:
        logger.warning("cluster %s: could not start its watchdog: %s", record.id, exc)
        return None
    # Wait for it in a thread so that it leaves no zombie while the owner runs.
    reap_in_background(proc, "workbench-watchdog")
    try:
        return proc.pid, psutil.Process(proc.pid).create_time()
    except psutil.Error:
        return proc.pid, 0.0


# -- the owner's monitor ----------------------------------------------------------------------
class Monitor:
    """A thread per handle: heartbeat, idle timeout, stopped elsewhere, scheduler lost."""

    #: Seconds between two rounds.
    interval = 1.0

    def __init__(self, handle: ClusterHandle, store: RecordStore) -> None:
        self._handle = weakref.ref(handle)
        self._id = handle.id
        self._store = store
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name=f"workbench-monitor-{handle.id}", daemon=True
        )

    def start(self) -> Monitor:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        next_beat = time.monotonic() + HEARTBEAT_S
        idle_key: float | None = None
        idle_start = 0.0
        failing_since: float | None = None
        probe_broken = False
        ready = False
        while not self._stop.wait(self.interval):
            handle = self._handle()
            if handle is None or handle.closed:
                return
            now = time.monotonic()
            if not self._store.exists(self._id):
                handle._stopped_elsewhere()
                return
            if now >= next_beat:
                self._store.touch(self._id)
                next_beat = now + HEARTBEAT_S
            if probe_broken:
                continue
            try:
                since = handle._backend.idle_since(handle.cluster)
            except (OSError, TimeoutError) as exc:  # CommClosedError is an OSError
                if handle.closed:
                    return
                failing_since = failing_since or now  # when the failed probe was sent
                now = time.monotonic()
                if now - failing_since >= LOST_AFTER_S:
                    handle._lost(exc)
                continue
            except Exception as exc:
                if handle.closed:
                    return
                # Not the scheduler's absence: a cluster type the probe does not fit.
                logger.warning(
                    "cluster %s: cannot ask its scheduler whether it is idle (%s: %s); "
                    "idle_timeout and the lost-scheduler check are off for it",
                    handle.id,
                    type(exc).__name__,
                    exc,
                )
                probe_broken = True
                continue
            failing_since = None
            handle._found()
            timeout = handle.idle_timeout
            if not timeout:
                continue
            # The idle clock runs once the cluster has had a worker, and not while workers
            # it asked for are still coming (jobs in a queue, pods being scheduled).
            ready = ready or handle.n_workers() > 0
            if since is None or not ready or handle._backend.waiting_for_workers(handle.cluster):
                idle_key = None
                continue
            if since != idle_key:
                idle_key, idle_start = since, now
            if now - idle_start >= timeout:
                handle._idle_timeout_reached(now - idle_start)
                return
