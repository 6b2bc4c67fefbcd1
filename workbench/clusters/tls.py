"""Per-cluster TLS credentials: every ``local`` and ``slurm`` cluster is encrypted and
authenticated by default.

At launch the backend makes a fresh self-signed key and certificate
(``distributed.security.Security.temporary()``), writes them as files into the private
state directory (``<state>/credentials/<token>/``, directory 0700, files 0600) and starts
the scheduler and workers with them (mutual TLS: Dask's TLS requires the peer's
certificate, so a client without these files is refused). The cluster's record
references the files (``extra["security"]``, paths only): the CLI, the JupyterLab
server, the connect cell, the auto-connect of a new kernel, the dashboards and the
metrics collector connect with them. The files are removed when the record is.

A profile opts out with an explicit ``security: none`` (``workbench doctor`` flags it).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import config
from ..private import private_dir, write_private

if TYPE_CHECKING:
    from distributed.security import Security

    from .record import ClusterRecord

#: The profile option's values: TLS with per-cluster credentials, or none at all.
SECURITY_CHOICES = ("tls", "none")
CERT_FILE = "cert.pem"
KEY_FILE = "key.pem"


def credentials_root() -> Path:
    return config.state_dir() / "credentials"


def create_credentials() -> tuple[Security, dict[str, str]]:
    """A new key and certificate for one cluster: (Security of its processes, the paths
    to record). The files are written 0600 in a new 0700 directory of the state dir."""
    from distributed.security import Security

    temporary = Security.temporary()
    folder = private_dir(credentials_root() / secrets.token_hex(8))
    cert = folder / CERT_FILE
    key = folder / KEY_FILE
    write_private(cert, str(temporary.tls_ca_file))
    write_private(key, str(temporary.tls_client_key))
    paths = {"tls_ca_file": str(cert), "tls_client_cert": str(cert), "tls_client_key": str(key)}
    return security_from_paths(paths), paths


def security_from_paths(paths: dict[str, str]) -> Security:
    """Security for every role (scheduler, worker, client) from a cluster's files."""
    from distributed.security import Security

    cert, key = paths["tls_client_cert"], paths["tls_client_key"]
    return Security(
        tls_ca_file=paths["tls_ca_file"],
        tls_client_cert=cert,
        tls_client_key=key,
        tls_scheduler_cert=cert,
        tls_scheduler_key=key,
        tls_worker_cert=cert,
        tls_worker_key=key,
        require_encryption=True,
    )


def record_paths(record: ClusterRecord) -> dict[str, str] | None:
    raw: Any = (record.extra or {}).get("security")
    if not isinstance(raw, dict) or not all(
        isinstance(raw.get(k), str) for k in ("tls_ca_file", "tls_client_cert", "tls_client_key")
    ):
        return None
    return {k: str(raw[k]) for k in ("tls_ca_file", "tls_client_cert", "tls_client_key")}


def security_of(record: ClusterRecord) -> Security | None:
    """The client Security of a record's cluster (None: it has no workbench credentials)."""
    paths = record_paths(record)
    return None if paths is None else security_from_paths(paths)


def connection_args(record: ClusterRecord) -> dict[str, Any]:
    """``rpc(connection_args=...)`` for a record's scheduler ({} without TLS credentials)."""
    security = security_of(record)
    return {} if security is None else dict(security.get_connection_args("client"))


def remove_credentials(paths: dict[str, str] | None) -> None:
    """Delete a cluster's credential directory (only one inside the state directory)."""
    if not paths:
        return
    folder = Path(paths.get("tls_client_key", "")).parent
    root = credentials_root().resolve()
    with contextlib.suppress(OSError, ValueError):
        if folder.resolve().parent == root:
            shutil.rmtree(folder, ignore_errors=True)


def check_files(paths: dict[str, str]) -> list[str]:
    """Problems with a record's credential files (readable by others, missing)."""
    problems = []
    for key in ("tls_ca_file", "tls_client_key"):
        path = paths[key]
        try:
            mode = os.stat(path).st_mode & 0o777
        except OSError as exc:
            problems.append(f"{key} {path}: {exc.strerror}")
            continue
        if mode & 0o077:
            problems.append(f"{key} {path} is readable by others (mode {mode:o})")
    return problems
