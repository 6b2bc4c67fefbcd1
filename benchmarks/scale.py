"""Every scale benchmark (``make bench-scale``): each prints its table over sizes with
the ratio against the raw library at each size, measured in the same run, and writes a
PNG of each curve and the JSON of every sample into ``--out``; ``--docs`` refreshes
their tables and plots in docs/performance.md.

    python benchmarks/scale.py [--only data,xgboost,slurm,int8,dashboards,registry] [--quick]
                               [--repeat-factor 1.0] [--out docs/performance]
                               [--docs docs/performance.md]

To add a benchmark: a module in benchmarks/ with ``scale(options) -> list[Curve]`` (see
benchmarks/_scale.py) and one line in ``BENCHMARKS`` below. A benchmark that cannot run
here (no SLURM, say) raises ``Unavailable`` and is reported as skipped.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _scale import Curve, ScaleOptions, Unavailable, machine, update_docs, write

#: name -> module in benchmarks/ whose ``scale(options)`` measures the curves, in run order.
BENCHMARKS: dict[str, str] = {
    "data": "load",  # workbench.data.load vs dask.dataframe.read_parquet, 10 MB-2 GB
    "xgboost": "train",  # train_xgboost vs xgboost.dask, 1-4 workers, two data sizes
    "int8": "int8_speed",  # quantize_int8 (CPU: onnxruntime int8) vs fp32 torch, over sizes
    "slurm": "slurm_launch",  # time to all workers ready, 1-16 jobs
    "dashboards": "dashboard_scale",  # store, model, viewer at 8-1024 simulated workers
    "registry": "registry",  # clusters list (control path, CLI, REST), 10-1000 records
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default=",".join(BENCHMARKS), help="comma-separated names")
    parser.add_argument("--quick", action="store_true", help="small sizes, one round")
    parser.add_argument("--repeat-factor", type=float, default=1.0)
    parser.add_argument("--out", type=Path, default=Path("docs/performance"))
    parser.add_argument("--docs", type=Path, default=None, help="markdown file to refresh")
    args = parser.parse_args()
    names = [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark(s) {unknown}; known: {', '.join(BENCHMARKS)}")
    if len(names) > 1:
        sys.exit(_each_in_its_own_process(names, args))
    # Benchmarks keep their clusters, runs and logs out of the user's real state directory.
    os.environ.setdefault("WORKBENCH_STATE_DIR", tempfile.mkdtemp(prefix="wb-bench-"))
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    logging.getLogger("distributed").setLevel(logging.WARNING)
    options = ScaleOptions(quick=args.quick, repeat_factor=args.repeat_factor, out=args.out)
    where = machine()
    print(f"scale benchmarks on {where}")
    started = time.perf_counter()
    curves: list[Curve] = []
    skipped: dict[str, str] = {}
    for name in names:
        module = importlib.import_module(BENCHMARKS[name])
        t0 = time.perf_counter()
        print(f"\n=== {name} ({BENCHMARKS[name]}.py)", flush=True)
        try:
            got = module.scale(options)
        except Unavailable as exc:
            skipped[name] = str(exc)
            print(f"skipped: {exc}")
            continue
        took = time.perf_counter() - t0
        for curve in got:
            print(f"\n{curve.markdown()}", flush=True)
        print(f"({name}: {took:.0f} s)")
        curves += got
    pngs = write(curves, args.out)
    total = time.perf_counter() - started
    print(f"\n{', '.join(names)}: {total / 60:.1f} min; plots and samples in {args.out}/")
    for name, why in skipped.items():
        print(f"  skipped {name}: {why}")
    if args.docs is not None and curves:
        stamp = time.strftime("%Y-%m-%d")
        header = f"_Measured {stamp} by `make bench-scale` on {where}._"
        missing = update_docs(args.docs, curves, pngs, header)
        print(f"refreshed {args.docs}" + (f" (appended {', '.join(missing)})" if missing else ""))


def _each_in_its_own_process(names: list[str], args: argparse.Namespace) -> int:
    """Run each benchmark in a Python process of its own (this script with ``--only``),
    so that one's leftovers (threads, a large heap for the garbage collector to walk,
    caches) do not weigh on the next; each refreshes its own tables and plots."""
    import subprocess

    started = time.perf_counter()
    failed: list[str] = []
    for name in names:
        cmd = [sys.executable, __file__, "--only", name, "--out", str(args.out)]
        cmd += ["--repeat-factor", str(args.repeat_factor)]
        cmd += ["--quick"] if args.quick else []
        cmd += ["--docs", str(args.docs)] if args.docs is not None else []
        if subprocess.run(cmd, check=False).returncode != 0:
            failed.append(name)
    total = time.perf_counter() - started
    print(f"\nall scale benchmarks, each in its own process: {total / 60:.1f} min")
    if failed:
        print(f"  failed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    main()
