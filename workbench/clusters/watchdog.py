"""A cluster's watchdog: releases the cluster when its owner ends without closing it.

Started by the cluster's handle (:func:`workbench.clusters.lifecycle.start_watchdog`) as
``python -m workbench.clusters.watchdog``, in a session of its own, so that neither a
SIGKILL of the kernel nor of its process group reaches it. It waits on the owner (a
pidfd where Linux has them, else polling) and exits quietly once the cluster's record is
gone (the owner closed it). If the owner ends while the record is still there, it
releases everything through :meth:`ClusterControl.release
<workbench.clusters.control.ClusterControl.release>`: worker processes on this host,
SLURM jobs running and pending, the gateway cluster, the DaskCluster. Transient failures
(slurmctld busy, a gateway restarting) are retried for up to :data:`RETRY_FOR_S` seconds.
It logs to ``<state dir>/logs/watchdog-<cluster id>.log``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import select
import sys
import time
from pathlib import Path

from .record import process_alive
from .record_store import RecordStore

#: Seconds between two looks at the record while the owner runs.
POLL_S = 0.5
#: How long failures to release are retried.
RETRY_FOR_S = 45.0


def _log(message: str) -> None:
    print(f"{time.strftime('%Y-%m-%d %H:%M:%S')} watchdog[{os.getpid()}]: {message}", flush=True)


def _open_pidfd(pid: int) -> int | None:
    with contextlib.suppress(AttributeError, OSError):
        return os.pidfd_open(pid)
    return None


def watch(store_root: Path, cluster_id: str, owner: int, owner_created: float) -> int:
    store = RecordStore(store_root)
    pidfd = _open_pidfd(owner)
    try:
        while True:
            if not store.exists(cluster_id):
                return 0  # closed by its owner (or stopped and forgotten by someone else)
            if not process_alive(owner, owner_created):
                break
            if pidfd is not None:
                select.select([pidfd], [], [], POLL_S)
            else:
                time.sleep(POLL_S)
    finally:
        if pidfd is not None:
            os.close(pidfd)
    return release(store, cluster_id, owner)


def release(store: RecordStore, cluster_id: str, owner: int) -> int:
    from ..errors import ClusterNotFoundError, WorkbenchError
    from .control import ClusterControl

    started = time.monotonic()
    control = ClusterControl(store)
    while True:
        try:
            record = store.read(cluster_id)
        except ClusterNotFoundError:
            return 0
        _log(f"cluster {cluster_id}: owner process {owner} ended without closing it; releasing")
        try:
            control.release(
                record,
                f"its owner process {owner} on {record.hostname} ended without closing it "
                "(killed or crashed); its watchdog released what it held",
            )
        except WorkbenchError as exc:
            if time.monotonic() - started > RETRY_FOR_S:
                _log(f"cluster {cluster_id}: giving up: {exc}")
                return 1
            _log(f"cluster {cluster_id}: {exc}; retrying")
            time.sleep(2.0)
            continue
        _log(f"cluster {cluster_id}: released in {time.monotonic() - started:.2f}s")
        return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m workbench.clusters.watchdog")
    parser.add_argument("--store", required=True, type=Path)
    parser.add_argument("--cluster", required=True)
    parser.add_argument("--owner", required=True, type=int)
    parser.add_argument("--owner-created", required=True, type=float)
    args = parser.parse_args(argv)
    return watch(args.store, args.cluster, args.owner, args.owner_created)


if __name__ == "__main__":
    sys.exit(main())
