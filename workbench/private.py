"""Private files: the state directory and everything under it is the user's alone.

Directories 0700, files 0600 (records, credentials, logs, dashboard state, SLURM job
logs, MLflow's local store), whatever the umask: on a login node or a shared GPU server
other users must not read a cluster's credentials or logs. A directory that is a symbolic
link, another user's, or writable by others is refused with a clear error
(:func:`check_private_dir`); workers spill into :func:`private_tmp_dir`. Files are written through a
temporary file made with ``mkstemp`` in the target directory (unpredictable name, created
exclusively, so a planted symlink is never followed) and renamed into place.
"""

from __future__ import annotations

import contextlib
import os
import re
import stat
import tempfile
from pathlib import Path
from typing import IO

from . import config
from .errors import UnsafeStateError

DIR_MODE = 0o700
FILE_MODE = 0o600
#: The umask of child processes whose files must be the user's alone (sbatch: job logs).
PRIVATE_UMASK = 0o077


def check_private_dir(path: Path, what: str = "directory") -> None:
    """Refuse (UnsafeStateError) a directory that is not this user's alone to write: a
    symbolic link (someone could point it anywhere), owned by another user, or writable by
    group or others (anyone could have planted or replaced files in it). Readable by
    others is fixed by :func:`private_dir` instead (chmod 0700: nothing was at risk but
    reading)."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    fix = (
        f"Use a directory of your own: move it away (mv {path} {path}.suspect) and let "
        "workbench create it again, or point WORKBENCH_STATE_DIR elsewhere"
    )
    if stat.S_ISLNK(st.st_mode):
        raise UnsafeStateError(
            f"workbench's {what} {path} is a symbolic link (to {os.readlink(path)}); it "
            f"keeps credentials and logs, so it must be a real directory. {fix}."
        )
    if not stat.S_ISDIR(st.st_mode):
        raise UnsafeStateError(f"workbench's {what} {path} is not a directory. {fix}.")
    if st.st_uid != os.getuid():
        raise UnsafeStateError(
            f"workbench's {what} {path} belongs to another user (uid {st.st_uid}, you are "
            f"{os.getuid()}): they could read or replace your clusters' credentials. {fix}."
        )
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise UnsafeStateError(
            f"workbench's {what} {path} is writable by others (mode "
            f"{stat.S_IMODE(st.st_mode):04o}): anyone could have planted or replaced files in "
            f"it. Check what it holds, then `chmod 700 {path}`; or {fix[0].lower()}{fix[1:]}."
        )


def private_dir(path: Path) -> Path:
    """Create ``path`` with mode 0700; directories created between the state directory and
    it get 0700 too (the state directory itself as well). Each of them, and ``path``
    itself, must be the user's alone (:func:`check_private_dir`)."""
    path = Path(path)
    state = config.state_dir()
    chain = [path, *(f for f in path.parents if f == state or state in f.parents)]
    for folder in reversed(chain):
        check_private_dir(folder, "state directory" if folder == state else "directory")
    path.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)
    for folder in chain:
        check_private_dir(folder, "state directory" if folder == state else "directory")
        _chmod(folder)
    return path


def private_tmp_dir(name: str = "") -> Path:
    """A directory of this user's alone in the system's temporary directory
    (``$TMPDIR/workbench-<uid>/<name>``, 0700, owner checked): the Dask workers' local
    directory, where they spill data to disk. Dask's default, ``/tmp/dask-scratch-space``,
    is shared by every user of the machine and created readable by all."""
    root = Path(tempfile.gettempdir()) / f"workbench-{os.getuid()}"
    for folder in (root, root / name) if name else (root,):
        check_private_dir(folder, "temporary directory")
        with contextlib.suppress(FileExistsError):
            folder.mkdir(mode=DIR_MODE)
        check_private_dir(folder, "temporary directory")
        _chmod(folder)
    return root / name if name else root


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
    if os.fstat(fd).st_uid != os.getuid():  # an existing file someone else made
        os.close(fd)
        raise UnsafeStateError(
            f"the log file {path} belongs to another user; move it away and try again"
        )
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
