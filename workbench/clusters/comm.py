"""Talking to a cluster's scheduler from any process: one port probe, one RPC call.

Every request the control path sends to a scheduler (the owner's workbench handlers,
``identity``, ``check_idle``) goes through :func:`scheduler_call`, with the connection
arguments the record's backend gives (:meth:`Backend.connection_args`): the one place
where TLS credentials of a cluster are added.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlparse

logger = logging.getLogger(__name__)

#: Address schemes a TCP port probe applies to.
TCP_SCHEMES = ("tcp", "tls", "ucx", "ws", "wss", "gateway")


#: Seconds to wait for a scheduler's port to accept a connection.
PORT_TIMEOUT_S = 1.0


def port_open(address: str, timeout: float = PORT_TIMEOUT_S) -> bool:
    """Whether something accepts TCP connections at a scheduler address."""
    parsed = urlparse(address)
    if parsed.scheme not in TCP_SCHEMES or not parsed.port:
        return False
    try:
        with socket.create_connection((parsed.hostname or "127.0.0.1", parsed.port), timeout):
            return True
    except OSError:
        return False


async def port_open_async(address: str, timeout: float = PORT_TIMEOUT_S) -> bool:
    """:func:`port_open` on an event loop (many addresses checked at once)."""
    parsed = urlparse(address)
    if parsed.scheme not in TCP_SCHEMES or not parsed.port:
        return False
    try:
        _, writer = await asyncio.wait_for(
            asyncio.open_connection(parsed.hostname or "127.0.0.1", parsed.port), timeout
        )
    except (OSError, asyncio.TimeoutError):
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True


def scheduler_call(
    address: str,
    op: str,
    timeout: float = 10.0,
    connection_args: Mapping[str, Any] | None = None,
    **kwargs: Any,
) -> Any:
    """Call handler ``op`` on the scheduler at ``address`` over Dask's protocol (blocking)."""
    from distributed.core import rpc

    async def call() -> Any:
        async with rpc(address, timeout=timeout, connection_args=dict(connection_args or {})) as r:
            return await asyncio.wait_for(getattr(r, op)(**kwargs), timeout)

    return asyncio.run(call())


def free_dashboard_address(address: str | None) -> str | None:
    """``address`` (``host:port`` or ``:port``) if its port is free, else the same host on
    any free port.

    distributed moves a dashboard off a busy port by itself, but on that path tornado's
    ``bind_sockets`` raises without closing the socket it created for the busy port; the
    socket is collected later with ``ResourceWarning: unclosed <socket.socket ...
    laddr=('0.0.0.0', 0)>`` (an error wherever warnings are errors). Checking the port
    first, with the socket closed whatever happens, keeps launches off that path.
    """
    if address is None:
        return None
    host, sep, port = str(address).rpartition(":")
    if not sep or not port.isdigit() or int(port) == 0:
        return address
    host = host.strip("[]")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, int(port)))
            return address
        except OSError as exc:
            logger.info("dashboard port %s is not free (%s); using any free port", port, exc)
    return f"{'[' + host + ']' if family == socket.AF_INET6 else host}:0"


#: Hosts a server given them listens on every interface of (the scheduler's host works).
ALL_INTERFACES = ("", "0.0.0.0", "::", "*")


def dashboard_link_where_it_listens(link: str | None, dashboard_address: str | None) -> str | None:
    """The dashboard ``link`` distributed made, with the host the dashboard listens on.

    distributed builds the link from the *scheduler's* host; a profile that binds the
    dashboard to another address (loopback, while the scheduler listens on the network
    address the compute nodes reach, as SLURM clusters do) would advertise
    ``http://<scheduler host>:<port>/status``, where nothing answers. A dashboard on
    every interface keeps the scheduler's host."""
    if not link or not dashboard_address:
        return link
    host = str(dashboard_address).rpartition(":")[0].strip("[]")
    if "://" in host:
        host = host.split("://", 1)[1]
    if host in ALL_INTERFACES:
        return link
    parsed = urlparse(link)
    if parsed.hostname == host:
        return link
    shown = f"[{host}]" if ":" in host else host
    netloc = f"{shown}:{parsed.port}" if parsed.port else shown
    return parsed._replace(netloc=netloc).geturl()
