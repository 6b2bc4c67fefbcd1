"""Where a cluster's dashboards are, and how the Jupyter server proves it reached them.

The Dask dashboard of a cluster with TLS credentials is HTTPS and asks for the cluster's
client certificate (:mod:`workbench.clusters.dashboard_tls`): :func:`tls_client_context`
trusts the cluster's own CA only and presents its certificate. Workbench's Panel
dashboards listen on a Unix socket in the user's 0700 directory (:func:`unix_upstream`).
Everything the server fetches from a dashboard (the route's pages, the panes' plot list,
the health checks) goes through :func:`fetch_upstream` or the route's sessions, never
with a credential of Jupyter's.
"""

from __future__ import annotations

import asyncio
import functools
import os
import ssl
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlparse

from ..clusters.dashboard_tls import VIEW_PATH
from ..clusters.record import ClusterRecord
from ..errors import WorkbenchError

#: The Host (and websocket Origin) every upstream sees: never the Jupyter page's.
UPSTREAM_HOST = "localhost"
CONNECT_TIMEOUT_S = 10.0
READ_TIMEOUT_S = 300.0
#: The views of a cluster the route serves.
VIEWS = ("dask", "dashboards")


class DashboardUnreachableError(WorkbenchError):
    """The cluster's dashboard could not be reached, or did not prove it is the cluster's."""


@dataclass(frozen=True)
class Upstream:
    """Where one view of a cluster is, and how its server proves who it is."""

    base: str  # scheme://host:port, without a path
    prefix: str  # the upstream's path prefix ("" for a dashboard at its root)
    ssl: ssl.SSLContext | None = field(default=None, compare=False)
    unix_socket: str | None = None
    what: str = field(default="", compare=False)
    #: The cluster's certificate file: the same address with other credentials (a port a
    #: new cluster reuses) is another upstream.
    credential: str | None = None

    @property
    def key(self) -> tuple[str, str | None, str | None]:
        return (self.base, self.unix_socket, self.credential)

    def url(self, path: str, query: str = "", ws: bool = False) -> str:
        base = self.base
        if ws:
            base = "wss" + base[5:] if base.startswith("https") else "ws" + base[4:]
        path = "/".join(p for p in (self.prefix.strip("/"), path.lstrip("/")) if p)
        return f"{base}/{path}" + (f"?{query}" if query else "")


def tls_client_context(record: ClusterRecord) -> ssl.SSLContext | None:
    """A client context that trusts only the cluster's CA and presents the cluster's
    client certificate; None for a cluster without TLS credentials."""
    paths = (record.extra or {}).get("security") or {}
    ca, cert, key = (
        paths.get("tls_ca_file"),
        paths.get("tls_client_cert"),
        paths.get("tls_client_key"),
    )
    if not (ca and cert and key):
        return None
    stamps = tuple(os.stat(p).st_mtime_ns for p in (ca, cert, key))
    return _client_context(ca, cert, key, stamps)


@functools.lru_cache(maxsize=256)
def _client_context(ca: str, cert: str, key: str, stamps: tuple[int, ...]) -> ssl.SSLContext:
    """One context per cluster's credential files (as they are now: ``stamps``): reading
    and parsing them costs more than the request a page makes."""
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=ca)
    # The per-cluster certificate names no host: the trust is the cluster's own CA, which
    # signs nothing but this cluster's certificate.
    context.check_hostname = False
    context.load_cert_chain(cert, key)
    return context


def dask_upstream(record: ClusterRecord) -> Upstream:
    """The cluster's Dask dashboard, at the link in its record."""
    link = record.dashboard_link
    if not link:
        raise DashboardUnreachableError(
            f"cluster {record.id} reports no Dask dashboard (started with "
            "dashboard_address: null, or bokeh is missing where its scheduler runs)"
        )
    parsed = urlparse(link)
    try:
        context = tls_client_context(record)
    except (OSError, ssl.SSLError) as exc:
        raise DashboardUnreachableError(
            f"cluster {record.id}'s TLS credentials cannot be read ({exc.strerror or exc}): "
            "it has stopped, or its state directory was changed; nothing was sent"
        ) from None
    if context is not None and parsed.scheme != "https":
        raise DashboardUnreachableError(
            f"cluster {record.id} has TLS credentials but its dashboard link {link} is not "
            "HTTPS (a cluster started by an older workbench): restart it to see its dashboard"
        )
    path = parsed.path.rstrip("/")
    root = path.rsplit("/", 1)[0] if path.endswith("/status") else path
    return Upstream(
        base=f"{parsed.scheme}://{parsed.netloc}",
        prefix=root,
        ssl=context,
        what=f"the Dask dashboard of cluster {record.id}",
        credential=((record.extra or {}).get("security") or {}).get("tls_client_cert"),
    )


def unix_upstream(socket_path: str, what: str) -> Upstream:
    return Upstream(base=f"http://{UPSTREAM_HOST}", prefix="", unix_socket=socket_path, what=what)


def client_session(upstream: Upstream) -> Any:
    """An aiohttp session for ``upstream``: its TLS context or Unix socket, no cookie jar,
    bodies passed on as they come (compressed or not)."""
    import aiohttp

    connector: Any
    if upstream.unix_socket is not None:
        connector = aiohttp.UnixConnector(path=upstream.unix_socket)
    else:
        connector = aiohttp.TCPConnector(ssl=upstream.ssl if upstream.ssl else False)
    timeout = aiohttp.ClientTimeout(total=READ_TIMEOUT_S, sock_connect=CONNECT_TIMEOUT_S)
    return aiohttp.ClientSession(
        connector=connector,
        timeout=timeout,
        auto_decompress=False,
        cookie_jar=aiohttp.DummyCookieJar(),
    )


def unreachable(upstream: Upstream, exc: BaseException) -> str:
    """Why ``upstream`` was not reached, in words."""
    refused = isinstance(getattr(exc, "os_error", None), ConnectionRefusedError) or isinstance(
        exc, ConnectionRefusedError
    )
    handshake = upstream.ssl is not None and type(exc).__name__.startswith("ClientConnector")
    if (
        isinstance(exc, ssl.SSLError)
        or "certificate" in str(exc).lower()
        or (handshake and not refused)
    ):
        return (
            f"{upstream.what} did not prove it is the cluster's own (its TLS certificate is "
            "not the cluster's): the cluster has stopped and something else has its port; "
            "nothing was sent to it"
        )
    return f"{upstream.what} does not answer ({type(exc).__name__}: {exc})"


def fetch_upstream(upstream: Upstream, path: str, timeout: float = 5.0) -> tuple[int, bytes, str]:
    """(status, body, error) of a GET of ``path`` from a thread (status 0: not reached)."""
    import aiohttp

    async def get() -> tuple[int, bytes, str]:
        async with (
            client_session(upstream) as session,
            session.get(upstream.url(path), headers={"Host": UPSTREAM_HOST}) as answer,
        ):
            return answer.status, await answer.read(), ""

    try:
        return asyncio.run(asyncio.wait_for(get(), timeout))
    except (aiohttp.ClientError, OSError, asyncio.TimeoutError, ssl.SSLError) as exc:
        return 0, b"", unreachable(upstream, exc)


def view_url(base_url: str, cluster_id: str, view: str, path: str = "") -> str:
    """The browser's URL of a cluster's view (a pane's iframe), on the Jupyter server."""
    where = VIEW_PATH.format(cluster_id=cluster_id, view=view, path=path)
    return f"{base_url.rstrip('/')}/{where}"
