"""workbench.data.load from object storage served by real servers the tests start:
moto's S3 server (with IAM authentication on), Azurite (Azure Blob) and the GCS emulator,
read through a real Dask cluster. Values, pruning, filters, lineage, caching, and the
errors for a missing bucket/container, a missing key, bad credentials, an unknown format
and a corrupt file.
"""

from __future__ import annotations

import time
from typing import Any

import pandas as pd
import pytest

import workbench.data as wd
from workbench.data import iostats
from workbench.errors import (
    CorruptDataError,
    DataFormatError,
    DataNotFoundError,
    StorageAccessError,
)

from ._storage_fixtures import (
    AzuriteServer,
    GCSServer,
    LocalDatasets,
    S3Server,
)

pytestmark = [pytest.mark.s3, pytest.mark.timeout(300)]

BUCKET = "wb-data"


def read_phase(load_id: str, files: int, timeout: float = 20.0) -> list[dict[str, Any]]:
    """Worker read records of a load, once ``files`` distinct files have reported."""
    deadline = time.monotonic() + timeout
    while True:
        records = [
            r for r in iostats.recent_reads() if r["load_id"] == load_id and r["phase"] == "read"
        ]
        if len({r["path"] for r in records}) >= files or time.monotonic() > deadline:
            time.sleep(0.2)
            return [
                r
                for r in iostats.recent_reads()
                if r["load_id"] == load_id and r["phase"] == "read"
            ]
        time.sleep(0.05)


def settled_reads(load_id: str, quiet: float = 0.5, timeout: float = 15.0) -> list[dict[str, Any]]:
    """Worker read records of a load once no new one has arrived for ``quiet`` seconds."""
    deadline = time.monotonic() + timeout
    seen, since = -1, time.monotonic()
    while time.monotonic() < deadline:
        records = [
            r for r in iostats.recent_reads() if r["load_id"] == load_id and r["phase"] == "read"
        ]
        if len(records) != seen:
            seen, since = len(records), time.monotonic()
        elif time.monotonic() - since >= quiet:
            break
        time.sleep(0.05)
    return records


def nbytes(records: list[dict[str, Any]]) -> int:
    return sum(r["bytes"] for r in records)


def same_ids_and_values(got: pd.DataFrame, want: pd.DataFrame) -> None:
    got = got.sort_values("id").reset_index(drop=True)
    want = want.sort_values("id").reset_index(drop=True)
    assert got["id"].tolist() == want["id"].tolist()
    for col in got.columns:
        if col != "id":
            assert got[col].tolist() == want[col].tolist(), col


def upload(put: Any, datasets: LocalDatasets, root: str) -> None:
    """``put(local_path, remote_path)`` the Parquet and CSV datasets and some bad files."""
    for local in sorted(datasets.parquet.glob("part-*.parquet")):
        put(local, f"{root}/parquet/{local.name}")
    for local in sorted(datasets.csv.glob("*.csv")):
        put(local, f"{root}/csv/{local.name}")
    good = (datasets.parquet / "part-0.parquet").read_bytes()
    odd = datasets.root / "odd"
    odd.mkdir(exist_ok=True)
    (odd / "a.parquet").write_bytes(good)
    (odd / "b.parquet").write_bytes(good[: len(good) // 3])  # a truncated upload
    (odd / "data.bin").write_bytes(good)
    put(odd / "a.parquet", f"{root}/corrupt/a.parquet")
    put(odd / "b.parquet", f"{root}/corrupt/b.parquet")
    put(odd / "data.bin", f"{root}/odd/data.bin")


# -- S3 -------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def s3_data(s3_server: S3Server, datasets: LocalDatasets) -> str:
    s3_server.create_bucket(BUCKET)
    fs = s3_server.fs()
    upload(lambda local, remote: fs.put(str(local), remote), datasets, f"{BUCKET}/trips")
    return f"s3://{BUCKET}/trips"


@pytest.mark.slow
def test_s3_parquet_values_pruning_filters_and_lineage(
    cpu_cluster, s3: S3Server, s3_data: str, datasets: LocalDatasets
) -> None:
    opts = s3.storage_options()
    df, manifest = wd.load(
        f"{s3_data}/parquet/", storage_options=opts, client=cpu_cluster, return_manifest=True
    )
    same_ids_and_values(df.compute(), datasets.expected)  # type: ignore[arg-type]
    full = nbytes(read_phase(manifest.load_id, files=3))

    # lineage: S3 ETags and sizes; credentials only as references
    assert [f.uri for f in manifest.files] == [
        f"{s3_data}/parquet/part-{i}.parquet" for i in range(3)
    ]
    assert all(f.etag and f.size and f.mtime for f in manifest.files)
    assert manifest.storage_options == opts
    text = manifest.to_json()
    assert s3.secret not in text and s3.key not in text and "env:WB_TEST_S3_SECRET" in text

    pruned = wd.load(
        f"{s3_data}/parquet/", columns=["id", "value"], storage_options=opts, client=cpu_cluster
    )
    same_ids_and_values(pruned.compute(), datasets.expected[["id", "value"]])  # type: ignore[index]
    assert nbytes(read_phase(wd.manifest_of(pruned).load_id, files=3)) < 0.45 * full

    filtered = wd.load(
        f"{s3_data}/parquet/",
        filters=[("id", ">=", 87_500)],
        storage_options=opts,
        client=cpu_cluster,
    )
    got = filtered.compute()
    assert sorted(got["id"].tolist()) == list(range(87_500, 90_000))
    assert nbytes(read_phase(wd.manifest_of(filtered).load_id, files=1)) < 0.25 * full


def test_s3_csv_through_cluster(
    cpu_cluster, s3: S3Server, s3_data: str, datasets: LocalDatasets
) -> None:
    df, manifest = wd.load(
        f"{s3_data}/csv/*.csv",
        columns=["id", "text"],
        filters=[("id", "<", 1000)],
        storage_options=s3.storage_options(),
        client=cpu_cluster,
        return_manifest=True,
    )
    assert manifest.format == "csv" and len(manifest.files) == 3
    exp = datasets.expected
    same_ids_and_values(df.compute(), exp[exp["id"] < 1000][["id", "text"]])  # type: ignore[index]
    # the resolved secret travels to the workers but never shows in a repr
    graph = repr(dict(df.__dask_graph__()))  # the tasks, with the filesystems they carry
    assert s3.secret not in graph and s3.secret not in repr(df.expr)
    records = read_phase(manifest.load_id, files=3)
    assert {r["worker"] for r in records} <= set(cpu_cluster.client.scheduler_info()["workers"])


def test_s3_cache_serves_the_second_read_locally(
    cpu_cluster, s3: S3Server, s3_data: str, workbench_home
) -> None:
    opts = s3.storage_options()
    first = wd.load(f"{s3_data}/parquet/", storage_options=opts, cache=True, client=cpu_cluster)
    total = int(first["value"].sum().compute() * 1000)
    # (dask's planning may already have copied the first file, in this process)
    assert nbytes(settled_reads(wd.manifest_of(first).load_id)) > 0

    second = wd.load(f"{s3_data}/parquet/", storage_options=opts, cache=True, client=cpu_cluster)
    assert int(second["value"].sum().compute() * 1000) == total
    assert nbytes(settled_reads(wd.manifest_of(second).load_id)) == 0
    assert wd.manifest_of(second).cache == str(workbench_home.parent / "data-cache")

    # CSV through the chained-URL path is cached too
    csv1 = wd.load(f"{s3_data}/csv/", storage_options=opts, cache=True, client=cpu_cluster)
    n = len(csv1)
    csv2 = wd.load(f"{s3_data}/csv/", storage_options=opts, cache=True, client=cpu_cluster)
    assert len(csv2) == n == 6000
    assert nbytes(settled_reads(wd.manifest_of(csv2).load_id)) == 0


def test_s3_environment_credentials(
    s3: S3Server, s3_data: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No credentials in storage options: s3fs finds them in the AWS_* variables. (Read in
    this process: environment credentials are each worker process's own environment.)"""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3.key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3.secret)
    df = wd.load(f"{s3_data}/csv/part-0.csv", storage_options={"endpoint_url": s3.endpoint})
    assert len(df.compute(scheduler="threads")) == 2000


def test_s3_planning_asks_the_store_once(
    s3: S3Server, s3_data: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """load lists the directory once and reads each footer once; dask's planning of the
    same frame (its listing, its two reads of the first footer) is answered from those."""
    import s3fs

    requests: list[str] = []
    call = s3fs.S3FileSystem._call_s3

    async def counted(self: Any, method: str, *args: Any, **kwargs: Any) -> Any:
        requests.append(method)
        return await call(self, method, *args, **kwargs)

    # a spy on the real client: every request still goes to the server
    monkeypatch.setattr(s3fs.S3FileSystem, "_call_s3", counted)
    df, manifest = wd.load(
        f"{s3_data}/parquet/", storage_options=s3.storage_options(), return_manifest=True
    )
    # before returning: the listing and the first footer, which dask's planning reused
    assert requests[:2] == ["list_objects_v2", "get_object"]
    # the other footers were read in the background; the manifest waits for them
    assert manifest.row_count == 90_000 and df.npartitions >= 3
    assert requests.count("list_objects_v2") == 1 and "head_object" not in requests
    assert requests.count("get_object") == len(manifest.files) == 3
    plan = [r for r in iostats.recent_reads() if r["load_id"] == manifest.load_id]
    assert len(plan) == 3 and {r["phase"] for r in plan} == {"plan"}


def test_s3_missing_bucket(s3: S3Server) -> None:
    with pytest.raises(DataNotFoundError, match=r"bucket 'no-such-bucket' does not exist at http"):
        wd.load("s3://no-such-bucket/trips/", storage_options=s3.storage_options())


def test_s3_missing_key(s3: S3Server, s3_data: str) -> None:
    with pytest.raises(
        DataNotFoundError, match=r"no such file or directory: s3://wb-data/trips/nope"
    ):
        wd.load(f"{s3_data}/nope.parquet", storage_options=s3.storage_options())


def test_s3_bad_credentials(s3: S3Server, s3_data: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(S3Server.SECRET_VAR, "not-the-secret")
    with pytest.raises(StorageAccessError, match=r"access denied .*'secret'=env:WB_TEST_S3_SECRET"):
        wd.load(f"{s3_data}/parquet/", storage_options=s3.storage_options())
    monkeypatch.setenv(S3Server.KEY_VAR, "AKIANOSUCHKEY")
    with pytest.raises(StorageAccessError, match="access denied"):
        wd.load(f"{s3_data}/parquet/", storage_options=s3.storage_options())


def test_s3_unknown_format(s3: S3Server, s3_data: str) -> None:
    with pytest.raises(DataFormatError, match="unknown format 'avro'"):
        wd.load(f"{s3_data}/parquet/", format="avro", storage_options=s3.storage_options())
    with pytest.raises(DataFormatError, match=r"cannot tell the format .*'data\.bin'"):
        wd.load(f"{s3_data}/odd/", storage_options=s3.storage_options())


def test_s3_corrupt_file(s3: S3Server, s3_data: str) -> None:
    bad = r"s3://wb-data/trips/corrupt/b\.parquet is not a valid"
    # found by the footer reads load leaves to the background: the manifest raises it, and
    # so does computing the frame (the damaged file named, not just pyarrow's message)
    df, manifest = wd.load(
        f"{s3_data}/corrupt/", storage_options=s3.storage_options(), return_manifest=True
    )
    with pytest.raises(CorruptDataError, match=bad):
        manifest.files  # noqa: B018
    with pytest.raises(CorruptDataError, match=bad):
        df.compute(scheduler="sync")


# -- Azure Blob (Azurite) -------------------------------------------------------------------
CONTAINER = "wb-data"


@pytest.fixture(scope="module")
def azure_data(azurite_server: AzuriteServer, datasets: LocalDatasets) -> str:
    azurite_server.create_container(CONTAINER)
    upload(azurite_server.put, datasets, f"{CONTAINER}/trips")
    return f"{CONTAINER}/trips"


@pytest.mark.parametrize("scheme", ["az", "abfs"])
def test_azure_parquet_and_csv_through_cluster(
    cpu_cluster, azurite: AzuriteServer, azure_data: str, datasets: LocalDatasets, scheme: str
) -> None:
    opts = azurite.storage_options()
    df, manifest = wd.load(
        f"{scheme}://{azure_data}/parquet/",
        columns=["id", "group"],
        filters=[("group", "==", 2)],
        storage_options=opts,
        client=cpu_cluster,
        return_manifest=True,
    )
    exp = datasets.expected
    same_ids_and_values(df.compute(), exp[exp["group"] == 2][["id", "group"]])  # type: ignore[index]
    assert all(f.etag and f.size for f in manifest.files)
    assert azurite.connection_string() not in manifest.to_json()
    assert read_phase(manifest.load_id, files=3)

    csv = wd.load(f"{scheme}://{azure_data}/csv/", storage_options=opts, client=cpu_cluster)
    assert len(csv) == 6000


def test_azure_environment_connection_string(
    azurite: AzuriteServer, azure_data: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", azurite.connection_string())
    df = wd.load(f"az://{azure_data}/csv/part-1.csv")
    assert len(df.compute(scheduler="threads")) == 2000


def test_azure_missing_container(azurite: AzuriteServer) -> None:
    with pytest.raises(DataNotFoundError, match="container 'no-such-container' does not exist"):
        wd.load("az://no-such-container/x/", storage_options=azurite.storage_options())


def test_azure_missing_blob(azurite: AzuriteServer, azure_data: str) -> None:
    with pytest.raises(DataNotFoundError, match=r"no such file or directory: az://wb-data/trips/x"):
        wd.load(f"az://{azure_data}/x.parquet", storage_options=azurite.storage_options())


def test_azure_bad_credentials(
    azurite: AzuriteServer, azure_data: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    wrong = azurite.connection_string(
        key="AAAA" + azurite.connection_string().split("AccountKey=")[1][4:88]
    )
    monkeypatch.setenv(AzuriteServer.CONNECTION_VAR, wrong)
    with pytest.raises(StorageAccessError, match=r"access denied .*connection_string"):
        wd.load(f"az://{azure_data}/parquet/", storage_options=azurite.storage_options())


def test_azure_unknown_format_and_corrupt_file(azurite: AzuriteServer, azure_data: str) -> None:
    opts = azurite.storage_options()
    with pytest.raises(DataFormatError, match="unknown format 'xls'"):
        wd.load(f"az://{azure_data}/parquet/", format="xls", storage_options=opts)
    _, manifest = wd.load(f"az://{azure_data}/corrupt/", storage_options=opts, return_manifest=True)
    with pytest.raises(
        CorruptDataError, match=r"az://wb-data/trips/corrupt/b\.parquet is not a valid"
    ):
        manifest.row_count  # noqa: B018


# -- Google Cloud Storage (emulator) --------------------------------------------------------
def test_gcs_parquet_roundtrip(
    cpu_cluster, gcs_server: GCSServer, datasets: LocalDatasets, tmp_path
) -> None:
    import gcsfs

    small = tmp_path / "part-0.parquet"  # under 1 MiB: aiohttp warns on larger raw bodies
    import pyarrow as pa
    import pyarrow.parquet as pq

    frame = datasets.expected.iloc[:5000]  # type: ignore[attr-defined]
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), small)
    fs = gcsfs.GCSFileSystem(**gcs_server.storage_options(), skip_instance_cache=True)
    fs.put(str(small), f"{gcs_server.bucket}/p/part-0.parquet")
    df, manifest = wd.load(
        f"gs://{gcs_server.bucket}/p/",
        columns=["id"],
        storage_options=gcs_server.storage_options(),
        client=cpu_cluster,
        return_manifest=True,
    )
    assert df["id"].sum().compute() == sum(range(5000))
    assert manifest.files[0].size and manifest.row_count == 5000
