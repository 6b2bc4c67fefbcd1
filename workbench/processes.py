"""Processes that outlive their starter: detached cluster launches, watchdogs, dashboards.

:func:`spawn_detached` is the one way workbench starts one: a new session (neither a closed
terminal nor a restarted Jupyter server takes it down), no stdin, no inherited file
descriptors, stdout and stderr appended to a log file only its user can read, and this
process's environment without Jupyter's token variables (:func:`~workbench.private.scrubbed_env`).
:func:`reap_in_background` waits for such a child in a daemon thread so that it leaves no
zombie behind while its starter runs.
"""

from __future__ import annotations

import subprocess
import threading
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from .private import PRIVATE_UMASK, open_private_log, scrubbed_env


def spawn_detached(
    args: Sequence[str],
    log: Path,
    env: Mapping[str, str] | None = None,
    unset: Iterable[str] = (),
) -> subprocess.Popen[bytes]:
    """Start ``args`` in a new session, logging to ``log`` (created 0600 in a 0700 folder).

    Its environment is this process's, scrubbed of Jupyter's tokens, with ``env`` added and
    the variables in ``unset`` removed; its umask is 077, so that whatever it and its
    children write (a cluster's workers: spilled data) is the user's alone. Raises OSError
    when it cannot be started.
    """
    environment = {**scrubbed_env(), **(env or {})}
    for name in unset:
        environment.pop(name, None)
    with open_private_log(log) as out:
        return subprocess.Popen(
            list(args),
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=environment,
            start_new_session=True,
            close_fds=True,
            umask=PRIVATE_UMASK,
        )


def reap_in_background(proc: subprocess.Popen[bytes], name: str = "workbench-reap") -> None:
    """Wait for ``proc`` in a daemon thread so that it leaves no zombie behind."""
    threading.Thread(target=proc.wait, name=f"{name}-{proc.pid}", daemon=True).start()
