"""``handle.dashboard()`` in a real Jupyter kernel renders with inline JavaScript (offline)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

pytestmark = pytest.mark.slow

CELLS = [
    "import workbench\n"
    "handle = workbench.launch('local-cpu', n_workers=1, threads_per_worker=1,\n"
    "                          memory_limit='1GiB', dashboard_address=':0', wait=True)",
    "handle.dashboard(window=60.0)",
    "from workbench.metrics import get_store\n"
    "store = get_store(handle.scheduler_address)\n"
    "print(len(store.worker_sources()), store.running)\n"
    "handle.close()\n"
    "print(store.running)",
]


def test_dashboard_renders_inline_in_a_kernel(tmp_path: Path) -> None:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(c) for c in CELLS]
    NotebookClient(
        nb, timeout=240, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    outputs = [o for cell in nb.cells for o in cell.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    shown = nb.cells[1]["outputs"][-1]
    assert "application/vnd.holoviews_exec.v0+json" in shown["data"]
    assert "workbench live metrics" in shown["data"]["text/html"] or any(
        "workbench live metrics" in json.dumps(o) for o in outputs
    )
    loaders = "".join(
        "".join(o["data"]["application/javascript"])
        for o in outputs
        if "application/javascript" in o.get("data", {})
    )
    # BokehJS and Panel's JS are embedded, not fetched from a CDN: it works offline
    assert "Bokeh.set_log_level" in loaders
    assert re.search(r"js_urls = \[\]", loaders) and re.search(r"css_urls = \[\]", loaders)
    assert not re.findall(r"(?:js|css)_urls = \[[^\]]", loaders), "the loader fetches URLs"
    printed = "".join(o.get("text", "") for o in nb.cells[2]["outputs"])
    assert printed.split() == ["1", "True", "False"]  # one worker; the store stops with the handle
