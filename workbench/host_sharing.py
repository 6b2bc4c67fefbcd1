"""Whether this machine is shared with other people, and what a profile risks there.

On an HPC login node or a JupyterHub host every local account can connect to every port
of the machine, loopback included. A profile that turns TLS off (``security: none``) or
puts the Dask dashboard (which has no authentication) on the network is then open to
other users: workbench launches it, and says so (:class:`SharedHostRiskWarning`), and
``workbench doctor`` lists such profiles.

The machine counts as shared when JupyterHub started this server (``JUPYTERHUB_USER``),
or when another person's processes run on it (a uid in the login range of
``/etc/login.defs``, not a system account). ``WORKBENCH_SHARED_HOST=1`` or ``0`` says it
outright (an administrator who knows better, a test).
"""

from __future__ import annotations

import os
import re
from typing import Any

from .errors import SharedHostRiskWarning

#: Login uids when /etc/login.defs does not say (Debian's defaults).
DEFAULT_UID_RANGE = (1000, 60000)
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1", "[::1]")

__all__ = ["SharedHostRiskWarning", "exposure_risks", "shared_host_reason", "uid_range"]


def uid_range(path: str = "/etc/login.defs") -> tuple[int, int]:
    """UID_MIN and UID_MAX of ``login.defs``: the uids of people, not system accounts."""
    low, high = DEFAULT_UID_RANGE
    try:
        with open(path) as f:
            text = f.read()
    except OSError:
        return low, high
    for name, value in re.findall(r"^\s*(UID_MIN|UID_MAX)\s+(\d+)", text, re.MULTILINE):
        if name == "UID_MIN":
            low = int(value)
        else:
            high = int(value)
    return low, high


def shared_host_reason() -> str | None:
    """Why this machine is shared with other people (None: nothing says it is)."""
    said = os.environ.get("WORKBENCH_SHARED_HOST")
    if said is not None and said.strip() in ("0", "1"):
        return "WORKBENCH_SHARED_HOST=1" if said.strip() == "1" else None
    if os.environ.get("JUPYTERHUB_USER"):
        return "JupyterHub started this server"
    import psutil

    low, high = uid_range()
    me = os.getuid()
    others: set[int] = set()
    for proc in psutil.process_iter(["uids"]):
        uids = proc.info.get("uids")
        if uids is not None and low <= uids.real <= high and uids.real != me:
            others.add(uids.real)
    if others:
        return f"processes of {len(others)} other user(s) run on this machine"
    return None


def _loopback(address: str) -> bool:
    host = address.rpartition(":")[0] if ":" in address else address
    if "://" in host:
        host = host.split("://", 1)[1]
    return host in LOOPBACK_HOSTS


def exposure_risks(options: Any) -> list[str]:
    """What a profile's options open to anyone who can reach this machine's ports."""
    risks = []
    if getattr(options, "security", None) == "none":
        risks.append(
            "security: none: the scheduler talks plain TCP without authentication, so "
            "anyone who can reach its port (every user of this machine) can run code as you"
        )
    address = getattr(options, "dashboard_address", None)
    if isinstance(address, str) and address and not _loopback(address):
        risks.append(
            f"dashboard_address {address}: the Dask dashboard, which has no authentication, "
            "listens on the network (logs, task names, worker addresses)"
        )
    return risks


def shared_host_warnings(options: Any, profile: str) -> list[str]:
    """The warnings a launch of ``profile`` gives on a shared machine (none elsewhere)."""
    risks = exposure_risks(options)
    if not risks:
        return []
    why = shared_host_reason()
    if why is None:
        return []
    return [
        f"profile {profile!r} on a shared machine ({why}): {risk}. Remove it from the profile "
        "unless the network is yours alone (workbench doctor lists such profiles)."
        for risk in risks
    ]
