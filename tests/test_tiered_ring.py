"""The store's long-window mirror: the newest rows as sampled, older rows merged, an hour
of a worker in a bounded number of points, fed by a real producer ring's deltas."""

from __future__ import annotations

import numpy as np
import pytest

from workbench.metrics.ring import SampleRing
from workbench.metrics.tiered_ring import (
    BLOCK,
    COARSE_MERGE,
    FINE_ROWS,
    MEDIUM_AGE,
    MEDIUM_MERGE,
    TieredRing,
)

GAUGE = "workbench_cpu_utilization_percent"
COUNTER = "workbench_net_sent_bytes_total"
LATE = 'workbench_gpu_utilization_percent{gpu="0"}'
T0 = 1_800_000_000.0


def _feed(rows: int, start: int = 0) -> tuple[SampleRing, TieredRing, dict[str, list[float]]]:
    """A producer at 1 Hz (a gauge, a counter, and a series that starts at row 1000),
    mirrored delta by delta; returns both rings and what was sampled."""
    producer = SampleRing(capacity=600)
    mirror = TieredRing(3600)
    sent: dict[str, list[float]] = {"t": [], GAUGE: [], COUNTER: [], LATE: []}
    for i in range(start, start + rows):
        values = {GAUGE: float(i % 100), COUNTER: 1e12 + 1000.0 * i}
        if i >= 1000:
            values[LATE] = 50.0
        producer.append(T0 + i, values)
        sent["t"].append(T0 + i)
        for k in (GAUGE, COUNTER, LATE):
            sent[k].append(values.get(k, np.nan))
        if i % 7 == 6 or i == start + rows - 1:  # deltas of a few rows, as pulls bring them
            assert mirror.apply(producer.delta_for("store"))
    return producer, mirror, sent


def test_short_windows_are_kept_as_sampled() -> None:
    producer, mirror, _ = _feed(FINE_ROWS - 10)
    keys, times, values = mirror.window(T0 + 100)
    pkeys, ptimes, pvalues = producer.window(T0 + 100)
    assert keys == pkeys
    np.testing.assert_array_equal(times, ptimes)
    np.testing.assert_array_equal(values, pvalues)
    assert mirror.latest() == producer.latest()
    assert list(mirror)[-200:] == list(producer)[-200:]
    assert mirror.last_time() == T0 + FINE_ROWS - 11


def test_an_hour_is_held_in_tiers_with_means_and_counters_newest() -> None:
    _, mirror, sent = _feed(3600)
    keys, times, values = mirror.window(float("-inf"))
    t = np.array(sent["t"])
    end = t[-1]
    # the whole hour is covered, in far fewer points than rows
    assert times[0] <= end - 3600 + COARSE_MERGE + 1
    bound = (FINE_ROWS + BLOCK) + (MEDIUM_AGE - FINE_ROWS) // MEDIUM_MERGE + BLOCK
    bound += (3600 - MEDIUM_AGE) // COARSE_MERGE + BLOCK
    assert len(mirror) == len(times) <= bound < 3600 // 3
    assert np.all(np.diff(times) > 0)
    # the newest FINE_ROWS rows are exactly what was sampled
    fine = times >= end - FINE_ROWS + 1
    assert fine.sum() >= FINE_ROWS
    gauge, counter, late = (values[:, keys.index(k)] for k in (GAUGE, COUNTER, LATE))
    idx = np.searchsorted(t, times[fine])
    np.testing.assert_array_equal(gauge[fine], np.array(sent[GAUGE])[idx])
    # a merged point: newest time of its rows, mean of a gauge, newest value of a counter
    for merge in (MEDIUM_MERGE, COARSE_MERGE):
        steps = np.diff(times)
        (where,) = np.nonzero(steps == merge)
        assert len(where), f"no points merged from {merge} rows"
        i = int(where[len(where) // 2]) + 1
        rows = np.searchsorted(t, times[i]) - np.arange(merge)
        assert gauge[i] == pytest.approx(np.mean(np.array(sent[GAUGE])[rows]))
        assert counter[i] == np.array(sent[COUNTER])[rows].max()
    # a series that started late has no value before it started, and a mean after
    assert np.isnan(late[times < T0 + 1000 - COARSE_MERGE]).all()
    assert (late[times >= T0 + 1000 + COARSE_MERGE] == 50.0).all()


def test_memory_of_an_hour_is_bounded_and_snapshots_round_trip() -> None:
    _, mirror, _ = _feed(3600)
    held = sum(b[0].nbytes + b[1].nbytes for tier in mirror._tiers for b in tier.blocks)
    as_sampled = 3600 * (len(mirror.keys) + 1) * 8
    assert held < as_sampled / 3
    restored = SampleRing(len(mirror), epoch=mirror.epoch)
    assert restored.apply(mirror.delta(0, 0))
    keys, times, values = mirror.window(float("-inf"))
    rkeys, rtimes, rvalues = restored.window(float("-inf"))
    assert rkeys == keys
    np.testing.assert_array_equal(rtimes, times)
    np.testing.assert_array_equal(rvalues, values)
    with pytest.raises(ValueError, match="whole content"):
        mirror.delta(5, 0)


def test_a_restarted_producer_starts_the_mirror_over_and_lost_keys_ask_for_a_reset() -> None:
    _, mirror, _ = _feed(500)
    restarted = SampleRing(capacity=600)  # new epoch, new key table
    restarted.append(T0 + 10_000, {COUNTER: 5.0})
    assert mirror.apply(restarted.delta_for("store"))
    keys, times, values = mirror.window(float("-inf"))
    assert keys == [COUNTER] and times.tolist() == [T0 + 10_000] and values.tolist() == [[5.0]]
    # a delta whose keys start beyond what the mirror has: keys were lost in transit
    restarted.append(T0 + 10_001, {GAUGE: 1.0})
    delta = restarted.delta(since=1, known_keys=1)
    delta["key_offset"] = 2
    assert not mirror.apply(delta)
    # rows not newer than the newest held are skipped (a reset resends the whole ring)
    assert mirror.apply(restarted.delta())
    assert mirror.window(float("-inf"))[1].tolist() == [T0 + 10_000, T0 + 10_001]


def test_local_samples_and_a_short_span() -> None:
    ring = TieredRing(span=50)
    assert ring.latest() is None and ring.last_time() is None
    for i in range(200):
        ring.append(T0 + i, {GAUGE: float(i)} if i % 2 else {COUNTER: float(i)})
    keys, times, values = ring.window(float("-inf"))
    assert keys == [COUNTER, GAUGE]
    assert 50 <= len(times) < 50 + BLOCK and times[-1] == T0 + 199
    assert np.isnan(values[-1, 0]) and values[-1, 1] == 199.0
    assert ring.latest() == (T0 + 199, {GAUGE: 199.0})
    with pytest.raises(ValueError, match="at least 1 row"):
        TieredRing(span=0)
