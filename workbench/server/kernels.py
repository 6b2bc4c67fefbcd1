"""Which cluster a kernel of this Jupyter server is connected to.

The status bar asks about the active notebook's kernel. Nothing runs in the kernel to
answer: the server knows the pid of each kernel it started (jupyter_client's local
provisioner records it), and a kernel is connected to a cluster when

* it owns it: the cluster record's owner is the kernel's process (``workbench.launch()``
  in that notebook), or
* its process holds an established TCP connection to the cluster's scheduler address:
  a ``distributed.Client`` made by a connect cell, by auto-connect or by hand. The
  connections are read from ``/proc`` through psutil (``Process.net_connections``), as
  ``ss -tp`` would show them, which needs no rights beyond being the same user.

A kernel started with auto-connect is reported as such (``how: "auto-connect"``) with
what its start-up said (:mod:`workbench.server.autoconnect`); the status bar's reply,
with the cluster's figures, is put together by :func:`workbench.server.metrics.kernel_status`.

Limits: kernels this server did not start locally (a kernel gateway, remote
provisioners) have no pid here and are reported as connected to nothing; clusters
behind one dask-gateway proxy share its address, so a client of one of them matches
every cluster of that gateway, each listed.
"""

from __future__ import annotations

import contextlib
import ipaddress
import socket
import time
from collections.abc import Iterable
from functools import lru_cache
from typing import Any, Literal
from urllib.parse import urlparse

import psutil

from .base import NotFoundError

How = Literal["owner", "connection", "auto-connect"]


def kernel_pid(kernel_manager: Any, kernel_id: str) -> int | None:
    """The pid of a kernel this server runs (None when its provisioner has none: remote)."""
    if kernel_id not in kernel_manager:
        raise NotFoundError(f"no kernel with id {kernel_id!r} runs in this Jupyter server")
    km = kernel_manager.get_kernel(kernel_id)
    provisioner = getattr(km, "provisioner", None)
    pid = getattr(provisioner, "pid", None)
    if pid is None:
        pid = getattr(getattr(provisioner, "process", None), "pid", None)
    return int(pid) if pid else None


def _normal(ip: str) -> str:
    """An address as compared: IPv4-mapped IPv6 (``::ffff:10.0.0.5``) as plain IPv4."""
    try:
        addr = ipaddress.ip_address(ip.split("%")[0])
    except ValueError:
        return ip
    mapped = getattr(addr, "ipv4_mapped", None)
    return str(mapped or addr)


@lru_cache(maxsize=256)
def _resolve(host: str, stamp: int) -> frozenset[str]:
    """Every address of ``host`` (cached for a minute: ``stamp`` changes every minute)."""
    with contextlib.suppress(OSError):
        return frozenset(_normal(str(info[4][0])) for info in socket.getaddrinfo(host, None))
    return frozenset()


def _port(address: str) -> int | None:
    try:
        return urlparse(address).port
    except ValueError:  # a malformed address matches nothing
        return None


def scheduler_endpoints(address: str) -> set[tuple[str, int]]:
    """The (ip, port) pairs a client of the scheduler at ``address`` is connected to."""
    port = _port(address)
    host = urlparse(address).hostname
    if not host or not port:
        return set()
    ips = _resolve(host, int(time.monotonic() // 60))
    return {(ip, port) for ip in ips}


def remote_endpoints(pid: int) -> set[tuple[str, int]]:
    """The peers of every established TCP connection of process ``pid``."""
    try:
        proc = psutil.Process(pid)
        # net_connections since psutil 6; connections before
        conns = getattr(proc, "net_connections", proc.connections)(kind="tcp")
    except psutil.Error:
        return set()
    return {
        (_normal(c.raddr.ip), c.raddr.port)
        for c in conns
        if c.raddr and c.status == psutil.CONN_ESTABLISHED
    }


def connected_clusters(
    pid: int | None, records: Iterable[Any], hostname: str | None = None
) -> list[tuple[Any, How]]:
    """The records of the clusters process ``pid`` owns or holds a connection to."""
    if pid is None:
        return []
    here = hostname or socket.gethostname()
    peers = remote_endpoints(pid)
    ports = {port for _, port in peers}
    found: list[tuple[Any, How]] = []
    for record in records:
        if record.owner_pid == pid and record.hostname == here:
            found.append((record, "owner"))
            continue
        if _port(record.scheduler_address) not in ports:
            continue  # no connection to that port: no need to resolve its host
        if scheduler_endpoints(record.scheduler_address) & peers:
            found.append((record, "connection"))
    return found
