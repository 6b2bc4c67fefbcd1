"""Clusters that run in a process of their own, outside the caller.

``workbench launch --detach`` and the JupyterLab server both start clusters this
way: ``python -m workbench launch PROFILE`` in a new session (so neither a closed
terminal nor a restarted Jupyter server takes it down), logging to
``<state dir>/logs/``. The caller waits until the process has registered the
cluster in the on-disk :class:`~workbench.clusters.record_store.RecordStore` and
its workers are up, and gets that record back.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import config
from ..errors import WorkbenchError
from ..private import private_dir
from ..processes import reap_in_background, spawn_detached
from .record import ClusterRecord
from .record_store import RecordStore

if TYPE_CHECKING:
    from .backend import Backend

#: What the launching process prints once its cluster is ready (see ``workbench launch``).
READY_MARKER = "Press Ctrl-C"
#: Seconds between two looks at a starting cluster process.
POLL_S = 0.2


class LaunchError(WorkbenchError):
    """The detached cluster process failed or was not ready in time; ``log`` says why."""

    def __init__(self, message: str, log: Path) -> None:
        self.log = log
        super().__init__(message)


def prepare_launch(profile: str, overrides: dict[str, Any] | None = None) -> Backend:
    """The backend that launching PROFILE with ``overrides`` would use, options resolved
    and validated (bad ones raise the profile's error), nothing checked or started."""
    from .backend_registry import get_backend_class
    from .profiles import get_profile

    prof = get_profile(profile)
    options = prof.resolve(**dict(overrides or {}))
    return get_backend_class(prof.backend)(options, profile=prof.name)


def check_launch(profile: str, overrides: dict[str, Any]) -> None:
    """Raise the same error the cluster process would, before starting it.

    Unknown profiles, invalid overrides and missing resources (more GPUs than the
    machine has) are reported at once instead of after a process start.
    """
    prepare_launch(profile, overrides).check()


def check_verdict(backend: Backend) -> str:
    """What the backend's checks against the live system said, after ``check()`` passed
    (SLURM: ``sbatch --test-only``'s estimate; empty where a backend says nothing)."""
    return str(getattr(backend, "test_only_message", "") or "")


def preview_launch(
    profile: str, overrides: dict[str, Any] | None = None, check: bool = True
) -> dict[str, Any]:
    """What launching PROFILE would do, without starting anything: the resolved options,
    the batch script each job would run (backends that submit jobs; ``None`` otherwise),
    and, with ``check``, the verdict of the backend's checks against the live system
    (``sbatch --test-only`` for SLURM). Bad options or a failed check raise the error a
    launch would raise."""
    backend = prepare_launch(profile, overrides)
    script = backend.job_script()
    if check:
        backend.check()
    return {
        "profile": backend.profile,
        "backend": backend.name,
        "kind": backend.describe().get("kind") or backend.name,
        "options": backend.options.model_dump(mode="json"),
        "job_script": script,
        "checked": check,
        "verdict": check_verdict(backend) if check else None,
    }


def start_detached(
    profile: str,
    overrides: dict[str, Any] | None = None,
    timeout: float = 120.0,
    store: RecordStore | None = None,
    checked: bool = False,
) -> PendingLaunch:
    """Start the cluster process and return at once; :meth:`PendingLaunch.poll` says when
    it is ready (the JupyterLab server polls it without holding a thread meanwhile).
    ``checked``: the caller ran :func:`check_launch` itself (as a step of its own)."""
    return _spawn(profile, overrides, timeout, store, checked)


def launch_detached(
    profile: str,
    overrides: dict[str, Any] | None = None,
    timeout: float = 120.0,
    store: RecordStore | None = None,
) -> ClusterRecord:
    """Start PROFILE in a new background process and return its record.

    Blocks until the cluster is registered and ready (at most ``timeout`` + 30 s).
    The process outlives the caller; stop it with ``ClusterControl().stop(id)``.
    Raises the profile's own error for bad input, LaunchError (with the log's tail)
    when the process fails.
    """
    pending = start_detached(profile, overrides, timeout, store)
    while True:
        record = pending.poll()
        if record is not None:
            return record
        time.sleep(POLL_S)


def _spawn(
    profile: str,
    overrides: dict[str, Any] | None,
    timeout: float,
    store: RecordStore | None,
    checked: bool = False,
) -> PendingLaunch:
    overrides = dict(overrides or {})
    if not checked:
        check_launch(profile, overrides)
    store = store or RecordStore()
    logs = private_dir(config.state_dir() / "logs")
    log = logs / f"launch-{int(time.time() * 1000)}-{os.getpid()}-{threading.get_ident()}.log"
    args = [sys.executable, "-m", "workbench", "launch", profile, "--timeout", str(timeout)]
    for key, value in overrides.items():
        args += ["-o", f"{key}={json.dumps(value)}"]
    proc = spawn_detached(
        args, log, env={"WORKBENCH_DETACHED_LOG": str(log), "PYTHONUNBUFFERED": "1"}
    )
    return PendingLaunch(profile, proc, log, store, time.monotonic() + timeout + 30, timeout)


@dataclass
class PendingLaunch:
    """A detached cluster process that is starting."""

    profile: str
    proc: subprocess.Popen[bytes]
    log: Path
    store: RecordStore
    deadline: float
    timeout: float

    def poll(self) -> ClusterRecord | None:
        """Its record once ready; None while it starts; LaunchError when it failed."""
        proc, log, profile = self.proc, self.log, self.profile
        mine = [r for r in self.store.list() if r.owner_pid == proc.pid]
        if mine and READY_MARKER in log.read_text(errors="replace"):
            reap_in_background(proc)
            return mine[0]
        if proc.poll() is not None:
            tail = log.read_text(errors="replace").strip().splitlines()[-15:]
            raise LaunchError(
                f"the cluster process for profile {profile!r} exited before the cluster was "
                f"ready (log: {log}):\n" + "\n".join(tail),
                log,
            )
        if time.monotonic() > self.deadline:
            proc.terminate()
            reap_in_background(proc)
            raise LaunchError(
                f"the cluster for profile {profile!r} was not ready within "
                f"{self.timeout + 30:.0f}s; log: {log}",
                log,
            )
        return None
