"""int8 serving speed over model sizes: workbench.optimize.quantize_int8 (the CPU default,
ONNX Runtime's int8 kernels) against the float32 torch model it came from, in the same run.

MLPs 64-H-H-10 with H from 256 to 4096 (untrained weights: latency and size do not depend
on training; accuracy is in the reference table of benchmarks/train.py), a batch of 256
rows, the same thread count for both runtimes (1 by default: see train.py). Each round
times a few forward passes of each model, in a rotating order; the table gives, per size,
the medians and the speed-up fp32 time / int8 time (target: at least 1.5), and the size
ratio of the saved models.

    python benchmarks/int8_speed.py [--widths 256,1024,4096] [--rounds 15] [--threads 1]
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _scale import RAW, WORKBENCH, Curve, Point, ScaleOptions, interleave, machine

WIDTHS = (256, 1024, 4096)
ROUNDS = 10
BATCH = 256
#: forward passes timed per round: about this many milliseconds of fp32 work
ROUND_MS = 40.0


def _mlp(width: int) -> Any:
    import torch
    from torch import nn

    torch.manual_seed(width)
    return nn.Sequential(
        nn.Linear(64, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU(), nn.Linear(width, 10)
    ).eval()


def _passes(model: Any, x: Any, n: int) -> float:
    import torch

    with torch.inference_mode():
        start = time.perf_counter()
        for _ in range(n):
            model(x)
        return (time.perf_counter() - start) / n


def measure(widths: tuple[int, ...], rounds: int, threads: int) -> Curve:
    import torch

    from workbench import optimize

    for noisy in ("torchao", "torch.utils._pytree", "torch.onnx"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    torch.set_num_threads(threads)
    curve = Curve(
        key="int8-cpu",
        title="int8 serving on this CPU: quantize_int8 (ONNX Runtime int8) vs the float32 "
        "torch model",
        x_label="parameters",
        workbench="int8 (onnxruntime)",
        raw="fp32 (torch)",
        kind="speed",
        target=1.5,
        logx=True,
        y_label="milliseconds per batch of 256",
        unit="ms",
        notes=[
            f"MLP 64-H-H-10, batch {BATCH}, {threads} thread(s) for torch and onnxruntime; "
            "the ratio is the int8 model's speed-up",
        ],
    )
    x = torch.randn(BATCH, 64)
    for width in widths:
        model = _mlp(width)
        int8 = optimize.quantize_int8(model, example_input=x[:8], threads=threads)
        per_pass = _passes(model, x, 3)
        n = max(1, round(ROUND_MS / 1000 / max(per_pass, 1e-6)))
        runs: dict[str, Any] = {
            RAW: lambda m=model, n=n: _passes(m, x, n),
            WORKBENCH: lambda m=int8, n=n: _passes(m, x, n),
        }
        samples = interleave(runs, rounds, warmup=1)
        params = optimize.count_parameters(model)
        size_ratio = optimize.size_on_disk(model) / optimize.size_on_disk(int8)
        label = f"{params / 1e6:.2f} M" if params >= 1e6 else f"{params / 1e3:.0f} k"
        curve.points.append(
            Point(
                label,
                params,
                samples,
                note=f"H={width}; {size_ratio:.2f}x smaller on disk",
            )
        )
        print(
            f"  H={width} ({label} parameters): fp32 {1000 * min(samples[RAW]):.3f} ms, "
            f"int8 {1000 * min(samples[WORKBENCH]):.3f} ms (best), {size_ratio:.2f}x smaller",
            flush=True,
        )
    curve.notes.append(
        "size on disk, fp32 state dict / int8 ONNX file: "
        + ", ".join(f"{p.size}: {p.note.split('; ')[1].split(' ')[0]}" for p in curve.points)
    )
    return curve


def scale(options: ScaleOptions) -> list[Curve]:
    widths = WIDTHS[:2] if options.quick else WIDTHS
    return [measure(widths, options.repeats(ROUNDS), threads=1)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--widths", default=",".join(map(str, WIDTHS)))
    parser.add_argument("--rounds", type=int, default=ROUNDS)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    print(f"on {machine()}")
    curve = measure(tuple(int(w) for w in args.widths.split(",")), args.rounds, args.threads)
    print()
    print(curve.markdown())


if __name__ == "__main__":
    main()
