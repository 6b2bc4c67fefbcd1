"""What the GPU benchmarks share: medians, CUDA-event timing, the JSON they write."""

from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any


def quiet_and_private() -> None:
    """Keep the benchmarks' cluster records out of the user's state; quiet distributed."""
    import logging

    os.environ.setdefault("WORKBENCH_STATE_DIR", tempfile.mkdtemp(prefix="wb-bench-"))
    logging.getLogger("distributed").setLevel(logging.WARNING)


def need_gpu() -> Any:
    """The GPU inventory, or exit with the reason there is none."""
    from workbench.gpus import detect_gpus

    inventory = detect_gpus()
    if not inventory.gpus:
        sys.exit(f"no GPU: {inventory.reason}")
    return inventory


def cuda_ms(fn: Callable[[], Any], repeats: int, warmup: int = 2) -> float:
    """Median milliseconds of ``fn`` on the GPU, timed with CUDA events."""
    import torch

    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def write_json(path: str | None, data: dict[str, Any]) -> None:
    if path:
        Path(path).write_text(json.dumps(data, indent=1, default=str) + "\n")
