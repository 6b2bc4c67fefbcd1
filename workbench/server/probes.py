"""What the server-side probes of the Jupyter server share: a GET that never leaks the
caller's credentials to another origin (:func:`fetch`), whether jupyter-server-proxy serves
``{base_url}proxy/<port>/`` here (:func:`proxy_info`), a dashboard's direct and proxied URLs
(:func:`dashboard_urls`), and :class:`ProbeHandler`, the base of the handlers that probe
(``/health``, a cluster's health, its dashboards and panes).
"""

from __future__ import annotations

import contextlib
import importlib.util
import ipaddress
import socket
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

import psutil
from tornado import web
from tornado.httputil import HTTPHeaders, HTTPServerRequest, RequestStartLine

from ..clusters.record import ClusterRecord
from .base import WorkbenchHandler
from .upstreams import view_url

LOOPBACK_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost"}


@dataclass
class ProxyInfo:
    """Whether jupyter-server-proxy can serve ``{base_url}proxy/{port}/`` on this server."""

    installed: bool
    enabled: bool

    @property
    def reason(self) -> str:
        if self.enabled:
            return "jupyter-server-proxy serves {base_url}proxy/<port>/ on this server"
        if self.installed:
            return (
                "jupyter-server-proxy is installed but not enabled in this server; enable it "
                "with: jupyter server extension enable jupyter_server_proxy (then restart)"
            )
        return (
            "jupyter-server-proxy is not installed, so dashboards on this machine cannot be "
            "shown through the Jupyter server; pip install jupyter-server-proxy and restart"
        )


def proxy_info(web_app: web.Application, base_url: str) -> ProxyInfo:
    installed = importlib.util.find_spec("jupyter_server_proxy") is not None
    probe = HTTPServerRequest(
        start_line=RequestStartLine("GET", f"{base_url.rstrip('/')}/proxy/8787/status", "HTTP/1.1"),
        headers=HTTPHeaders({"Host": "localhost"}),
    )
    delegate: Any = web_app.find_handler(probe)
    handler = getattr(delegate, "handler_class", None)
    enabled = bool(handler and handler.__module__.startswith("jupyter_server_proxy"))
    return ProxyInfo(installed=installed, enabled=enabled)


def is_loopback(host: str) -> bool:
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def is_this_machine(host: str) -> bool:
    if is_loopback(host) or host in ("0.0.0.0", "::", socket.gethostname(), socket.getfqdn()):
        return True
    addresses = {a.address.split("%")[0] for nics in psutil.net_if_addrs().values() for a in nics}
    if host in addresses:
        return True
    with contextlib.suppress(OSError):
        return any(info[4][0] in addresses for info in socket.getaddrinfo(host, None))
    return False


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Redirects are reported (as their 3xx status), never followed with credentials."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def same_origin(url: str, origin: str) -> bool:
    """Whether ``url`` is on ``origin`` (scheme, host and port), e.g. this Jupyter server."""
    a, b = urlparse(url), urlparse(origin)
    return (a.scheme, a.hostname, a.port) == (b.scheme, b.hostname, b.port) and bool(a.hostname)


def fetch(
    url: str,
    headers: dict[str, str] | None = None,
    timeout: float = 3.0,
    origin: str | None = None,
) -> tuple[int, str]:
    """(status, error) of a GET; status 0 when nothing answered.

    ``headers`` (the caller's Authorization and Cookie) are sent only to ``origin``, the
    Jupyter server's own: a path like ``//host/...`` or a link to another host gets a
    request without them, and a redirect is not followed (its status is the answer).
    """
    if headers and (origin is None or not same_origin(url, origin)):
        headers = None
    request = urllib.request.Request(url, headers=headers or {})
    opener = urllib.request.build_opener(_NoRedirect) if headers else urllib.request.build_opener()
    try:
        with opener.open(request, timeout=timeout) as response:
            return int(response.status), ""
    except urllib.error.HTTPError as exc:
        return exc.code, str(exc.reason)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        return 0, str(reason)


def dashboard_urls(record: ClusterRecord, base_url: str, proxy: ProxyInfo) -> dict[str, Any]:
    """The dashboard's link (where the server reaches it), its URL through workbench's own
    route (:mod:`workbench.server.dashboard_proxy`), and the one a pane opens. A link the
    user's configuration made relative to a proxy (``{prefix}proxy/{port}/status``) is
    opened as it is."""
    link = record.dashboard_link
    routed = None
    if link:
        parsed = urlparse(link)
        if parsed.scheme in ("http", "https") and parsed.hostname:
            routed = view_url(base_url, record.id, "dask", "status")
    return {"link": link, "proxied": routed, "url": routed or link}


class ProbeHandler(WorkbenchHandler):
    """A handler that probes URLs from this server: its base URL, whether the proxy serves
    it, its own address and the caller's credentials (for probes through the proxy)."""

    @property
    def _base_url(self) -> str:
        return str(self.settings.get("base_url", "/"))

    def _proxy(self) -> ProxyInfo:
        return proxy_info(self.application, self._base_url)

    def _server_url(self) -> str:
        """This server's own address (never the client-supplied Host header)."""
        app = self.serverapp
        if app is None:  # not run by a ServerApp (never the case in Jupyter)
            return f"{self.request.protocol}://127.0.0.1/"
        url = urlparse(str(app.connection_url))
        return f"{url.scheme}://{url.netloc}/"

    def _auth_headers(self) -> dict[str, str]:
        """The caller's own credentials, so the proxy check runs with the caller's rights."""
        return {k: v for k, v in self.request.headers.items() if k in ("Authorization", "Cookie")}
