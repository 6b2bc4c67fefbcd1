"""int8 quantization on the path that is fast on the device the model serves from.

A user quantizes to serve faster and cheaper, so ``quantize_int8`` picks, per target
device, the int8 implementation that runs faster than float32 there, not only the one
that stores int8 weights:

* **CPU** (``backend="onnxruntime"``): the model is exported to ONNX (checked against
  PyTorch by :func:`~workbench.optimize.export_onnx`) and its MatMul/Gemm weights are
  quantized to int8 with ``onnxruntime.quantization.quantize_dynamic`` (per output
  channel; activations are quantized per batch at run time). ONNX Runtime runs the
  integer matrix products with its VNNI/AVX2/AVX-512 (x86) or dot-product (ARM)
  kernels. The result is an :class:`~workbench.optimize.OnnxRuntimeModel`: call it like
  the torch model; its ``path`` is the int8 ``.onnx`` file to deploy.
* **CUDA** (``backend="torchao"``): torchao's ``quantize_`` on every ``nn.Linear``
  (``Int8DynamicActivationInt8WeightConfig``: int8 GEMMs through ``torch._int_mm``), then
  ``torch.compile``, which fuses the quantization of activations into the kernels.
  Without compilation torchao's tensor subclasses dispatch op by op and are slower than
  float32.

``mode="weight_only"`` (torchao ``Int8WeightOnlyConfig``, activations stay float) saves
memory for memory-bound serving (small batches on GPUs); it is a torchao path on every
device. ``backend="torchao"`` on a CPU gives a torch module with int8 weights: smaller, but slower
than float32 unless compiled too (``compile=True``; as fast as ONNX Runtime's int8 on this
project's benchmark CPU, after a compilation of about 20 s; see docs/training.md).
"""

from __future__ import annotations

import contextlib
import copy
import io
import logging
import tempfile
import warnings
from pathlib import Path
from typing import Any

import torch

from ..training.errors import OptimizationError
from ._common import as_module, model_device
from .runtime import OnnxRuntimeModel

logger = logging.getLogger(__name__)

MODES = ("dynamic", "weight_only")
BACKENDS = ("auto", "onnxruntime", "torchao")


def backend_for(device: str | torch.device, mode: str = "dynamic") -> str:
    """The int8 backend ``quantize_int8`` uses for a target device and mode."""
    kind = torch.device(device).type
    if mode == "dynamic" and kind == "cpu":
        return "onnxruntime"
    return "torchao"


def quantize_int8(
    model: Any,
    *,
    mode: str = "dynamic",
    device: str | torch.device | None = None,
    backend: str = "auto",
    example_input: torch.Tensor | None = None,
    path: str | Path | None = None,
    compile: bool | str | None = None,
    threads: int | None = None,
    inplace: bool = False,
) -> torch.nn.Module:
    """An int8 version of ``model`` for serving on ``device`` (default: where its
    parameters are), through the backend that is fast there (see the module docs).

    ``example_input``: a batch of real inputs, needed by the ONNX Runtime path to export
    the model (for a ``Sequential`` starting with a ``Linear`` it can be omitted).
    ``path``: where the int8 ``.onnx`` file goes (default: a temporary directory).
    ``compile``: ``torch.compile`` the torchao model (default: on CUDA; a string is the
    compile mode), compiled at once on ``example_input`` when given (a batch of the size
    it will serve), else on its first call. ``threads``: onnxruntime intra-op threads
    (default: torch's). ``inplace``: quantize ``model`` itself (torchao only).
    """
    if mode not in MODES:
        raise OptimizationError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    if backend not in BACKENDS:
        raise OptimizationError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    module = as_module(model)
    if isinstance(module, OnnxRuntimeModel):
        raise OptimizationError(f"{module.path.name} is already an ONNX Runtime model")
    linears = [m for m in module.modules() if isinstance(m, torch.nn.Linear)]
    if not linears:
        raise OptimizationError(
            f"{type(module).__name__} has no nn.Linear layers: int8 quantization applies to "
            "Linear layers"
        )
    target_device = torch.device(device) if device is not None else model_device(module)
    chosen = backend_for(target_device, mode) if backend == "auto" else backend
    if chosen == "onnxruntime":
        if mode != "dynamic":
            raise OptimizationError(
                f"mode={mode!r} is a torchao path; ONNX Runtime quantizes weights and "
                "activations (mode='dynamic')"
            )
        if target_device.type != "cpu":
            raise OptimizationError(
                f"the ONNX Runtime int8 path runs on CPUs; for {target_device} use "
                "backend='torchao' (or leave backend='auto')"
            )
        if inplace:
            raise OptimizationError("inplace=True applies to backend='torchao' only")
        return _onnxruntime_int8(module, example_input, path, threads, len(linears))
    return _torchao_int8(module, mode, target_device, compile, inplace, len(linears), example_input)


def _example(module: torch.nn.Module, example_input: torch.Tensor | None) -> torch.Tensor:
    if example_input is not None:
        if not isinstance(example_input, torch.Tensor):
            raise OptimizationError(
                f"example_input must be a torch.Tensor batch, got {type(example_input).__name__}"
            )
        return example_input
    first = next(iter(module.children()), None) if isinstance(module, torch.nn.Sequential) else None
    if isinstance(first, torch.nn.Linear):
        return torch.zeros(2, first.in_features)
    raise OptimizationError(
        f"quantizing {type(module).__name__} for CPU exports it to ONNX, which needs an "
        "example batch: pass example_input=X[:8] (a few rows of real inputs)"
    )


def _onnxruntime_int8(
    module: torch.nn.Module,
    example_input: torch.Tensor | None,
    path: str | Path | None,
    threads: int | None,
    n_linear: int,
) -> OnnxRuntimeModel:
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from .export import export_onnx

    x = _example(module, example_input)
    work = Path(tempfile.mkdtemp(prefix="workbench-int8-"))
    exported = export_onnx(module, x, work / "model-fp32.onnx")
    out = Path(path) if path is not None else work / "model-int8.onnx"
    out.parent.mkdir(parents=True, exist_ok=True)
    prepared = work / "model-prepared.onnx"
    try:
        # shape inference and graph fusions first, as onnxruntime recommends (it logs a
        # warning otherwise); then int8 weights per output channel
        with contextlib.redirect_stdout(io.StringIO()):
            quant_pre_process(str(exported.path), str(prepared), skip_symbolic_shape=True)
            quantize_dynamic(str(prepared), str(out), weight_type=QuantType.QInt8, per_channel=True)
    except Exception as exc:
        raise OptimizationError(
            f"onnxruntime could not quantize {type(module).__name__}: {exc}"
        ) from exc
    model = OnnxRuntimeModel(out, threads=threads, description="onnxruntime int8")
    logger.info(
        "quantized %d Linear layer(s) to int8 for ONNX Runtime: %s (%d bytes)",
        n_linear,
        out,
        model.size_on_disk(),
    )
    return model


def _torchao_int8(
    module: torch.nn.Module,
    mode: str,
    device: torch.device,
    compile: bool | str | None,
    inplace: bool,
    n_linear: int,
    example_input: torch.Tensor | None,
) -> torch.nn.Module:
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
    if model_device(target) != device:
        target = target.to(device)
    config = (
        Int8DynamicActivationInt8WeightConfig() if mode == "dynamic" else Int8WeightOnlyConfig()
    )
    quantize_(target, config)
    logger.info("quantized %d Linear layer(s) to int8 with torchao (%s)", n_linear, mode)
    if compile is None:
        compile = device.type == "cuda"
    if compile:
        compiled: torch.nn.Module = torch.compile(  # type: ignore[assignment]
            target, mode=compile if isinstance(compile, str) else None
        )
        if example_input is not None:
            # compile now, on a batch like the ones to come, rather than on the first call
            # (torch warns once, about caching torchao's tensor subclass: not actionable)
            with warnings.catch_warnings(), torch.inference_mode():
                warnings.filterwarnings("ignore", message=".*_stable_hash_for_caching")
                compiled(example_input.to(device))
        return compiled
    return target
