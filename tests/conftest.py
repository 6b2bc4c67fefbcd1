"""Shared fixtures: every test gets its own workbench config and state directories."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from workbench.gpus import detect_gpus

# Fixture modules of each feature (servers the tests start, and so on).
pytest_plugins: list[str] = [
    "pytest_jupyter.jupyter_server",
    "tests._dashboard_fixtures",
    "tests._gateway_fixtures",
    "tests._lab_fixtures",
    "tests._slurm_fixtures",
    "tests._storage_fixtures",
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
        if "gpu" in item.keywords:
            item.add_marker(skip)


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
