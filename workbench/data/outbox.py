"""IO records of a Dask worker, sent to the scheduler from the worker's event loop.

A file read on a worker ends with one IO record for the client
(:mod:`workbench.data.iostats`). Sending it from the task's thread
(``Worker.log_event`` off the event loop) wakes the loop for every file, which costs the
reading thread more than the record is worth. :class:`Outbox` instead takes records from
any thread with a list append, and a periodic callback on the worker's event loop sends
what has accumulated every :attr:`Outbox.interval` seconds; the callback stops after a
while without records and starts again with the next one (one wake-up then). Records
reach the client at most an interval later than they would otherwise; a record put with
``soon=True`` (a footer's row count, which the manifest may be asked for as soon as the
computation ends) is sent at the loop's next turn, with one wake-up for all such records
queued meanwhile.
"""

from __future__ import annotations

import contextlib
import threading
import weakref
from typing import Any

from .iostats import TOPIC


class Outbox:
    """Records of one worker, flushed from its event loop."""

    #: seconds between two flushes while records come in
    interval = 0.1
    #: empty flushes after which the periodic callback stops
    idle_limit = 50

    def __init__(self, worker: Any) -> None:
        self._worker = weakref.ref(worker)
        self._lock = threading.Lock()
        self._records: list[dict[str, Any]] = []
        self._running = False
        self._idle = 0
        self._callback: Any = None
        self._soon = False

    def put(self, record: dict[str, Any], soon: bool = False) -> None:
        """Queue a record (any thread); starts the flushing on the loop if it is stopped.
        ``soon``: send it at the loop's next turn rather than at the next interval."""
        with self._lock:
            self._records.append(record)
            start = not self._running
            self._running = True
            wake = soon and not start and not self._soon
            self._soon = self._soon or wake
        if start or wake:
            worker = self._worker()
            if worker is None:
                raise RuntimeError("the worker is gone")
            worker.loop.add_callback(self._start if start else self._flush_soon)

    def _flush_soon(self) -> None:
        with self._lock:
            self._soon = False
        self.flush()

    def _start(self) -> None:
        from tornado.ioloop import PeriodicCallback

        if self._callback is None:
            self._callback = PeriodicCallback(self.flush, self.interval * 1000)
        self._idle = 0
        if not self._callback.is_running():
            self._callback.start()
        self.flush()

    def flush(self) -> None:
        """Send what has accumulated (on the worker's event loop)."""
        with self._lock:
            records, self._records = self._records, []
            if not records:
                self._idle += 1
                if self._idle >= self.idle_limit and self._callback is not None:
                    self._callback.stop()
                    self._running = False
                return
            self._idle = 0
        worker = self._worker()
        if worker is None:
            return
        for record in records:
            with contextlib.suppress(Exception):  # the worker is closing: nobody to tell
                worker.log_event(TOPIC, record)


_outboxes: weakref.WeakKeyDictionary[Any, Outbox] = weakref.WeakKeyDictionary()
_lock = threading.Lock()


def outbox(worker: Any) -> Outbox:
    """The outbox of ``worker`` (one per worker object, created on first use)."""
    with _lock:
        box = _outboxes.get(worker)
        if box is None:
            box = _outboxes[worker] = Outbox(worker)
        return box
