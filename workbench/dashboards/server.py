"""Serving the dashboards (and ``/metrics``) with Panel's Bokeh/Tornado server.

Pages: ``/`` has every tab; ``/gpu``, ``/storage``, ``/network``, ``/cluster`` and
``/energy`` (:data:`~workbench.metrics.base.TAB_PAGES`) have one tab each, so that
JupyterLab can show each as a pane of its own. Every page and every viewer reads the
same store.
"""

from __future__ import annotations

import errno
import hmac
import ipaddress
import secrets
import socket
from collections.abc import Callable
from http import HTTPStatus
from typing import TYPE_CHECKING, Any

import panel as pn
from tornado.web import RequestHandler

from ..errors import MetricsError
from ..metrics.base import TAB_PAGES
from ..metrics.prometheus import CONTENT_TYPE, render

if TYPE_CHECKING:
    from ..metrics.store import MetricsStore


TITLE = "workbench live metrics"


class PrometheusHandler(RequestHandler):
    """``GET /metrics``: the store's newest samples in Prometheus text format."""

    def initialize(self, store: MetricsStore, token: str | None = None) -> None:
        self.store = store
        self.token = token

    def get(self) -> None:
        if self.token is not None and not token_matches(self.request, self.token):
            self.set_status(HTTPStatus.UNAUTHORIZED)
            self.set_header("WWW-Authenticate", "Bearer")
            self.finish("a token is required: 'Authorization: Bearer <token>' or ?token=\n")
            return
        self.set_header("Content-Type", CONTENT_TYPE)
        self.write(render(self.store))


def is_loopback(address: str) -> bool:
    """Whether ``address`` is reachable from this machine only."""
    if address in ("localhost", "ip6-localhost"):
        return True
    try:
        return ipaddress.ip_address(address.strip("[]")).is_loopback
    except ValueError:
        return False


def token_matches(request: Any, token: str) -> bool:
    """Whether a request carries ``token`` (``Authorization: Bearer``/``token``, ``?token=``)."""
    header = request.headers.get("Authorization", "")
    scheme, _, given = header.partition(" ")
    if scheme.lower() not in ("bearer", "token"):
        given = ""
    if not given:
        values = request.query_arguments.get("token") or [b""]
        given = values[-1].decode(errors="replace")
    return bool(given) and hmac.compare_digest(given.encode(), token.encode())


def reserve_port(address: str, port: int) -> int:
    """The port to serve on (a free one for 0); MetricsError naming it if it is taken."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((address, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise MetricsError(
                    f"port {port} on {address} is in use; choose another with --port "
                    "(or --port 0 for any free port)"
                ) from exc
            raise MetricsError(f"cannot listen on {address}:{port}: {exc.strerror}") from exc
        return int(sock.getsockname()[1])


def _origins(address: str, port: int, extra: list[str]) -> list[str]:
    if address in ("0.0.0.0", "::", ""):
        return ["*"]
    hosts = {address, "localhost", "127.0.0.1"}
    return sorted({f"{h}:{port}" for h in hosts} | set(extra))


class DashboardServer:
    """A running dashboard server; ``url``, ``metrics_url``, ``stop()``."""

    def __init__(
        self,
        store: MetricsStore,
        port: int = 8050,
        address: str = "127.0.0.1",
        *,
        prometheus: bool = True,
        websocket_origins: list[str] | None = None,
        settings: dict[str, Any] | None = None,
        cost: Callable[[], Any] | None = None,
        token: str | None = None,
        unix_socket: str | None = None,
    ) -> None:
        from .app import create_view

        self.unix_socket = unix_socket
        if unix_socket is None and not is_loopback(address) and not token:
            raise MetricsError(
                f"refusing to serve the dashboards on {address or 'every interface'} without a "
                "token: anyone who can reach the port would see them. Give one "
                "(--token env:NAME), or keep the default address 127.0.0.1 and use "
                "JupyterLab's proxy or an SSH tunnel."
            )
        # On a Unix socket (JupyterLab's): reachable by this user only, through workbench's
        # own route (workbench.server.dashboard_proxy); on a port: whoever reaches it.
        self.port = 0 if unix_socket else reserve_port(address, port)
        self.store = store
        self.address = address
        view_settings = dict(settings or {})

        def page(tabs: tuple[str, ...] | None) -> Callable[[], pn.viewable.Viewable]:
            def app() -> pn.viewable.Viewable:
                view = create_view(store, cost=cost, tabs=tabs, **view_settings)
                layout = view.panel()
                view.start()
                return layout

            return app

        apps: dict[str, Any] = {"/": page(None)}
        titles = {"/": TITLE}
        for tab, path in TAB_PAGES.items():
            apps[f"/{path}"] = page((tab,))
            titles[f"/{path}"] = f"{TITLE}: {tab}"
        patterns: list[Any] = []
        if prometheus:
            patterns.append((r"/metrics", PrometheusHandler, {"store": store, "token": token}))
        auth: dict[str, Any] = {}
        if token:  # Panel's login page asks for it; the session cookie is signed
            auth = {"basic_auth": token, "cookie_secret": secrets.token_hex(32)}
        self._server: Any = pn.serve(
            apps,
            port=self.port,
            address=address,
            show=False,
            title=titles,
            websocket_origin=_origins(address, self.port, websocket_origins or [])
            if unix_socket is None
            else ["localhost", *(websocket_origins or [])],
            extra_patterns=patterns,
            threaded=True,
            verbose=False,
            **auth,
            **({"unix_socket": unix_socket} if unix_socket else {}),
        )
        self._wait_listening()

    def _wait_listening(self, timeout: float = 30.0) -> None:
        import time

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if self.unix_socket:
                    with socket.socket(socket.AF_UNIX) as sock:
                        sock.settimeout(1)
                        sock.connect(self.unix_socket)
                        return
                with socket.create_connection((self._connect_host, self.port), timeout=1):
                    return
            except OSError:
                time.sleep(0.1)
        where = self.unix_socket or f"port {self.port}"
        raise MetricsError(f"the dashboard server did not start listening on {where}")

    @property
    def _connect_host(self) -> str:
        return "127.0.0.1" if self.address in ("0.0.0.0", "") else self.address

    @property
    def url(self) -> str:
        if self.unix_socket:
            return f"http+unix://{self.unix_socket}/"
        return f"http://{self._connect_host}:{self.port}/"

    def page_url(self, tab: str) -> str:
        """The URL of one tab's page (``tab``: GPU, Storage, Network, Cluster, Energy)."""
        return self.url + TAB_PAGES[tab]  # type: ignore[index]

    @property
    def metrics_url(self) -> str:
        return self.url + "metrics"

    def stop(self) -> None:
        self._server.stop()
        self._server.join(timeout=10)

    close = stop
