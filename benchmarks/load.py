"""Parquet load time over dataset sizes: workbench.data.load vs raw
dask.dataframe.read_parquet, on local disk and through a moto S3 server, in the same run.

Datasets of 10 MB, 100 MB, 1 GB and 2 GB (files of about 25 MB, 5 columns; each dataset a
directory, read recursively, that holds the next smaller one) are written once to a
temporary directory and uploaded to a moto S3 server started for the run. Both
readers run on the same LocalCluster (2 workers x 1 thread) and materialise every column
of every partition. Workbench's time includes everything ``load`` does with validation
on: listing, the first footer, the row counts of the others (from the footers the
workers parse while reading, reported with their IO records; a footer not reported by
the time the manifest is asked is read then), the manifest's exact row count asked
after computing, the IO metering on the workers. Rounds interleave the readers in a
rotating order; the table gives, per size, the medians, the ratio raw time / workbench
time (workbench's share of dask's throughput; target: at least 0.95 from 100 MB) and the
spread of the ratios of the runs paired by round, and the planning part of each run (the
call that returns the lazy frame: listing, footers, schema) on its own.

    python benchmarks/load.py [--sizes 10,100,1000,2000] [--rounds N] [--no-s3] [--extras]

``--extras`` adds ``load(validate=False)`` and ``pyarrow.parquet.read_table`` (in this
process, pyarrow's own threads and S3 client) as further columns. ``make bench-scale``
runs this through benchmarks/scale.py and puts the tables and plots in
docs/performance.md.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _scale import RAW, WORKBENCH, Curve, Point, ScaleOptions, interleave, machine

SIZES_MB = (10, 100, 1000, 2000)
#: rounds per size (each round reads the dataset once with every reader)
ROUNDS = {10: 5, 100: 7, 1000: 5, 2000: 5}
FILE_MB = 25
#: Parquet bytes per row of _frame's data (snappy, measured): sizes -> row counts
BYTES_PER_ROW = 27.8
#: distinct files generated; bigger datasets repeat them (copies, not links)
UNIQUE_FILES = 8
#: the planning part of each load: from the call to the lazy frame, before any data is read
PLAN_WB = "load() call"
PLAN_RAW = "read_parquet() call"


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


def _write(path: Path, seed: int, rows: int) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pandas(_frame(seed, rows), preserve_index=False)
    pq.write_table(table, path, row_group_size=max(1, rows // 4))


@dataclass
class Dataset:
    size_mb: int
    local: Path
    files: int
    nbytes: int
    rows: int
    s3_url: str | None = None


def write_datasets(root: Path, sizes: tuple[int, ...]) -> list[Dataset]:
    """The datasets under ``root``, written once: files of about FILE_MB, nested so that
    each dataset is a directory holding the next smaller one (2 GB = its own files + the
    1 GB directory, which holds its own + the 100 MB directory), read recursively; the
    big ones are made of UNIQUE_FILES distinct files and copies of them. A dataset below
    FILE_MB is one smaller file of its own."""
    rows = round(FILE_MB * 1e6 / BYTES_PER_ROW)
    big = sorted(s for s in sizes if s >= FILE_MB)
    dirs = {
        size: root.joinpath("data", *["inner"] * (len(big) - 1 - k)) for k, size in enumerate(big)
    }
    import pyarrow.parquet as pq

    made: list[Path] = []
    for size in big:
        d = dirs[size]
        d.mkdir(parents=True, exist_ok=True)
        for i in range(len(made), math.ceil(size / FILE_MB)):
            target = d / f"part-{i:03d}.parquet"
            if i < UNIQUE_FILES:
                _write(target, i, rows)
            else:
                shutil.copyfile(made[i % UNIQUE_FILES], target)
            made.append(target)
    out = []
    for size in sizes:
        if size < FILE_MB:
            d = root / f"small-{size}"
            d.mkdir()
            _write(d / "part-000.parquet", 1000 + size, round(size * 1e6 / BYTES_PER_ROW))
        else:
            d = dirs[size]
        files = sorted(d.rglob("*.parquet"))
        nbytes = sum(f.stat().st_size for f in files)
        rows = sum(pq.read_metadata(f).num_rows for f in files)
        out.append(Dataset(size, d, len(files), nbytes, rows))
    return out


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


def upload(fs: Any, root: Path, datasets: list[Dataset], bucket: str) -> None:
    """The tree under ``root`` to s3://bucket/ (each dataset's URL set accordingly)."""
    fs.mkdir(bucket)
    fs.put(f"{root}/", f"{bucket}/", recursive=True)
    for d in datasets:
        d.s3_url = f"s3://{bucket}/{d.local.relative_to(root).as_posix()}/"


def _nbytes(part: Any) -> int:
    return int(part.memory_usage(index=False, deep=False).sum())


def materialise(df: Any) -> int:
    # map_partitions with an opaque function: every column of every partition is read.
    return int(df.map_partitions(_nbytes, meta=(None, "int64")).sum().compute())


def measure(
    datasets: list[Dataset],
    where: str,
    rounds: Callable[[int], int],
    extras: bool,
    storage: dict[str, Any] | None = None,
) -> Curve:
    """One curve: every dataset read by every reader, ``rounds(size)`` interleaved rounds."""
    import dask.dataframe as dd
    import pyarrow.parquet as pq

    import workbench.data as wd

    s3 = storage is not None
    curve = Curve(
        key=f"data-{'s3' if s3 else 'local'}",
        title=f"Parquet load, {'moto S3 server' if s3 else 'local disk'}: workbench.data.load "
        "vs dask.dataframe.read_parquet",
        x_label="dataset",
        workbench="workbench.data.load",
        raw="dask.read_parquet",
        kind="speed",
        target=0.95,
        target_from=100,
        logx=True,
        notes=[
            "every column of every partition computed on a LocalCluster of 2 workers x 1 thread",
            "workbench with validate=True: one listing, the first footer read at load, the "
            "others' row counts from the footers the workers parse (corrupt files named), "
            "the manifest's exact row count asked after computing (in the timed run), IO "
            "metered on the workers",
            f"'{PLAN_WB}' and '{PLAN_RAW}': the planning part of each run, from the call to "
            "the lazy frame (listing, footers, schema), before any data is read",
            "files of about 25 MB; each dataset is a directory read recursively that holds the "
            "next smaller one (so each is written and uploaded once)",
        ],
    )
    for d in datasets:
        src = d.s3_url if s3 else str(d.local)
        assert src is not None
        so = storage or None
        planning: dict[str, list[float]] = {PLAN_WB: [], PLAN_RAW: []}
        footers_read: list[int] = []
        runs: dict[str, Callable[[], float | None]] = {
            WORKBENCH: _reader(
                lambda src=src, so=so: wd.load(src, storage_options=so),
                planning[PLAN_WB],
                then=lambda df, d=d, f=footers_read: _manifest_rows(df, d, f),
            ),
            RAW: _reader(
                lambda src=src, so=so: dd.read_parquet(src, storage_options=_raw(so)),
                planning[PLAN_RAW],
            ),
        }
        if extras:
            runs["load(validate=False)"] = _reader(
                lambda src=src, so=so: wd.load(src, storage_options=so, validate=False)
            )
            arrow: Any = _arrow_fs(so) if so else None
            path = src.removeprefix("s3://") if s3 else src
            runs["pyarrow.read_table"] = lambda path=path, fs=arrow: _none(
                pq.read_table(path, filesystem=fs)
            )
        warmup = 1 if d.size_mb <= 100 else 0
        samples = interleave(runs, rounds(d.size_mb), warmup=warmup)
        label = f"{d.size_mb / 1000:g} GB" if d.size_mb >= 1000 else f"{d.size_mb} MB"
        curve.points.append(
            Point(
                label,
                d.nbytes / 1e6,
                samples,
                note=f"{d.files} files, {d.nbytes / 1e6:.0f} MB",
                details={k: v[warmup:] for k, v in planning.items()},
            )
        )
        print(
            f"  {where} {label}: {_line(samples)}; footers read for the manifests after "
            f"the workers' reads: {sum(footers_read)} of {(d.files - 1) * len(footers_read)}",
            flush=True,
        )
    return curve


def _none(_: Any) -> None:
    return None


def _reader(
    frame: Callable[[], Any],
    planning: list[float] | None = None,
    then: Callable[[Any], None] | None = None,
) -> Callable[[], None]:
    """Build the frame and compute every column of it, then ``then(frame)`` (timed by the
    caller); the time to build the frame (the planning, before any data is read) goes to
    ``planning``."""

    def run() -> None:
        start = time.perf_counter()
        df = frame()
        if planning is not None:
            planning.append(time.perf_counter() - start)
        materialise(df)
        if then is not None:
            then(df)

    return run


def _manifest_rows(df: Any, dataset: Dataset, footers_read: list[int]) -> None:
    """Validation's result, inside the timed run: the manifest's exact row count (from the
    footers the workers parsed; any footer not reported yet is read by ``load`` here);
    ``footers_read`` gets how many footers ``load`` read after its first."""
    import workbench.data as wd
    from workbench.data import iostats

    manifest = wd.manifest_of(df)
    if manifest.row_count != dataset.rows:
        raise AssertionError(f"manifest counts {manifest.row_count} rows, not {dataset.rows}")
    plan = {
        r["path"]
        for r in iostats.recent_reads()
        if r["load_id"] == manifest.load_id and r["phase"] == "plan"
    }
    footers_read.append(len(plan) - 1)


def _raw(so: dict[str, Any] | None) -> dict[str, Any] | None:
    """Storage options with the credential references resolved, for raw dask."""
    if so is None:
        return None
    return {
        k: os.environ[v[4:]] if isinstance(v, str) and v.startswith("env:") else v
        for k, v in so.items()
    }


def _arrow_fs(so: dict[str, Any]) -> Any:
    import pyarrow.fs as pafs

    raw = _raw(so) or {}
    return pafs.S3FileSystem(
        access_key=raw["key"],
        secret_key=raw["secret"],
        endpoint_override=raw["endpoint_url"].removeprefix("http://"),
        scheme="http",
        region="us-east-1",
    )


def _line(samples: dict[str, list[float]]) -> str:
    import statistics

    return ", ".join(f"{k} {statistics.median(v):.3f} s" for k, v in samples.items())


def run(
    sizes: tuple[int, ...], rounds: Callable[[int], int], s3: bool, extras: bool
) -> list[Curve]:
    os.environ.setdefault("WORKBENCH_STATE_DIR", tempfile.mkdtemp(prefix="wb-bench-"))
    os.environ["WB_BENCH_S3_KEY"] = os.environ["WB_BENCH_S3_SECRET"] = "bench"
    logging.getLogger("distributed").setLevel(logging.WARNING)
    from distributed import Client, LocalCluster

    tmp = Path(tempfile.mkdtemp(prefix="wb-bench-data-"))
    moto: subprocess.Popen[bytes] | None = None
    cluster = client = None
    try:
        t0 = time.perf_counter()
        datasets = write_datasets(tmp, sizes)
        print(
            "datasets: "
            + ", ".join(f"{d.nbytes / 1e6:.0f} MB in {d.files} file(s)" for d in datasets)
            + f" (written in {time.perf_counter() - t0:.0f} s)",
            flush=True,
        )
        cluster = LocalCluster(
            n_workers=2, threads_per_worker=1, memory_limit="4GiB", dashboard_address=":0"
        )
        client = Client(cluster)
        curves = [measure(datasets, "local", rounds, extras)]
        if s3:
            import s3fs

            moto, endpoint = start_moto()
            t0 = time.perf_counter()
            fs = s3fs.S3FileSystem(endpoint_url=endpoint, key="bench", secret="bench")
            upload(fs, tmp, datasets, "bench")
            print(f"uploaded to moto in {time.perf_counter() - t0:.0f} s", flush=True)
            so = {
                "endpoint_url": endpoint,
                "key": "env:WB_BENCH_S3_KEY",
                "secret": "env:WB_BENCH_S3_SECRET",
            }
            curves.append(measure(datasets, "s3", rounds, extras, storage=so))
        return curves
    finally:
        if client is not None:
            client.close()
        if cluster is not None:
            cluster.close()
        if moto is not None:
            moto.terminate()
            moto.wait(timeout=30)
        shutil.rmtree(tmp, ignore_errors=True)


def scale(options: ScaleOptions) -> list[Curve]:
    sizes = (10, 100) if options.quick else SIZES_MB
    return run(sizes, lambda size: options.repeats(ROUNDS.get(size, 3)), s3=True, extras=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default=",".join(map(str, SIZES_MB)), help="MB, comma-separated")
    parser.add_argument(
        "--rounds", type=int, default=None, help="rounds per size (default: by size)"
    )
    parser.add_argument("--no-s3", action="store_true", help="local disk only")
    parser.add_argument("--extras", action="store_true", help="also validate=False and pyarrow")
    args = parser.parse_args()
    sizes = tuple(int(s) for s in args.sizes.split(","))
    print(f"on {machine()}")
    curves = run(
        sizes,
        lambda size: args.rounds or ROUNDS.get(size, 3),
        s3=not args.no_s3,
        extras=args.extras,
    )
    for curve in curves:
        print()
        print(curve.markdown())


if __name__ == "__main__":
    main()
