"""CPU cost of workbench's sampling on GPU workers, against the raw NVML calls it makes.

1. In this process, over many rounds: the raw NVML calls of one sample (utilization,
   memory, temperature, power, energy, PCIe counters, NVLink counters) vs workbench's GPU
   sampler (the same calls plus rates, labels, skip bookkeeping): CPU time per sample.
2. On a real GPU cluster (one dask-cuda worker per GPU), the CPU each worker's sampling
   thread spends (``workbench_sampler_cpu_seconds_total``, thread CPU time), at 1 Hz and at
   4 Hz, as a share of one core. Target: under 1% of a core per GPU worker at 1 Hz.

    python benchmarks/gpu_sampler.py [--seconds 15] [--json out.json]
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import statistics
import time
from collections.abc import Callable
from typing import Any

from _gpu import need_gpu, quiet_and_private, write_json


def _cpu(fn: Callable[[], Any], rounds: int) -> float:
    start = time.process_time()
    for _ in range(rounds):
        fn()
    return (time.process_time() - start) / rounds


def raw_nvml() -> Callable[[], Any]:
    import pynvml

    from workbench.metrics.nvml import ALL_LINKS, NVLINK_FIELDS, PCIE_COUNTER_FIELDS

    pynvml.nvmlInit()
    handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(pynvml.nvmlDeviceGetCount())]
    pcie = [(getattr(pynvml, n), 0) for n in PCIE_COUNTER_FIELDS]
    nvlink = [(getattr(pynvml, n), ALL_LINKS) for n in NVLINK_FIELDS]

    calls: list[tuple[Callable[..., Any], tuple[Any, ...]]] = []
    for h in handles:
        calls += [
            (pynvml.nvmlDeviceGetUtilizationRates, (h,)),
            (pynvml.nvmlDeviceGetMemoryInfo, (h,)),
            (pynvml.nvmlDeviceGetTemperature, (h, pynvml.NVML_TEMPERATURE_GPU)),
            (pynvml.nvmlDeviceGetPowerUsage, (h,)),
            (pynvml.nvmlDeviceGetTotalEnergyConsumption, (h,)),
            (pynvml.nvmlDeviceGetFieldValues, (h, pcie)),
            (pynvml.nvmlDeviceGetFieldValues, (h, nvlink)),
        ]

    def read() -> None:
        for fn, args in calls:
            with contextlib.suppress(pynvml.NVMLError):
                fn(*args)

    return read


def in_process(rounds: int) -> dict[str, Any]:
    from workbench.metrics import SamplerContext
    from workbench.metrics.nvml import GPUSampler

    sampler = GPUSampler(SamplerContext(role="host"))
    raw = raw_nvml()
    ours = lambda: sampler.sample(time.time())  # noqa: E731
    raw(), ours()
    raws, wbs = [], []
    for _ in range(10):  # interleaved to cancel drift
        raws.append(_cpu(raw, rounds // 10))
        wbs.append(_cpu(ours, rounds // 10))
    sampler.close()
    r, w = statistics.median(raws), statistics.median(wbs)
    print(f"[1] in-process, {rounds} samples each (median CPU per sample)")
    print(f"    raw NVML calls      : {r * 1e6:8.1f} us")
    print(f"    workbench GPU sampler: {w * 1e6:8.1f} us   ratio {w / r:.2f}")
    return {"raw_us": r * 1e6, "workbench_us": w * 1e6, "ratio": w / r, "rounds": rounds}


def on_cluster(seconds: float, interval: float) -> dict[str, Any]:
    import workbench
    from workbench.metrics import get_store

    spill = importlib.util.find_spec("cudf") is not None
    handle = workbench.launch("local", enable_cudf_spill=spill, dashboard_address=":0", wait=True)
    try:
        store = get_store(handle.scheduler_address, interval=interval)
        n = handle.n_workers()
        store.wait_for(lambda s: sum(1 for w in s.worker_sources() if len(w.ring) >= 2) == n, 60)
        start = {w.id: (w.ring.latest() or (0, {}))[1] for w in store.worker_sources()}
        time.sleep(seconds)
        workers = []
        for w in store.worker_sources():
            before, after = start[w.id], (w.ring.latest() or (0, {}))[1]
            samples = (
                after["workbench_sampler_samples_total"] - before["workbench_sampler_samples_total"]
            )
            cpu = (
                after["workbench_sampler_cpu_seconds_total"]
                - before["workbench_sampler_cpu_seconds_total"]
            )
            gpus = [k for k in after if k.startswith("workbench_gpu_memory_used_bytes")]
            share = cpu / seconds * 100
            workers.append(
                {
                    "worker": w.name,
                    "samples": samples,
                    "cpu_us_per_sample": cpu / samples * 1e6,
                    "core_pct": share,
                    "gpu_series": len(gpus),
                }
            )
            print(
                f"    worker {w.name}: {samples:.0f} samples, {cpu / samples * 1e6:7.1f} us each "
                f"= {share:.3f}% of one core at {1 / interval:g} Hz ({len(gpus)} GPU)"
            )
        store.close()
        return {"interval": interval, "seconds": seconds, "workers": workers}
    finally:
        from workbench.metrics import store as metrics_store

        metrics_store.close_all()
        handle.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=500)
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--intervals", type=float, nargs="+", default=[1.0, 0.25])
    parser.add_argument("--json")
    args = parser.parse_args()
    quiet_and_private()
    inventory = need_gpu()
    out: dict[str, Any] = {
        "benchmark": "gpu_sampler",
        "gpu": inventory.gpus[0].name,
        "target": "under 1% of a core per GPU worker at 1 Hz",
    }
    out["in_process"] = in_process(args.rounds)
    out["cluster"] = []
    for interval in args.intervals:
        print(f"[2] GPU cluster, sampling every {interval:g} s for {args.seconds:g} s")
        out["cluster"].append(on_cluster(args.seconds, interval))
    write_json(args.json, out)


if __name__ == "__main__":
    main()
