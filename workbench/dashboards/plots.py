"""The dashboards' plots, built with hvplot from the metrics frames.

Every plot is one frame of :func:`~workbench.dashboards.model.plot_frame`, long format
``(time, series, value)``, drawn with ``hvplot.line(x="time", y="value", by="series")``:
one line per series. The same element is drawn by Bokeh in the live views
(:mod:`.app`) and by matplotlib in snapshots (:mod:`.snapshot`); only the options
differ (:func:`bokeh_options`, :func:`matplotlib_options`).

How a frame reaches a live plot is :class:`~workbench.dashboards.app._PlotSlot`'s job (built
once from the window, then only new points streamed into its data sources);
:func:`line_plot` only turns a frame into an element.

The accessor is made with ``hvplot.hvPlotTabular(frame)``, which is what
``frame.hvplot`` returns once ``import hvplot.pandas`` has patched pandas. That import
also calls ``hvplot.extension("bokeh")``, which in a notebook kernel loads BokehJS from a
CDN: it would break the notebook dashboards offline (they embed BokehJS with
``pn.extension(inline=True)``), so workbench does not patch pandas in the user's kernel.
"""

from __future__ import annotations

from typing import Any

import holoviews as hv
import pandas as pd
from bokeh.models import DatetimeTickFormatter
from hvplot import hvPlotTabular

from .model import PlotSpec

PLOT_HEIGHT = 240
#: Category10, spelled out: no plotting backend needs to be loaded for it.
PALETTE = [
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
    "#17becf",
]

TIME_FORMAT = DatetimeTickFormatter(
    milliseconds="%H:%M:%S.%3N",
    seconds="%H:%M:%S",
    minsec="%H:%M:%S",
    minutes="%H:%M",
    hourmin="%H:%M",
    hours="%H:%M",
    context=None,
)


def hvplot(frame: pd.DataFrame) -> Any:
    """``frame.hvplot`` without patching pandas (see the module's docstring)."""
    return hvPlotTabular(frame)


def line_plot(frame: pd.DataFrame, unit: str) -> hv.NdOverlay:
    """One line per series of a ``(time, series, value)`` frame; ``unit`` labels the y axis."""
    if frame.empty:
        frame = pd.DataFrame({"time": pd.to_datetime([]), "series": [], "value": []})
    return hvplot(frame).line(
        x="time",
        y="value",
        by="series",
        xlabel="",
        ylabel=unit,
        legend="right",
        hover=True,
        responsive=True,
        height=PLOT_HEIGHT,
    )


def _no_legend_title(plot: Any, element: Any) -> None:
    for legend in getattr(plot.state, "legend", []):
        legend.title = None


def bokeh_options(plot: PlotSpec) -> list[Any]:
    """Options of a live plot, applied once to its DynamicMap (not on every redraw)."""
    return [
        hv.opts.Curve(line_width=2, color=hv.Cycle(PALETTE), framewise=True),
        hv.opts.NdOverlay(
            title=plot.title,
            responsive=True,
            height=PLOT_HEIGHT,
            legend_position="right",
            legend_opts={"label_text_font_size": "8pt", "spacing": 0},
            xformatter=TIME_FORMAT,
            ylim=(0, None),
            framewise=True,
            show_legend=True,
            hooks=[_no_legend_title],
        ),
    ]


def _time_axis_and_legend(plot: Any, element: Any) -> None:
    """Clock times on the x axis (as the live view shows them) and no legend title."""
    from matplotlib.dates import DateFormatter
    from matplotlib.ticker import MaxNLocator

    axis = plot.handles["axis"]
    axis.xaxis.set_major_locator(MaxNLocator(4))
    axis.xaxis.set_major_formatter(DateFormatter("%H:%M:%S"))
    legend = axis.get_legend()
    if legend is not None:
        legend.set_title(None)


def matplotlib_options(plot: PlotSpec) -> list[Any]:
    """Options of a plot drawn to PNG with matplotlib (snapshots)."""
    return [
        hv.opts.Curve(linewidth=2, color=hv.Cycle(PALETTE), backend="matplotlib"),
        hv.opts.NdOverlay(
            title=plot.title,
            xlabel="",
            hooks=[_time_axis_and_legend],
            legend_position="right",
            fig_inches=(7, 2.8),
            ylim=(0, None),
            backend="matplotlib",
        ),
    ]
