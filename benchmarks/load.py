"""Parquet read throughput: workbench.data.load vs raw dask.dataframe.read_parquet vs
pyarrow.parquet.read_table, on local disk and on a moto S3 server, in the same run.

The dataset (default 8 files, ~240 MB) is written once to a temporary directory and
uploaded to a moto S3 server started for the run. Both dask paths run on the same
LocalCluster (2 workers x 1 thread by default) and materialise every column of every
partition; pyarrow reads the whole dataset in this process (its own threads), from
local disk and through pyarrow's native S3 filesystem. Runs alternate between the
three readers, in a rotating order, to cancel drift; the median of ``--repeats`` timed
runs after one warm-up is reported, and the ratio of the best runs (steadier on a busy
machine). Throughput is the dataset's size on storage over the wall time of "build the
frame + compute it" (for workbench that includes listing, reading every Parquet footer
for the lineage manifest, and the IO metering; the ``validate=False`` row skips the
footers).

    python benchmarks/load.py [--files 8] [--rows-per-file 1000000] [--repeats 5] [--no-s3]
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


def _frame(seed: int, rows: int) -> Any:
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "id": np.arange(seed * rows, (seed + 1) * rows, dtype="int64"),
            "a": rng.random(rows),
            "b": rng.integers(0, 1_000_000, rows),
            "c": rng.standard_normal(rows).astype("float32"),
            "key": rng.integers(0, 1000, rows).astype("int32"),
        }
    )


def write_dataset(root: Path, files: int, rows: int) -> int:
    import pyarrow as pa
    import pyarrow.parquet as pq

    root.mkdir(parents=True, exist_ok=True)
    for i in range(files):
        table = pa.Table.from_pandas(_frame(i, rows), preserve_index=False)
        pq.write_table(table, root / f"part-{i:03d}.parquet", row_group_size=rows // 4)
    return sum(p.stat().st_size for p in root.glob("*.parquet"))


def start_moto() -> tuple[subprocess.Popen[bytes], str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    moto = Path(sys.executable).parent / "moto_server"
    proc = subprocess.Popen(
        [str(moto), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    for _ in range(300):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.1)
    return proc, f"http://127.0.0.1:{port}"


def _nbytes(part: Any) -> int:
    return int(part.memory_usage(index=False, deep=False).sum())


def materialise(df: Any) -> int:
    # map_partitions with an opaque function: every column of every partition is read.
    return int(df.map_partitions(_nbytes, meta=(None, "int64")).sum().compute())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=8)
    parser.add_argument("--rows-per-file", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--no-s3", action="store_true", help="local disk only")
    args = parser.parse_args()

    os.environ.setdefault("WORKBENCH_STATE_DIR", tempfile.mkdtemp(prefix="wb-bench-"))
    os.environ["AWS_ACCESS_KEY_ID"] = os.environ["AWS_SECRET_ACCESS_KEY"] = "bench"
    import logging

    logging.getLogger("distributed").setLevel(logging.WARNING)
    import dask.dataframe as dd
    import pyarrow.fs as pafs
    import pyarrow.parquet as pq
    import s3fs
    from distributed import Client, LocalCluster

    import workbench.data as wd

    tmp = Path(tempfile.mkdtemp(prefix="wb-bench-data-"))
    local = tmp / "local"
    size = write_dataset(local, args.files, args.rows_per_file)
    print(
        f"dataset: {args.files} Parquet files, {size / 1e6:.0f} MB, "
        f"{args.files * args.rows_per_file:,} rows; cluster: {args.workers} workers x 1 thread"
    )

    moto: subprocess.Popen[bytes] | None = None
    targets: list[tuple[str, dict[str, Callable[[], Any]]]] = []
    cluster = LocalCluster(
        n_workers=args.workers, threads_per_worker=1, memory_limit="4GiB", dashboard_address=":0"
    )
    client = Client(cluster)
    try:
        targets.append(
            (
                "local disk",
                {
                    "workbench.data.load": lambda: materialise(wd.load(str(local))),
                    "  (validate=False)": lambda: materialise(wd.load(str(local), validate=False)),
                    "dask.read_parquet": lambda: materialise(dd.read_parquet(str(local))),
                    "pyarrow.read_table": lambda: pq.read_table(str(local)).nbytes,
                },
            )
        )
        if not args.no_s3:
            moto, endpoint = start_moto()
            so = {
                "endpoint_url": endpoint,
                "key": "env:AWS_ACCESS_KEY_ID",
                "secret": "env:AWS_SECRET_ACCESS_KEY",
            }
            raw_so = {"endpoint_url": endpoint, "key": "bench", "secret": "bench"}
            fs = s3fs.S3FileSystem(**raw_so)
            fs.mkdir("bench")
            fs.put(f"{local}/*.parquet", "bench/data/")
            arrow_s3 = pafs.S3FileSystem(
                access_key="bench",
                secret_key="bench",
                endpoint_override=endpoint.removeprefix("http://"),
                scheme="http",
                region="us-east-1",
            )
            url = "s3://bench/data/"
            targets.append(
                (
                    "moto S3",
                    {
                        "workbench.data.load": lambda: materialise(
                            wd.load(url, storage_options=so)
                        ),
                        "  (validate=False)": lambda: materialise(
                            wd.load(url, storage_options=so, validate=False)
                        ),
                        "dask.read_parquet": lambda: materialise(
                            dd.read_parquet(url, storage_options=raw_so)
                        ),
                        "pyarrow.read_table": lambda: (
                            pq.read_table("bench/data/", filesystem=arrow_s3).nbytes
                        ),
                    },
                )
            )
        for where, readers in targets:
            times: dict[str, list[float]] = {name: [] for name in readers}
            names = list(readers)
            for run in range(args.repeats + 1):
                # rotate the order each round so no reader always follows the same one
                k = run % len(names)
                for name in names[k:] + names[:k]:
                    read = readers[name]
                    start = time.perf_counter()
                    read()
                    elapsed = time.perf_counter() - start
                    if run:  # the first round warms imports, caches and connections
                        times[name].append(elapsed)
            med = {name: statistics.median(t) for name, t in times.items()}
            mbs = {name: size / 1e6 / t for name, t in med.items()}
            print(f"\n{where} (median of {args.repeats}, MB/s = dataset MB / wall time)")
            for name in readers:
                t = times[name]
                print(
                    f"  {name:21} {mbs[name]:8.1f} MB/s   {med[name]:.3f} s "
                    f"(min {min(t):.3f}, max {max(t):.3f})"
                )
            wb, raw, arrow = (
                mbs["workbench.data.load"],
                mbs["dask.read_parquet"],
                mbs["pyarrow.read_table"],
            )
            best = {name: size / 1e6 / min(t) for name, t in times.items()}
            bwb, braw, barrow = (
                best["workbench.data.load"],
                best["dask.read_parquet"],
                best["pyarrow.read_table"],
            )
            print(
                f"  ratio workbench/dask    = {wb / raw:.3f}  ({100 * (wb / raw - 1):+.1f}%)"
                f"   best-of-{args.repeats}: {bwb / braw:.3f}\n"
                f"  ratio workbench/pyarrow = {wb / arrow:.3f}  ({100 * (wb / arrow - 1):+.1f}%)"
                f"   best-of-{args.repeats}: {bwb / barrow:.3f}"
            )
        snap = wd.iostats.snapshot()["totals"]
        print(
            f"\nworkbench IO metrics counted {snap['bytes_read'] / 1e6:.0f} MB in "
            f"{snap['files_read']} file reads over {snap['loads']} loads"
        )
    finally:
        client.close()
        cluster.close()
        if moto is not None:
            moto.terminate()
            moto.wait(timeout=30)
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
