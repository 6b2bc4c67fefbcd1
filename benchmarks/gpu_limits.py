"""GPU throughput beside its physical limits, and `workbench bench` against the raw figures.

1. Host-to-device copy of pinned buffers (16 MiB, 256 MiB, 1 GiB), timed with CUDA events,
   as a fraction of the PCIe link's limit at its maximum generation and width (NVML).
2. bf16 matrix products (4096 and 8192 square, random data) in TFLOP/s, as a fraction of
   the GPU's dense bf16 data-sheet peak.
3. `workbench.bench.gpu_measurements()` (what `workbench bench` prints) in the same run,
   as a ratio to the raw figures of the same sizes.

    python benchmarks/gpu_limits.py [--json out.json]
"""

from __future__ import annotations

import argparse
from typing import Any

from _gpu import cuda_ms, need_gpu, write_json


def h2d(nbytes: int, repeats: int) -> float:
    """GB/s of a pinned host buffer copied to the GPU."""
    import torch

    host = torch.empty(nbytes, dtype=torch.uint8).pin_memory()
    host.random_(0, 255)
    dev = torch.empty_like(host, device="cuda")
    ms = cuda_ms(lambda: dev.copy_(host, non_blocking=True), repeats)
    return nbytes / (ms / 1e3) / 1e9


def matmul(n: int, repeats: int) -> float:
    """TFLOP/s of an n x n x n bf16 product on random data."""
    import torch

    x = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    y = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    ms = cuda_ms(lambda: x @ y, repeats, warmup=3)
    return 2 * n**3 / (ms / 1e3) / 1e12


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--copy-mib", type=int, nargs="+", default=[16, 256, 1024])
    parser.add_argument("--matmul-n", type=int, nargs="+", default=[4096, 8192])
    parser.add_argument("--json")
    args = parser.parse_args()
    from workbench import bench

    inventory = need_gpu()
    gpu = inventory.gpus[0]
    limit, source = bench.gpu_pcie_limit(gpu.index)
    peak = next((v for k, v in bench.GPU_PEAK_TFLOPS.items() if k in gpu.name), None)
    out: dict[str, Any] = {
        "benchmark": "gpu_limits",
        "gpu": gpu.name,
        "pcie_limit_gbps": limit,
        "pcie_limit_source": source,
        "bf16_peak_tflops": peak,
        "copy": [],
        "matmul": [],
    }
    print(f"{gpu.name}; PCIe limit {limit} GB/s ({source}); bf16 peak {peak} TFLOP/s")
    for mib in args.copy_mib:
        gbps = h2d(mib << 20, repeats=max(3, 2048 // mib))
        frac = gbps / limit if limit else None
        out["copy"].append({"mib": mib, "gbps": gbps, "fraction_of_limit": frac})
        shown = f"{100 * frac:.0f}% of the PCIe limit" if frac else "no limit reported"
        print(f"  host-to-device {mib:5d} MiB pinned: {gbps:6.2f} GB/s = {shown}")
    for n in args.matmul_n:
        tflops = matmul(n, repeats=10)
        frac = tflops / peak if peak else None
        out["matmul"].append({"n": n, "tflops": tflops, "fraction_of_peak": frac})
        shown = f"{100 * frac:.0f}% of the data-sheet peak" if frac else "no peak in the table"
        print(f"  bf16 matmul {n}^3: {tflops:7.1f} TFLOP/s = {shown}")
    ours = {m.name: m for m in bench.gpu_measurements()}
    raw_copy = (
        next(c["gbps"] for c in out["copy"] if c["mib"] == 256)
        if 256 in args.copy_mib
        else h2d(256 << 20, 10)
    )
    raw_mm = (
        next(m["tflops"] for m in out["matmul"] if m["n"] == 8192)
        if 8192 in args.matmul_n
        else matmul(8192, 10)
    )
    copy_m, mm_m = ours["host-to-device copy"], ours["GPU matmul (bf16)"]
    out["workbench_bench"] = {
        "copy_gbps": copy_m.value,
        "copy_limit": copy_m.limit,
        "copy_above_limit": copy_m.above_limit,
        "copy_ratio_to_raw": copy_m.value / raw_copy,
        "matmul_tflops": mm_m.value,
        "matmul_limit": mm_m.limit,
        "matmul_ratio_to_raw": mm_m.value / raw_mm,
    }
    print(f"  workbench bench: {copy_m}")
    print(f"  workbench bench: {mm_m}")
    print(
        f"ratio workbench bench / raw: copy {copy_m.value / raw_copy:.3f}, "
        f"matmul {mm_m.value / raw_mm:.3f}"
    )
    write_json(args.json, out)


if __name__ == "__main__":
    main()
