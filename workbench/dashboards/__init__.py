"""Live dashboards in Panel: tabs GPU / Storage / Network / Cluster / Energy.

    handle.dashboard()                         # in a notebook: the layout, updating live
    workbench.dashboards.dashboard(address)    # the same for any scheduler address
    workbench dashboard --cluster ID --port 8050   # standalone, with /metrics

Needs the ``dashboards`` extra (``pip install 'workbench[dashboards]'``).
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

from ..errors import MetricsError, MissingDependencyError
from ..jupyter_kernel import in_notebook

try:
    import panel as pn
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise MissingDependencyError(
        f"the dashboards need Panel ({exc}); install them with: pip install 'workbench[dashboards]'"
    ) from exc

from .app import DashboardView, create_view
from .model import DashboardState, plot_frame, plot_specs
from .server import DashboardServer

if TYPE_CHECKING:
    from ..metrics.store import MetricsStore

_extension_loaded = False


def load_extension() -> None:
    """Load Panel's JavaScript into the notebook, inline (works offline). Once per kernel."""
    global _extension_loaded
    if not _extension_loaded:
        pn.extension(inline=True)
        _extension_loaded = True


def dashboard(
    target: Any = None,
    *,
    interval: float = 1.0,
    store: MetricsStore | None = None,
    **settings: Any,
) -> pn.viewable.Viewable:
    """A live dashboard layout for a cluster (a ClusterHandle, Client or scheduler address)
    or, with no target, for this machine. ``settings``: ``refresh``, ``window``, ``mode``.

    The metrics store behind it is shared with every other dashboard of the same
    cluster in this process.
    """
    from ..metrics.store import get_store

    if store is None:
        store = get_store(scheduler_address(target), interval=interval)
    # A notebook shows the first render as is: wait (briefly) for lines, not dots.
    with contextlib.suppress(MetricsError):
        store.wait_for(_has_history, timeout=5 * store.interval + 2)
    if in_notebook():
        load_extension()
    cost = getattr(target, "cost", None)  # a ClusterHandle knows its running cost
    view = create_view(store, cost=cost if callable(cost) else None, **settings)
    layout = view.panel()
    view.start()
    return layout


def _has_history(store: MetricsStore) -> bool:
    sources = store.snapshot_sources()
    enough = bool(sources) and all(len(s.ring) >= 3 for s in sources)
    return enough and (store.scheduler_address is None or len(store.cluster) >= 3)


def scheduler_address(target: Any) -> str | None:
    """The scheduler address of a ClusterHandle, Client, Cluster or address string."""
    if target is None or isinstance(target, str):
        return target
    for attr in ("scheduler_address",):
        value = getattr(target, attr, None)
        if isinstance(value, str):
            return value
    scheduler = getattr(target, "scheduler", None)
    address = getattr(scheduler, "address", None)
    if isinstance(address, str):
        return address
    raise TypeError(
        f"cannot tell the scheduler address of {target!r}; pass a ClusterHandle, a Client "
        "or an address like 'tcp://10.0.0.5:8786'"
    )


__all__ = [
    "DashboardServer",
    "DashboardState",
    "DashboardView",
    "create_view",
    "dashboard",
    "load_extension",
    "plot_frame",
    "plot_specs",
    "scheduler_address",
]
