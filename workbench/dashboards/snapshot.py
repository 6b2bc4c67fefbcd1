"""A dashboard tab kept as data, and drawn to a PNG without a browser.

``snapshot(store)`` is every source's samples (the ring's own wire format) with what its
samplers said about themselves; ``store_from_snapshot`` gives back a store that holds them
and samples nothing, so the live views (Panel, in a browser) draw the same series on
another machine. ``save_png`` draws one tab's plots (the same frames and hvplot lines the Panel
view shows) with HoloViews' matplotlib backend: a picture of the tab where no browser
runs, e.g. on a GPU machine in a CI job.

    data = snapshot(store)                     # JSON-able
    save_png(store_from_snapshot(data), "gpu.png", tab="GPU")
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..metrics.ring import SampleRing
from ..metrics.store import MetricsStore, Source
from .model import AGGREGATE, needs_cluster, plot_frame, plot_specs

FORMAT = "workbench-metrics-snapshot/1"


def snapshot(store: MetricsStore) -> dict[str, Any]:
    """Every source's samples and sampler information, JSON-able."""
    sources = []
    for source in store.snapshot_sources():
        sources.append(
            {
                "id": source.id,
                "kind": source.kind,
                "host": source.host,
                "name": source.name,
                "info": source.info,
                "ring": source.ring.delta(0, 0),
            }
        )
    return {
        "format": FORMAT,
        "scheduler_address": store.scheduler_address,
        "interval": store.interval,
        "sources": sources,
        "cluster": store.cluster.delta(0, 0),
    }


def store_from_snapshot(data: dict[str, Any], ending_at: float | None = None) -> MetricsStore:
    """A store holding a snapshot's samples; it is never started and samples nothing.

    ``ending_at``: shift every sample time so that the newest is at this time (e.g.
    ``time.time()``, for live views whose time window ends now).
    """
    if data.get("format") != FORMAT:
        raise ValueError(f"not a {FORMAT} snapshot")
    if ending_at is not None:
        rings = [src["ring"] for src in data["sources"]] + [data.get("cluster") or {"t": []}]
        newest = max((max(r["t"]) for r in rings if r["t"]), default=ending_at)
        shift = ending_at - newest
        for r in rings:
            r["t"] = [t + shift for t in r["t"]]
    store = MetricsStore(
        data.get("scheduler_address"), interval=float(data["interval"]), sample_host=False
    )
    for raw in data["sources"]:
        ring = SampleRing(max(len(raw["ring"]["t"]), 1), epoch=raw["ring"]["epoch"])
        ring.apply(raw["ring"])
        source = Source(raw["id"], raw["kind"], ring, host=raw["host"], name=raw["name"])
        source.info = raw["info"]
        store.sources[source.id] = source
        store._merge_specs(source.info)
    cluster = data.get("cluster") or {}
    if cluster.get("t"):
        store.cluster = SampleRing(len(cluster["t"]), epoch=cluster["epoch"])
        store.cluster.apply(cluster)
    store.version += 1
    return store


def save_png(
    store: MetricsStore,
    path: str | Path,
    tab: str = "GPU",
    window: float = 300.0,
    mode: str = AGGREGATE,
    now: float | None = None,
) -> list[str]:
    """Draw ``tab``'s plots with data to ``path``; returns the titles drawn.

    Raises ValueError when no plot of the tab has data (the notice the Panel view would
    show is in the message).
    """
    import holoviews as hv
    import holoviews.plotting.mpl

    from .plots import line_plot, matplotlib_options

    if now is None:
        latest = [t for s in store.snapshot_sources() if (t := s.ring.last_time()) is not None]
        now = max(latest) if latest else None
    plots = plot_specs(tab)
    if store.scheduler_address is None:
        plots = [p for p in plots if not all(needs_cluster(m) for m in p.metrics)]
    drawn: list[Any] = []
    titles: list[str] = []
    for plot in plots:
        frame = plot_frame(store, plot, window, mode, now=now)
        if frame.empty:
            continue
        overlay = line_plot(frame, str(frame.attrs.get("unit", ""))).opts(*matplotlib_options(plot))
        drawn.append(overlay)
        titles.append(plot.title)
    if not drawn:
        count, reasons = store.gpu_status()
        why = "; ".join(reasons) if tab == "GPU" and not count else "no samples in the window"
        raise ValueError(f"the {tab} tab has nothing to draw: {why}")
    layout = (
        hv.Layout(drawn)
        .cols(2)
        .opts(
            hv.opts.Layout(
                title=f"workbench dashboards: {tab} tab", sublabel_format="", backend="matplotlib"
            )
        )
    )
    hv.save(layout, str(path), backend="matplotlib", fmt="png", dpi=110)
    return titles
