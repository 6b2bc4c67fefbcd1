"""Shared helpers: the model behind a trainer, data as tensors, sizes, latency, metrics."""

from __future__ import annotations

import io
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from ..training.errors import InvalidDataError, NotTrainedError, OptimizationError, UnknownNameError

EVAL_METRICS = ["accuracy", "rmse", "mae"]


def as_module(model: Any) -> torch.nn.Module:
    """A ``torch.nn.Module`` from a module or a fitted ``TorchTrainer``."""
    if isinstance(model, torch.nn.Module):
        return model
    if hasattr(model, "is_trained") and hasattr(model, "model"):
        if not model.is_trained:
            raise NotTrainedError(
                f"{type(model).__name__} has not been trained yet: fit it before optimizing "
                "(workbench.training.train_torch(...))"
            )
        inner = model.model
        if isinstance(inner, torch.nn.Module):
            return inner
    raise OptimizationError(
        f"expected a torch.nn.Module or a trained TorchTrainer, got {type(model).__name__}"
    )


def as_tensor(X: Any, features: list[str] | None = None) -> torch.Tensor:
    """Features as a float32 tensor: from a tensor, an array, or a pandas/dask DataFrame."""
    if isinstance(X, torch.Tensor):
        return X.float() if X.is_floating_point() else X
    if hasattr(X, "compute") and hasattr(X, "columns"):
        X = X.compute()
    if hasattr(X, "columns"):
        X = X[features] if features else X
        X = X.to_numpy(dtype=np.float32)
    arr = np.asarray(X)
    if arr.size == 0:
        raise InvalidDataError("the evaluation data is empty")
    return torch.tensor(arr, dtype=torch.float32)


def as_labels(y: Any) -> torch.Tensor:
    if isinstance(y, torch.Tensor):
        return y
    if hasattr(y, "compute"):
        y = y.compute()
    arr = np.asarray(y)
    return torch.tensor(arr)


def _own(model: Any, name: str) -> Any:
    """A model's own answer to a measurement (a model run by another runtime, such as an
    :class:`~workbench.optimize.OnnxRuntimeModel`, has no torch parameters to count)."""
    method = getattr(type(model), name, None)
    return method(model) if callable(method) else None


def count_parameters(model: torch.nn.Module) -> int:
    own = _own(model, "count_parameters")
    if own is not None:
        return int(own)
    return int(sum(p.numel() for p in model.parameters()))


def count_nonzero(model: torch.nn.Module) -> int:
    own = _own(model, "count_nonzero")
    if own is not None:
        return int(own)
    total = 0
    for p in model.parameters():
        data = p.detach()
        try:
            total += int(
                torch.count_nonzero(data.dequantize() if hasattr(data, "dequantize") else data)
            )
        except Exception:  # a tensor subclass without count_nonzero: count it whole
            total += int(data.numel())
    return total


def size_on_disk(model: torch.nn.Module) -> int:
    """Bytes of ``torch.save(model.state_dict())``: what a checkpoint of it takes on disk
    (for a model run by another runtime: the bytes of the file that runtime loads)."""
    own = _own(model, "size_on_disk")
    if own is not None:
        return int(own)
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    return len(buffer.getvalue())


def model_device(model: torch.nn.Module) -> torch.device:
    for p in model.parameters():
        return p.device
    return torch.device("cpu")


def latency_ms(
    model: torch.nn.Module, batch: torch.Tensor, repeats: int = 20, warmup: int = 3
) -> float:
    """Median milliseconds for one forward pass of ``batch`` on this machine."""
    device = model_device(model)
    x = batch.to(device)
    model.eval()
    times = []
    with torch.inference_mode():
        for _ in range(warmup):
            model(x)
        for _ in range(repeats):
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            start = time.perf_counter()
            model(x)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            times.append((time.perf_counter() - start) * 1000)
    return float(statistics.median(times))


def predict(model: torch.nn.Module, X: torch.Tensor, batch_size: int = 1024) -> torch.Tensor:
    device = model_device(model)
    model.eval()
    outs = []
    with torch.inference_mode():
        for start in range(0, len(X), batch_size):
            outs.append(model(X[start : start + batch_size].to(device)).float().cpu())
    return torch.cat(outs)


MetricFn = Callable[[torch.Tensor, torch.Tensor], float]


def metric_fn(metric: str | MetricFn) -> tuple[str, MetricFn]:
    if callable(metric):
        return getattr(metric, "__name__", "metric"), metric
    if metric not in EVAL_METRICS:
        raise UnknownNameError("metric", metric, EVAL_METRICS)
    return metric, _METRICS[metric]


def _accuracy(out: torch.Tensor, y: torch.Tensor) -> float:
    if out.dim() == 2 and out.shape[1] > 1:
        pred = out.argmax(dim=1)
    else:
        pred = (out.reshape(-1) > 0).long()
    return float((pred == y.reshape(-1).long()).float().mean())


def _rmse(out: torch.Tensor, y: torch.Tensor) -> float:
    return float(torch.sqrt(((out.reshape(-1) - y.reshape(-1).float()) ** 2).mean()))


def _mae(out: torch.Tensor, y: torch.Tensor) -> float:
    return float((out.reshape(-1) - y.reshape(-1).float()).abs().mean())


_METRICS: dict[str, MetricFn] = {"accuracy": _accuracy, "rmse": _rmse, "mae": _mae}
