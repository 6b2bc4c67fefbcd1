"""The comparison table: parameters, bytes on disk, latency per batch, accuracy.

``compare({"baseline": model, "int8": q, "pruned": p}, X_test, y_test)`` measures every model
on this machine and returns a :class:`ComparisonTable`, a pandas DataFrame (one row per
model) that renders with units and highlights in a notebook. The first model is the
baseline for the ratio columns:

``parameters``, ``nonzero_parameters``, ``size_bytes``, ``latency_ms`` (median of
``repeats`` forward passes of one ``batch_size`` batch), the metric (``accuracy``, ``rmse``,
``mae`` or a callable), and ``size_ratio`` (baseline bytes / bytes: 4.0 means 4x smaller),
``speedup`` (baseline latency / latency) and ``<metric>_change`` (difference from the
baseline; for accuracy in percentage points).
"""

from __future__ import annotations

import html
from typing import Any

import pandas as pd
import torch

from ..training.errors import OptimizationError
from ._common import (
    MetricFn,
    as_labels,
    as_module,
    as_tensor,
    count_nonzero,
    count_parameters,
    latency_ms,
    metric_fn,
    predict,
    size_on_disk,
)


class ComparisonTable(pd.DataFrame):  # type: ignore[misc]
    """A pandas DataFrame of model measurements with a formatted notebook view."""

    _metadata = ["metric"]
    metric: str

    @property
    def _constructor(self) -> type[ComparisonTable]:
        return ComparisonTable

    def _repr_html_(self) -> str:
        metric = getattr(self, "metric", "accuracy")
        fmt: dict[str, Any] = {
            "parameters": "{:,.0f}",
            "nonzero_parameters": "{:,.0f}",
            "size_bytes": _human_bytes,
            "size_ratio": "{:.2f}x",
            "latency_ms": "{:.3f} ms",
            "speedup": "{:.2f}x",
        }
        if metric == "accuracy":
            fmt[metric] = "{:.2%}"
            fmt[f"{metric}_change"] = "{:+.2f} pt"
        else:
            fmt[metric] = "{:.4g}"
            fmt[f"{metric}_change"] = "{:+.4g}"
        frame = pd.DataFrame(self)
        styler = frame.style.format({k: v for k, v in fmt.items() if k in frame.columns})
        smaller_better = [c for c in ("size_bytes", "latency_ms") if c in frame.columns]
        if smaller_better:
            styler = styler.highlight_min(subset=smaller_better, color="#d4f4dd")
        if metric in frame.columns:
            best = styler.highlight_max if metric == "accuracy" else styler.highlight_min
            styler = best(subset=[metric], color="#d4f4dd")
        caption = (
            f"Measured on this machine; ratios against <b>{html.escape(str(frame.index[0]))}</b>"
            if len(frame)
            else ""
        )
        return str(styler.set_caption(caption).to_html())


def _human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


def measure(
    model: Any,
    X: torch.Tensor,
    y: torch.Tensor | None,
    *,
    metric: str | MetricFn = "accuracy",
    batch_size: int = 256,
    repeats: int = 20,
) -> dict[str, float]:
    """One row of the table for one model."""
    module = as_module(model)
    name, score = metric_fn(metric)
    batch = X[:batch_size]
    if len(batch) < batch_size and len(X) > 0:
        reps = -(-batch_size // len(X))
        batch = X.repeat((reps,) + (1,) * (X.dim() - 1))[:batch_size]
    row: dict[str, float] = {
        "parameters": count_parameters(module),
        "nonzero_parameters": count_nonzero(module),
        "size_bytes": size_on_disk(module),
        "latency_ms": latency_ms(module, batch, repeats=repeats),
    }
    if y is not None:
        row[name] = score(predict(module, X), y)
    return row


def compare(
    models: dict[str, Any],
    X: Any,
    y: Any = None,
    *,
    metric: str | MetricFn = "accuracy",
    batch_size: int = 256,
    repeats: int = 20,
) -> ComparisonTable:
    """Measure every model on ``X`` (and score it against ``y``); the first is the baseline."""
    if not models:
        raise OptimizationError("compare() needs at least one model")
    inputs = as_tensor(X)
    labels = as_labels(y) if y is not None else None
    if labels is not None and len(labels) != len(inputs):
        raise OptimizationError(f"X has {len(inputs)} rows but y has {len(labels)}")
    name, _ = metric_fn(metric)
    rows = {
        label: measure(model, inputs, labels, metric=metric, batch_size=batch_size, repeats=repeats)
        for label, model in models.items()
    }
    table = ComparisonTable(pd.DataFrame.from_dict(rows, orient="index"))
    base = table.iloc[0]
    table["size_ratio"] = base["size_bytes"] / table["size_bytes"]
    table["speedup"] = base["latency_ms"] / table["latency_ms"]
    if name in table.columns:
        change = table[name] - base[name]
        table[f"{name}_change"] = change * 100 if name == "accuracy" else change
    table.index.name = "model"
    table.metric = name
    return table
