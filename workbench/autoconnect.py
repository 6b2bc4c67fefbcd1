"""Auto-connect: new notebooks' kernels get a ``client`` of a chosen cluster by themselves.

A cluster is marked "use in new notebooks" (the Workbench sidebar, or
``PUT /workbench/api/autoconnect``); the mark is a file in the state directory, so it
survives a restart of the Jupyter server, and it is off until set. The Jupyter server's
kernel provisioner (:class:`workbench.server.autoconnect.AutoConnectProvisioner`) starts
every Python kernel launched while a mark is set with this module as an IPython
extension and the cluster's id in ``WORKBENCH_AUTOCONNECT``. While the kernel starts,
before it runs any cell, :func:`load_ipython_extension`:

1. asks the control path for the cluster (it must be running) and for the connect code
   its backend gives, the same code as the sidebar's connect cell, with the cluster's TLS
   settings when it has them (file references, never key material);
2. runs that code in the kernel's namespace, so ``client`` is connected;
3. says so in the output of the first cell the user runs, and writes what happened
   where the server reads it (the status bar shows "auto").

A failure (the cluster stopped, its scheduler does not answer) never stops the kernel:
the first output says what went wrong and what to do.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from . import config
from .private import write_private

#: The cluster a kernel connects to at start (set by the provisioner).
ENV_CLUSTER = "WORKBENCH_AUTOCONNECT"
#: Where the kernel writes what happened (set by the provisioner).
ENV_REPORT = "WORKBENCH_AUTOCONNECT_REPORT"
#: Seconds a kernel waits for the scheduler before it gives up and starts without a client.
CONNECT_TIMEOUT_S = 15.0
#: The IPython extension the provisioner loads (this module).
EXTENSION = __name__


def _folder() -> Path:
    return config.state_dir() / "lab"


def mark_file() -> Path:
    return _folder() / "autoconnect.json"


def report_dir() -> Path:
    return _folder() / "kernels"


def _write_json(path: Path, data: dict[str, Any]) -> None:
    write_private(path, json.dumps(data))


def read_mark() -> dict[str, Any] | None:
    """The auto-connect mark (``{"cluster": id, "since": time}``), or None when it is off.

    A file that cannot be read counts as off (and is left for the user to look at)."""
    try:
        data = json.loads(mark_file().read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or not isinstance(data.get("cluster"), str):
        return None
    return data


def set_mark(cluster_id: str) -> dict[str, Any]:
    mark = {"cluster": cluster_id, "since": time.time()}
    _write_json(mark_file(), mark)
    return mark


def clear_mark(cluster_id: str | None = None) -> bool:
    """Turn auto-connect off (only if it names ``cluster_id``, when given); whether it was on."""
    mark = read_mark()
    if mark is None or (cluster_id is not None and mark["cluster"] != cluster_id):
        return False
    with contextlib.suppress(FileNotFoundError):
        mark_file().unlink()
    return True


def read_report(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


# -- in the kernel -------------------------------------------------------------------------
def _connect_code(cluster_id: str) -> tuple[Any, str]:
    """(record, connect code) of a running cluster, from its backend (with its security)."""
    from .clusters.control import ClusterControl

    control = ClusterControl()
    record = control.running(cluster_id)
    return record, control.connect_code(record)


def connect(namespace: dict[str, Any], cluster_id: str) -> tuple[str, str]:
    """Run the cluster's connect code in ``namespace``: (status, message)."""
    try:
        import dask
        import distributed  # noqa: F401  its config defaults first: set() restores on exit

        record, code = _connect_code(cluster_id)
        with dask.config.set({"distributed.comm.timeouts.connect": f"{CONNECT_TIMEOUT_S}s"}):
            exec(compile(code, f"<workbench auto-connect {record.id}>", "exec"), namespace)
    except Exception as exc:
        return "failed", (
            f"workbench auto-connect: no client for cluster {cluster_id}: "
            f"{type(exc).__name__}: {exc}\nInsert a connect cell from the Workbench sidebar, "
            "or untick 'Use in new notebooks' there."
        )
    client = namespace.get("client")
    info: dict[str, Any] = client.scheduler_info() if client is not None else {}
    workers = len(info.get("workers", {}))
    return "connected", (
        f"workbench auto-connect: `client` is connected to cluster {record.id} "
        f"(profile {record.profile!r}, {workers} worker(s)). Untick 'Use in new notebooks' "
        "in the Workbench sidebar to stop this."
    )


def load_ipython_extension(ip: Any) -> None:
    """Connect ``client`` while the kernel starts; say so in the first cell's output."""
    cluster_id = os.environ.pop(ENV_CLUSTER, None)
    report = os.environ.pop(ENV_REPORT, None)  # not inherited by the kernel's subprocesses
    if not cluster_id:
        return
    started = time.monotonic()
    status, message = connect(ip.user_ns, cluster_id)
    if report:
        with contextlib.suppress(OSError):
            _write_json(
                Path(report),
                {
                    "cluster": cluster_id,
                    "status": status,
                    "message": message,
                    "pid": os.getpid(),
                    "time": time.time(),
                    "seconds": round(time.monotonic() - started, 3),
                },
            )

    def say_once(*_: Any) -> None:
        ip.events.unregister("pre_run_cell", say_once)
        print(message, file=sys.stdout if status == "connected" else sys.stderr, flush=True)

    ip.events.register("pre_run_cell", say_once)
