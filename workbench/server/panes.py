"""``/workbench/api/clusters/<id>/panes``: what the sidebar lists as dockable panes.

Two kinds, each opened by JupyterLab as a main-area panel of its own:

* every Dask plot the cluster's scheduler serves: its ``individual-*`` pages, as its
  ``/individual-plots.json`` lists them (task stream, progress, worker memory, and GPU
  utilization and memory where the scheduler has GPU plots), under the dashboard's root
  as the browser reaches it: workbench's own route,
  ``{base_url}workbench/api/clusters/<id>/view/dask/``;
* every page of workbench's own dashboards (GPU, Storage, Network, Cluster, Energy:
  :data:`~workbench.metrics.base.TAB_PAGES`), served by the cluster's dashboard process
  (``POST clusters/<id>/dashboard`` starts it and answers its root).

A part that cannot be offered says why in its ``problem`` (no Dask dashboard, the
scheduler's listing does not answer, Panel not installed); the other part still works.
"""

from __future__ import annotations

import json
from typing import Any

from ..clusters.control import ClusterControl
from ..clusters.record import ClusterRecord
from ..metrics.base import TAB_PAGES
from .dashboards import panel_missing
from .probes import ProbeHandler, ProxyInfo, dashboard_urls
from .upstreams import DashboardUnreachableError, dask_upstream, fetch_upstream

#: Seconds the scheduler's dashboard has to list its plots.
LISTING_TIMEOUT_S = 5.0


def dashboard_root(url: str) -> str:
    """The dashboard's root from its status page URL (``.../proxy/8787/status``)."""
    root = url.split("?")[0]
    if root.rstrip("/").endswith("/status"):
        root = root.rstrip("/")[: -len("status")]
    return root if root.endswith("/") else root + "/"


def dask_plots(listing: dict[str, Any]) -> list[dict[str, str]]:
    """The individual plots of ``/individual-plots.json``, labels without "Individual"."""
    plots = []
    for name, path in listing.items():
        if not isinstance(path, str):
            continue
        route = path.lstrip("/")
        if not (route.startswith("individual-") or "/individual-" in route):
            continue
        label = name.removeprefix("Individual").strip() or route
        plots.append({"label": label, "route": route})
    return sorted(plots, key=lambda p: p["label"].lower())


def _listing(record: ClusterRecord) -> dict[str, Any]:
    """The scheduler's ``individual-plots.json`` (over mutual TLS where it has TLS)."""
    upstream = dask_upstream(record)
    code, body, err = fetch_upstream(upstream, "individual-plots.json", LISTING_TIMEOUT_S)
    if code != 200:
        raise DashboardUnreachableError(err or f"HTTP {code}")
    data = json.loads(body)
    if not isinstance(data, dict):
        raise ValueError(f"individual-plots.json holds {type(data).__name__}, not a mapping")
    return data


def cluster_panes(cluster_id: str, base_url: str, proxy: ProxyInfo) -> dict[str, Any]:
    record = ClusterControl().running(cluster_id)  # 404 unknown, 409 not running (with why)
    dask: dict[str, Any] = {"root": None, "plots": [], "problem": None}
    urls = dashboard_urls(record, base_url, proxy)
    if not urls["link"]:
        dask["problem"] = (
            "this cluster has no Dask dashboard (started with dashboard_address=None, or "
            "bokeh is not installed where its scheduler runs)"
        )
    else:
        dask["root"] = dashboard_root(str(urls["url"]))
        try:
            dask["plots"] = dask_plots(_listing(record))
        except (DashboardUnreachableError, ValueError) as exc:
            dask["problem"] = (
                f"the scheduler's dashboard did not list its plots (individual-plots.json): "
                f"{exc}. Diagnose says more."
            )
    return {
        "id": record.id,
        "dask": dask,
        "workbench": {
            "pages": [{"label": tab, "route": path} for tab, path in TAB_PAGES.items()],
            "problem": panel_missing(),
        },
    }


class ClusterPanesHandler(ProbeHandler):
    auth_resource = "workbench:clusters"

    async def get(self, cluster_id: str) -> None:
        self.reply(await self.run(cluster_panes, cluster_id, self._base_url, self._proxy()))
