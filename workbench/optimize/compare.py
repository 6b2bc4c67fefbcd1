"""The comparison table: parameters, bytes on disk, latency per batch, accuracy.

``compare({"baseline": model, "int8": q, "pruned": p}, X_test, y_test)`` measures every model
on this machine and returns a :class:`ComparisonTable`, a pandas DataFrame (one row per
model) that renders with units and highlights in a notebook. The first model is the
baseline for the ratio columns:

``parameters``, ``nonzero_parameters``, ``size_bytes``, ``latency_ms`` (median of
``repeats`` forward passes of one ``batch_size`` batch), the metric (``accuracy``, ``rmse``,
``mae`` or a callable), ``size_ratio`` (baseline bytes / bytes: 4.0 means 4x smaller),
``speedup`` (baseline latency / latency), ``<metric>_change`` (difference from the
baseline; for accuracy in percentage points) and ``runtime`` (what runs the model, and
where: ``torch (cpu)``, ``onnxruntime (cpu)``, ``torchao (cuda:0)``...).

Latencies are measured in rounds: each round times one forward pass of every model, in
an order that rotates, so that what else the machine does meanwhile weighs on every
model alike; the median of the rounds is reported.
"""

from __future__ import annotations

import html
import statistics
import time
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
    model_device,
    predict,
    size_on_disk,
)
from .runtime import OnnxRuntimeModel


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


def runtime_of(model: torch.nn.Module) -> str:
    """What runs ``model`` and on which device: ``torch (cpu)``, ``onnxruntime (cpu)``,
    ``torchao (cuda:0)``, with ``, compiled`` for a ``torch.compile`` model."""
    if isinstance(model, OnnxRuntimeModel):
        where = ", ".join(p.removesuffix("ExecutionProvider").lower() for p in model.providers)
        return f"onnxruntime ({where})"
    inner = getattr(model, "_orig_mod", model)  # torch.compile's wrapper
    compiled = ", compiled" if inner is not model else ""
    torchao = any(type(p).__module__.startswith("torchao") for p in inner.parameters()) or any(
        type(b).__module__.startswith("torchao") for b in inner.buffers()
    )
    return f"{'torchao' if torchao else 'torch'} ({model_device(inner)}{compiled})"


def _batch(X: torch.Tensor, batch_size: int) -> torch.Tensor:
    batch = X[:batch_size]
    if len(batch) < batch_size and len(X) > 0:
        reps = -(-batch_size // len(X))
        batch = X.repeat((reps,) + (1,) * (X.dim() - 1))[:batch_size]
    return batch


def measure(
    model: Any,
    X: torch.Tensor,
    y: torch.Tensor | None,
    *,
    metric: str | MetricFn = "accuracy",
    batch_size: int = 256,
    repeats: int = 20,
) -> dict[str, Any]:
    """One row of the table for one model (its latency measured on its own)."""
    module = as_module(model)
    row = _static(module, X, y, metric)
    return _with_latency(row, latency_ms(module, _batch(X, batch_size), repeats=repeats))


def _with_latency(row: dict[str, Any], latency: float) -> dict[str, Any]:
    """The row with ``latency_ms`` after the sizes and before the metric."""
    out: dict[str, Any] = {}
    for key, value in row.items():
        out[key] = value
        if key == "size_bytes":
            out["latency_ms"] = latency
    return out


def _static(
    module: torch.nn.Module, X: torch.Tensor, y: torch.Tensor | None, metric: str | MetricFn
) -> dict[str, Any]:
    name, score = metric_fn(metric)
    row: dict[str, Any] = {
        "parameters": count_parameters(module),
        "nonzero_parameters": count_nonzero(module),
        "size_bytes": size_on_disk(module),
    }
    if y is not None:
        row[name] = score(predict(module, X), y)
    return row


def _latencies(
    modules: dict[str, torch.nn.Module], batch: torch.Tensor, repeats: int, warmup: int = 3
) -> dict[str, float]:
    """Median milliseconds per forward pass of ``batch``, measured in interleaved rounds."""
    names = list(modules)
    inputs = {n: batch.to(model_device(m)) for n, m in modules.items()}
    times: dict[str, list[float]] = {n: [] for n in names}

    def once(name: str) -> float:
        module, x = modules[name], inputs[name]
        cuda = x.device.type == "cuda"
        if cuda:
            torch.cuda.synchronize(x.device)
        start = time.perf_counter()
        module(x)
        if cuda:
            torch.cuda.synchronize(x.device)
        return (time.perf_counter() - start) * 1000

    with torch.inference_mode():
        for m in modules.values():
            m.eval()
        for _ in range(warmup):
            for name in names:
                once(name)
        for r in range(repeats):
            k = r % len(names)
            for name in names[k:] + names[:k]:
                times[name].append(once(name))
    return {n: float(statistics.median(t)) for n, t in times.items()}


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
    modules = {label: as_module(model) for label, model in models.items()}
    rows = {label: _static(m, inputs, labels, metric) for label, m in modules.items()}
    latencies = _latencies(modules, _batch(inputs, batch_size), repeats)
    rows = {label: _with_latency(row, latencies[label]) for label, row in rows.items()}
    table = ComparisonTable(pd.DataFrame.from_dict(rows, orient="index"))
    base = table.iloc[0]
    table["size_ratio"] = base["size_bytes"] / table["size_bytes"]
    table["speedup"] = base["latency_ms"] / table["latency_ms"]
    if name in table.columns:
        change = table[name] - base[name]
        table[f"{name}_change"] = change * 100 if name == "accuracy" else change
    table["runtime"] = [runtime_of(m) for m in modules.values()]
    table.index.name = "model"
    table.metric = name
    return table
