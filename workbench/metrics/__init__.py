"""Live metrics of GPUs, hosts, storage, network and Dask clusters, without Panel.

* samplers (:mod:`.host`, :mod:`.sysfs`, :mod:`.nvml`, :mod:`.dask_state`), plugged in
  by name through :func:`register_sampler`;
* :class:`MetricsWorkerPlugin`, which samples on every Dask worker into a ring buffer;
* :class:`MetricsStore` / :func:`get_store`, one collector per cluster per process,
  shared by every viewer;
* :func:`render_prometheus` / :func:`serve_prometheus`, the Prometheus text format.

This package never imports Panel, Bokeh or HoloViews (the dashboards do).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .base import (
    TAB_PAGES,
    TABS,
    MetricSpec,
    Sampler,
    SamplerContext,
    catalog,
    create_samplers,
    define,
    known_samplers,
    metric_spec,
    parse_key,
    register_sampler,
    series_key,
)
from .ring import SampleRing

if TYPE_CHECKING:
    from .plugin import MetricsWorkerPlugin, SamplingLoop
    from .prometheus import render as render_prometheus
    from .prometheus import serve_prometheus
    from .store import MetricsStore, Source, close_store, get_store

_LAZY = {
    "MetricsWorkerPlugin": ("plugin", "MetricsWorkerPlugin"),
    "SamplingLoop": ("plugin", "SamplingLoop"),
    "MetricsStore": ("store", "MetricsStore"),
    "Source": ("store", "Source"),
    "get_store": ("store", "get_store"),
    "close_store": ("store", "close_store"),
    "render_prometheus": ("prometheus", "render"),
    "serve_prometheus": ("prometheus", "serve_prometheus"),
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        return getattr(importlib.import_module(f"{__name__}.{module}"), attr)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "TABS",
    "TAB_PAGES",
    "MetricSpec",
    "MetricsStore",
    "MetricsWorkerPlugin",
    "SampleRing",
    "Sampler",
    "SamplerContext",
    "SamplingLoop",
    "Source",
    "catalog",
    "close_store",
    "create_samplers",
    "define",
    "get_store",
    "known_samplers",
    "metric_spec",
    "parse_key",
    "register_sampler",
    "render_prometheus",
    "series_key",
    "serve_prometheus",
]
