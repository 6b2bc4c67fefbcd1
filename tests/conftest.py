"""Shared fixtures: every test gets its own workbench config and state directories."""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from workbench.gpus import detect_gpus

# Fixture modules of each feature (servers the tests start, and so on). pytest-jupyter's
# server fixtures only where it is installed: `make test` installs it; the GPU machine's
# device check (scripts/device-check) runs the gpu tests without the Jupyter stack.
pytest_plugins: list[str] = [
    *(["pytest_jupyter.jupyter_server"] if importlib.util.find_spec("pytest_jupyter") else []),
    "tests._dashboard_fixtures",
    "tests._gateway_fixtures",
    "tests._kube_standin",
    "tests._lab_fixtures",
    "tests._slurm_fixtures",
    "tests._storage_fixtures",
    "tests._timing",
    "tests._train_fixtures",
]

ROOT = Path(__file__).resolve().parent.parent
WORKBENCH = [sys.executable, "-m", "workbench"]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    inventory = detect_gpus()
    if inventory.count:
        return
    skip = pytest.mark.skip(reason=f"no GPU: {inventory.reason}")
    for item in items:
        # The marker, not the keyword: keywords also hold directory names (a checkout in a
        # directory named "gpu" would skip every test).
        if item.get_closest_marker("gpu") is not None:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def jp_asyncio_loop(request: pytest.FixtureRequest) -> Iterator[object]:
    """pytest-jupyter's event-loop fixture, for the tests that use its Jupyter server only.

    The plugin makes it autouse for every test: it installs a loop as the thread's current
    one and closes it afterwards, which breaks tests whose own libraries (Playwright's sync
    API, Panel/Bokeh servers) run an event loop in this thread.
    """
    if "jp_serverapp" not in request.fixturenames:  # jp_fetch and the like depend on it
        yield None
        return
    from jupyter_core.utils import ensure_event_loop

    loop = ensure_event_loop(prefer_selector_loop=True)
    yield loop
    loop.close()


@pytest.fixture(autouse=True)
def jp_server_cleanup(request: pytest.FixtureRequest, jp_asyncio_loop: Any) -> Iterator[None]:
    """pytest-jupyter's server clean-up (also autouse for every test there), likewise only
    where a Jupyter server ran: elsewhere it would create a ServerApp just to clean it up."""
    yield
    if jp_asyncio_loop is None:
        return
    from jupyter_server.serverapp import ServerApp

    app = ServerApp.instance()
    try:
        jp_asyncio_loop.run_until_complete(app._cleanup())
    except (RuntimeError, SystemExit) as exc:
        print("ignoring cleanup error", exc)
    if hasattr(app, "kernel_manager"):
        app.kernel_manager.context.destroy()
    ServerApp.clear_instance()


@pytest.fixture(autouse=True)
def workbench_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Private config and state directories; subprocesses inherit them through the env."""
    home = tmp_path / "wb"
    monkeypatch.setenv("WORKBENCH_CONFIG_DIR", str(home / "config"))
    monkeypatch.setenv("WORKBENCH_STATE_DIR", str(home / "state"))
    monkeypatch.delenv("WORKBENCH_TEAM_PROFILES", raising=False)
    monkeypatch.delenv("WORKBENCH_DETACHED_LOG", raising=False)
    (home / "config").mkdir(parents=True)
    yield home


@pytest.fixture
def user_profiles(workbench_home: Path):  # type: ignore[no-untyped-def]
    """Write the user's profiles.yaml and return its path."""

    def write(text: str) -> Path:
        path = workbench_home / "config" / "profiles.yaml"
        path.write_text(text)
        return path

    return write


@pytest.fixture
def subprocess_env() -> dict[str, str]:
    return {**os.environ, "PYTHONUNBUFFERED": "1"}
