"""A long window of a producer's samples in little memory: the store's mirror of a ring.

The viewer's store keeps an hour of samples from every worker. Kept as sampled, an
hour of 24 series from 1024 workers is 675 MB of float64 alone; the dashboards never
draw it at that resolution (an hour's view has ~400 points a line, 9 s each). So the
mirror keeps tiers, as round-robin databases do:

* the newest ``FINE_ROWS`` rows (5 minutes at 1 Hz) as sampled;
* rows up to ``MEDIUM_AGE`` rows old as the mean of every ``MEDIUM_MERGE`` rows;
* older rows, up to the span, as the mean of every ``COARSE_MERGE`` rows.

A merged point has the newest time of its rows; a series' value is the mean of its
values in those rows (NaN where it has none), except for counters (Prometheus names
them ``*_total``), which keep their largest, i.e. newest, value so that rates over
merged points stay right. Rows live in float64 blocks of ``BLOCK`` rows (no object per
row), so an hour of one worker costs about 800 rows instead of 3600.

It mirrors :class:`~workbench.metrics.ring.SampleRing` deltas (``apply``) and answers
the reads the store and dashboards make (``window``, ``latest``, ``last_time``,
``delta(0, 0)`` for snapshots).
"""

from __future__ import annotations

import math
import threading
import uuid
from collections import deque
from collections.abc import Iterator
from typing import Any

import numpy as np

from .base import parse_key

#: Rows of one block (a multiple of the merge factors' ratios): small, since a tier
#: holds up to a block beyond its size, large enough that the blocks cost little.
BLOCK = 18
#: Newest rows kept as sampled.
FINE_ROWS = 300
#: Rows up to this age are kept as means of ``MEDIUM_MERGE`` rows.
MEDIUM_AGE = 900
MEDIUM_MERGE = 3
#: Older rows are kept as means of ``COARSE_MERGE`` rows.
COARSE_MERGE = 9
#: Prometheus' suffix of a counter's name (its value only grows).
COUNTER_SUFFIX = "_total"


class _Tier:
    """Points of one resolution in blocks of ``BLOCK`` rows, oldest block first."""

    def __init__(self, merge: int, max_points: int) -> None:
        self.merge = merge  # sampled rows per point
        self.max_points = max_points
        # float64 in every tier: in float32 a counter of 1e12 bytes moves in steps of
        # 65536, and the rate between two merged points would be noise.
        self.blocks: deque[list[Any]] = deque()  # [times, values, filled]
        self.points = 0

    def _block_for(self, width: int) -> list[Any]:
        """The block the next row goes to, at least ``width`` values wide."""
        if not self.blocks or self.blocks[-1][2] == BLOCK:
            block: list[Any] = [
                np.empty(BLOCK),
                np.full((BLOCK, max(width, 1)), np.nan),
                0,
            ]
            self.blocks.append(block)
        block = self.blocks[-1]
        if width > block[1].shape[1]:
            wider = np.full((BLOCK, width), np.nan)
            wider[:, : block[1].shape[1]] = block[1]
            block[1] = wider
        return block

    def append_row(self, t: float, row: list[float]) -> None:
        block = self._block_for(len(row))
        filled = block[2]
        block[0][filled] = t
        block[1][filled, : len(row)] = row
        block[2] = filled + 1
        self.points += 1

    def append(self, times: np.ndarray, values: np.ndarray) -> None:
        i = 0
        while i < len(times):
            block = self._block_for(values.shape[1])
            filled = block[2]
            take = min(BLOCK - filled, len(times) - i)
            block[0][filled : filled + take] = times[i : i + take]
            block[1][filled : filled + take, : values.shape[1]] = values[i : i + take]
            block[2] = filled + take
            self.points += take
            i += take

    def overflow(self) -> list[list[Any]]:
        """Full blocks beyond ``max_points``, removed, oldest first."""
        out = []
        while self.blocks and self.blocks[0][2] == BLOCK and self.points - BLOCK >= self.max_points:
            out.append(self.blocks.popleft())
            self.points -= BLOCK
        return out

    def since(self, since_t: float) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        for times, values, filled in self.blocks:
            if filled and times[filled - 1] >= since_t:
                keep = times[:filled] >= since_t
                yield times[:filled][keep], values[:filled][keep]


class TieredRing:
    """A mirror of a :class:`~workbench.metrics.ring.SampleRing` that holds ``span``
    sampled rows' worth of time in tiers of decreasing resolution; thread-safe."""

    def __init__(self, span: int = 3600, epoch: str | None = None) -> None:
        if span < 1:
            raise ValueError(f"ring span must be at least 1 row, not {span}")
        self.span = span
        self.epoch = epoch or uuid.uuid4().hex[:12]
        self.keys: list[str] = []
        self.seq = 0
        self._index: dict[str, int] = {}
        self._counter = np.zeros(0, dtype=bool)
        self._lock = threading.Lock()
        self._tiers = self._new_tiers()

    def _new_tiers(self) -> list[_Tier]:
        fine = min(self.span, FINE_ROWS)
        tiers = [_Tier(1, fine)]
        if self.span > FINE_ROWS:
            medium = min(self.span, MEDIUM_AGE) - FINE_ROWS
            tiers.append(_Tier(MEDIUM_MERGE, math.ceil(medium / MEDIUM_MERGE)))
        if self.span > MEDIUM_AGE:
            coarse = self.span - MEDIUM_AGE
            tiers.append(_Tier(COARSE_MERGE, math.ceil(coarse / COARSE_MERGE)))
        return tiers

    def __len__(self) -> int:
        """Points held (sampled rows and merged ones)."""
        return sum(t.points for t in self._tiers)

    # -- mirroring -------------------------------------------------------------------------
    def apply(self, delta: dict[str, Any]) -> bool:
        """Mirror a producer's delta (see :meth:`SampleRing.apply`). False: the
        consumer must ask for everything again (keys were lost in transit)."""
        with self._lock:
            if delta["epoch"] != self.epoch:
                self.epoch = delta["epoch"]
                self.keys, self._index = [], {}
                self._counter = np.zeros(0, dtype=bool)
                self._tiers = self._new_tiers()
            offset = int(delta["key_offset"])
            if offset > len(self.keys):
                return False
            self._intern(delta["keys"][len(self.keys) - offset :])
            last_t = self._last_time()
            fine = self._tiers[0]
            added = 0
            for t, row in zip(delta["t"], delta["rows"], strict=True):
                if t <= last_t:
                    continue
                fine.append_row(float(t), [math.nan if v is None else v for v in row])
                last_t = t
                added += 1
            if added:
                self.seq += added
                self._cascade()
            return True

    def append(self, t: float, values: dict[str, float]) -> int:
        """Add one sample taken here (the store's cluster figures); returns its number."""
        with self._lock:
            if t <= self._last_time():
                return self.seq
            self._intern([k for k in values if k not in self._index])
            row = [math.nan] * len(self.keys)
            for key, value in values.items():
                row[self._index[key]] = value
            self.seq += 1
            self._tiers[0].append_row(float(t), row)
            self._cascade()
            return self.seq

    def _intern(self, keys: list[str]) -> None:
        for key in keys:
            self._index[key] = len(self.keys)
            self.keys.append(key)
        if keys:
            self._counter = np.array(
                [parse_key(k)[0].endswith(COUNTER_SUFFIX) for k in self.keys], dtype=bool
            )

    def _cascade(self) -> None:
        if self._tiers[0].points - BLOCK < self._tiers[0].max_points:
            return  # the usual case: nothing overflows
        for i, tier in enumerate(self._tiers):
            for times, values, _ in tier.overflow():
                if i + 1 == len(self._tiers):
                    continue  # older than the span
                ratio = self._tiers[i + 1].merge // tier.merge
                self._tiers[i + 1].append(*self._merge(times, values, ratio))

    def _merge(
        self, times: np.ndarray, values: np.ndarray, ratio: int
    ) -> tuple[np.ndarray, np.ndarray]:
        groups = values.reshape(BLOCK // ratio, ratio, values.shape[1])
        valid = ~np.isnan(groups)
        counts = valid.sum(axis=1)
        sums = np.where(valid, groups, 0.0).sum(axis=1)
        means = np.full(sums.shape, np.nan)
        np.divide(sums, counts, out=means, where=counts > 0)
        counter = self._counter[: values.shape[1]]
        if counter.any():
            means[:, counter] = np.fmax.reduce(groups[:, :, counter], axis=1)
        return times.reshape(-1, ratio)[:, -1].copy(), means

    # -- reading ---------------------------------------------------------------------------
    def _last_time(self) -> float:
        for tier in self._tiers:  # newest first
            if tier.points:
                times, _, filled = tier.blocks[-1]
                return float(times[filled - 1])
        return float("-inf")

    def last_time(self) -> float | None:
        with self._lock:
            t = self._last_time()
            return None if t == float("-inf") else t

    def window(self, since_t: float) -> tuple[list[str], np.ndarray, np.ndarray]:
        """``(keys, times, values)`` of points with ``t >= since_t``, oldest first:
        ``values[i, k]`` is key ``k`` at ``times[i]`` (NaN: no value)."""
        with self._lock:
            width = len(self.keys)
            parts_t: list[np.ndarray] = []
            parts_v: list[np.ndarray] = []
            for tier in reversed(self._tiers):
                for times, values in tier.since(since_t):
                    if values.shape[1] < width:
                        padded = np.full((len(times), width), np.nan)
                        padded[:, : values.shape[1]] = values
                        values = padded
                    parts_t.append(times)
                    parts_v.append(values[:, :width])
            if not parts_t:
                return list(self.keys), np.empty(0), np.empty((0, width))
            return list(self.keys), np.concatenate(parts_t), np.concatenate(parts_v)

    def latest(self) -> tuple[float, dict[str, float]] | None:
        """The newest point as ``(t, {key: value})``, or None if empty."""
        keys, times, values = self.window(self.last_time() or float("inf"))
        if not len(times):
            return None
        row = values[-1]
        return float(times[-1]), {k: float(v) for k, v in zip(keys, row, strict=False) if v == v}

    def __iter__(self) -> Iterator[tuple[float, dict[str, float]]]:
        """Every point held, oldest first, as ``(t, {key: value})``."""
        keys, times, values = self.window(float("-inf"))
        for t, row in zip(times.tolist(), values.tolist(), strict=True):
            yield t, {k: v for k, v in zip(keys, row, strict=True) if v == v}

    def delta(self, since: int = 0, known_keys: int = 0) -> dict[str, Any]:
        """Every point held, as a :class:`SampleRing` delta (for snapshots); a mirror
        answers no cursors, so ``since`` and ``known_keys`` must be 0."""
        if since or known_keys:
            raise ValueError("a tiered mirror gives its whole content only (since=0)")
        keys, times, values = self.window(float("-inf"))
        return {
            "epoch": self.epoch,
            "seq": self.seq,
            "key_offset": 0,
            "keys": keys,
            "t": times.tolist(),
            "rows": [[None if v != v else float(v) for v in row] for row in values.tolist()],
            "lost": 0,
        }
