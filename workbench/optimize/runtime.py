"""A model run by ONNX Runtime, behind the ``torch.nn.Module`` interface.

:class:`OnnxRuntimeModel` wraps an ``.onnx`` file and an onnxruntime session: calling it
with a tensor runs the session and returns a tensor, so ``compare``, ``predict``-style
code and notebooks use it like any other model. ``quantize_int8`` returns one for CPU
serving (ONNX Runtime's int8 kernels are the fast int8 path on CPUs); its ``path`` is the
file to deploy (``save`` copies it). Sizes are the file's bytes; parameters are counted
from the weights in the file.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..training.errors import OptimizationError

#: ONNX initializer names that hold quantization parameters, not model parameters.
_QUANT_PARAM_SUFFIXES = ("_scale", "_zero_point")


class OnnxRuntimeModel(torch.nn.Module):
    """An ONNX file run with onnxruntime; ``model(x)`` takes and returns tensors (CPU).

    ``threads``: onnxruntime's intra-op threads (default: torch's, so that a comparison
    with a torch model uses the same cores). ``providers``: onnxruntime execution
    providers (default: CPU).
    """

    def __init__(
        self,
        path: str | Path,
        *,
        threads: int | None = None,
        providers: list[str] | None = None,
        description: str = "onnxruntime",
    ) -> None:
        super().__init__()
        self.path = Path(path)
        if not self.path.exists():
            raise OptimizationError(f"no ONNX file at {self.path}")
        self.threads = threads
        self.providers = list(providers or ["CPUExecutionProvider"])
        self.description = description
        self._session: Any = None
        self._counts: tuple[int, int] | None = None

    # -- running ------------------------------------------------------------------------
    def session(self) -> Any:
        """The onnxruntime InferenceSession (created on first use)."""
        if self._session is None:
            import onnxruntime as ort

            options = ort.SessionOptions()
            options.intra_op_num_threads = self.threads or torch.get_num_threads()
            options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            self._session = ort.InferenceSession(str(self.path), options, providers=self.providers)
        return self._session

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        session = self.session()
        arr = np.ascontiguousarray(x.detach().cpu().numpy(), dtype=np.float32)
        inputs = session.get_inputs()
        outputs = session.run(None, {inputs[0].name: arr})
        return torch.from_numpy(np.asarray(outputs[0]))

    # -- measuring ----------------------------------------------------------------------
    def size_on_disk(self) -> int:
        """Bytes of the ONNX file (and its external data, if any)."""
        data = self.path.with_name(self.path.name + ".data")
        return sum(p.stat().st_size for p in (self.path, data) if p.exists())

    def _weights(self) -> tuple[int, int]:
        if self._counts is None:
            import onnx
            from onnx import numpy_helper

            model = onnx.load(str(self.path))
            total = nonzero = 0
            for init in model.graph.initializer:
                if init.name.endswith(_QUANT_PARAM_SUFFIXES) or len(init.dims) == 0:
                    continue  # scales and zero points of quantized tensors, constants
                values = numpy_helper.to_array(init)
                total += int(values.size)
                nonzero += int(np.count_nonzero(values))
            self._counts = (total, nonzero)
        return self._counts

    def count_parameters(self) -> int:
        """Weights and biases stored in the file (int8 or float)."""
        return self._weights()[0]

    def count_nonzero(self) -> int:
        return self._weights()[1]

    def save(self, path: str | Path) -> Path:
        """Copy the ONNX file to ``path`` (the file to deploy with onnxruntime)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(self.path, path)
        return path

    # -- copies ---------------------------------------------------------------------------
    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_session"] = None  # sessions do not pickle; a copy opens its own
        return state

    def extra_repr(self) -> str:
        return f"{self.description}, path={str(self.path)!r}, providers={self.providers}"
