"""A real single-node SLURM for the `slurm` tests, started by scripts/slurm-up.

The session fixture FAILS (it does not skip) when SLURM cannot start: `make test` must
exercise the SLURM backend. Each checkout gets its own SLURM (own directory and ports),
stopped by scripts/slurm-down at the end of the session.
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from workbench.clusters.slurm import JOB_SUFFIX_BYTES
from workbench.gpus import detect_gpus

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class SlurmInstance:
    dir: Path
    conf: str
    gpus: int

    def env(self) -> dict[str, str]:
        return {**os.environ, "SLURM_CONF": self.conf}

    def squeue(self, *args: str) -> list[str]:
        """Lines of `squeue -h ARGS` (jobs that are pending, running or completing)."""
        out = subprocess.run(
            ["squeue", "-h", *args],
            env=self.env(),
            capture_output=True,
            text=True,
            check=True,
            timeout=30,
        )
        return [line for line in out.stdout.splitlines() if line.strip()]

    def jobs_named(self, name: str) -> list[str]:
        """Ids of the jobs called ``name``, or ``name`` and a cluster's unique suffix
        (workbench adds one to every job name a profile gives)."""
        return list(self.job_states(name))

    def job_states(self, name: str) -> dict[str, tuple[str, str]]:
        """job id -> (state, reason) of the jobs :meth:`jobs_named` finds."""
        pattern = re.compile(rf"{re.escape(name)}(-[0-9a-f]{{{2 * JOB_SUFFIX_BYTES}}})?")
        return {
            job: (state, reason)
            for job, state, reason, job_name in (
                line.split("|", 3) for line in self.squeue("-o", "%i|%T|%r|%j")
            )
            if pattern.fullmatch(job_name.strip())
        }

    def wait_no_jobs(self, name: str, timeout: float = 60) -> None:
        """Until squeue shows no job called ``name`` (completing ones included)."""
        deadline = time.monotonic() + timeout
        while self.jobs_named(name):
            if time.monotonic() > deadline:
                raise AssertionError(f"jobs left in squeue: {self.squeue('-n', name)}")
            time.sleep(0.3)

    def sbatch(self, *args: str) -> str:
        out = subprocess.run(
            ["sbatch", "--parsable", *args],
            env=self.env(),
            capture_output=True,
            text=True,
            check=True,
            timeout=30,
        )
        return out.stdout.strip().split(";")[0]

    def scancel(self, *args: str) -> None:
        subprocess.run(["scancel", *args], env=self.env(), check=True, timeout=30)


@pytest.fixture(scope="session")
def slurm_instance() -> Iterator[SlurmInstance]:
    key = hashlib.sha1(str(ROOT).encode()).hexdigest()[:8]
    state = Path(tempfile.gettempdir()) / f"wb-slurm-test-{key}"
    real = detect_gpus().count
    gpus = real or 2  # fake GRES on CPU machines; the real GPUs' count on GPU machines
    up = subprocess.run(
        [str(ROOT / "scripts" / "slurm-up"), "--dir", str(state), "--gpus", str(gpus)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    if up.returncode != 0:
        pytest.fail(
            "SLURM could not start (scripts/slurm-up; the slurm tests need it):\n"
            + up.stdout
            + up.stderr,
            pytrace=False,
        )
    line = [ln for ln in up.stdout.splitlines() if ln.startswith("export SLURM_CONF=")][-1]
    instance = SlurmInstance(state, line.split("=", 1)[1], gpus)
    yield instance
    subprocess.run(
        [str(ROOT / "scripts" / "slurm-down"), "--dir", str(state), "--quiet"],
        timeout=120,
        check=False,
    )


@pytest.fixture
def slurm(slurm_instance: SlurmInstance, monkeypatch: pytest.MonkeyPatch) -> SlurmInstance:
    """The session's SLURM, with SLURM_CONF exported for this test (and its subprocesses)."""
    monkeypatch.setenv("SLURM_CONF", slurm_instance.conf)
    return slurm_instance


@pytest.fixture
def unique_name(request: pytest.FixtureRequest) -> Callable[[str], str]:
    """A SLURM job name unique to this test, so assertions on squeue see only its jobs."""
    token = hashlib.sha1(f"{request.node.nodeid}{time.time()}".encode()).hexdigest()[:6]

    def make(prefix: str = "wbtest") -> str:
        return f"{prefix}-{token}"

    return make
