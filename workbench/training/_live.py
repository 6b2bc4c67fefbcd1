"""Running a cluster job while relaying its workers' progress to the calling thread.

Workers publish ``{"step": n, "metrics": {...}}`` messages (or ``{"steps": [...]}``, several
in one) on a per-job Dask event topic
(``Worker.log_event``); the client subscribes and queues them; the calling thread (the
notebook cell) hands them to the :class:`~workbench.training.progress.Reporter` in order.
A stop request (a callback returned ``True``, or the user interrupted the cell) sets a
per-job ``distributed.Event`` that the workers check between steps, so training ends at a
step boundary and the model trained so far comes back.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import contextvars
import logging
import math
import queue
import time
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from .progress import Reporter, Status

if TYPE_CHECKING:
    from distributed import Client

logger = logging.getLogger(__name__)
T = TypeVar("T")


#: Put on a job's event queue to wake the relay loop (the job ended); not an event.
_WAKE: dict[str, Any] = {}


class JobOutcome(Generic[T]):
    def __init__(self, result: T | None, status: Status, error: BaseException | None) -> None:
        self.result = result
        self.status = status
        self.error = error


class LiveJob:
    """One job's event topic and stop flag. Use as a context manager around :meth:`run`."""

    def __init__(self, client: Client, reporter: Reporter, prefix: str = "workbench") -> None:
        self.client = client
        self.reporter = reporter
        key = uuid.uuid4().hex[:12]
        self.topic = f"{prefix}-progress-{key}"
        self.stop_name = f"{prefix}-stop-{key}"
        self.events: queue.Queue[dict[str, Any]] = queue.Queue()
        self._stop_set = False

    def __enter__(self) -> LiveJob:
        def handler(event: Any) -> None:
            _, msg = event
            if isinstance(msg, dict):
                self.events.put(msg)

        self.client.subscribe_topic(self.topic, handler)
        return self

    def __exit__(self, *exc: object) -> None:
        with contextlib.suppress(Exception):
            self.client.unsubscribe_topic(self.topic)
        if self._stop_set:
            with contextlib.suppress(Exception):
                from distributed import Event

                Event(self.stop_name, client=self.client).clear()

    def request_stop(self) -> None:
        if self._stop_set:
            return
        from distributed import Event

        Event(self.stop_name, client=self.client).set()
        self._stop_set = True

    def _deliver(self, msg: dict[str, Any]) -> None:
        batch = msg.get("steps")
        if isinstance(batch, list | tuple):  # several steps in one message, in order
            for one in batch:
                if isinstance(one, dict):
                    self._deliver(one)
            return
        step = int(msg.get("step", self.reporter.step_count))
        metrics = {str(k): float(v) for k, v in (msg.get("metrics") or {}).items()}
        info = msg.get("info") or {}
        if self.reporter.step(step, metrics, **info):
            self.request_stop()

    def _drain(self, timeout: float) -> None:
        try:
            msg = self.events.get(timeout=timeout)
        except queue.Empty:
            return
        if msg is not _WAKE:
            self._deliver(msg)
        while True:
            try:
                msg = self.events.get_nowait()
            except queue.Empty:
                return
            if msg is not _WAKE:
                self._deliver(msg)

    def run(
        self,
        fn: Callable[[], T],
        final_step: Callable[[T], int] | None = None,
        grace: float = 3.0,
    ) -> JobOutcome[T]:
        """Run ``fn`` (blocking cluster work) in a helper thread, relaying events meanwhile.

        A ``KeyboardInterrupt`` or an exception from a callback stops the job at the next
        step boundary; the first interrupt waits for the partial result, a second one gives
        up waiting. Errors of ``fn`` itself come back in the outcome.
        """
        pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="workbench-train")
        # The helper thread sees the caller's context: the current Dask client in particular.
        future = pool.submit(contextvars.copy_context().run, fn)
        # the relay loop below wakes as soon as the job ends, not at its next poll
        future.add_done_callback(lambda _: self.events.put(_WAKE))
        callback_error: BaseException | None = None
        interrupted = False
        try:
            while not future.done():
                try:
                    self._drain(0.1)
                except KeyboardInterrupt:
                    if interrupted:
                        raise
                    interrupted = True
                    logger.warning("interrupted: stopping training at the next step boundary")
                    self.request_stop()
                except Exception as exc:  # a user callback failed: stop, then report it
                    if callback_error is None:
                        callback_error = exc
                    self.request_stop()
            try:
                result = future.result()
            except BaseException as exc:
                self._drain(0.0)
                return JobOutcome(None, "failed", exc)
            # Worker events may trail the result by a moment: wait until the last step is in.
            if final_step is not None:
                last = final_step(result)
                deadline = time.monotonic() + grace
                while self.reporter.step_count < last and time.monotonic() < deadline:
                    self._drain(0.05)
            self._drain(0.0)
        finally:
            pool.shutdown(wait=False)
        if callback_error is not None:
            return JobOutcome(result, "failed", callback_error)
        if interrupted:
            return JobOutcome(result, "interrupted", None)
        return JobOutcome(result, "stopped" if self.reporter.stop_requested else "finished", None)


def stop_requested(name: str, state: dict[str, Any], interval: float = 0.25) -> bool:
    """On a worker: has the job's stop Event been set?

    The scheduler is asked at most every ``interval`` seconds, in the background on the
    worker's event loop: the answer is picked up by a later call, so the training loop
    calling this never waits for a round trip (``state`` keeps the question in flight, the
    time it was asked, and the answer once it is yes).
    """
    if state.get("stop"):
        return True
    pending = state.get("pending")
    if pending is not None:
        if not pending.done():
            return False
        state["pending"] = None
        with contextlib.suppress(Exception):  # scheduler gone: nobody can ask to stop
            if pending.result():
                state["stop"] = True
                return True
    now = time.monotonic()
    if now - state.get("last", -math.inf) >= interval:
        state["last"] = now
        state["pending"] = _ask_scheduler(name)
    return False


def _ask_scheduler(name: str) -> concurrent.futures.Future[bool] | None:
    """``Event(name).is_set()`` sent from this worker's event loop; None off a worker."""
    from distributed import get_worker

    try:
        worker = get_worker()
    except ValueError:  # not on a worker: nobody can ask to stop
        return None
    return asyncio.run_coroutine_threadsafe(
        worker.scheduler.event_is_set(name=name),
        worker.loop.asyncio_loop,  # type: ignore[attr-defined]  # tornado's AsyncIOLoop
    )


def publish(topic: str, msg: dict[str, Any]) -> None:
    """On a worker: send a progress message to the client."""
    from distributed import get_worker

    with contextlib.suppress(ValueError):  # not on a worker: nothing to relay to
        get_worker().log_event(topic, msg)
