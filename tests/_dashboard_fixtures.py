"""Fixtures of the metrics/dashboard tests: a real 2-worker cluster and headless chromium."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from ._browser import launch_chromium

ARTIFACTS = Path(__file__).resolve().parent.parent / "artifacts"


@dataclass
class DashCluster:
    handle: Any
    state_dir: Path

    @property
    def address(self) -> str:
        return str(self.handle.scheduler_address)


def wait_for(predicate: Callable[[], Any], timeout: float = 30.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"{what} not met within {timeout}s")


@pytest.fixture(scope="module")
def dash_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DashCluster]:
    """A real 2-worker CPU cluster (separate processes) in a private state directory."""
    import workbench
    from workbench.metrics import store as metrics_store

    state = tmp_path_factory.mktemp("dash-state")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("WORKBENCH_STATE_DIR", str(state))
        handle = workbench.launch(
            "local-cpu",
            n_workers=2,
            threads_per_worker=1,
            memory_limit="1GiB",
            dashboard_address=":0",
            wait=2,
        )
    try:
        yield DashCluster(handle, state)
    finally:
        metrics_store.close_all()
        handle.close()


@pytest.fixture
def dash_store(dash_cluster: DashCluster, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """The process-wide metrics store of ``dash_cluster``, with both workers reporting.
    The store finds the cluster's TLS credentials through its record, in the cluster's
    state directory."""
    from workbench.metrics import get_store

    monkeypatch.setenv("WORKBENCH_STATE_DIR", str(dash_cluster.state_dir))
    store = get_store(dash_cluster.address, interval=0.5)
    store.wait_for(
        lambda s: sum(1 for w in s.worker_sources() if len(w.ring) >= 2) == 2, timeout=60
    )
    yield store


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    """Headless Debian chromium driven by Playwright (installed by scripts/setup)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = launch_chromium(p)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def artifacts() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS
