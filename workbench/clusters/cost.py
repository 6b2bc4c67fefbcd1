"""Running cost estimate of a cluster: worker-hours integrated from the actual worker count.

A profile may state ``price_per_worker_hour``. The handle samples the number of connected
workers (every ``interval`` seconds and whenever asked) and integrates it over time as a
step function: between two samples the earlier count is taken to hold. The estimate is
therefore late by at most one interval for each change, in either direction.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class CostEstimate:
    """Worker-hours so far and, with a price, what they cost."""

    worker_hours: float
    workers: int
    elapsed_s: float
    price_per_worker_hour: float | None = None

    @property
    def cost(self) -> float | None:
        if self.price_per_worker_hour is None:
            return None
        return self.worker_hours * self.price_per_worker_hour

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "cost": self.cost}

    def short(self) -> str:
        """A few words for status lines: the cost when priced, else the worker-hours."""
        if self.cost is None:
            return f"{self.worker_hours:.3f} worker-hours"
        return f"cost {self.cost:.2f} ({self.worker_hours:.3f} worker-hours)"

    def __str__(self) -> str:
        hours = f"{self.worker_hours:.4f} worker-hours in {self.elapsed_s / 60:.1f} min"
        if self.cost is None:
            return f"{hours} (set price_per_worker_hour in the profile to see a cost)"
        return f"{self.cost:.4g} ({hours} at {self.price_per_worker_hour:g} per worker-hour)"


class CostMeter:
    """Integrates ``count()`` (the number of workers) over time.

    ``timeline`` keeps each change as ``(seconds since start, workers)``, so a dashboard
    can draw the worker count and the test can check the sum.
    """

    def __init__(
        self,
        count: Callable[[], int],
        price_per_worker_hour: float | None = None,
        interval: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._count = count
        self.price_per_worker_hour = price_per_worker_hour
        self.interval = interval
        self._clock = clock
        self._lock = threading.Lock()
        self._start = self._last = clock()
        self._workers = 0
        self._worker_seconds = 0.0
        self.timeline: list[tuple[float, int]] = [(0.0, 0)]
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def sample(self) -> None:
        """Account for the time since the last sample, then read the worker count."""
        if self._stop.is_set():
            return  # stopped: the estimate is final
        try:
            workers = int(self._count())
        except Exception:
            workers = None  # cluster closing: keep the last known count
        with self._lock:
            now = self._clock()
            self._worker_seconds += self._workers * (now - self._last)
            self._last = now
            if workers is not None and workers != self._workers:
                self._workers = workers
                self.timeline.append((now - self._start, workers))

    def estimate(self) -> CostEstimate:
        self.sample()
        with self._lock:
            return CostEstimate(
                worker_hours=self._worker_seconds / 3600,
                workers=self._workers,
                elapsed_s=self._last - self._start,
                price_per_worker_hour=self.price_per_worker_hour,
            )

    def start(self) -> CostMeter:
        """Sample in a daemon thread every ``interval`` seconds until :meth:`stop`."""
        self.sample()

        def run() -> None:
            while not self._stop.wait(self.interval):
                self.sample()

        self._thread = threading.Thread(target=run, name="workbench-cost", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Take a last sample and stop; the count is frozen from then on."""
        if self._stop.is_set():
            return
        self.sample()
        with self._lock:
            if self._workers:
                self._workers = 0
                self.timeline.append((self._last - self._start, 0))
            self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)
