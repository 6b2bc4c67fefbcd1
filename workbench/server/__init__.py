"""The workbench Jupyter server extension: REST routes under ``/workbench/api/``.

JupyterLab's Workbench sidebar talks to these routes; so can any authenticated
client (``Authorization: token ...``). Enabled for every Jupyter server by the
config file ``jupyter-config/server-config/workbench.json`` that ``pip install``
puts under ``etc/jupyter/jupyter_server_config.d``.
"""

from __future__ import annotations

import threading
from typing import Any

from .routes import API_PREFIX, ROUTES, setup_routes

__all__ = [
    "API_PREFIX",
    "ROUTES",
    "SWEEP_SETTING",
    "preload_backend_modules",
    "setup_routes",
    "sweep_stale_clusters",
]

#: The web app setting that holds the start-up sweep's thread.
SWEEP_SETTING = "workbench_sweep"


def _jupyter_server_extension_points() -> list[dict[str, str]]:
    return [{"module": "workbench.server"}]


KERNEL_ACTIONS = "https://events.jupyter.org/jupyter_server/kernel_actions/v1"


def _setup_autoconnect(serverapp: Any) -> None:
    """The kernel provisioner that auto-connects new kernels, and forgetting kernels that
    were shut down (jupyter_server's kernel action events)."""
    from .autoconnect import forget_kernel, install_provisioner

    if install_provisioner(serverapp.kernel_manager, serverapp.log):
        serverapp.log.info("workbench: new kernels connect to the cluster marked for them")

    async def on_kernel_action(logger: Any, schema_id: str, data: Any) -> None:
        if data.get("action") == "shutdown" and data.get("kernel_id"):
            forget_kernel(str(data["kernel_id"]))

    event_logger = getattr(serverapp, "event_logger", None)
    if event_logger is not None:
        event_logger.add_listener(schema_id=KERNEL_ACTIONS, listener=on_kernel_action)


def sweep_stale_clusters(log: Any) -> None:
    """Release every cluster whose owner is gone (its watchdog was killed too, or the
    machine restarted): what the server does at start-up, in a thread."""
    from ..clusters.control import ClusterControl
    from ..errors import WorkbenchError

    try:
        cleaned = ClusterControl().cleanup()
    except WorkbenchError as exc:
        log.warning("workbench: clusters left by dead owners could not all be released: %s", exc)
        return
    for record in cleaned:
        log.info(
            "workbench: released cluster %s (%s, %s) left by dead owner process %s",
            record.id,
            record.profile,
            record.backend,
            record.owner_pid,
        )


def preload_backend_modules(log: Any) -> None:
    """Import every backend's modules on the server's main thread, before any request:
    the REST routes run backends in a thread pool, where the first import of a module
    that sets signal handlers (dask-jobqueue) fails with "signal only works in main
    thread". The server's own handlers are kept (:mod:`workbench.imports`)."""
    from ..clusters.backend_registry import import_backend_modules

    for backend, outcome in import_backend_modules().items():
        log.debug("workbench: backend %s imported (%s)", backend, outcome)


def _load_jupyter_server_extension(serverapp: Any) -> None:
    preload_backend_modules(serverapp.log)
    setup_routes(serverapp.web_app)
    serverapp.log.info("workbench: REST API at %s%s/", serverapp.base_url, API_PREFIX)
    _setup_autoconnect(serverapp)
    sweep = threading.Thread(
        target=sweep_stale_clusters,
        args=(serverapp.log,),
        name="workbench-sweep",
        daemon=True,
    )
    # kept where a caller that must not race the sweep (a test adding records) finds it
    serverapp.web_app.settings[SWEEP_SETTING] = sweep
    sweep.start()
