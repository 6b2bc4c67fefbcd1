"""Export to ONNX, checked with onnxruntime.

``export_onnx`` writes the model with ``torch.onnx.export`` (a dynamic batch dimension), then
loads the file in an onnxruntime session and compares its outputs with PyTorch's on the
example input and on a batch of another size. A mismatch beyond the tolerances is an
error, not a warning: a file that silently computes something else is worse than none.
"""

from __future__ import annotations

import contextlib
import copy
import io
import logging
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..training.errors import OptimizationError
from ._common import as_module, size_on_disk

logger = logging.getLogger(__name__)


@dataclass
class OnnxExport:
    """A checked ONNX file: its path, the largest difference from PyTorch, the providers."""

    path: Path
    max_abs_diff: float
    input_name: str
    output_name: str
    providers: list[str]
    size_bytes: int

    def session(self) -> Any:
        """A fresh onnxruntime InferenceSession on the file."""
        import onnxruntime as ort

        return ort.InferenceSession(str(self.path), providers=self.providers)

    def run(self, x: Any) -> np.ndarray:
        arr = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
        out = self.session().run([self.output_name], {self.input_name: arr.astype(np.float32)})
        return np.asarray(out[0])


def export_onnx(
    model: Any,
    example_input: torch.Tensor,
    path: str | Path | None = None,
    *,
    opset: int | None = None,
    rtol: float = 1e-3,
    atol: float = 1e-4,
) -> OnnxExport:
    """Write ``model`` as ONNX to ``path`` (default: a temporary file) and check it."""
    import onnxruntime as ort

    module = copy.deepcopy(as_module(model)).cpu().eval()
    if not isinstance(example_input, torch.Tensor):
        raise OptimizationError(
            f"example_input must be a torch.Tensor batch, got {type(example_input).__name__}"
        )
    x = example_input.detach().cpu().float()
    if x.dim() < 1 or len(x) < 1:
        raise OptimizationError("example_input must be a non-empty batch")
    if path is None:
        path = Path(tempfile.mkdtemp(prefix="workbench-onnx-")) / "model.onnx"
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    batch = torch.export.Dim("batch", min=1)
    # One self-contained file unless the weights approach protobuf's 2 GiB limit.
    kwargs: dict[str, Any] = {"external_data": size_on_disk(module) > 1_500_000_000}
    if opset is not None:
        kwargs["opset_version"] = opset
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            # torch's exporter trips its own pytree deprecation; not something users can act on
            warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)")
            torch.onnx.export(
                module,
                (x,),
                str(path),
                input_names=["input"],
                output_names=["output"],
                dynamic_shapes=({0: batch},),
                dynamo=True,
                verbose=False,
                **kwargs,
            )
    except Exception as exc:
        raise OptimizationError(
            f"torch.onnx.export failed for {type(module).__name__}: {exc}"
        ) from exc
    providers = ["CPUExecutionProvider"]
    session = ort.InferenceSession(str(path), providers=providers)
    input_name = session.get_inputs()[0].name
    output_name = session.get_outputs()[0].name
    other = torch.cat([x, x[:1]]) if len(x) > 0 else x  # another batch size: dynamic axis works
    worst = 0.0
    for batch_x in (x, other):
        with torch.no_grad():
            ref = module(batch_x).float().numpy()
        got = session.run([output_name], {input_name: batch_x.numpy()})[0]
        if got.shape != ref.shape:
            raise OptimizationError(
                f"onnxruntime output shape {got.shape} differs from PyTorch's {ref.shape}"
            )
        worst = max(worst, float(np.max(np.abs(got - ref))) if ref.size else 0.0)
        if not np.allclose(got, ref, rtol=rtol, atol=atol):
            raise OptimizationError(
                f"onnxruntime outputs differ from PyTorch's by up to {worst:.3g} "
                f"(rtol={rtol}, atol={atol}); the exported file is not trustworthy"
            )
    logger.info("exported %s to %s (max abs diff %.3g)", type(module).__name__, path, worst)
    return OnnxExport(
        path=path,
        max_abs_diff=worst,
        input_name=input_name,
        output_name=output_name,
        providers=providers,
        size_bytes=sum(
            p.stat().st_size for p in (path, path.with_name(path.name + ".data")) if p.exists()
        ),
    )
