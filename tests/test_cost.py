"""Cost awareness: price_per_worker_hour and the handle's running cost estimate."""

from __future__ import annotations

import itertools
import time

import pytest

import workbench
from workbench.clusters.comm import scheduler_call
from workbench.clusters.cost import CostMeter
from workbench.clusters.handle import ClusterHandle
from workbench.clusters.record_store import RecordStore
from workbench.clusters.tls import connection_args
from workbench.errors import ProfileError

SMALL = {"threads_per_worker": 1, "dashboard_address": ":0", "memory_limit": "1GiB"}


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_meter_integrates_the_worker_count_as_a_step_function() -> None:
    clock, workers = Clock(), [0]
    meter = CostMeter(lambda: workers[0], price_per_worker_hour=2.0, clock=clock)
    meter.sample()
    clock.t += 1800  # half an hour with no workers
    workers[0] = 2
    meter.sample()
    clock.t += 3600  # an hour with two
    workers[0] = 1
    meter.sample()
    clock.t += 1800  # half an hour with one
    est = meter.estimate()
    assert est.worker_hours == pytest.approx(2.5)
    assert est.cost == pytest.approx(5.0)
    assert est.elapsed_s == pytest.approx(7200) and est.workers == 1
    assert meter.timeline == [(0.0, 0), (1800.0, 2), (5400.0, 1)]
    assert "5 (2.5000 worker-hours" in str(est)
    meter.stop()
    clock.t += 3600  # stopped: nothing more accrues
    assert meter.estimate().worker_hours == pytest.approx(2.5)
    assert meter.timeline[-1] == (7200.0, 0)


def test_without_a_price_only_worker_hours_are_reported() -> None:
    clock = Clock()
    meter = CostMeter(lambda: 3, clock=clock)
    meter.sample()
    clock.t += 360
    est = meter.estimate()
    assert est.worker_hours == pytest.approx(0.3) and est.cost is None
    assert "0.3000 worker-hours in 6.0 min (set price_per_worker_hour" in str(est)
    assert est.to_dict()["cost"] is None


def test_a_negative_price_is_a_profile_error(user_profiles) -> None:
    user_profiles(
        "profiles:\n  priced:\n    backend: local\n    options:\n"
        "      gpus: none\n      price_per_worker_hour: -1\n"
    )
    with pytest.raises(ProfileError, match="price_per_worker_hour"):
        workbench.launch("priced")


@pytest.mark.slow
def test_running_cost_follows_real_scaling(user_profiles, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ClusterHandle, "cost_interval", 0.05)
    price = 36.0  # per worker-hour: 0.01 per worker-second
    user_profiles(
        "profiles:\n  priced:\n    backend: local\n    options:\n"
        f"      gpus: none\n      n_workers: 1\n      price_per_worker_hour: {price}\n"
    )
    handle = workbench.launch("priced", wait=1, **SMALL)
    try:
        t_one = time.monotonic()
        time.sleep(1.0)
        before_scale = time.monotonic()
        handle.scale(2).wait_for_workers(2, timeout=60)
        t_two = time.monotonic()
        time.sleep(1.0)
        est = handle.cost()
        t_end = time.monotonic()

        assert est.workers == 2 and est.price_per_worker_hour == price
        counts = [n for _, n in handle._cost.timeline]
        assert counts[:3] == [0, 1, 2]
        # The estimate is the integral of the meter's own timeline ...
        points = [*handle._cost.timeline, (est.elapsed_s, est.workers)]
        area = sum(n * (t2 - t1) for (t1, n), (t2, _) in itertools.pairwise(points))
        assert est.worker_hours * 3600 == pytest.approx(area, rel=1e-9)
        assert est.cost == pytest.approx(est.worker_hours * price)
        # ... and matches what the test saw: one worker, then two, each phase measured here
        # (lower bound, less one sampling interval of lag per change), never more than two
        # workers over the whole run (upper bound).
        lag = 2 * ClusterHandle.cost_interval
        seen = (before_scale - t_one) * 1 + (t_end - t_two) * 2
        assert seen - lag <= est.worker_hours * 3600 <= 2 * est.elapsed_s
        assert "Cost so far" in handle._repr_html_() and "per worker-hour" in handle._repr_html_()

        # Other processes (a dashboard) read it from the scheduler.
        record = RecordStore().get(handle.id)  # the cluster's TLS credentials, by reference
        info = scheduler_call(
            handle.scheduler_address, "workbench_info", connection_args=connection_args(record)
        )
        assert info["cost"]["price_per_worker_hour"] == price and info["cost"]["cost"] > 0
    finally:
        handle.close()
    final = handle.cost()
    time.sleep(0.2)
    assert handle.cost().worker_hours == final.worker_hours  # closed: no more cost
