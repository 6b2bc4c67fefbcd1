"""cuDF loading through workbench vs raw dask_cudf.read_parquet vs the disk's read limit.

Parquet files (float and integer columns, several row groups) of two sizes are written to
a directory; each read evicts their pages from the page cache first (posix_fadvise), so the
disk is read. On one GPU cluster (one dask-cuda worker per GPU), the same files are read
into GPU memory and persisted three ways, alternating: raw ``dask_cudf.read_parquet``,
``workbench.data.load`` (cuDF backend, with its manifest, footer validation and IO
counters), and the disk itself (``workbench.bench.storage_read``: a sequential read of a
fresh file). Reported: MB/s of each, workbench/raw (target: at least 0.95), and each as a
fraction of the disk's reported limit (none reported: said so).

    python benchmarks/gpu_load.py [--sizes-mb 256 1024] [--json out.json]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from _gpu import need_gpu, quiet_and_private, write_json


def write_data(root: Path, size_mb: int, files: int = 8) -> int:
    import numpy as np
    import pandas as pd

    rows = size_mb * 2**20 // (8 * 8) // files  # 8 columns of 8 bytes
    rng = np.random.default_rng(0)
    root.mkdir(parents=True, exist_ok=True)
    for i in range(files):
        frame = pd.DataFrame(
            {f"f{c}": rng.random(rows) for c in range(6)}
            | {"id": np.arange(rows) + i * rows, "key": rng.integers(0, 1000, rows)}
        )
        frame.to_parquet(root / f"part-{i:03d}.parquet", row_group_size=max(rows // 4, 1))
    return sum(p.stat().st_size for p in root.glob("*.parquet"))


def evict(root: Path) -> None:
    for path in root.glob("*.parquet"):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def timed_persist(client: Any, make: Any) -> float:
    from distributed import wait

    start = time.perf_counter()
    df = client.persist(make())
    wait(df)
    elapsed = time.perf_counter() - start
    del df
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes-mb", type=int, nargs="+", default=[256, 1024])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dir", default=None, help="where to write the files (default: tmp)")
    parser.add_argument("--json")
    args = parser.parse_args()
    quiet_and_private()
    inventory = need_gpu()
    import dask_cudf

    import workbench
    import workbench.data as wd
    from workbench import bench

    base = Path(args.dir or tempfile.mkdtemp(prefix="wb-gpu-load-"))
    limit, source = bench.disk_limit(base)
    out: dict[str, Any] = {
        "benchmark": "gpu_load",
        "gpu": inventory.gpus[0].name,
        "disk_limit_gbps": limit,
        "disk_limit_source": source,
        "target": "workbench at least 0.95 of raw",
        "results": [],
    }
    print(f"{inventory.gpus[0].name}; disk limit: {limit or 'none reported'} ({source})")
    with workbench.launch("local", dashboard_address=":0", wait=True) as handle:
        client = handle.client
        for size in args.sizes_mb:
            root = base / f"{size}mb"
            nbytes = write_data(root, size)
            raw, wb, disk = [], [], []
            for _ in range(args.repeats):
                evict(root)
                raw.append(
                    timed_persist(client, lambda root=root: dask_cudf.read_parquet(str(root)))
                )
                evict(root)
                wb.append(
                    timed_persist(
                        client, lambda root=root: wd.load(str(root), backend="cudf", client=handle)
                    )
                )
                disk.append(bench.storage_read(base, size_mb=size).value)
            r, w = statistics.median(raw), statistics.median(wb)
            disk_gbps = statistics.median(disk)
            raw_gbps, wb_gbps = nbytes / r / 1e9, nbytes / w / 1e9
            out["results"].append(
                {
                    "size_mb": size,
                    "parquet_bytes": nbytes,
                    "raw_s": r,
                    "workbench_s": w,
                    "raw_gbps": raw_gbps,
                    "workbench_gbps": wb_gbps,
                    "ratio": wb_gbps / raw_gbps,
                    "disk_read_gbps": disk_gbps,
                    "fraction_of_disk_read": wb_gbps / disk_gbps,
                    "fraction_of_limit": wb_gbps / limit if limit else None,
                }
            )
            print(
                f"  {nbytes / 1e6:7.0f} MB of Parquet: raw dask_cudf {raw_gbps:.3f} GB/s, "
                f"workbench {wb_gbps:.3f} GB/s, ratio {wb_gbps / raw_gbps:.3f}; disk read "
                f"{disk_gbps:.3f} GB/s ({wb_gbps / disk_gbps:.2f} of it)"
            )
    write_json(args.json, out)


if __name__ == "__main__":
    main()
