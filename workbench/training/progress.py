"""Live progress of training and tuning: events, callbacks, notebook and terminal displays.

Every long-running call (``train_xgboost``, ``train_torch``, ``tune``) reports a stream of
:class:`ProgressEvent` objects: one ``start``, one ``step`` per boosting round, epoch or
trial, and one ``end``. They are delivered on the calling thread, in order, to

* the display chosen by ``progress=``: ``"auto"`` (a widget progress bar with a live metric
  plot in a Jupyter kernel, a tqdm bar elsewhere), ``"notebook"``, ``"terminal"`` or ``None``;
* every callback in ``callbacks=``: a :class:`Callback` subclass or any callable taking an
  event. A callback that returns ``True`` from a step asks training to stop after it
  (the model trained so far is kept), which is how early stopping rules or budgets are
  written in user code.

Events from workers reach the client through Dask's event topics
(``Worker.log_event`` / ``Client.subscribe_topic``); nothing here needs a shared filesystem.
"""

from __future__ import annotations

import html
import logging
import math
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TextIO

from ..jupyter_kernel import in_notebook

logger = logging.getLogger(__name__)

EventKind = Literal["start", "step", "end"]
Status = Literal["finished", "stopped", "interrupted", "failed"]


@dataclass(frozen=True)
class ProgressEvent:
    """One progress report.

    ``step`` counts completed units (boosting rounds, epochs, trials); ``total`` is how many
    are planned (``None`` when unknown). ``metrics`` holds the latest values by name
    (``"train-rmse"``, ``"valid-loss"``, ``"best"``...). ``status`` is set on ``end`` events.
    """

    kind: EventKind
    job: str
    step: int
    total: int | None
    metrics: dict[str, float] = field(default_factory=dict)
    elapsed: float = 0.0
    status: Status | None = None
    info: dict[str, Any] = field(default_factory=dict)
    title: str = ""


class Callback:
    """Base class for progress consumers; override the hooks you need.

    ``on_step`` may return ``True`` to ask training to stop after this step.
    """

    def on_start(self, event: ProgressEvent) -> None:
        pass

    def on_step(self, event: ProgressEvent) -> bool | None:
        return None

    def on_end(self, event: ProgressEvent) -> None:
        pass

    def __call__(self, event: ProgressEvent) -> bool | None:
        if event.kind == "start":
            self.on_start(event)
        elif event.kind == "step":
            return self.on_step(event)
        else:
            self.on_end(event)
        return None


CallbackLike = Callback | Callable[[ProgressEvent], "bool | None"]
DisplayLike = Literal["auto", "notebook", "terminal"] | Callback | None | bool


class History(Callback):
    """Keeps every step's metrics: ``history.steps`` and ``history.metrics[name]``."""

    def __init__(self) -> None:
        self.steps: list[int] = []
        self.metrics: dict[str, list[float]] = {}
        self.events: list[ProgressEvent] = []

    def __call__(self, event: ProgressEvent) -> bool | None:
        self.events.append(event)
        return super().__call__(event)

    def on_step(self, event: ProgressEvent) -> None:
        self.steps.append(event.step)
        for name, value in event.metrics.items():
            self.metrics.setdefault(name, []).append(float(value))

    def last(self) -> dict[str, float]:
        return {k: v[-1] for k, v in self.metrics.items() if v}


# -- displays ------------------------------------------------------------------------------


def _format_metrics(metrics: dict[str, float], limit: int = 4) -> str:
    items = list(metrics.items())[:limit]
    return ", ".join(f"{k}={v:.4g}" for k, v in items)


class TerminalProgress(Callback):
    """A plain tqdm progress bar with the latest metrics after it."""

    def __init__(self, file: TextIO | None = None, mininterval: float = 0.2) -> None:
        self.file = file
        self.mininterval = mininterval
        self._bar: Any = None

    def on_start(self, event: ProgressEvent) -> None:
        from tqdm.std import tqdm

        self._bar = tqdm(
            total=event.total,
            desc=event.title or event.job,
            unit=_UNITS.get(event.job, "step"),
            file=self.file if self.file is not None else sys.stderr,
            mininterval=self.mininterval,
            dynamic_ncols=True,
            leave=True,
        )

    def on_step(self, event: ProgressEvent) -> None:
        if self._bar is None:
            return
        self._bar.update(max(0, event.step - self._bar.n))
        if event.metrics:
            self._bar.set_postfix_str(_format_metrics(event.metrics), refresh=False)

    def on_end(self, event: ProgressEvent) -> None:
        if self._bar is None:
            return
        if event.status and event.status != "finished":
            self._bar.set_description_str(f"{event.title or event.job} ({event.status})")
        self._bar.close()
        self._bar = None


_UNITS = {"xgboost": "round", "torch": "epoch", "tune": "trial", "distill": "epoch"}
_COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2"]


def _metric_group(name: str) -> str:
    """``train-rmse`` and ``valid-rmse`` share a panel named ``rmse``."""
    return name.split("-", 1)[1] if "-" in name else name


def svg_plot(
    steps: Sequence[int],
    metrics: Mapping[str, Sequence[float]],
    width: int = 280,
    height: int = 170,
) -> str:
    """Small SVG line charts, one panel per metric family, for the notebook display."""
    groups: dict[str, list[str]] = {}
    for name in metrics:
        groups.setdefault(_metric_group(name), []).append(name)
    panels = []
    pad_l, pad_r, pad_t, pad_b = 48, 8, 20, 22
    for group, names in groups.items():
        values = [v for n in names for v in metrics[n] if math.isfinite(v)]
        if not values or not steps:
            continue
        lo, hi = min(values), max(values)
        if hi == lo:
            hi, lo = hi + 0.5 * (abs(hi) or 1), lo - 0.5 * (abs(lo) or 1)
        x0, x1 = min(steps), max(steps)
        span_x = (x1 - x0) or 1

        def px(x: float, x0: float = x0, span_x: float = span_x) -> float:
            return pad_l + (x - x0) / span_x * (width - pad_l - pad_r)

        def py(y: float, lo: float = lo, hi: float = hi) -> float:
            return pad_t + (hi - y) / (hi - lo) * (height - pad_t - pad_b)

        parts = [
            f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
            f'class="workbench-plot" data-metric="{html.escape(group)}">',
            f'<text x="{pad_l}" y="13" font-size="12" font-family="sans-serif">'
            f"{html.escape(group)}</text>",
            f'<line x1="{pad_l}" y1="{height - pad_b}" x2="{width - pad_r}" '
            f'y2="{height - pad_b}" stroke="#999"/>',
            f'<line x1="{pad_l}" y1="{pad_t}" x2="{pad_l}" y2="{height - pad_b}" stroke="#999"/>',
            f'<text x="{pad_l - 4}" y="{pad_t + 4}" font-size="10" text-anchor="end" '
            f'font-family="sans-serif">{hi:.3g}</text>',
            f'<text x="{pad_l - 4}" y="{height - pad_b}" font-size="10" text-anchor="end" '
            f'font-family="sans-serif">{lo:.3g}</text>',
            f'<text x="{width - pad_r}" y="{height - 6}" font-size="10" text-anchor="end" '
            f'font-family="sans-serif">{x1}</text>',
        ]
        for i, name in enumerate(names):
            color = _COLORS[i % len(_COLORS)]
            points = " ".join(
                f"{px(s):.1f},{py(v):.1f}"
                for s, v in zip(steps, metrics[name], strict=False)
                if math.isfinite(v)
            )
            parts.append(
                f'<polyline fill="none" stroke="{color}" stroke-width="1.5" '
                f'data-series="{html.escape(name)}" points="{points}"/>'
            )
            parts.append(
                f'<text x="{width - pad_r}" y="{pad_t + 12 * (i + 1)}" font-size="10" '
                f'text-anchor="end" fill="{color}" font-family="sans-serif">'
                f"{html.escape(name)}</text>"
            )
        parts.append("</svg>")
        panels.append("".join(parts))
    return "<div style='display:flex;flex-wrap:wrap;gap:8px'>" + "".join(panels) + "</div>"


class NotebookProgress(Callback):
    """An ipywidgets progress bar, a status line and a live plot of every metric."""

    def __init__(self, redraw_interval: float = 0.25, display: bool = True) -> None:
        import ipywidgets as widgets

        self.redraw_interval = redraw_interval
        self._display = display
        self.bar = widgets.IntProgress(value=0, min=0, max=1, bar_style="info")
        self.label = widgets.HTML(value="")
        self.plot = widgets.HTML(value="")
        self.widget = widgets.VBox([widgets.HBox([self.bar, self.label]), self.plot])
        self.history = History()
        self._last_draw = 0.0
        self._title = ""

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.widget)

    def on_start(self, event: ProgressEvent) -> None:
        self._title = event.title or event.job
        self.bar.max = max(1, event.total or 1)
        self.bar.value = 0
        self.bar.description = self._title[:20]
        self.label.value = f"<code>{html.escape(self._title)}</code> starting"
        if self._display:
            from IPython.display import display

            display(self.widget)

    def on_step(self, event: ProgressEvent) -> None:
        self.history.on_step(event)
        if event.total and event.total > self.bar.max:
            self.bar.max = event.total
        self.bar.value = min(event.step, self.bar.max)
        total = f"/{event.total}" if event.total else ""
        self.label.value = (
            f"{event.step}{total} {_UNITS.get(event.job, 'step')}s, {event.elapsed:.1f}s"
            + (f" &middot; {html.escape(_format_metrics(event.metrics))}" if event.metrics else "")
        )
        now = time.monotonic()
        if now - self._last_draw >= self.redraw_interval:
            self._draw()
            self._last_draw = now

    def _draw(self) -> None:
        self.plot.value = svg_plot(self.history.steps, self.history.metrics)

    def on_end(self, event: ProgressEvent) -> None:
        self._draw()
        self.bar.bar_style = {"finished": "success", "failed": "danger"}.get(
            event.status or "finished", "warning"
        )
        self.label.value = (
            f"<code>{html.escape(self._title)}</code> {event.status or 'finished'} after "
            f"{event.step} {_UNITS.get(event.job, 'step')}s in {event.elapsed:.1f}s"
            + (f" &middot; {html.escape(_format_metrics(event.metrics))}" if event.metrics else "")
        )


def make_display(display: DisplayLike) -> Callback | None:
    """The display for ``progress=``: widgets in a notebook, tqdm in a terminal, or none."""
    if display is None or display is False:
        return None
    if isinstance(display, Callback):
        return display
    if display is True:
        display = "auto"
    if display == "auto":
        display = "notebook" if in_notebook() else "terminal"
    if display == "notebook":
        try:
            return NotebookProgress()
        except ImportError:
            logger.info("ipywidgets is not installed: showing a text progress bar")
            return TerminalProgress()
    if display == "terminal":
        return TerminalProgress()
    raise ValueError(
        f"progress must be 'auto', 'notebook', 'terminal', a Callback or None, got {display!r}"
    )


# -- delivering events ----------------------------------------------------------------------


class Reporter:
    """Builds events for one job and hands them to the display and the callbacks.

    ``step`` returns ``True`` when a callback asked to stop.
    """

    def __init__(
        self,
        job: str,
        total: int | None,
        *,
        callbacks: Iterable[CallbackLike] | CallbackLike | None = None,
        progress: DisplayLike = "auto",
        title: str = "",
    ) -> None:
        self.job = job
        self.total = total
        self.title = title or job
        if callbacks is None:
            cbs: list[CallbackLike] = []
        elif callable(callbacks) and not isinstance(callbacks, list | tuple):
            cbs = [callbacks]
        else:
            cbs = list(callbacks)
        for cb in cbs:
            if not callable(cb):
                raise TypeError(f"callback {cb!r} is not callable")
        self.history = History()
        display = make_display(progress)
        self.consumers: list[CallbackLike] = [self.history, *([display] if display else []), *cbs]
        self.started = time.monotonic()
        self.step_count = 0
        self.metrics: dict[str, float] = {}
        self.stop_requested = False
        self._ended = False

    def _event(self, kind: EventKind, **kw: Any) -> ProgressEvent:
        return ProgressEvent(
            kind=kind,
            job=self.job,
            step=self.step_count,
            total=self.total,
            metrics=dict(self.metrics),
            elapsed=time.monotonic() - self.started,
            title=self.title,
            **kw,
        )

    def start(self, **info: Any) -> None:
        self.started = time.monotonic()
        self._send(self._event("start", info=info))

    def step(self, step: int, metrics: dict[str, float], **info: Any) -> bool:
        self.step_count = step
        self.metrics = {k: float(v) for k, v in metrics.items()}
        if self._send(self._event("step", info=info)):
            self.stop_requested = True
        return self.stop_requested

    def end(self, status: Status, **info: Any) -> None:
        if self._ended:
            return
        self._ended = True
        self._send(self._event("end", status=status, info=info))

    def _send(self, event: ProgressEvent) -> bool:
        stop = False
        for consumer in self.consumers:
            # Display errors must not kill a training run; user callback errors must be seen.
            if consumer is self.history or isinstance(
                consumer, TerminalProgress | NotebookProgress
            ):
                try:
                    consumer(event)
                except Exception:
                    logger.exception("progress display failed")
                continue
            if consumer(event) is True:
                stop = True
        return stop
