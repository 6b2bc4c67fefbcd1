"""Every workbench REST route, in one place.

To add a feature's routes (datasets, templates, dashboards...), write its handlers
on :class:`~workbench.server.base.WorkbenchHandler` (each method decorated with
``@tornado.web.authenticated``) and add them to ``ROUTES``; paths are relative to
``{base_url}workbench/api``. ``tests/test_lab_server.py`` checks that every route
under the prefix refuses unauthenticated requests.
"""

from __future__ import annotations

from typing import Any

from jupyter_server.utils import url_path_join

from .autoconnect import AutoConnectHandler
from .base import WorkbenchHandler
from .clusters import (
    AdaptHandler,
    ClusterHandler,
    ClustersHandler,
    ConnectHandler,
    ScaleHandler,
)
from .dashboard_proxy import ClusterViewHandler
from .dashboards import ClusterDashboardHandler
from .datasets import DatasetHandler, DatasetsHandler
from .health import ClusterHealthHandler, HealthHandler
from .metrics import MetricsHandler, PrometheusHandler
from .panes import ClusterPanesHandler
from .profiles import ProfileHandler, ProfilePreviewHandler, ProfilesHandler
from .templates import TemplateHandler, TemplatesHandler

API_PREFIX = "workbench/api"
_ID = r"(?P<cluster_id>[A-Za-z0-9_.-]+)"

ROUTES: list[tuple[str, type[WorkbenchHandler] | type[ClusterViewHandler]]] = [
    (r"/profiles", ProfilesHandler),
    (r"/profiles/(?P<name>[^/]+)", ProfileHandler),
    (r"/profiles/(?P<name>[^/]+)/preview", ProfilePreviewHandler),
    (r"/clusters", ClustersHandler),
    (rf"/clusters/{_ID}", ClusterHandler),
    (rf"/clusters/{_ID}/scale", ScaleHandler),
    (rf"/clusters/{_ID}/adapt", AdaptHandler),
    (rf"/clusters/{_ID}/connect", ConnectHandler),
    (rf"/clusters/{_ID}/health", ClusterHealthHandler),
    (rf"/clusters/{_ID}/dashboard", ClusterDashboardHandler),
    (rf"/clusters/{_ID}/panes", ClusterPanesHandler),
    # a cluster's dashboards in the browser (HTTP and websockets): workbench's own route
    (rf"/clusters/{_ID}/view/(?P<view>[a-z]+)/(?P<path>.*)", ClusterViewHandler),
    (r"/health", HealthHandler),
    (r"/autoconnect", AutoConnectHandler),
    (r"/templates", TemplatesHandler),
    (r"/templates/(?P<name>[^/]+)", TemplateHandler),
    (r"/datasets", DatasetsHandler),
    (r"/datasets/(?P<name>[^/]+)", DatasetHandler),
    (r"/metrics", MetricsHandler),
    (r"/metrics/prometheus", PrometheusHandler),
]


def setup_routes(web_app: Any) -> None:
    base_url = web_app.settings.get("base_url", "/")
    handlers = [
        (url_path_join(base_url, API_PREFIX, path.lstrip("/")) + "/?", handler)
        for path, handler in ROUTES
    ]
    web_app.add_handlers(".*$", handlers)
