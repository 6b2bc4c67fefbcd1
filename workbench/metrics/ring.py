"""A bounded ring buffer of samples with compact deltas for pulling over the network.

Series keys are interned in an append-only key table; a row holds the values of one
sample aligned to that table, as a packed array of doubles (NaN where a series has no
value: 8 bytes a value, so an hour of 1 Hz samples of 40 series is about 1.2 MB). On
the wire a missing value is ``None``. A consumer
that already has ``k`` keys and rows up to ``seq`` receives only the new keys and
the new rows::

    {"epoch": "4f1c...", "seq": 812, "key_offset": 37, "keys": [...new keys...],
     "t": [1733.0, ...], "rows": [[0.5, None, 12.0, ...], ...], "lost": 0}

``epoch`` changes when the producer restarts (a new ring): the consumer starts over.
A producer keeps one cursor per consumer, so requests are a few bytes and each
viewer process gets every row once.
"""

from __future__ import annotations

import math
import threading
import uuid
from array import array
from collections import OrderedDict, deque
from collections.abc import Iterator
from typing import Any, TypeAlias

import numpy as np

Row: TypeAlias = "array[float]"  # array("d"), NaN for "no value"
NAN = math.nan


def _wire(row: Row) -> list[float | None]:
    return [None if v != v else v for v in row]  # v != v: NaN


def _packed(values: list[float | None]) -> Row:
    return array("d", [NAN if v is None else v for v in values])


class SampleRing:
    """Samples ``(seq, t, row)`` of at most ``capacity`` rows; thread-safe."""

    def __init__(self, capacity: int = 600, epoch: str | None = None) -> None:
        if capacity < 1:
            raise ValueError(f"ring capacity must be at least 1, not {capacity}")
        self.capacity = capacity
        self.epoch = epoch or uuid.uuid4().hex[:12]
        self.keys: list[str] = []
        self._index: dict[str, int] = {}
        self._rows: deque[tuple[int, float, Row]] = deque(maxlen=capacity)
        self.seq = 0
        self._lock = threading.Lock()
        #: Per-consumer cursors (seq, number of keys sent), most recent last.
        self._cursors: OrderedDict[str, tuple[int, int]] = OrderedDict()
        self.max_consumers = 64

    def __len__(self) -> int:
        return len(self._rows)

    # -- producing -------------------------------------------------------------------------
    def append(self, t: float, values: dict[str, float]) -> int:
        """Add one sample; returns its sequence number."""
        with self._lock:
            index = self._index
            for key in values:
                if key not in index:
                    index[key] = len(self.keys)
                    self.keys.append(key)
            row: Row = array("d", [NAN]) * len(self.keys)
            for key, value in values.items():
                row[index[key]] = value
            self.seq += 1
            self._rows.append((self.seq, t, row))
            return self.seq

    def delta(self, since: int = 0, known_keys: int = 0) -> dict[str, Any]:
        """Rows after ``since`` and keys from ``known_keys`` on."""
        with self._lock:
            known_keys = min(max(known_keys, 0), len(self.keys))
            newer: list[tuple[int, float, Row]] = []
            for item in reversed(self._rows):
                if item[0] <= since:
                    break
                newer.append(item)
            newer.reverse()
            lost = 0
            if newer and since and newer[0][0] > since + 1:
                lost = newer[0][0] - since - 1
            return {
                "epoch": self.epoch,
                "seq": self.seq,
                "key_offset": known_keys,
                "keys": self.keys[known_keys:],
                "t": [t for _, t, _ in newer],
                "rows": [_wire(row) for _, _, row in newer],
                "lost": lost,
            }

    def delta_for(self, consumer: str, reset: bool = False) -> dict[str, Any]:
        """The delta a named consumer has not had yet (everything on first call or reset)."""
        with self._lock:
            cursor = None if reset else self._cursors.get(consumer)
        since, nkeys = cursor if cursor is not None else (0, 0)
        out = self.delta(since, nkeys)
        with self._lock:
            self._cursors[consumer] = (out["seq"], out["key_offset"] + len(out["keys"]))
            self._cursors.move_to_end(consumer)
            while len(self._cursors) > self.max_consumers:
                self._cursors.popitem(last=False)
        return out

    # -- consuming -------------------------------------------------------------------------
    def apply(self, delta: dict[str, Any]) -> bool:
        """Mirror a producer's delta. Returns False if the consumer must ask for a reset.

        A new epoch starts the mirror over. Rows not newer than the last one held are
        skipped, so a reset (which resends the producer's whole ring) adds no duplicates.
        """
        with self._lock:
            if delta["epoch"] != self.epoch:
                self.epoch = delta["epoch"]
                self.keys = []
                self._index = {}
                self._rows.clear()
            offset = int(delta["key_offset"])
            if offset > len(self.keys):
                return False  # keys were lost in transit: ask for everything again
            for key in delta["keys"][len(self.keys) - offset :]:
                self._index[key] = len(self.keys)
                self.keys.append(key)
            last_t = self._rows[-1][1] if self._rows else float("-inf")
            for t, row in zip(delta["t"], delta["rows"], strict=True):
                if t <= last_t:
                    continue
                self.seq += 1
                self._rows.append((self.seq, float(t), _packed(row)))
                last_t = t
            return True

    # -- reading ---------------------------------------------------------------------------
    def latest(self) -> tuple[float, dict[str, float]] | None:
        """The newest sample as ``(t, {key: value})``, or None if empty."""
        with self._lock:
            if not self._rows:
                return None
            _, t, row = self._rows[-1]
            keys = self.keys
            return t, {keys[i]: v for i, v in enumerate(row) if v == v}

    def window(self, since_t: float) -> tuple[list[str], np.ndarray, np.ndarray]:
        """``(keys, times, values)`` of samples with ``t >= since_t``, oldest first:
        ``values[i, k]`` is key ``k`` at ``times[i]`` (NaN: no value)."""
        with self._lock:
            picked: list[tuple[int, float, Row]] = []
            for item in reversed(self._rows):
                if item[1] < since_t:
                    break
                picked.append(item)
            keys = list(self.keys)
        picked.reverse()
        values = np.full((len(picked), len(keys)), np.nan)
        for i, (_, _, row) in enumerate(picked):
            values[i, : len(row)] = np.frombuffer(row, dtype=np.float64)
        return keys, np.array([t for _, t, _ in picked], dtype=float), values

    def last_time(self) -> float | None:
        with self._lock:
            return self._rows[-1][1] if self._rows else None

    def __iter__(self) -> Iterator[tuple[float, dict[str, float]]]:
        with self._lock:
            rows = list(self._rows)
            keys = list(self.keys)
        for _, t, row in rows:
            yield t, {keys[i]: v for i, v in enumerate(row) if v == v}
