"""What the status bar and the cluster cards show, from the routes they call: the cluster
a real kernel is connected to, its workers and running tasks while a computation runs,
the cost so far (from the cluster's owner, through the control path) and the GPU idle
time; bad requests get a clear 400."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import pytest

import workbench
from workbench.accounting import CachedCost, owner_cost
from workbench.errors import WorkbenchError

from ._kernels import execute, kernel_of
from ._lab_fixtures import IN_PROCESS_CLUSTER

pytestmark = pytest.mark.usefixtures("stop_clusters_after", "close_collectors")

PRICE = 2.5


@pytest.fixture
def close_collectors() -> Iterator[None]:
    from workbench.metrics.store import close_all
    from workbench.server import metrics

    yield
    metrics._used.clear()
    close_all()


def _launch() -> Any:
    return workbench.launch(
        "local-cpu",
        wait=True,
        price_per_worker_hour=PRICE,
        **{**IN_PROCESS_CLUSTER, "protocol": "tcp", "security": "none"},
    )


async def _status(api: Any, kernel_id: str) -> dict[str, Any]:
    reply = await api("GET", "metrics", params={"kernel": kernel_id, "view": "summary"})
    assert reply.status == 200, reply.data
    return dict(reply.data)


async def test_bad_status_requests_are_refused_clearly(api: Any) -> None:
    for params, status, words in [
        ({"view": "pie"}, 400, "view must be one of full, summary, not 'pie'"),
        ({"view": "summary"}, 400, "view=summary needs cluster=ID or kernel=ID"),
        ({"kernel": "k", "view": "full"}, 400, "kernel=ID takes view=summary"),
        ({"kernel": "k", "cluster": "c", "view": "summary"}, 400, "and no cluster"),
        ({"kernel": "nope", "view": "summary"}, 404, "no kernel with id 'nope'"),
        ({"cluster": "nope", "view": "summary"}, 404, "no running cluster with id 'nope'"),
    ]:
        reply = await api("GET", "metrics", params=params)
        assert reply.status == status and words in reply.data["message"], (params, reply.data)


@pytest.mark.slow
async def test_the_status_of_a_kernel_while_it_computes(api: Any, jp_serverapp: Any) -> None:
    handle = await asyncio.to_thread(_launch)
    try:
        async with kernel_of(jp_serverapp) as (kernel_id, client):
            status = await _status(api, kernel_id)
            assert status["cluster"] is None and status["kernel"]["clusters"] == []
            assert status["accounting"] is None  # nothing is collected for no cluster
            await execute(
                client,
                f"from distributed import Client\nclient = Client({handle.scheduler_address!r})",
            )
            started = time.perf_counter()
            status = await _status(api, kernel_id)
            first = time.perf_counter() - started
            assert status["cluster"] == handle.id
            assert status["kernel"]["how"] == "connection"
            assert status["kernel"]["autoconnect"] is None
            assert status["workers"] == 1 and status["tasks"] == 0, status
            cost = status["accounting"]["cost"]
            assert cost["price_per_worker_hour"] == PRICE and cost["workers"] == 1
            assert cost["cost"] == pytest.approx(cost["worker_hours"] * PRICE)
            assert status["accounting"]["gpu"] == {
                **status["accounting"]["gpu"],
                "gpus": 0,
                "idle_seconds": 0.0,
            }
            # a computation: the tasks show while it runs, and are gone after
            client.execute(
                "import time\n"
                "futures = client.map(time.sleep, [0.5] * 12, pure=False)\n"
                "client.gather(futures)"
            )
            busy: list[int] = []
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and not busy:
                status = await _status(api, kernel_id)
                if status["tasks"]:
                    busy.append(status["tasks"])
                await asyncio.sleep(0.5)
            assert busy and busy[0] > 0, "no running tasks seen while the kernel computed"
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                status = await _status(api, kernel_id)
                if status["tasks"] == 0:
                    break
                await asyncio.sleep(0.5)
            assert status["tasks"] == 0
            later = status["accounting"]["cost"]
            assert later["worker_hours"] > cost["worker_hours"]  # money keeps burning
            started = time.perf_counter()
            await _status(api, kernel_id)
            again = time.perf_counter() - started
            print(f"kernel status: first {first:.2f}s (collector start), then {again:.3f}s")

        # the cards: cost and GPU idle time of every running cluster
        listed = (await api("GET", "clusters")).data["clusters"]
        (card,) = listed
        assert card["accounting"]["cost"]["price_per_worker_hour"] == PRICE
        assert card["accounting"]["gpu"] is None
        assert card["accounting"]["gpu_reason"] == "the cluster has no GPUs"
        assert card["autoconnect"] is False
        summary = (
            await api("GET", "metrics", params={"cluster": handle.id, "view": "summary"})
        ).data
        assert summary["cluster"] == handle.id and summary["workers"] == 1
        assert "workers" not in summary["accounting"]  # small: no per-worker samples
    finally:
        await asyncio.to_thread(handle.close)


@pytest.mark.slow
def test_the_owner_tells_the_cost_and_the_dashboard_line_asks_it_off_thread() -> None:
    handle = _launch()
    try:
        cost, why = owner_cost(handle.record)
        assert why == "" and cost is not None
        assert cost.price_per_worker_hour == PRICE and cost.workers == 1
        mine = handle.cost()
        assert mine.worker_hours >= cost.worker_hours  # the same meter, read later
        cached = CachedCost(handle.record, ttl=60)
        with pytest.raises(WorkbenchError, match="asking its owner"):
            cached()  # the first call only starts the question
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                assert cached().price_per_worker_hour == PRICE
                break
            except WorkbenchError:
                time.sleep(0.05)
        else:
            raise AssertionError("the cached cost never arrived")
    finally:
        handle.close()
    cost, why = owner_cost(handle.record, timeout=2)
    assert cost is None and "did not answer" in why
