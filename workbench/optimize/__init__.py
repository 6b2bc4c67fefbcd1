"""Make a trained PyTorch model smaller and faster, and measure what it costs.

    from workbench import optimize

    int8 = optimize.quantize_int8(model, example_input=X_test[:8])  # int8, fast on this device
    sparse = optimize.prune_magnitude(model, 0.5)         # half the weights zeroed
    small = optimize.prune_structured(model, 0.5)         # half the neurons removed: smaller
    small = optimize.fine_tune(small, X_train, y_train, teacher=model)  # accuracy won back
    student = optimize.distill(model, X_train, y_train)   # a narrower model taught by `model`
    optimize.compare({"baseline": model, "int8": int8, "pruned": small,
                      "student": student}, X_test, y_test)   # a table, rendered in notebooks
    optimize.export_onnx(model, X_test[:8], "model.onnx")    # checked with onnxruntime

Each function accepts a ``torch.nn.Module`` or a trained ``TorchTrainer`` (an untrained one
raises ``NotTrainedError``) and returns a new model, leaving the original untouched.
``quantize_int8`` picks the int8 path that is fast where the model serves: ONNX Runtime's
int8 kernels on a CPU (an :class:`OnnxRuntimeModel`, called like the torch model), torchao
with ``torch.compile`` on CUDA.
"""

from __future__ import annotations

from ..training.errors import NotTrainedError, OptimizationError
from ._common import count_nonzero, count_parameters, latency_ms, size_on_disk
from .compare import ComparisonTable, compare, measure, runtime_of
from .distill import distill, fine_tune
from .export import OnnxExport, export_onnx
from .prune import prunable_layers, prune_magnitude, prune_structured
from .quantize import backend_for, quantize_int8
from .runtime import OnnxRuntimeModel

__all__ = [
    "ComparisonTable",
    "NotTrainedError",
    "OnnxExport",
    "OnnxRuntimeModel",
    "OptimizationError",
    "backend_for",
    "compare",
    "count_nonzero",
    "count_parameters",
    "distill",
    "export_onnx",
    "fine_tune",
    "latency_ms",
    "measure",
    "prunable_layers",
    "prune_magnitude",
    "prune_structured",
    "quantize_int8",
    "runtime_of",
    "size_on_disk",
]
