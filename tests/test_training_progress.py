"""Progress: the callback interface, the tqdm bar, the notebook widgets (in a real kernel)."""

from __future__ import annotations

import io
import queue
import textwrap
from typing import Any

import pytest

from workbench.training.progress import (
    Callback,
    NotebookProgress,
    ProgressEvent,
    Reporter,
    TerminalProgress,
    in_notebook,
    make_display,
    svg_plot,
)


def run_job(reporter: Reporter, steps: int = 5) -> None:
    reporter.start()
    for i in range(1, steps + 1):
        if reporter.step(
            i, {"train-loss": 1.0 / i, "valid-loss": 1.2 / i, "valid-accuracy": i / 10}
        ):
            reporter.end("stopped")
            return
    reporter.end("finished")


def test_callbacks_receive_ordered_events_and_can_stop() -> None:
    seen: list[tuple[str, int]] = []

    class Stopper(Callback):
        def on_step(self, event: ProgressEvent) -> bool:
            return event.step == 3

    def plain(event: ProgressEvent) -> None:
        seen.append((event.kind, event.step))

    reporter = Reporter("torch", 5, callbacks=[plain, Stopper()], progress=None)
    run_job(reporter)
    assert seen == [("start", 0), ("step", 1), ("step", 2), ("step", 3), ("end", 3)]
    assert reporter.stop_requested
    assert reporter.history.metrics["train-loss"] == [1.0, 0.5, pytest.approx(1 / 3)]
    with pytest.raises(TypeError, match="not callable"):
        Reporter("torch", 1, callbacks=[42], progress=None)  # type: ignore[list-item]


def test_a_failing_user_callback_is_not_swallowed() -> None:
    def broken(event: ProgressEvent) -> None:
        raise RuntimeError("bug in my callback")

    reporter = Reporter("xgboost", 2, callbacks=broken, progress=None)
    with pytest.raises(RuntimeError, match="bug in my callback"):
        reporter.start()


def test_terminal_progress_is_a_tqdm_bar() -> None:
    out = io.StringIO()
    reporter = Reporter("xgboost", 5, progress=TerminalProgress(file=out, mininterval=0))
    run_job(reporter)
    text = out.getvalue()
    assert "5/5" in text
    assert "round" in text
    assert "train-loss=0.2" in text


def test_auto_display_outside_a_kernel_is_the_terminal_bar() -> None:
    assert not in_notebook()
    assert isinstance(make_display("auto"), TerminalProgress)
    assert make_display(None) is None
    with pytest.raises(ValueError, match="progress must be"):
        make_display("fancy")  # type: ignore[arg-type]


def test_notebook_widgets_follow_the_events() -> None:
    display = NotebookProgress(display=False, redraw_interval=0)
    reporter = Reporter("torch", 5, progress=display, title="PyTorch DDP x2")
    run_job(reporter)
    assert display.bar.value == 5 and display.bar.max == 5
    assert display.bar.bar_style == "success"
    assert "finished after 5 epochs" in display.label.value
    svg = display.plot.value
    # one panel per metric family, one line per series, 5 points each
    assert svg.count("<svg") == 2
    assert 'data-metric="loss"' in svg and 'data-metric="accuracy"' in svg
    for series in ("train-loss", "valid-loss", "valid-accuracy"):
        assert f'data-series="{series}"' in svg
    line = svg.split('data-series="train-loss" points="')[1].split('"')[0]
    assert len(line.split()) == 5


def test_svg_plot_handles_constant_and_missing_values() -> None:
    svg = svg_plot(
        [1, 2, 3], {"train-rmse": [1.0, 1.0, 1.0], "valid-rmse": [float("nan"), 2.0, 1.5]}
    )
    assert svg.count("<polyline") == 2
    assert "nan" not in svg.split("<polyline")[2]


@pytest.mark.slow
def test_notebook_detection_and_widgets_in_a_real_kernel(tmp_path: Any) -> None:
    """In a Jupyter kernel, progress='auto' shows ipywidgets (a widget view is displayed)."""
    from jupyter_client.manager import start_new_kernel

    km, kc = start_new_kernel(
        kernel_name="python3", extra_arguments=["--HistoryManager.enabled=False"]
    )
    try:
        code = textwrap.dedent(
            """
            from workbench.training.progress import Reporter, in_notebook, make_display
            r = Reporter("xgboost", 3, progress="auto")
            r.start()
            for i in (1, 2, 3):
                r.step(i, {"train-rmse": 1.0 / i})
            r.end("finished")
            print(in_notebook(), type(make_display("auto")).__name__)
            """
        )
        msg_id = kc.execute(code)
        views, text = 0, ""
        while True:
            try:
                msg = kc.get_iopub_msg(timeout=60)
            except queue.Empty:
                pytest.fail("the kernel did not answer in time")
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            kind = msg["msg_type"]
            if (
                kind == "display_data"
                and "application/vnd.jupyter.widget-view+json" in msg["content"]["data"]
            ):
                views += 1
            elif kind == "stream":
                text += msg["content"]["text"]
            elif kind == "error":
                pytest.fail("\n".join(msg["content"]["traceback"]))
            elif kind == "status" and msg["content"]["execution_state"] == "idle":
                break
        assert views == 1
        assert text.strip() == "True NotebookProgress", text
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
