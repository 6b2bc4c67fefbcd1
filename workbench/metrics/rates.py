"""Rates from monotonically increasing counters, and energy from power over time."""

from __future__ import annotations


class CounterRates:
    """Per-second rates from successive readings of cumulative counters.

    The first reading of a counter yields no rate. A counter that goes backwards (a
    reset, a driver reload, a wrapped 32-bit counter without ``wrap``) yields no rate
    for that interval instead of a huge negative one.
    """

    def __init__(self) -> None:
        self._last: dict[str, tuple[float, float]] = {}

    def rate(self, key: str, value: float, now: float, wrap: float | None = None) -> float | None:
        prev = self._last.get(key)
        self._last[key] = (value, now)
        if prev is None:
            return None
        last_value, last_time = prev
        dt = now - last_time
        if dt <= 0:
            return None
        delta = value - last_value
        if delta < 0:
            if wrap is None:
                return None
            delta += wrap
        return delta / dt

    def forget(self, key: str) -> None:
        self._last.pop(key, None)


class EnergyIntegrator:
    """Energy in joules from power readings (trapezoidal rule), for devices without an
    energy counter. Gaps longer than ``max_gap`` seconds are not integrated (a stalled
    sampler must not invent energy)."""

    def __init__(self, max_gap: float = 30.0) -> None:
        self.max_gap = max_gap
        self.joules = 0.0
        self._last: tuple[float, float] | None = None

    def add(self, watts: float, now: float) -> float:
        if self._last is not None:
            last_watts, last_time = self._last
            dt = now - last_time
            if 0 < dt <= self.max_gap:
                self.joules += 0.5 * (watts + last_watts) * dt
        self._last = (watts, now)
        return self.joules
