"""Private files: the state directory and everything under it is the user's alone.

Directories 0700, files 0600 (records, credentials, logs, dashboard state, SLURM job
logs, MLflow's local store), whatever the umask: on a login node or a shared GPU server
other users must not read a cluster's credentials or logs. Files are written through a
temporary file made with ``mkstemp`` in the target directory (unpredictable name, created
exclusively, so a planted symlink is never followed) and renamed into place.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from pathlib import Path
from typing import IO

from . import config

DIR_MODE = 0o700
FILE_MODE = 0o600
#: The umask of child processes whose files must be the user's alone (sbatch: job logs).
PRIVATE_UMASK = 0o077


def private_dir(path: Path) -> Path:
    """Create ``path`` with mode 0700; directories created between the state directory and
    it get 0700 too (the state directory itself as well)."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)
    _chmod(path)
    state = config.state_dir()
    for folder in path.parents:
        if folder != state and state not in folder.parents:
            break
        _chmod(folder)
    return path


def _chmod(folder: Path) -> None:
    with contextlib.suppress(OSError):
        if os.stat(folder).st_mode & 0o777 != DIR_MODE:
            os.chmod(folder, DIR_MODE)


def write_private(path: Path, text: str | bytes) -> None:
    """Write ``path`` atomically with mode 0600 (mkstemp in its directory, then rename)."""
    path = Path(path)
    private_dir(path.parent)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, FILE_MODE)
        with os.fdopen(fd, "wb") as f:
            f.write(text.encode() if isinstance(text, str) else text)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def open_private_log(path: Path) -> IO[bytes]:
    """Open a log file for appending, created 0600 (an existing one is made 0600)."""
    path = Path(path)
    private_dir(path.parent)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW, FILE_MODE)
    with contextlib.suppress(OSError):
        os.fchmod(fd, FILE_MODE)
    return os.fdopen(fd, "ab")


#: Environment variables of Jupyter and JupyterHub that hold a token or secret: never
#: inherited by the processes workbench starts (detached clusters, watchdogs, dashboards,
#: SLURM jobs), whose environment other tools may show or log.
_TOKEN_ENV = re.compile(r"^(JUPYTER|JPY|JUPYTERHUB)\w*(TOKEN|SECRET|COOKIE|PASSWORD|API_KEY)\w*$")


def is_token_variable(name: str) -> bool:
    return _TOKEN_ENV.match(name.upper()) is not None


def scrubbed_env(env: dict[str, str] | None = None) -> dict[str, str]:
    """A copy of ``env`` (default: this process's) without Jupyter's token variables
    (JUPYTER_TOKEN, JUPYTERHUB_API_TOKEN, JPY_API_TOKEN and the like)."""
    source = dict(os.environ if env is None else env)
    return {k: v for k, v in source.items() if not is_token_variable(k)}
