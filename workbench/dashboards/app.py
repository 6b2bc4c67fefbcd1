"""The Panel view: tabs GPU / Storage / Network / Cluster / Energy over a shared store.

Each viewer (a browser tab, a notebook output, one Lab pane per tab) gets its own
:class:`DashboardView` with its own settings, showing every tab or just one; all read
the same :class:`~workbench.metrics.store.MetricsStore`. A plot is an hvplot line chart
(:mod:`.plots`) of its frame, in a HoloViews ``DynamicMap`` fed through a ``Pipe``
(:class:`_PlotSlot`), so a redraw sends only data to the browser; only the visible tab
is redrawn, and only when the store collected something new.
"""

from __future__ import annotations

import html
import logging
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import holoviews as hv
import holoviews.plotting.bokeh  # registers the Bokeh backend and its options
import pandas as pd
import panel as pn

from ..metrics.base import TABS
from .model import AGGREGATE, DETAIL, REFRESH, WINDOWS, DashboardState, PlotSpec
from .plots import bokeh_options, line_plot

if TYPE_CHECKING:
    from ..metrics.store import MetricsStore

logger = logging.getLogger(__name__)
hv.Store.set_current_backend("bokeh")

_CSS = """
.wb-note { color: #555; font-size: 13px; border: 1px dashed #bbb; border-radius: 6px;
           padding: 8px 12px; margin: 6px; min-width: 320px; }
.wb-status { color: #444; font-size: 13px; }
"""


class _PlotSlot:
    """One plot of a tab: the HoloViews pane, or a note while it has no data.

    New data goes through the ``Pipe`` (Bokeh patches the existing plot). HoloViews
    cannot add lines to a live overlay, so when the set of series changes (a worker
    joins, the view mode changes) the plot is built anew.
    """

    def __init__(self, plot: PlotSpec) -> None:
        self.plot = plot
        self.pipe: hv.streams.Pipe | None = None
        self.series: tuple[str, ...] = ()
        self.unit = ""
        self.pane = pn.pane.HoloViews(
            None, sizing_mode="stretch_width", min_width=360, linked_axes=False
        )
        self.note = pn.pane.HTML("", sizing_mode="stretch_width")
        self.container = pn.Column(self.note, sizing_mode="stretch_width")
        self.showing_plot = False
        self.points = 0
        self.rebuilds = 0

    def update(self, frame: pd.DataFrame, missing: str) -> None:
        if frame.empty:
            self.note.object = f"<b>{html.escape(self.plot.title)}</b>: {html.escape(missing)}"
            if self.showing_plot:
                self.container[:] = [self.note]
                self.showing_plot = False
            return
        series = tuple(sorted(frame["series"].unique()))
        unit = str(frame.attrs.get("unit", ""))
        if self.pipe is None or series != self.series or unit != self.unit:
            self.pipe = hv.streams.Pipe(data=frame)
            dmap = hv.DynamicMap(lambda data: line_plot(data, unit), streams=[self.pipe])
            self.pane.object = dmap.opts(*bokeh_options(self.plot))
            self.series, self.unit = series, unit
            self.rebuilds += 1
        else:
            self.pipe.send(frame)
        self.points = len(frame)
        if not self.showing_plot:
            self.container[:] = [self.pane]
            self.showing_plot = True


class DashboardView:
    """One viewer's dashboard; ``panel()`` is the layout to show or serve."""

    def __init__(
        self,
        store: MetricsStore,
        state: DashboardState | None = None,
        tabs: Sequence[str] | None = None,
    ) -> None:
        self.store = store
        self.state = state or DashboardState(store)
        #: The tabs this view shows: all of them, or one (a page per tab, a Lab pane each).
        self.tab_names: tuple[str, ...] = tuple(tabs or TABS)
        unknown = [t for t in self.tab_names if t not in TABS]
        if unknown or not self.tab_names:
            raise ValueError(f"unknown dashboard tab(s) {unknown}; the tabs are {', '.join(TABS)}")
        self.slots: dict[str, dict[str, _PlotSlot]] = {tab: {} for tab in self.tab_names}
        self.grids: dict[str, pn.FlexBox] = {
            tab: pn.FlexBox(sizing_mode="stretch_width", flex_wrap="wrap") for tab in self.tab_names
        }
        self.notices: dict[str, pn.pane.Alert] = {
            tab: pn.pane.Alert("", alert_type="warning", visible=False, sizing_mode="stretch_width")
            for tab in self.tab_names
        }
        pages = [
            (tab, pn.Column(self.notices[tab], self.grids[tab], sizing_mode="stretch_width"))
            for tab in self.tab_names
        ]
        #: Tabs when the view shows several, else the one tab's page.
        self.tabs: pn.Tabs | None = None
        self.body: pn.viewable.Viewable
        if len(pages) > 1:
            self.tabs = pn.Tabs(*pages, dynamic=False, sizing_mode="stretch_width")
            self.tabs.param.watch(lambda _: self.update(force=True), "active")
            self.body = self.tabs
        else:
            self.body = pages[0][1]
        self.status = pn.pane.HTML("", css_classes=["wb-status"], sizing_mode="stretch_width")
        self.problems = pn.pane.Alert("", alert_type="danger", visible=False)
        self._callback: Any = None
        self._seen_version = -1
        self.updates = 0
        self.state.param.watch(lambda _: self.update(force=True), ["window", "mode"])
        self.state.param.watch(self._set_period, "refresh")

    # -- layout --------------------------------------------------------------------------------
    def panel(self) -> pn.viewable.Viewable:
        controls = pn.Row(
            pn.widgets.RadioButtonGroup.from_param(
                self.state.param.mode, name="View", options=[AGGREGATE, DETAIL]
            ),
            pn.widgets.Select.from_param(
                self.state.param.window, name="Time window", options=WINDOWS, width=120
            ),
            pn.widgets.Select.from_param(
                self.state.param.refresh, name="Refresh", options=REFRESH, width=100
            ),
        )
        title = "workbench live metrics"
        if self.tabs is None:
            title += f": {html.escape(self.tab_names[0])}"
        layout = pn.Column(
            pn.pane.HTML(f"<h2 style='margin:4px 0'>{title}</h2>"),
            self.status,
            controls,
            self.problems,
            self.body,
            sizing_mode="stretch_width",
            stylesheets=[_CSS],
        )
        if self.tabs is not None and self.state.gpu_notice() is not None:
            # no GPU: open on something alive
            self.tabs.active = self.tab_names.index("Cluster")
        self.update(force=True)
        return layout

    def start(self) -> None:
        """Redraw every ``refresh`` seconds in the current Panel session/notebook."""
        if self._callback is None:
            self._callback = pn.state.add_periodic_callback(
                self.update, period=int(float(self.state.refresh) * 1000)
            )

    def stop(self) -> None:
        if self._callback is not None:
            self._callback.stop()
            self._callback = None

    def _set_period(self, event: Any) -> None:
        if self._callback is not None:
            self._callback.period = int(float(event.new) * 1000)

    # -- redraw ---------------------------------------------------------------------------------
    @property
    def active_tab(self) -> str:
        return self.tab_names[self.tabs.active] if self.tabs is not None else self.tab_names[0]

    def _sync_slots(self, tab: str) -> list[_PlotSlot]:
        plots = self.state.plots(tab)
        slots = self.slots[tab]
        if [p.title for p in plots] != list(slots):
            new = {p.title: slots.get(p.title) or _PlotSlot(p) for p in plots}
            self.slots[tab] = new
            self.grids[tab][:] = [
                pn.Column(s.container, width=620, sizing_mode="fixed") for s in new.values()
            ]
            slots = new
        return list(slots.values())

    def update(self, force: bool = False) -> None:
        """Redraw the visible tab if the store has news (or ``force``)."""
        try:
            version = self.store.version
            if version == self._seen_version and not force:
                return
            self._seen_version = version
            self.updates += 1
            self.status.object = html.escape(self.state.status())
            problems = self.state.problems()
            self.problems.object = "<br>".join(html.escape(p) for p in problems)
            self.problems.visible = bool(problems)
            # One hold for the whole redraw: Bokeh recomputes the document's model graph
            # once, not once per plot, and the browser gets one message.
            with pn.io.hold(freeze=True):
                self._redraw()
        except Exception:  # a failed redraw must not kill the session's callback
            logger.exception("dashboard update failed")

    def _redraw(self) -> None:
        tab = self.active_tab
        slots = self._sync_slots(tab)
        notice = self._notice(tab)
        self.notices[tab].object = notice or ""
        self.notices[tab].visible = bool(notice)
        # Without any GPU the notice says it all; the empty GPU plots would repeat it.
        self.grids[tab].visible = not (tab == "GPU" and notice)
        for slot in slots:
            slot.update(self.state.frame(slot.plot), self.state.missing(slot.plot))

    def _notice(self, tab: str) -> str | None:
        if tab == "GPU":
            return self.state.gpu_notice()
        if tab == "Energy":
            gpu = self.state.gpu_notice()
            if gpu is None:
                return None
            rapl = self.store.why_missing("workbench_cpu_power_watts")
            if not rapl:
                return None
            return (
                "No power readings on this cluster.\n\n"
                + gpu.replace("No GPUs are visible to this dashboard:", "GPU power needs NVML:")
                + "\n\nCPU energy needs RAPL: "
                + "; ".join(rapl)
            )
        return None


def create_view(
    store: MetricsStore,
    cost: Callable[[], Any] | None = None,
    tabs: Sequence[str] | None = None,
    **settings: Any,
) -> DashboardView:
    """A view over ``store`` with initial ``refresh``/``window``/``mode`` settings;
    ``cost`` (e.g. ``ClusterHandle.cost``) adds the running cost to the status line;
    ``tabs``: the tabs to show (default: all; one tab: a page without tab headers)."""
    return DashboardView(store, DashboardState(store, cost=cost, **settings), tabs=tabs)
