"""A cluster's dashboards in the browser, through workbench's own route only.

``{base_url}workbench/api/clusters/<id>/view/dask/<path>`` is the cluster's Dask dashboard
and ``.../view/dashboards/<path>`` workbench's Panel dashboards, HTTP and websockets. The
route replaces jupyter-server-proxy's ``/proxy/<port>/``, which forwards the browser's
Cookie and Authorization headers to whatever listens on that port (jupyter-server-proxy
issues #358 and #590) while the Dask dashboard itself asks nobody who they are: on a
machine shared with other people, anyone can listen on a port a stopped cluster freed,
or read a running cluster's dashboard on loopback.

Here:

- the upstream is looked up in the cluster's record (the Dask dashboard's link) or its
  dashboard process's state file (the Unix socket), never taken from the request;
- the request goes on without Jupyter's credentials: no Cookie, Authorization or XSRF
  header, no Origin or Referer of the Jupyter page (:data:`DROPPED_HEADERS`); Set-Cookie
  answers are not passed back to the Jupyter origin;
- the other end proves it is the cluster's own before a byte of the request leaves: the
  Dask dashboard of a cluster with TLS credentials is HTTPS, its certificate checked
  against the cluster's CA, and it accepts only clients holding the cluster's certificate,
  which this route presents (:mod:`workbench.clusters.dashboard_tls`); workbench's Panel
  dashboards listen on a Unix socket in the user's 0700 directory, which no other user
  can reach or replace. A cluster without TLS credentials (``security: none``, a gateway's
  or Kubernetes' dashboard) is reached at its recorded address as it is, still without
  credentials.

No browser ever holds the cluster's certificate, and a stopped cluster answers 404 (its
record is gone) before any connection is attempted.
"""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar

from jupyter_server.base.handlers import JupyterHandler
from tornado import web, websocket

from ..clusters.control import ClusterControl
from ..errors import ClusterNotFoundError, WorkbenchError
from .base import guarded
from .dashboards import dashboards_upstream
from .upstreams import (
    UPSTREAM_HOST,
    VIEWS,
    Upstream,
    client_session,
    dask_upstream,
    unreachable,
)

#: Request headers never sent on: Jupyter's credentials, and what names the Jupyter page.
DROPPED_HEADERS = frozenset(
    {
        "cookie",
        "authorization",
        "x-xsrftoken",
        "x-csrftoken",
        "x-xsrf-token",
        "origin",
        "referer",
        "host",
        # hop-by-hop (RFC 9110 7.6.1) and what the client library sets itself
        "connection",
        "keep-alive",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "content-length",
        "accept-encoding",
        "sec-websocket-key",
        "sec-websocket-version",
        "sec-websocket-extensions",
        "sec-websocket-protocol",
    }
)
#: Answer headers not passed back: cookies for the Jupyter origin, hop-by-hop, lengths the
#: server sets itself.
DROPPED_ANSWER_HEADERS = frozenset(
    {
        "set-cookie",
        "connection",
        "keep-alive",
        "transfer-encoding",
        "content-length",
        "content-encoding",
        "server",
        "date",
    }
)
#: Tasks started and not awaited (relays, closes): kept until done, so none is collected.
_BACKGROUND: set[asyncio.Future[Any]] = set()


def background(awaitable: Any) -> None:
    task = asyncio.ensure_future(awaitable)
    _BACKGROUND.add(task)
    task.add_done_callback(_BACKGROUND.discard)


def upstream_for(cluster_id: str, view: str) -> Upstream:
    """The view's upstream, from the cluster's record (404 once the cluster is gone)."""
    record = ClusterControl().get(cluster_id)
    return dask_upstream(record) if view == "dask" else dashboards_upstream(record)


class Sessions:
    """One client session (a pool of kept-alive connections, its TLS context) per
    upstream, for the server's life: a dashboard page asks for dozens of files at once.
    The sessions of other credentials at the same address (a stopped cluster's port that a
    new cluster reuses) are closed once nothing uses them."""

    _by_key: ClassVar[dict[tuple[Any, ...], Any]] = {}

    @classmethod
    def get(cls, upstream: Upstream) -> Any:
        session = cls._by_key.get(upstream.key)
        if session is None or session.closed:
            for old in [k for k in cls._by_key if k[:2] == upstream.key[:2]]:
                background(cls._by_key.pop(old).close())
            session = cls._by_key[upstream.key] = client_session(upstream)
        return session


def forwarded_headers(headers: Any) -> dict[str, str]:
    """The request headers that go on (no credentials, nothing naming the Jupyter page)."""
    out = {k: v for k, v in headers.get_all() if k.lower() not in DROPPED_HEADERS}
    out["Host"] = UPSTREAM_HOST
    return out


class ClusterViewHandler(websocket.WebSocketHandler, JupyterHandler):
    """``clusters/<id>/view/<dask|dashboards>/<path>``: HTTP GET and websockets,
    authenticated (Jupyter's login) and authorized (``read`` on ``workbench:dashboards``)."""

    auth_resource = "workbench:dashboards"
    upstream_ws: Any = None

    # -- authentication and authorization, for pages and websockets alike ----------------
    async def prepare(self, *args: Any, **kwargs: Any) -> None:
        prepared: Any = JupyterHandler.prepare(self, *args, **kwargs)
        if prepared is not None:
            await prepared
        if self.current_user is None:
            raise web.HTTPError(403, "log in to the Jupyter server first")

    def check_origin(self, origin_to_satisfy_tornado: str = "") -> bool:
        return bool(JupyterHandler.check_origin(self, origin_to_satisfy_tornado))

    def check_xsrf_cookie(self) -> None:
        """GET only: nothing to protect (no state changes through this route)."""

    # -- the three tornado hooks WebSocketHandler and RequestHandler both define --------
    def set_default_headers(self) -> None:
        JupyterHandler.set_default_headers(self)

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        message = str(getattr(exc, "log_message", None) or exc or self._reason)
        self.set_header("Content-Type", "text/plain; charset=utf-8")
        self.finish(f"{status_code}: {message}\n")

    # -- HTTP ------------------------------------------------------------------------------
    async def get(self, cluster_id: str, view: str, path: str = "") -> None:
        """A page, or the websocket upgrade: the Authorizer is asked for both."""
        if self.request.headers.get("Upgrade", "").lower() == "websocket":
            await websocket.WebSocketHandler.get(self, cluster_id, view, path)
            return
        await self._http(cluster_id, view, path)

    async def _http(self, cluster_id: str, view: str, path: str) -> None:
        import aiohttp

        upstream = self._upstream(cluster_id, view)
        url = upstream.url(path, self.request.query)
        try:
            session = Sessions.get(upstream)
            async with session.request(
                self.request.method,
                url,
                headers=forwarded_headers(self.request.headers),
                allow_redirects=False,
            ) as answer:
                self.set_status(answer.status, answer.reason)
                self.clear_header("Content-Type")
                for name, value in answer.headers.items():
                    if name.lower() not in DROPPED_ANSWER_HEADERS:
                        self.add_header(name, value)
                async for chunk in answer.content.iter_chunked(1 << 16):
                    self.write(chunk)
                    await self.flush()
        except (aiohttp.ClientError, OSError, asyncio.TimeoutError) as exc:
            raise web.HTTPError(502, unreachable(upstream, exc)) from None
        self.finish()

    def _upstream(self, cluster_id: str, view: str) -> Upstream:
        if view not in VIEWS:
            raise web.HTTPError(404, f"no view {view!r}; views: {', '.join(VIEWS)}")
        try:
            return upstream_for(cluster_id, view)
        except ClusterNotFoundError as exc:
            raise web.HTTPError(404, f"{exc} (it has stopped)") from None
        except WorkbenchError as exc:
            raise web.HTTPError(502, str(exc)) from None

    # -- websockets ------------------------------------------------------------------------
    def select_subprotocol(self, subprotocols: list[str]) -> str | None:
        # Bokeh passes its session token as a second subprotocol ("bokeh", token): offer
        # them all upstream, answer the browser with the first (as the upstream will).
        self.subprotocols = list(subprotocols)
        return subprotocols[0] if subprotocols else None

    async def open(self, cluster_id: str, view: str, path: str = "") -> None:
        import aiohttp

        upstream = self._upstream(cluster_id, view)
        url = upstream.url(path, self.request.query, ws=True)
        headers = forwarded_headers(self.request.headers)
        headers["Origin"] = f"http://{UPSTREAM_HOST}"
        try:
            self.upstream_ws = await Sessions.get(upstream).ws_connect(
                url,
                headers=headers,
                protocols=getattr(self, "subprotocols", ()),
                autoping=True,
                max_msg_size=0,
            )
        except (aiohttp.ClientError, OSError, asyncio.TimeoutError) as exc:
            self.log.warning("workbench: %s", unreachable(upstream, exc))
            self.close(1011, "the cluster's dashboard is not reachable")
            return
        background(self._relay_from_upstream())

    async def _relay_from_upstream(self) -> None:
        import aiohttp

        ws = self.upstream_ws
        try:
            async for message in ws:
                if message.type == aiohttp.WSMsgType.TEXT:
                    await self.write_message(message.data)
                elif message.type == aiohttp.WSMsgType.BINARY:
                    await self.write_message(message.data, binary=True)
                else:
                    break
        except websocket.WebSocketClosedError:
            pass
        finally:
            self.close()

    async def on_message(self, message: str | bytes) -> None:
        ws = self.upstream_ws
        if ws is None or ws.closed:
            return
        if isinstance(message, bytes):
            await ws.send_bytes(message)
        else:
            await ws.send_str(message)

    def on_close(self) -> None:
        ws = self.upstream_ws
        if ws is not None and not ws.closed:
            background(ws.close())


# authenticated and authorized (``read`` on ``workbench:dashboards``) as every workbench
# handler is (what tests/test_security.py walks): pages and websocket upgrades alike
ClusterViewHandler.get = guarded(ClusterViewHandler.get, "read")  # type: ignore[method-assign]
