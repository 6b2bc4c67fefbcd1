"""torchao int8 on CUDA through workbench.optimize: latency and error against the float model.

A Linear-heavy MLP (4 layers of 4096) on the GPU, in fp32, bf16 and int8 (workbench's
``quantize_int8``: torchao's dynamic int8 activations and weights, and weight-only int8),
at two batch sizes; median CUDA-event latency in eager mode, the ratio to fp32, and the
relative error of the outputs against fp32 (fresh random inputs).

    python benchmarks/gpu_quantize.py [--json out.json]
"""

from __future__ import annotations

import argparse
import copy
from typing import Any

from _gpu import cuda_ms, need_gpu, write_json


def mlp(width: int, layers: int) -> Any:
    import torch

    torch.manual_seed(0)
    blocks: list[Any] = []
    for _ in range(layers):
        blocks += [torch.nn.Linear(width, width), torch.nn.ReLU()]
    return torch.nn.Sequential(*blocks[:-1]).eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=int, default=4096)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--batches", type=int, nargs="+", default=[256, 4096])
    parser.add_argument("--json")
    args = parser.parse_args()
    import torch

    from workbench.optimize import quantize_int8

    inventory = need_gpu()
    base = mlp(args.width, args.layers).cuda()
    variants = {
        "fp32": base,
        "bf16": copy.deepcopy(base).to(torch.bfloat16),
        "int8 dynamic": quantize_int8(base, mode="dynamic"),
        "int8 weight-only": quantize_int8(base, mode="weight_only"),
    }
    out: dict[str, Any] = {
        "benchmark": "gpu_quantize",
        "gpu": inventory.gpus[0].name,
        "width": args.width,
        "layers": args.layers,
        "results": [],
    }
    print(f"{inventory.gpus[0].name}: MLP {args.layers} x Linear({args.width}), eager")
    with torch.no_grad():
        for batch in args.batches:
            x = torch.randn(batch, args.width, device="cuda")
            ref = base(x).double()
            fp32_ms = None
            for name, model in variants.items():
                xin = x.to(torch.bfloat16) if name == "bf16" else x
                ms = cuda_ms(lambda model=model, xin=xin: model(xin), repeats=20, warmup=3)
                fp32_ms = fp32_ms or ms
                err = float((model(xin).double() - ref).norm() / ref.norm())
                out["results"].append(
                    {
                        "batch": batch,
                        "variant": name,
                        "ms": ms,
                        "ratio_to_fp32": ms / fp32_ms,
                        "relative_error": err,
                    }
                )
                print(
                    f"  batch {batch:5d} {name:17s}: {ms:8.3f} ms  x{ms / fp32_ms:5.2f} of fp32"
                    f"  relative error {err:.2e}"
                )
    weights = [
        type(m.weight).__name__
        for m in variants["int8 dynamic"].modules()
        if isinstance(m, torch.nn.Linear)
    ]
    out["int8_weight_types"] = sorted(set(weights))
    print(
        f"int8 weights are {', '.join(sorted(set(weights)))} on "
        f"{next(variants['int8 dynamic'].parameters()).device}"
    )
    write_json(args.json, out)


if __name__ == "__main__":
    main()
