"""The Panel view: tabs GPU / Storage / Network / Cluster / Energy over a shared store.

Each viewer (a browser tab, a notebook output, one Lab pane per tab) gets its own
:class:`DashboardView` with its own settings, showing every tab or just one; all read
the same :class:`~workbench.metrics.store.MetricsStore`. A plot is an hvplot line chart
(:mod:`.plots`) of its frame, built once; after that only the new points are streamed
to the browser (:class:`_PlotSlot`); only the visible tab is updated, and only when the
store collected something new.
"""

from __future__ import annotations

import html
import logging
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import holoviews as hv
import holoviews.plotting.bokeh  # registers the Bokeh backend and its options
import numpy as np
import pandas as pd
import panel as pn
from bokeh.models import ColumnDataSource, Range1d

from ..metrics.base import TABS
from .model import (
    AGGREGATE,
    DETAIL,
    REFRESH,
    WINDOWS,
    DashboardState,
    PlotSpec,
    epoch_seconds,
    streamable,
)
from .plots import bokeh_options, line_plot

if TYPE_CHECKING:
    from ..metrics.store import MetricsStore

logger = logging.getLogger(__name__)
hv.Store.set_current_backend("bokeh")

#: Room above the highest point when a new point raises the y axis (a share of it).
Y_HEADROOM = 0.1

_CSS = """
.wb-note { color: #555; font-size: 13px; border: 1px dashed #bbb; border-radius: 6px;
           padding: 8px 12px; margin: 6px; min-width: 320px; }
.wb-status { color: #444; font-size: 13px; }
"""


class _PlotSlot:
    """One plot of a tab: the HoloViews pane, or a note while it has no data.

    The plot is built with hvplot (:func:`.plots.line_plot`) from the whole window once,
    and again only when its lines change (a worker joins, the unit or the view settings
    change). After that, each update appends only the new points: the rows the store
    collected since the newest point shown (:meth:`DashboardState.new_points`, computed
    once per collection for every viewer), streamed into each line's Bokeh
    ``ColumnDataSource`` in every session that shows the plot
    (``ColumnDataSource.stream`` with a rollover of the window's length), and the x
    range moved. The browser receives a few numbers per line; the server neither
    rebuilds the element nor renders it again. Aggregate lines show a bucket once the
    next one has begun (a bucket still filling would change after it was sent).
    Plots whose points all move as the window slides (an increase over the window)
    replace their lines' data instead.
    """

    def __init__(self, plot: PlotSpec) -> None:
        self.plot = plot
        self.series: tuple[str, ...] = ()
        self.unit = ""
        self.divisor = 1.0
        self.settings: tuple[float, str] | None = None
        #: Newest point shown per line (local clock time, as in the frames).
        self.last: dict[str, pd.Timestamp] = {}
        self.counts: dict[str, int] = {}
        self.first: pd.Timestamp | None = None
        #: The points call for a new plot, built in the next update (see :meth:`update`).
        self.pending = False
        self.pane = pn.pane.HoloViews(
            None, sizing_mode="stretch_width", min_width=360, linked_axes=False
        )
        self.note = pn.pane.HTML("", sizing_mode="stretch_width")
        # The pane is in the layout from the start, hidden while the plot has no data: a
        # pane swapped in for the note after the page was served did not reach the
        # browser (a plot whose first samples came late stayed missing there).
        self.pane.visible = False
        self.container = pn.Column(self.note, self.pane, sizing_mode="stretch_width")
        #: Points of all lines shown now; times a plot was built for the sessions (an
        #: element no session shows yet is refreshed uncounted); updates appended.
        self.points = 0
        self.rebuilds = 0
        self.streams = 0

    @property
    def showing_plot(self) -> bool:
        """Whether the plot is shown (else its note)."""
        return bool(self.pane.visible)

    def needs_build(self, state: DashboardState) -> bool:
        """Whether the next update builds the plot (rather than appending to it)."""
        settings = (float(state.window), str(state.mode))
        return self.pending or not self.series or settings != self.settings

    def update(self, state: DashboardState, rebuild: bool = False) -> None:
        """Append the new points, or build the plot. A plot shown in a session is built
        anew only in an update that announced it (:meth:`needs_build`), which the view
        runs with the document frozen: replacing a rendered plot in an unfrozen update
        leaves the browser without the new plot's models. So when the points call for a
        new plot (a new line, a larger unit), it is built in the next update. In such an
        update (``rebuild``) every plot of the tab is built, none appended to: streamed
        points held in a frozen document did not all reach the page."""
        settings = (float(state.window), str(state.mode))
        if (
            not rebuild
            and self.series
            and settings == self.settings
            and not self.pending
            and self.pane._plots
        ):
            sessions = self._sessions()
            if not sessions or not self._append(state, sessions):
                self.pending = True
            return
        self.pending = False
        self._build(state, settings)

    # -- building ------------------------------------------------------------------------------
    def _build(self, state: DashboardState, settings: tuple[float, str]) -> None:
        frame = state.frame(self.plot)
        if settings[1] == AGGREGATE and streamable(self.plot):
            frame = _settled(frame)
        if frame.empty:
            missing = state.missing(self.plot)
            self.note.object = f"<b>{html.escape(self.plot.title)}</b>: {html.escape(missing)}"
            self.pane.visible, self.note.visible = False, True
            self.series = ()
            return
        unit = str(frame.attrs.get("unit", ""))
        shown = bool(self.pane._plots)
        element = line_plot(frame, unit)
        # In a DynamicMap (never updated through HoloViews): a one-line plot keeps its
        # legend, which HoloViews drops for a static overlay of one element.
        dmap = hv.DynamicMap(lambda: element)
        self.pane.object = dmap.opts(*bokeh_options(self.plot))
        self.series = tuple(sorted(frame["series"].unique()))
        self.unit, self.divisor = unit, float(frame.attrs.get("divisor", 1.0))
        self.settings = settings
        last = frame.groupby("series")["time"]
        self.last = dict(last.max())
        self.counts = {str(k): int(v) for k, v in last.size().items()}
        self.first = frame["time"].min()
        self.points = len(frame)
        if shown or not self.rebuilds:
            self.rebuilds += 1
        self.pane.visible, self.note.visible = True, False

    def _sessions(self) -> list[tuple[Any, dict[str, ColumnDataSource]]]:
        """Per rendered copy of the plot (one per session/notebook output): the
        HoloViews plot and each line's data source."""
        out = []
        for plot, _ in list(self.pane._plots.values()):
            sources: dict[str, ColumnDataSource] = {}
            for key, sub in getattr(plot, "subplots", {}).items():
                source = sub.handles.get("source")
                if isinstance(source, ColumnDataSource):
                    name = key[0] if isinstance(key, tuple) and key else key
                    sources[str(name)] = source
            if set(sources) == set(self.series):
                out.append((plot, sources))
        return out

    # -- appending -----------------------------------------------------------------------------
    def _append(self, state: DashboardState, sessions: list[Any]) -> bool:
        """Send the new points to every session; False: the plot must be built anew."""
        if not streamable(self.plot):
            return self._replace(state, sessions)
        since = epoch_seconds(min(self.last.values()))
        new = state.new_points(self.plot, since, self.divisor)
        if new.attrs.get("natural_divisor", 1.0) > self.divisor:
            return False  # values outgrew the unit (MB/s -> GB/s)
        if self.settings is not None and self.settings[1] == AGGREGATE:
            new = _settled(new)
        if new.empty:
            return True
        names = new["series"].to_numpy()
        if not set(names) <= set(self.series):
            return False  # a new line (a worker joined): build the plot with it
        rollover = state.points_per_line()
        bounds = np.flatnonzero(names[1:] != names[:-1]) + 1
        times, values = new["time"].to_numpy(), new["value"].to_numpy()
        sent = 0
        for lo, hi in zip([0, *bounds], [*bounds, len(names)], strict=True):
            name = str(names[lo])
            keep = times[lo:hi] > self.last[name].to_datetime64()
            if not keep.any():
                continue
            chunk = {
                "time": times[lo:hi][keep],
                "value": values[lo:hi][keep],
                "series": names[lo:hi][keep],
            }
            for _, sources in sessions:
                sources[name].stream(chunk, rollover=rollover)
            self.last[name] = pd.Timestamp(chunk["time"][-1])
            self.counts[name] = min(rollover, self.counts.get(name, 0) + int(keep.sum()))
            sent += int(keep.sum())
        if sent:
            self.points = sum(self.counts.values())
            self.streams += 1
            top = float(np.nanmax(values)) if len(values) else 0.0
            self._move_ranges(sessions, top)
        return True

    def _replace(self, state: DashboardState, sessions: list[Any]) -> bool:
        frame = state.frame(self.plot)
        if float(frame.attrs.get("divisor", 1.0)) != self.divisor:
            return False
        names = set(frame["series"].unique()) if len(frame) else set()
        if names != set(self.series):
            return False
        for name, rows in frame.groupby("series"):
            data = {
                "time": rows["time"].to_numpy(),
                "value": rows["value"].to_numpy(),
                "series": rows["series"].to_numpy(),
            }
            for _, sources in sessions:
                sources[str(name)].data = data
            self.last[str(name)] = rows["time"].iloc[-1]
        self.points = len(frame)
        self.streams += 1
        self._move_ranges(sessions, float(frame["value"].max()))
        return True

    def _move_ranges(self, sessions: list[Any], top: float) -> None:
        end = max(self.last.values())
        window = pd.Timedelta(seconds=self.settings[0] if self.settings else 0.0)
        start = max(self.first, end - window) if self.first is not None else end - window
        for plot, _ in sessions:
            x_range, y_range = plot.handles.get("x_range"), plot.handles.get("y_range")
            if isinstance(x_range, Range1d):
                x_range.update(start=start.to_datetime64(), end=end.to_datetime64())
            if isinstance(y_range, Range1d) and top == top:
                shown = y_range.end if isinstance(y_range.end, int | float) else 0.0
                if top > shown:
                    y_range.end = top * (1 + Y_HEADROOM)


def _settled(frame: pd.DataFrame) -> pd.DataFrame:
    """The rows of an aggregate frame (sorted by series, then time) without each line's
    newest bucket, which is still filling."""
    if frame.empty:
        return frame
    names = frame["series"].to_numpy()
    last = np.append(names[1:] != names[:-1], True)
    return frame[~last]


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
            # When plots are built: one frozen hold for the whole redraw (the document
            # recomputes its model graph once, not once per plot; the browser gets one
            # message). Appended points go out as they are streamed, without a hold: held
            # and combined, the streamed columns did not reach a page served through
            # Jupyter's proxy (tests/test_lab_browser.py), and they add no model.
            slots = list(self.slots[self.active_tab].values())
            build = not slots or any(slot.needs_build(self.state) for slot in slots)
            if build:
                with pn.io.hold(freeze=True):
                    self._redraw(rebuild=True)
            else:
                self._redraw()
        except Exception:  # a failed redraw must not kill the session's callback
            logger.exception("dashboard update failed")

    def _redraw(self, rebuild: bool = False) -> None:
        tab = self.active_tab
        slots = self._sync_slots(tab)
        notice = self._notice(tab)
        self.notices[tab].object = notice or ""
        self.notices[tab].visible = bool(notice)
        # Without any GPU the notice says it all; the empty GPU plots would repeat it.
        self.grids[tab].visible = not (tab == "GPU" and notice)
        for slot in slots:
            slot.update(self.state, rebuild=rebuild)

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
