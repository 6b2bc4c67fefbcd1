"""The Dask dashboard of a cluster with TLS: HTTPS that only the cluster's clients may use.

Dask's dashboard has no login. On a machine shared with other people its port, even on
loopback, is open to every local account: status, logs (``/info/main/logs.html``), task
names and ``/metrics``. A cluster with ``security: tls`` therefore serves its dashboard
over HTTPS with the cluster's own certificate, and **asks every client for a certificate
signed by the cluster's CA** (mutual TLS): distributed's
``distributed.scheduler.dashboard.tls.*`` settings serve HTTPS but do not ask for a client
certificate by themselves, so :func:`dashboard_tls` also makes the server's SSL context
require one, before the server accepts its first connection. The JupyterLab server shows
it through workbench's own route, which presents the cluster's client certificate
(:mod:`workbench.server.dashboard_proxy`); no browser ever holds it.

The workers' own HTTP servers (``/health``, ``/metrics``; no Bokeh pages) keep only
``/health`` (:data:`WORKER_HTTP_ENV`): the metrics a dashboard shows come through the
scheduler.
"""

from __future__ import annotations

import contextlib
import json
import os
import ssl
import threading
from collections.abc import Iterator
from typing import Any

import dask

#: The worker processes' HTTP server answers /health only: as the environment of a
#: worker started by a command (SLURM jobs), and as the config a Nanny hands its worker
#: (a dotted key: the Nanny merges its config into the parent's shallowly, then the worker
#: applies it key by key, so that this one comes last).
WORKER_HTTP_ROUTES = ["distributed.http.health"]
WORKER_HTTP_ENV = {"DASK_DISTRIBUTED__WORKER__HTTP__ROUTES": json.dumps(WORKER_HTTP_ROUTES)}
WORKER_HTTP_CONFIG = {"distributed.worker.http.routes": WORKER_HTTP_ROUTES}

_lock = threading.RLock()
#: Where the Jupyter server shows a cluster's views (workbench.server.dashboard_proxy),
#: relative to its base URL.
VIEW_PATH = "workbench/api/clusters/{cluster_id}/view/{view}/{path}"


def browser_link(cluster_id: str, view: str = "dask", path: str = "status") -> str:
    """A cluster's view as a browser opens it from JupyterLab: through the Jupyter server
    (its base URL is ``JUPYTERHUB_SERVICE_PREFIX`` under JupyterHub, ``/`` otherwise)."""
    prefix = os.environ.get("JUPYTERHUB_SERVICE_PREFIX") or "/"
    prefix = prefix if prefix.endswith("/") else prefix + "/"
    return prefix + VIEW_PATH.format(cluster_id=cluster_id, view=view, path=path)


def tls_settings(tls_paths: dict[str, str]) -> dict[str, Any]:
    """The dask config that serves the dashboard with the cluster's certificate."""
    return {
        "distributed.scheduler.dashboard.tls.cert": tls_paths["tls_client_cert"],
        "distributed.scheduler.dashboard.tls.key": tls_paths["tls_client_key"],
        "distributed.scheduler.dashboard.tls.ca-file": tls_paths["tls_ca_file"],
    }


def _requiring_client_certificates(start_http_server: Any) -> Any:
    def start(self: Any, *args: Any, **kwargs: Any) -> Any:
        result = start_http_server(self, *args, **kwargs)
        context = getattr(getattr(self, "http_server", None), "ssl_options", None)
        if isinstance(context, ssl.SSLContext):
            # Synchronous with the listen() above: no connection is accepted before the
            # event loop runs again, so none is ever served without a client certificate.
            context.verify_mode = ssl.CERT_REQUIRED
        return result

    return start


@contextlib.contextmanager
def dashboard_tls(tls_paths: dict[str, str] | None) -> Iterator[None]:
    """Inside, a Dask server this process starts serves its dashboard over mutual TLS with
    the cluster's credentials (nothing changes without credentials: ``security: none``)."""
    if not tls_paths:
        yield
        return
    from distributed.node import ServerNode

    with _lock:
        original = ServerNode.__dict__["start_http_server"]
        ServerNode.start_http_server = _requiring_client_certificates(original)  # type: ignore[method-assign]
        try:
            with dask.config.set(tls_settings(tls_paths)):
                yield
        finally:
            ServerNode.start_http_server = original  # type: ignore[method-assign]
