"""A live view sends only the new points to the browser: after the plot is built, each
update streams the rows collected since the last one into the lines' data sources (no
new plot, no full data). Real store sampling this host; the browser's side is the Bokeh
document of the session, whose change events are what Bokeh's server would send."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import panel as pn
import pytest
from bokeh.document import Document
from bokeh.document.events import ColumnDataChangedEvent, ColumnsStreamedEvent

from workbench.dashboards import create_view
from workbench.metrics import MetricsStore, get_store
from workbench.metrics.store import close_store


@pytest.fixture
def host_store() -> Iterator[MetricsStore]:
    store = get_store(None, interval=0.3)
    store.wait_for(lambda s: len(s.sources["host"].ring) >= 4, timeout=30)
    yield store
    close_store(None)


def test_updates_stream_only_new_points(host_store: MetricsStore) -> None:
    view = create_view(host_store, tabs=["Cluster"], window=60.0)
    doc = Document()
    doc.add_root(view.panel().get_root(doc))
    events: list[object] = []
    doc.on_change(events.append)
    # a connected session, updated on its own thread (as a server's periodic callback)
    pn.state._connected[doc] = True
    pn.state._thread_id_[doc] = threading.get_ident()
    slot = view.slots["Cluster"]["Host CPU (%)"]
    (_plot, sources), *_ = slot._sessions()
    source = sources["host CPU"]
    before = len(source.data["time"])
    builds = slot.rebuilds
    pn.state.curdoc = doc
    try:
        for _ in range(3):
            version = host_store.version
            host_store.wait_for(lambda s, v=version: s.version > v)
            view.update()
    finally:
        pn.state.curdoc = None
    streamed = [e for e in events if isinstance(e, ColumnsStreamedEvent)]
    assert streamed, "no points were streamed to the session"
    assert not [e for e in events if isinstance(e, ColumnDataChangedEvent)]
    assert slot.rebuilds == builds and slot.streams >= 1
    sent = sum(len(e.data["time"]) for e in streamed if e.model is source)
    assert sent >= 1 and len(source.data["time"]) == before + sent
    # each point sent once, in time order, after the ones already shown
    times = list(source.data["time"])
    assert times == sorted(times) and len(set(times)) == len(times)
