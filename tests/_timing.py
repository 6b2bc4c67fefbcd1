"""Timings that fault and contract tests measure, printed at the end of the run.

A test asks for ``timings`` and records what it measured::

    with timings.measure("released after SIGKILL"):
        wait_until(nothing_held, 60)
    timings.record("launch", seconds)

The terminal summary lists every timing of the run (test, what, seconds); with
``WORKBENCH_TEST_TIMINGS=FILE`` each is also appended to FILE as a JSON line, so that
repeated runs can be compared.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

_RECORDED: list[tuple[str, str, float]] = []


@dataclass
class Timings:
    test: str
    entries: list[tuple[str, float]] = field(default_factory=list)

    def record(self, what: str, seconds: float) -> float:
        self.entries.append((what, seconds))
        _RECORDED.append((self.test, what, seconds))
        path = os.environ.get("WORKBENCH_TEST_TIMINGS")
        if path:
            with open(path, "a") as out:
                out.write(json.dumps({"test": self.test, "what": what, "s": seconds}) + "\n")
        return seconds

    @contextlib.contextmanager
    def measure(self, what: str) -> Iterator[None]:
        start = time.perf_counter()
        yield
        self.record(what, time.perf_counter() - start)


@pytest.fixture
def timings(request: pytest.FixtureRequest) -> Timings:
    return Timings(request.node.nodeid)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not _RECORDED:
        return
    terminalreporter.section("timings measured by the tests")
    for test, what, seconds in _RECORDED:
        terminalreporter.write_line(f"{seconds:8.2f}s  {what:<45} {test}")
