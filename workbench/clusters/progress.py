"""A one-line status that updates in place while a cluster waits for its workers.

In a terminal the line is rewritten on stderr; in a notebook it is a display that is
updated (plain HTML, no widgets needed); elsewhere (logs, tests) nothing is shown. The
last line stays visible when the wait ends.
"""

from __future__ import annotations

import html
import sys
import time
from typing import Any

from ..jupyter_kernel import in_notebook


class WaitDisplay:
    """``update(text)`` while waiting, ``close(text)`` at the end.

    ``mode``: "auto" (notebook if in a kernel, terminal if stderr is a TTY, else off),
    "notebook", "terminal" or "off".
    """

    def __init__(self, mode: str = "auto", min_interval: float = 0.25) -> None:
        if mode == "auto":
            if in_notebook():
                mode = "notebook"
            elif sys.stderr is not None and sys.stderr.isatty():
                mode = "terminal"
            else:
                mode = "off"
        self.mode = mode
        self.min_interval = min_interval
        self._last = ""
        self._last_time = 0.0
        self._width = 0
        self._handle: Any = None
        self.start = time.monotonic()

    def _render(self, text: str) -> None:
        if self.mode == "terminal":
            line = text.replace("\n", " ")
            pad = max(0, self._width - len(line))
            sys.stderr.write("\r" + line + " " * pad)
            sys.stderr.flush()
            self._width = len(line)
        elif self.mode == "notebook":
            from IPython.display import HTML, display

            body = HTML(
                "<pre class='workbench-wait' style='margin:0'>" + html.escape(text) + "</pre>"
            )
            if self._handle is None:
                self._handle = display(body, display_id=True)
            else:
                self._handle.update(body)

    def update(self, text: str) -> None:
        now = time.monotonic()
        if text == self._last or now - self._last_time < self.min_interval:
            return
        self._last, self._last_time = text, now
        self._render(text)

    def close(self, text: str | None = None) -> None:
        if text is not None and text != self._last:
            self._last = text
            self._render(text)
        if self.mode == "terminal" and self._width:
            sys.stderr.write("\n")
            sys.stderr.flush()
            self._width = 0
