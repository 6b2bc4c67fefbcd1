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


# The fast tier (`make test-fast`, `pytest -m fast`): unit tests that start no cluster, server,
# browser or other process, the quick loop while editing. Listed here, in one place: these
# modules, less the tests named below, and less any test marked slow, gpu, slurm, s3 or
# browser. `fast_tier_starts_no_process` keeps the list true: a fast test that starts a
# process fails.
FAST_MODULES = {
    "test_backends.py",
    "test_cost.py",
    "test_credentials.py",
    "test_dashboard_model.py",
    "test_dashboard_snapshot.py",
    "test_data_catalog.py",
    "test_fast_tier.py",
    "test_gpus.py",
    "test_layout.py",
    "test_metrics_samplers.py",
    "test_profiles.py",
    "test_redact.py",
    "test_slurm_options.py",
    "test_templates.py",
    "test_training_progress.py",
    "test_training_tracking.py",
}
NOT_FAST = {
    "test_data_catalog.py::test_cli_entry_point",  # runs `python -m workbench`
    "test_gpus.py::test_worker_gpus_asks_every_worker_once",  # a local cluster
    "test_metrics_samplers.py::test_metrics_package_never_imports_panel",  # a fresh interpreter
    # a fresh interpreter without dask_jobqueue
    "test_slurm_options.py::test_slurm_backend_is_registered_and_imports_without_dask_jobqueue",
}
NOT_FAST_MARKERS = ("slow", "gpu", "slurm", "s3", "browser")


def _mark_fast_tier(items: list[pytest.Item]) -> None:
    for item in items:
        name = item.path.name
        if name not in FAST_MODULES or f"{name}::{item.name.split('[')[0]}" in NOT_FAST:
            continue
        if any(item.get_closest_marker(m) is not None for m in NOT_FAST_MARKERS):
            continue
        item.add_marker(pytest.mark.fast)


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    """With ``-m fast`` alone, the other test modules are not even imported (quicker start)."""
    name = collection_path.name
    if config.getoption("markexpr") == "fast" and name.startswith("test_") and name.endswith(".py"):
        return name not in FAST_MODULES or None
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    _mark_fast_tier(items)
    inventory = detect_gpus()
    if inventory.count:
        return
    skip = pytest.mark.skip(reason=f"no GPU: {inventory.reason}")
    for item in items:
        # The marker, not the keyword: keywords also hold directory names (a checkout in a
        # directory named "gpu" would skip every test).
        if item.get_closest_marker("gpu") is not None:
            item.add_marker(skip)


class FastTierViolation(AssertionError):
    """A test marked ``fast`` started a process (a cluster, a server, a browser, a tool)."""


@pytest.fixture(autouse=True)
def fast_tier_starts_no_process(request: pytest.FixtureRequest) -> Iterator[None]:
    """Keeps the ``fast`` marker true: a fast test that starts a subprocess or a
    multiprocessing child (every Dask cluster, SLURM, server and browser does) fails."""
    if request.node.get_closest_marker("fast") is None:
        yield
        return
    import multiprocessing.process
    import subprocess

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise FastTierViolation(
            f"{request.node.nodeid} is marked fast but started a process: {args[1:2]}; "
            "remove the fast marker or the process"
        )

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(subprocess.Popen, "__init__", refuse)
        mp.setattr(multiprocessing.process.BaseProcess, "start", refuse)
        yield


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
