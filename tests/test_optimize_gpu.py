"""int8 quantization (torchao, through workbench.optimize) of a model on a CUDA GPU.

The CPU path is tested in test_optimize.py; here the model, its int8 weights and the
matmuls are on the GPU. Skipped without a GPU; a missing torch or torchao is named.
"""

from __future__ import annotations

from typing import Any

import pytest

pytestmark = pytest.mark.gpu


def _mlp(torch: Any) -> Any:
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Linear(256, 512),
        torch.nn.ReLU(),
        torch.nn.Linear(512, 512),
        torch.nn.ReLU(),
        torch.nn.Linear(512, 16),
    ).eval()


@pytest.mark.parametrize("mode", ["dynamic", "weight_only"])
def test_int8_quantization_runs_on_cuda(mode: str) -> None:
    torch = pytest.importorskip("torch", reason="needs PyTorch: pip install 'workbench[train]'")
    pytest.importorskip("torchao", reason="int8 needs torchao: pip install 'workbench[train]'")
    from workbench.optimize import quantize_int8

    model = _mlp(torch).cuda()
    x = torch.randn(128, 256, device="cuda")
    with torch.no_grad():
        ref = model(x).double()
        q = quantize_int8(model, mode=mode)
        out = q(x)
    linears = [m for m in q.modules() if isinstance(m, torch.nn.Linear)]
    assert all(type(m.weight).__module__.startswith("torchao") for m in linears)
    assert all(m.weight.device.type == "cuda" for m in linears)
    assert out.device.type == "cuda" and out.shape == (128, 16)
    error = float((out.double() - ref).norm() / ref.norm())
    assert error < 5e-2, f"int8 ({mode}) relative error {error:.3g}"
    assert error > 0  # really quantized: int8 rounding changes the outputs
    assert type(model[0].weight).__module__.startswith("torch")  # the original is untouched
