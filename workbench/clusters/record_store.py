"""The on-disk store of cluster records: ``<state dir>/clusters/<id>.json``.

Every cluster launched through workbench (in a kernel, a terminal, the JupyterLab
server) writes one :class:`~workbench.clusters.record.ClusterRecord` here, so any
other process of the same user can find it. This module only stores records; what is
*done* with them (stop, scale, cleanup) is :mod:`workbench.clusters.control`.

- Writes are atomic (a temporary file renamed over the record), files are mode 0600 in
  a 0700 directory.
- The owner refreshes its record's modification time every :data:`HEARTBEAT_S`
  seconds. On another host sharing the directory (a second login node with the same
  $HOME) the owner's pid cannot be checked, so a record whose heartbeat is older than
  :data:`STALE_AFTER_S` counts as stale there and can be cleaned up where its resources
  are reachable (SLURM jobs, a gateway cluster, a DaskCluster).
- A cluster that ended without its owner (cleaned up by its watchdog or a sweep) leaves
  a short note under ``ended/`` for a day, so that asking for it says what happened
  rather than "no such cluster".
"""

from __future__ import annotations

import builtins
import contextlib
import json
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import config
from ..errors import ClusterNotFoundError
from ..private import private_dir, write_private
from . import tls
from .record import ClusterRecord

if TYPE_CHECKING:
    from distributed.security import Security

#: Seconds between two heartbeats of an owner (the record's mtime).
HEARTBEAT_S = 10.0
#: A record of another host whose heartbeat is older than this counts as stale.
STALE_AFTER_S = 6 * HEARTBEAT_S
#: How long notes about clusters that ended without their owner are kept.
ENDED_KEEP_S = 24 * 3600.0


class RecordStore:
    """Cluster records of this user, one JSON file each."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = root or config.state_dir() / "clusters"

    # -- files ----------------------------------------------------------------------------
    def _ensure(self, folder: Path | None = None) -> None:
        private_dir(folder or self.root)

    def path(self, cluster_id: str) -> Path:
        return self.root / f"{cluster_id}.json"

    def _ended_path(self, cluster_id: str) -> Path:
        return self.root / "ended" / f"{cluster_id}.json"

    def _write(self, path: Path, data: dict[str, Any]) -> None:
        write_private(path, json.dumps(data, indent=1))

    # -- records ----------------------------------------------------------------------------
    def add(self, record: ClusterRecord) -> None:
        self._write(self.path(record.id), record.to_dict())

    def update(self, cluster_id: str, **fields: Any) -> None:
        """Change some fields of a record (nothing happens if it is gone)."""
        try:
            record = self.read(cluster_id)
        except ClusterNotFoundError:
            return
        for key, value in fields.items():
            setattr(record, key, value)
        self.add(record)

    def remove(self, cluster_id: str) -> None:
        """Forget a record, and delete the TLS credential files it references."""
        with contextlib.suppress(ClusterNotFoundError):
            tls.remove_credentials(tls.record_paths(self.read(cluster_id)))
        with contextlib.suppress(FileNotFoundError):
            self.path(cluster_id).unlink()

    def exists(self, cluster_id: str) -> bool:
        return self.path(cluster_id).exists()

    def read(self, cluster_id: str) -> ClusterRecord:
        """The record with exactly this id."""
        try:
            return ClusterRecord.from_dict(json.loads(self.path(cluster_id).read_text()))
        except (OSError, ValueError, TypeError):
            raise ClusterNotFoundError(f"no running cluster with id {cluster_id!r}") from None

    def list(self) -> builtins.list[ClusterRecord]:
        if not self.root.is_dir():
            return []
        out = []
        names = sorted(e.name for e in os.scandir(self.root) if e.name.endswith(".json"))
        for path in (self.root / name for name in names):
            try:
                out.append(ClusterRecord.from_dict(json.loads(path.read_text())))
            except (OSError, ValueError, TypeError):
                continue  # a record being written or removed right now
        return sorted(out, key=lambda r: r.created)

    def get(self, cluster_id: str, exact: bool = False) -> ClusterRecord:
        """The record whose id is ``cluster_id`` or starts with it (unambiguously); with
        ``exact`` (destructive calls) only the full id."""
        records = self.list()
        matches = [r for r in records if r.id == cluster_id]
        if not matches and not exact:
            matches = [r for r in records if r.id.startswith(cluster_id)]
        if len(matches) == 1:
            return matches[0]
        if not matches:
            ended = self.ended(cluster_id)
            if ended is not None:
                record, note = ended
                when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(note["ended_at"]))
                raise ClusterNotFoundError(
                    f"cluster {record.id} ({record.profile}, {record.backend}) is gone: "
                    f"{note['reason']} (at {when})"
                )
            known = ", ".join(r.id for r in records) or "none"
            hint = (
                " Stopping or scaling needs the full id."
                if exact and any(r.id.startswith(cluster_id) for r in records)
                else ""
            )
            raise ClusterNotFoundError(
                f"no running cluster with id {cluster_id!r} (known: {known}).{hint}"
            )
        raise ClusterNotFoundError(
            f"cluster id {cluster_id!r} is ambiguous: {', '.join(r.id for r in matches)}"
        )

    # -- heartbeats --------------------------------------------------------------------------
    def touch(self, cluster_id: str) -> None:
        """The owner's heartbeat: refresh the record's modification time."""
        with contextlib.suppress(FileNotFoundError):
            os.utime(self.path(cluster_id))

    def heartbeat_age(self, record: ClusterRecord) -> float:
        """Seconds since the owner last refreshed the record (inf if it is gone)."""
        try:
            return max(0.0, time.time() - self.path(record.id).stat().st_mtime)
        except FileNotFoundError:
            return float("inf")

    # -- clusters that ended without their owner -------------------------------------------
    def end(self, record: ClusterRecord, reason: str) -> None:
        """Forget ``record``, keeping a note of why for :data:`ENDED_KEEP_S` seconds."""
        note = {"record": record.to_dict(), "reason": reason, "ended_at": time.time()}
        with contextlib.suppress(OSError):
            self._write(self._ended_path(record.id), note)
        self.remove(record.id)
        self._prune_ended()

    def ended(self, cluster_id: str) -> tuple[ClusterRecord, dict[str, Any]] | None:
        """(record, note) of a cluster that ended without its owner, if one matches."""
        folder = self.root / "ended"
        if not folder.is_dir():
            return None
        for path in sorted(folder.glob(f"{cluster_id}*.json")):
            with contextlib.suppress(OSError, ValueError, TypeError, KeyError):
                note = json.loads(path.read_text())
                return ClusterRecord.from_dict(note["record"]), note
        return None

    def _prune_ended(self) -> None:
        folder = self.root / "ended"
        now = time.time()
        for path in folder.glob("*.json") if folder.is_dir() else ():
            with contextlib.suppress(OSError):
                if now - path.stat().st_mtime > ENDED_KEEP_S:
                    path.unlink()


def security_for_address(address: str | None) -> Security | None:
    """The credentials of the running cluster whose scheduler is at ``address``, from the
    record store (None when no record names it, or it has none)."""
    if not address or not address.startswith("tls://"):
        return None
    for record in RecordStore().list():
        if record.scheduler_address == address:
            return tls.security_of(record)
    return None
