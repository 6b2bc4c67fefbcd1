"""Serving the dashboards (and ``/metrics``) with Panel's Bokeh/Tornado server.

Pages: ``/`` has every tab; ``/gpu``, ``/storage``, ``/network``, ``/cluster`` and
``/energy`` (:data:`~workbench.metrics.base.TAB_PAGES`) have one tab each, so that
JupyterLab can show each as a pane of its own. Every page and every viewer reads the
same store.
"""

from __future__ import annotations

import errno
import socket
from collections.abc import Callable
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

    def initialize(self, store: MetricsStore) -> None:
        self.store = store

    def get(self) -> None:
        self.set_header("Content-Type", CONTENT_TYPE)
        self.write(render(self.store))


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
    ) -> None:
        from .app import create_view

        self.port = reserve_port(address, port)
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
            patterns.append((r"/metrics", PrometheusHandler, {"store": store}))
        self._server: Any = pn.serve(
            apps,
            port=self.port,
            address=address,
            show=False,
            title=titles,
            websocket_origin=_origins(address, self.port, websocket_origins or []),
            extra_patterns=patterns,
            threaded=True,
            verbose=False,
        )
        self._wait_listening()

    def _wait_listening(self, timeout: float = 30.0) -> None:
        import time

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with socket.create_connection((self._connect_host, self.port), timeout=1):
                    return
            except OSError:
                time.sleep(0.1)
        raise MetricsError(f"the dashboard server did not start listening on port {self.port}")

    @property
    def _connect_host(self) -> str:
        return "127.0.0.1" if self.address in ("0.0.0.0", "") else self.address

    @property
    def url(self) -> str:
        return f"http://{self._connect_host}:{self.port}/"

    def page_url(self, tab: str) -> str:
        """The URL of one tab's page (``tab``: GPU, Storage, Network, Cluster, Energy)."""
        return self.url + TAB_PAGES[tab]  # type: ignore[index]

    @property
    def metrics_url(self) -> str:
        return f"http://{self._connect_host}:{self.port}/metrics"

    def stop(self) -> None:
        self._server.stop()
        self._server.join(timeout=10)

    close = stop
