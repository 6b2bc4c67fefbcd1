"""Make a trained PyTorch model smaller and faster, and measure what it costs.

    from workbench import optimize

    int8 = optimize.quantize_int8(model)                 # torchao int8 (Linear layers)
    sparse = optimize.prune_magnitude(model, 0.5)         # half the weights zeroed
    small = optimize.prune_structured(model, 0.5)         # half the neurons removed: smaller
    student = optimize.distill(model, X_train, y_train)   # a narrower model taught by `model`
    optimize.compare({"baseline": model, "int8": int8, "pruned": small,
                      "student": student}, X_test, y_test)   # a table, rendered in notebooks
    optimize.export_onnx(model, X_test[:8], "model.onnx")    # checked with onnxruntime

Each function accepts a ``torch.nn.Module`` or a trained ``TorchTrainer`` (an untrained one
raises ``NotTrainedError``) and returns a new model, leaving the original untouched.
"""

from __future__ import annotations

from ..training.errors import NotTrainedError, OptimizationError
from ._common import count_nonzero, count_parameters, latency_ms, size_on_disk
from .compare import ComparisonTable, compare, measure
from .distill import distill
from .export import OnnxExport, export_onnx
from .prune import prunable_layers, prune_magnitude, prune_structured
from .quantize import quantize_int8

__all__ = [
    "ComparisonTable",
    "NotTrainedError",
    "OnnxExport",
    "OptimizationError",
    "compare",
    "count_nonzero",
    "count_parameters",
    "distill",
    "export_onnx",
    "latency_ms",
    "measure",
    "prunable_layers",
    "prune_magnitude",
    "prune_structured",
    "quantize_int8",
    "size_on_disk",
]
