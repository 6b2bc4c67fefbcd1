"""workbench.data.load on local files, read through a real Dask cluster.

Values, column pruning and filter push-down (proved by the bytes the workers read),
formats, hive partitions, lineage manifests, IO metrics and the errors bad input gets.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

import workbench.data as wd
from workbench.data import iostats
from workbench.errors import (
    CorruptDataError,
    CredentialError,
    DataFormatError,
    DataNotFoundError,
    StorageDependencyError,
)

from ._storage_fixtures import ROW_GROUP, LocalDatasets

pytestmark = pytest.mark.timeout(300)


def settled(load_id: str, files: int, timeout: float = 20.0) -> dict[str, Any]:
    """The load's IO stats once worker records for ``files`` files have arrived."""
    deadline = time.monotonic() + timeout
    while True:
        stats = iostats.get(load_id)
        read_paths = {
            r["path"]
            for r in iostats.recent_reads()
            if r["load_id"] == load_id and r["phase"] == "read"
        }
        if len(read_paths) >= files or time.monotonic() > deadline:
            time.sleep(0.2)  # records of the last files closed may trail by a few ms
            return iostats.get(load_id)
        time.sleep(0.05)
        del stats


def read_bytes(load_id: str) -> int:
    return sum(
        r["bytes"]
        for r in iostats.recent_reads()
        if r["load_id"] == load_id and r["phase"] == "read"
    )


def same_rows(got: pd.DataFrame, want: pd.DataFrame) -> None:
    got = got.sort_values("id").reset_index(drop=True)
    want = want.sort_values("id").reset_index(drop=True)
    assert list(got.columns) == list(want.columns)
    assert len(got) == len(want)
    for col in want.columns:
        assert got[col].tolist() == want[col].tolist(), col


def test_parquet_directory_values_lineage_and_iostats(cpu_cluster, datasets: LocalDatasets) -> None:
    df, manifest = wd.load(datasets.parquet, client=cpu_cluster, return_manifest=True)
    assert manifest.dataframe_backend == "pandas"
    assert "CPU workers" in manifest.backend_reason
    assert df.npartitions >= 3
    got = df.compute()
    same_rows(got, datasets.expected)  # type: ignore[arg-type]

    # lineage: the three data files (not _SUCCESS), sizes, mtimes, rows from the footers
    assert [Path(f.uri).name for f in manifest.files] == [f"part-{i}.parquet" for i in range(3)]
    for f in manifest.files:
        assert f.size == Path(f.uri.removeprefix("file://")).stat().st_size
        assert f.mtime and f.rows == 30_000
    assert manifest.row_count == 90_000 and manifest.row_count_source == "file metadata"
    assert manifest.schema == {c: str(t) for c, t in df.dtypes.items()}
    assert wd.manifest_of(df) is manifest and wd.last_manifest() is manifest
    again = wd.Manifest.from_json(manifest.to_json())
    assert again.fingerprint == manifest.fingerprint and again.files == manifest.files

    # IO metrics: the workers' reads arrived in this process as events
    stats = settled(manifest.load_id, files=3)
    assert stats["files_planned"] == 3 and stats["bytes_planned"] == manifest.total_bytes
    assert stats["files_read"] == 3
    assert stats["bytes_read"] - stats["plan_bytes_read"] >= manifest.total_bytes * 0.9
    assert len(stats["workers"]) >= 1 and all(w.startswith("tls://") for w in stats["workers"])
    assert stats["throughput_mb_s"] and stats["throughput_mb_s"] > 0
    json.dumps(iostats.snapshot())  # plain data for the dashboards


def _outbox_state(dask_worker: Any) -> tuple[bool, int, bool] | None:
    from workbench.data import outbox

    box = outbox._outboxes.get(dask_worker)
    if box is None:
        return None
    callback = box._callback
    return box._running, len(box._records), bool(callback and callback.is_running())


def _short_idle(dask_worker: Any) -> None:
    from workbench.data.outbox import Outbox

    Outbox.idle_limit = 2  # stop after 0.2 s without records (50 in real use)


def test_worker_io_records_leave_from_the_event_loop_in_batches(
    cpu_cluster, datasets: LocalDatasets
) -> None:
    client = cpu_cluster.client
    client.run(_short_idle)

    def read_once() -> str:
        df = wd.load(datasets.parquet, client=cpu_cluster)
        df.compute()
        load_id = wd.manifest_of(df).load_id
        assert settled(load_id, files=3)["files_read"] == 3  # every record arrived
        return load_id

    read_once()
    states = [s for s in client.run(_outbox_state).values() if s is not None]
    assert states and all(queued == 0 for _, queued, _ in states)  # nothing left unsent
    time.sleep(1.0)  # idle: each worker's periodic flush stops
    assert all(s == (False, 0, False) for s in client.run(_outbox_state).values() if s is not None)
    read_once()  # the next records start it again: they arrive


def test_column_pruning_reads_fewer_bytes(cpu_cluster, datasets: LocalDatasets) -> None:
    full = wd.load(datasets.parquet, client=cpu_cluster)
    full.compute()
    full_id = wd.manifest_of(full).load_id
    settled(full_id, files=3)

    pruned = wd.load(datasets.parquet, columns=["id", "group"], client=cpu_cluster)
    assert list(pruned.columns) == ["id", "group"]
    got = pruned.compute()
    same_rows(got, datasets.expected[["id", "group"]])  # type: ignore[index]
    pruned_id = wd.manifest_of(pruned).load_id
    settled(pruned_id, files=3)
    # The wide text column is most of each file; skipping it must show in the bytes read.
    assert read_bytes(pruned_id) < 0.4 * read_bytes(full_id)


def test_filters_are_pushed_down_and_exact(cpu_cluster, datasets: LocalDatasets) -> None:
    full = wd.load(datasets.parquet, client=cpu_cluster)
    full.compute()
    full_id = wd.manifest_of(full).load_id
    settled(full_id, files=3)

    df, manifest = wd.load(
        datasets.parquet,
        filters=[("id", "<", ROW_GROUP // 2)],
        client=cpu_cluster,
        return_manifest=True,
    )
    got = df.compute()
    want = datasets.expected[datasets.expected["id"] < ROW_GROUP // 2]  # type: ignore[index]
    same_rows(got, want)
    assert manifest.filters == [[("id", "<", ROW_GROUP // 2)]]
    assert manifest.row_count is None and manifest.rows_in_files == 90_000
    settled(manifest.load_id, files=1)
    # Only the first row group of the first file can match: the others are skipped.
    assert read_bytes(manifest.load_id) < 0.25 * read_bytes(full_id)


def test_count_rows_after_filters(cpu_cluster, datasets: LocalDatasets) -> None:
    _, manifest = wd.load(
        datasets.parquet,
        filters=[[("group", "==", 1)], [("id", ">=", 89_990)]],
        count_rows=True,
        client=cpu_cluster.client,  # a plain distributed Client: its workers are asked
        return_manifest=True,
    )
    assert manifest.dataframe_backend == "pandas"
    assert manifest.backend_reason == "none of the 2 worker(s) has a GPU"
    exp = datasets.expected
    want = int(((exp["group"] == 1) | (exp["id"] >= 89_990)).sum())  # type: ignore[index]
    assert manifest.row_count == want and manifest.row_count_source == "computed"


@pytest.mark.parametrize(
    ("kind", "pattern"), [("csv", "*.csv"), ("jsonl", "*.jsonl"), ("orc", "*.orc")]
)
def test_text_and_orc_formats(
    cpu_cluster, datasets: LocalDatasets, kind: str, pattern: str
) -> None:
    directory = getattr(datasets, kind)
    df, manifest = wd.load(
        f"{directory}/{pattern}",
        columns=["id", "value", "group"],
        filters=[("group", "in", [1, 3])],
        client=cpu_cluster,
        return_manifest=True,
    )
    assert manifest.format == {"jsonl": "json"}.get(kind, kind)
    assert len(manifest.files) == 3
    exp = datasets.expected
    small = pd.concat([exp[exp["id"].between(i * 30_000, i * 30_000 + 1999)] for i in range(3)])  # type: ignore[index]
    want = small[small["group"].isin([1, 3])][["id", "value", "group"]]
    got = df.compute()
    assert sorted(got["id"].tolist()) == sorted(want["id"].tolist())
    merged = got.merge(want, on="id", suffixes=("", "_want"))
    # pandas writes JSON floats with 10 significant digits
    assert (merged["value"] - merged["value_want"]).abs().max() < 1e-9
    if kind == "orc":
        assert manifest.rows_in_files == 6000


def test_hive_partitions_and_partition_filter(cpu_cluster, datasets: LocalDatasets) -> None:
    df, manifest = wd.load(
        datasets.hive, filters=[("year", "==", 2024)], client=cpu_cluster, return_manifest=True
    )
    assert "year" in df.columns
    got = df.compute()
    assert len(got) == 1000 and set(got["year"].astype(int)) == {2024}
    # the lineage lists the files the frame reads: the partition the filter rules out is not
    assert [f.uri.split("/")[-2] for f in manifest.files] == ["year=2024"]
    assert manifest.files[0].rows == 1000
    settled(manifest.load_id, files=1)
    paths = {
        r["path"]
        for r in iostats.recent_reads()
        if r["load_id"] == manifest.load_id and r["phase"] == "read"
    }
    assert paths and all("year=2024" in p for p in paths)


def test_partition_filters_rule_out_files_only_where_the_path_decides() -> None:
    from workbench.data.formats import hive_partitions, partition_may_match

    parts = hive_partitions("year=2023/month=7/part-0.parquet")
    assert parts == {"year": "2023", "month": "7"}
    assert not partition_may_match(parts, [[("year", "==", 2024)]])
    assert partition_may_match(parts, [[("year", ">=", 2023), ("month", "in", [6, 7])]])
    assert not partition_may_match(parts, [[("year", "==", 2023), ("month", "not in", [7])]])
    # OR of ANDs: one group that may match is enough
    assert partition_may_match(parts, [[("year", "==", 2024)], [("month", "<", 8)]])
    # a column that is not a partition key, or a value that cannot be compared, decides nothing
    assert partition_may_match(parts, [[("fare", ">", 10)]])
    assert partition_may_match(parts, [[("year", "==", "x2023")], [("year", "==", 1)]]) is False
    assert partition_may_match({"year": "abc"}, [[("year", "==", 2023)]])
    assert partition_may_match({}, [[("year", "==", 2024)]])


def plan_reads(load_id: str) -> dict[str, int]:
    """How many plan-phase reads each file of a load had."""
    counts: dict[str, int] = {}
    for r in iostats.recent_reads():
        if r["load_id"] == load_id and r["phase"] == "plan":
            counts[r["path"]] = counts.get(r["path"], 0) + 1
    return counts


@pytest.mark.parametrize("which", ["parquet", "hive"])
def test_dask_plans_from_what_load_already_read(datasets: LocalDatasets, which: str) -> None:
    import dask.dataframe as dd

    path = getattr(datasets, which)
    df, manifest = wd.load(path, backend="pandas", return_manifest=True)
    raw = dd.read_parquet(path)
    # the same plan as raw dask's: partitions, columns and types, divisions, values
    assert df.npartitions == raw.npartitions
    assert dict(df.dtypes) == dict(raw.dtypes)
    assert df.divisions == raw.divisions
    want = raw.compute(scheduler="sync")
    same_rows(df.compute(scheduler="sync")[list(want.columns)], want)
    # load read the first footer before it returned (dask's own reads of it and of the
    # listing were answered from memory); the others' row counts come from the footers the
    # reader parsed while computing: the manifest reads no footer again
    assert manifest.rows_in_files == len(want)
    reads = plan_reads(manifest.load_id)
    assert {Path(p).name: n for p, n in reads.items()} == {Path(manifest.files[0].uri).name: 1}
    assert sum(f.rows or 0 for f in manifest.files[1:]) == len(want) - (manifest.files[0].rows or 0)
    # the snapshot lives only while load plans: the frame's filesystem has none
    from dask.dataframe.dask_expr.io.parquet import ReadParquet

    (read,) = df.expr.find_operations(ReadParquet)
    assert read.operand("filesystem").plan is None


@pytest.mark.parametrize("columns", [None, ["id", "group"]])
def test_validation_counts_rows_from_the_footers_the_workers_read(
    cpu_cluster, datasets: LocalDatasets, columns: list[str] | None
) -> None:
    """Validation adds no read: the workers report each footer's row count with the reads
    they make anyway, and the manifest takes them; only a file no worker has read yet
    when the manifest is asked has its footer read by load."""
    started = time.perf_counter()
    df = wd.load(datasets.parquet, columns=columns, client=cpu_cluster)
    manifest = wd.manifest_of(df)
    assert not manifest.resolved()  # nothing counted yet: no footer read in the background
    df.compute()
    settled(manifest.load_id, files=3)
    counted = iostats.footer_rows(manifest.load_id)
    assert sorted(Path(p).name for p in counted) == [f"part-{i}.parquet" for i in range(3)]
    footers = [
        r
        for r in iostats.recent_reads()
        if r["load_id"] == manifest.load_id and r.get("rows") is not None
    ]
    assert footers and all(r["worker"] for r in footers)  # reported by the workers
    assert [f.rows for f in manifest.files] == [30_000] * 3
    assert manifest.row_count == 90_000 and manifest.resolved()
    reads = plan_reads(manifest.load_id)
    assert {Path(p).name: n for p, n in reads.items()} == {"part-0.parquet": 1}  # load's own

    # asked before any worker read the files: load reads the other footers then, once
    early = wd.load(datasets.parquet, columns=columns, client=cpu_cluster)
    asked = wd.manifest_of(early)
    assert asked.row_count == 90_000
    reads = plan_reads(asked.load_id)
    assert sorted(Path(p).name for p in reads) == [f"part-{i}.parquet" for i in range(3)]
    assert set(reads.values()) == {1}
    print(f"two loads, one computed, manifests resolved in {time.perf_counter() - started:.2f} s")


def test_plan_snapshot_answers_only_what_it_knows(tmp_path: Path) -> None:
    from fsspec.implementations.local import LocalFileSystem

    from workbench.data.metering import MeteredFileSystem
    from workbench.data.planning import PlanSnapshot
    from workbench.data.storage import list_tree

    (tmp_path / "d" / "k=1").mkdir(parents=True)
    (tmp_path / "d" / "k=1" / "a.bin").write_bytes(b"0123456789")
    (tmp_path / "d" / "_SUCCESS").write_text("")
    (tmp_path / "other.bin").write_bytes(b"xyz")
    raw = LocalFileSystem()
    listing = list_tree(raw, str(tmp_path / "d"))
    assert [Path(i["name"]).name for i in listing.files] == ["a.bin"]  # _SUCCESS is hidden
    fs = MeteredFileSystem(fs=raw, load_id="plan-test")
    root = str(tmp_path / "d")
    fs.plan = PlanSnapshot(listing.root, listing.found, {f"{root}/k=1/a.bin": (6, b"6789")})
    # answers match the store's for what the listing covers
    for path in (root, f"{root}/k=1", f"{root}/k=1/a.bin", f"{root}/_SUCCESS"):
        assert fs.isdir(path) == raw.isdir(path) and fs.isfile(path) == raw.isfile(path)
        assert fs.info(path)["type"] == raw.info(path)["type"]
    assert not fs.exists(f"{root}/_metadata") and not fs.isdir(f"{root}/nope")
    assert fs.find(root) == raw.find(root)
    assert (
        fs.find(root, withdirs=True, detail=True).keys()
        == raw.find(root, withdirs=True, detail=True).keys()
    )
    assert fs.plan.served >= 10
    served = fs.plan.served
    # outside the root, or a depth-limited find: asked of the store
    assert fs.exists(str(tmp_path / "other.bin")) and fs.find(root, maxdepth=1) == raw.find(
        root, maxdepth=1
    )
    assert fs.plan.served == served
    # the known tail is served from memory; a read before it opens the real (metered) file
    with fs.open(f"{root}/k=1/a.bin", "rb") as f:
        f.seek(-4, 2)
        assert f.read() == b"6789" and f.tell() == 10
        assert f._real is None  # nothing opened yet: nothing read from storage
        f.seek(2)
        assert f.read(6) == b"234567" and f._real is not None
    assert [r["bytes"] for r in iostats.recent_reads() if r["load_id"] == "plan-test"] == [6]
    fs.plan = None  # without a snapshot every call goes to the store
    assert fs.open(f"{root}/k=1/a.bin", "rb").read() == b"0123456789"


def test_listener_sees_loads_and_reads(datasets: LocalDatasets) -> None:
    events: list[dict[str, Any]] = []
    listener = iostats.add_listener(events.append)
    try:
        df = wd.load(datasets.csv, format="csv", backend="pandas")
        df.compute(scheduler="sync")  # in this process: no cluster involved
    finally:
        iostats.remove_listener(listener)
    load_id = wd.manifest_of(df).load_id
    kinds = [e["type"] for e in events if e.get("load_id") == load_id]
    assert kinds[0] == "load" and kinds.count("read") >= 3
    stats = iostats.get(load_id)
    assert stats["files_read"] == 3 and stats["workers"] == []
    totals = iostats.totals()
    assert totals["bytes_read"] >= stats["bytes_read"] and totals["loads"] >= 1


def test_footer_rows_only_from_a_whole_parquet_footer(
    tmp_path: Path, datasets: LocalDatasets
) -> None:
    from fsspec.implementations.local import LocalFileSystem

    from workbench.data.metering import MeteredFileSystem, parquet_footer_rows

    data = (datasets.parquet / "part-0.parquet").read_bytes()
    footer = int.from_bytes(data[-8:-4], "little") + 8
    assert parquet_footer_rows(data) == 30_000
    assert parquet_footer_rows(memoryview(data)[-footer:]) == 30_000  # just the footer
    assert parquet_footer_rows(data[-footer + 1 :]) is None  # part of it
    assert parquet_footer_rows(data[:-1]) is None  # no magic bytes at the end
    fake = b"x" * 64 + (40).to_bytes(4, "little") + b"PAR1"  # looks like one, is not
    assert parquet_footer_rows(fake) is None
    # reads of a Parquet load carry the count; others' (and a plain load's) do not
    path = str(datasets.parquet / "part-0.parquet")
    for check, want in (("parquet", 30_000), (None, None)):
        fs = MeteredFileSystem(fs=LocalFileSystem(), load_id=f"rows-{check}", check_footer=check)
        fs.cat_ranges([path, path], [0, len(data) - footer], [4, len(data)])
        fs.cat_file(path, start=len(data) - 70_000)
        with fs.open(path, "rb") as f:
            f.seek(-footer, 2)
            f.read()
        rows = [r.get("rows") for r in iostats.recent_reads() if r["load_id"] == f"rows-{check}"]
        assert rows == [want] * 3
        assert iostats.footer_rows(f"rows-{check}") == (
            {} if want is None else {fs.fs.unstrip_protocol(path): want}
        )


def test_metering_counts_exact_bytes(tmp_path: Path) -> None:
    import pickle

    from fsspec.implementations.local import LocalFileSystem

    from workbench.data.metering import MeteredFileSystem

    path = tmp_path / "blob.bin"
    path.write_bytes(bytes(range(256)) * 400)  # 102400 bytes
    fs = MeteredFileSystem(fs=LocalFileSystem(), load_id="meter-test")
    with fs.open(str(path), "rb") as f:
        assert len(f.read(1000)) == 1000
        f.seek(50_000)
        f.read(24)
    assert fs.cat_ranges([str(path)] * 2, [0, 100], [10, 110]) == [
        bytes(range(10)),
        bytes(range(100, 110)),
    ]
    text = fs.open(str(path).replace("blob.bin", "lines.txt"), "wb")
    text.write(b"a\nbb\nccc\n")
    text.close()
    with fs.open(str(tmp_path / "lines.txt"), "rt") as t:
        assert t.read() == "a\nbb\nccc\n"
    records = [r for r in iostats.recent_reads() if r["load_id"] == "meter-test"]
    assert [r["bytes"] for r in records] == [1024, 20, 9]
    clone = pickle.loads(pickle.dumps(fs))  # travels to workers with what it wraps
    assert clone == fs and clone.load_id == "meter-test" and clone.ls(str(tmp_path))


def test_throughput_counts_busy_time_not_idle_gaps() -> None:
    stats = iostats.LoadStats("x", "src", "parquet", "file", started=0.0)
    for start, end in [(10, 12), (11, 13), (20, 21), (5, 6), (12.5, 14)]:
        stats.add_interval(start, end)
    assert stats._busy == [[5, 6], [10, 14], [20, 21]]
    assert stats.busy_seconds == 6
    stats.bytes_read, stats.plan_bytes_read = 13_000_000, 1_000_000
    assert stats.throughput_mb_s == 2.0


# -- bad input ----------------------------------------------------------------------------
def test_unknown_format(datasets: LocalDatasets) -> None:
    with pytest.raises(DataFormatError, match=r"unknown format 'xlsx'; supported: auto, parquet"):
        wd.load(datasets.parquet, format="xlsx")


def test_format_cannot_be_told_or_is_mixed(tmp_path: Path, datasets: LocalDatasets) -> None:
    (tmp_path / "part-0").write_bytes((datasets.parquet / "part-0.parquet").read_bytes())
    with pytest.raises(DataFormatError, match=r"cannot tell the format .* 'part-0'.*format="):
        wd.load(tmp_path)
    (tmp_path / "part-0").unlink()
    (tmp_path / "a.csv").write_text("x\n1\n")
    (tmp_path / "b.parquet").write_bytes((datasets.parquet / "part-0.parquet").read_bytes())
    with pytest.raises(DataFormatError, match="mixes formats"):
        wd.load(tmp_path)
    assert len(wd.load(tmp_path / "*.csv").compute(scheduler="sync")) == 1


def test_missing_file_name_is_not_mistaken_for_a_dataset(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from workbench.errors import UnknownDatasetError

    monkeypatch.chdir(tmp_path)
    with pytest.raises(DataNotFoundError, match=r"no such file or directory: .*trips\.parquet"):
        wd.load("trips.parquet")
    with pytest.raises(UnknownDatasetError, match="no file or directory named 'trips' either"):
        wd.load("trips")


def test_missing_path(tmp_path: Path) -> None:
    with pytest.raises(DataNotFoundError, match=r"no such file or directory: .*nothing-here"):
        wd.load(tmp_path / "nothing-here.parquet")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataNotFoundError, match="holds no data files"):
        wd.load(tmp_path / "empty")
    failed = iostats.loads()[-1]  # dashboards see the failed load and why
    assert failed["error"].startswith("DataNotFoundError") and failed["files_read"] == 0


def test_corrupt_parquet_is_named(cpu_cluster, tmp_path: Path, datasets: LocalDatasets) -> None:
    good = (datasets.parquet / "part-0.parquet").read_bytes()
    (tmp_path / "a.parquet").write_bytes(good)
    (tmp_path / "b.parquet").write_bytes(good[: len(good) // 2])  # truncated upload
    bad = r"b\.parquet is not a valid Parquet file \(no Parquet footer"
    # load reads the first footer before it returns, the others in the background: the
    # manifest's row fields wait for them and raise the damaged file's error, every time
    df, manifest = wd.load(tmp_path, client=cpu_cluster, return_manifest=True)
    for _ in range(2):
        with pytest.raises(CorruptDataError, match=bad):
            manifest.row_count  # noqa: B018
    with pytest.raises(CorruptDataError, match=bad):
        manifest.to_json()
    assert not manifest.resolved()
    assert iostats.get(manifest.load_id)["error"].startswith("CorruptDataError")
    # computing the frame names the file too: on the cluster's workers, and in this process
    with pytest.raises(CorruptDataError, match=bad):
        df.compute()
    with pytest.raises(CorruptDataError, match=bad):
        wd.load(tmp_path, validate=False).compute(scheduler="sync")
    # a first file that is not Parquet fails load itself
    (tmp_path / "a.parquet").unlink()
    with pytest.raises(CorruptDataError, match=bad):
        wd.load(tmp_path)


def test_corrupt_csv_and_json(tmp_path: Path) -> None:
    (tmp_path / "bad.csv").write_bytes(b"\x00\xff\xfe" * 1000 + b"\n\x81\x82,\x00\n")
    with pytest.raises(CorruptDataError, match=r"cannot read .* as csv .*bad\.csv"):
        wd.load(tmp_path / "bad.csv")
    (tmp_path / "bad.jsonl").write_text('{"a": 1}\n{"a": \n')
    with pytest.raises(CorruptDataError, match=r"as json"):
        wd.load(tmp_path / "bad.jsonl")


def test_corrupt_orc_is_named(tmp_path: Path) -> None:
    (tmp_path / "x.orc").write_bytes(b"ORC" + b"\x00" * 100)
    with pytest.raises(CorruptDataError, match=r"x\.orc is not a valid ORC file"):
        wd.load(tmp_path)


def test_unknown_columns_and_bad_filters(datasets: LocalDatasets) -> None:
    with pytest.raises(DataFormatError, match=r"column\(s\) 'nope' not in .* its columns are: id"):
        wd.load(datasets.parquet, columns=["id", "nope"])
    with pytest.raises(DataFormatError, match=r"filter column\(s\) 'nope'"):
        wd.load(datasets.csv, filters=[("nope", "==", 1)])
    with pytest.raises(DataFormatError, match="unknown operator 'like'"):
        wd.load(datasets.parquet, filters=[("id", "like", 1)])
    with pytest.raises(DataFormatError, match="filters must be a list"):
        wd.load(datasets.parquet, filters="id > 3")


def test_literal_secrets_are_refused_and_references_resolved(
    datasets: LocalDatasets, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(CredentialError, match=r"'secret' look\(s\) like a literal credential"):
        wd.load("s3://bucket/x.parquet", storage_options={"key": "AKIA", "secret": "hunter2"})
    with pytest.raises(CredentialError, match=r"storage option 'secret'.*WB_NOT_SET is not set"):
        wd.load(
            "s3://bucket/x.parquet",
            storage_options={"secret": "env:WB_NOT_SET", "endpoint_url": "http://127.0.0.1:9"},
        )


def test_resolved_secrets_never_show_in_reprs(monkeypatch: pytest.MonkeyPatch) -> None:
    from workbench.data.storage import redact_storage_options, resolve_storage_options

    monkeypatch.setenv("WB_SECRET", "s3cr3t-value")
    opts = {"key": "env:WB_SECRET", "client_kwargs": {"region_name": "x"}, "anon": False}
    resolved = resolve_storage_options(opts)
    assert resolved["key"] == "s3cr3t-value" and isinstance(resolved["key"], str)
    assert "s3cr3t-value" not in repr(resolved) and "<secret sha256:" in repr(resolved)
    assert redact_storage_options(opts) == opts  # references are kept as written
    literal = {"key": "AKIA123", "token": "anon", "connection_string": "AccountKey=abc"}
    assert redact_storage_options(literal) == {
        "key": "<redacted>",
        "token": "anon",
        "connection_string": "<redacted>",
    }


def test_unknown_protocol() -> None:
    from workbench.errors import DataError

    with pytest.raises(DataError, match="unknown storage protocol 'nosuch'"):
        wd.load("nosuch://bucket/data.parquet")


def test_cudf_backend_needs_dask_cudf(datasets: LocalDatasets) -> None:
    import importlib.util

    if importlib.util.find_spec("dask_cudf") is not None:
        pytest.skip("dask_cudf is installed here")
    with pytest.raises(
        StorageDependencyError, match=r"backend='cudf' needs dask-cudf.*workbench\[gpu\]"
    ):
        wd.load(datasets.parquet, backend="cudf")


@pytest.mark.gpu
def test_gpu_cluster_loads_cudf_equal_to_pandas(datasets: LocalDatasets) -> None:
    """On a GPU cluster ``load`` gives cuDF partitions, holding what pandas reads from the
    same files."""
    cudf = pytest.importorskip(
        "cudf", reason="cuDF loading needs cuDF: pip install 'workbench[gpu]'"
    )
    import workbench

    with workbench.launch("local", n_workers=1, dashboard_address=":0", wait=1) as handle:
        df, manifest = wd.load(
            datasets.parquet, columns=["id", "value"], client=handle, return_manifest=True
        )
        assert manifest.dataframe_backend == "cudf", manifest.backend_reason
        part = df.partitions[0].compute()
        assert isinstance(part, cudf.DataFrame)
        on_gpu = df.compute().to_pandas()
        on_cpu = wd.load(datasets.parquet, columns=["id", "value"], backend="pandas").compute()
    expected = datasets.expected[["id", "value"]]  # type: ignore[index]
    for got in (on_gpu, on_cpu):
        got = got.sort_values("id").reset_index(drop=True)
        pd.testing.assert_frame_equal(
            got, expected.sort_values("id").reset_index(drop=True), check_dtype=False
        )
