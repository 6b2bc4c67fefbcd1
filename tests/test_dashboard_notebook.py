"""``handle.dashboard()`` in a real Jupyter kernel renders with inline JavaScript (offline)."""

from __future__ import annotations

import html
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

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


def _models(node: Any) -> Iterator[dict[str, Any]]:
    """Every Bokeh model (``{"type": "object", "name": ..., "attributes": ...}``) in a
    serialized document, depth first."""
    if isinstance(node, dict):
        if node.get("type") == "object" and isinstance(node.get("attributes"), dict):
            yield node
        for value in node.values():
            yield from _models(value)
    elif isinstance(node, list):
        for value in node:
            yield from _models(value)


def test_dashboard_renders_inline_in_a_kernel(tmp_path: Path) -> None:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(c) for c in CELLS]
    NotebookClient(
        nb, timeout=240, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    outputs = [o for cell in nb.cells for o in cell.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    # The cell's value (its execute_result, not some other output) is the dashboard: a Bokeh
    # document whose models hold the title and the five tabs.
    shown = nb.cells[1]["outputs"][-1]
    assert shown["output_type"] == "execute_result"
    assert "application/vnd.holoviews_exec.v0+json" in shown["data"]
    docs = re.search(r"var docs_json = (\{.*?\});\n", shown["data"]["text/html"], re.S)
    assert docs, "the result embeds no Bokeh document"
    models = list(_models(json.loads(docs.group(1))))
    texts = [
        m["attributes"].get("text", "")
        for m in models
        if m.get("name") == "panel.models.markup.HTML"
    ]
    assert any(
        html.unescape(t) == "<h2 style='margin:4px 0'>workbench live metrics</h2>" for t in texts
    )
    tabs = [m["attributes"]["title"] for m in models if m.get("name") == "TabPanel"]
    assert tabs == ["GPU", "Storage", "Network", "Cluster", "Energy"]
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
