"""The workbench Jupyter server extension: REST routes under ``/workbench/api/``.

JupyterLab's Workbench sidebar talks to these routes; so can any authenticated
client (``Authorization: token ...``). Enabled for every Jupyter server by the
config file ``jupyter-config/server-config/workbench.json`` that ``pip install``
puts under ``etc/jupyter/jupyter_server_config.d``.
"""

from __future__ import annotations

from typing import Any

from .routes import API_PREFIX, ROUTES, setup_routes

__all__ = ["API_PREFIX", "ROUTES", "setup_routes"]


def _jupyter_server_extension_points() -> list[dict[str, str]]:
    return [{"module": "workbench.server"}]


def _load_jupyter_server_extension(serverapp: Any) -> None:
    setup_routes(serverapp.web_app)
    serverapp.log.info("workbench: REST API at %s%s/", serverapp.base_url, API_PREFIX)
