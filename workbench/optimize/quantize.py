"""int8 quantization with torchao (``torch.ao.quantization`` is deprecated).

``quantize_int8`` replaces the weights of every ``nn.Linear`` with int8 tensors (torchao's
``quantize_``). ``mode="dynamic"`` (default) also quantizes activations on the fly
(``Int8DynamicActivationInt8WeightConfig``: int8 matmuls); ``mode="weight_only"`` keeps
activations in floating point (``Int8WeightOnlyConfig``). Weights take a quarter of their
float32 bytes, so a checkpoint of a Linear-heavy model is close to 4x smaller.
"""

from __future__ import annotations

import copy
import logging
from typing import Any

import torch

from ..training.errors import OptimizationError
from ._common import as_module

logger = logging.getLogger(__name__)

MODES = ("dynamic", "weight_only")


def quantize_int8(model: Any, *, mode: str = "dynamic", inplace: bool = False) -> torch.nn.Module:
    """An int8-quantized copy of ``model`` (or the model itself with ``inplace=True``)."""
    if mode not in MODES:
        raise OptimizationError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    module = as_module(model)
    linears = [m for m in module.modules() if isinstance(m, torch.nn.Linear)]
    if not linears:
        raise OptimizationError(
            f"{type(module).__name__} has no nn.Linear layers: int8 quantization with torchao "
            "applies to Linear layers"
        )
    try:
        from torchao.quantization import (
            Int8DynamicActivationInt8WeightConfig,
            Int8WeightOnlyConfig,
            quantize_,
        )
    except ImportError as exc:
        raise OptimizationError(
            f"torchao is needed for int8 quantization: pip install 'workbench[train]' ({exc})"
        ) from exc
    target = module if inplace else copy.deepcopy(module)
    target.eval()
    config = (
        Int8DynamicActivationInt8WeightConfig() if mode == "dynamic" else Int8WeightOnlyConfig()
    )
    quantize_(target, config)
    logger.info("quantized %d Linear layer(s) to int8 (%s)", len(linears), mode)
    return target
