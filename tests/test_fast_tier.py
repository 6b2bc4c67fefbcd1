"""The fast tier (tests/conftest.py, `make test-fast`) stays true: a test in it that starts a
process (what every cluster, server, SLURM command and browser does) fails."""

from __future__ import annotations

import multiprocessing
import subprocess
import sys

import pytest

from .conftest import FastTierViolation


def test_this_module_is_in_the_fast_tier(request: pytest.FixtureRequest) -> None:
    assert request.node.get_closest_marker("fast") is not None


def test_a_fast_test_cannot_start_a_subprocess() -> None:
    with pytest.raises(FastTierViolation, match="is marked fast but started a process"):
        subprocess.run([sys.executable, "-c", "pass"], check=False)


def test_a_fast_test_cannot_start_a_cluster_process() -> None:
    """Dask's local clusters start their workers (and nannies) as multiprocessing children."""
    ctx = multiprocessing.get_context("spawn")
    with pytest.raises(FastTierViolation, match="is marked fast but started a process"):
        ctx.Process(target=print).start()
