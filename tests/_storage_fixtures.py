"""Real object-storage servers for the data tests, started on 127.0.0.1 and stopped by PID.

* ``s3_server``: moto's S3 server over HTTP with IAM authentication switched on
  (``INITIAL_NO_AUTH_ACTION_COUNT``): the fixture creates a user and key with the first
  unauthenticated calls, after which wrong keys are refused as by real S3.
* ``azurite``: Azurite's Blob service (installed by scripts/setup/30-storage.sh), which
  checks shared-key signatures.
* ``gcs_server``: gcp-storage-emulator (anonymous access only).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
AZURITE = ROOT / ".cache" / "node" / "node_modules" / ".bin" / "azurite-blob"
AZURITE_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, proc: subprocess.Popen[bytes], what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with status {proc.returncode} before listening")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{what} did not listen on port {port} within {timeout}s")


def stop(proc: subprocess.Popen[bytes]) -> None:
    """Stop a server we started, by its PID (its whole process group)."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


def _start(args: list[str], env: dict[str, str], port: int, what: str) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        args,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        wait_for_port(port, proc, what)
    except BaseException:
        stop(proc)
        raise
    return proc


@dataclass
class S3Server:
    endpoint: str
    key: str
    secret: str
    pid: int
    buckets: set[str] = field(default_factory=set)

    #: Environment variables the tests put the credentials in (references, never literals).
    KEY_VAR = "WB_TEST_S3_KEY"
    SECRET_VAR = "WB_TEST_S3_SECRET"

    def storage_options(self) -> dict[str, str]:
        return {
            "endpoint_url": self.endpoint,
            "key": f"env:{self.KEY_VAR}",
            "secret": f"env:{self.SECRET_VAR}",
        }

    def fs(self):  # type: ignore[no-untyped-def]
        import s3fs

        return s3fs.S3FileSystem(
            key=self.key, secret=self.secret, endpoint_url=self.endpoint, skip_instance_cache=True
        )

    def create_bucket(self, name: str) -> None:
        if name not in self.buckets:
            self.fs().mkdir(name)
            self.buckets.add(name)


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    import boto3

    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    # The first 3 requests are unauthenticated: create a user, its key and its policy.
    env = {**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": "3"}
    proc = _start(
        [str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)], env, port, "moto_server"
    )
    try:
        iam = boto3.client(
            "iam",
            endpoint_url=endpoint,
            aws_access_key_id="bootstrap",
            aws_secret_access_key="bootstrap",
            region_name="us-east-1",
        )
        iam.create_user(UserName="workbench-tests")
        key = iam.create_access_key(UserName="workbench-tests")["AccessKey"]
        iam.put_user_policy(
            UserName="workbench-tests",
            PolicyName="all",
            PolicyDocument=json.dumps(
                {
                    "Version": "2012-10-17",
                    "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}],
                }
            ),
        )
        yield S3Server(endpoint, key["AccessKeyId"], key["SecretAccessKey"], proc.pid)
    finally:
        stop(proc)


@pytest.fixture
def s3(s3_server: S3Server, monkeypatch: pytest.MonkeyPatch) -> S3Server:
    """The S3 server, with its credentials in the environment variables tests reference."""
    monkeypatch.setenv(S3Server.KEY_VAR, s3_server.key)
    monkeypatch.setenv(S3Server.SECRET_VAR, s3_server.secret)
    return s3_server


@dataclass
class AzuriteServer:
    port: int
    pid: int
    containers: set[str] = field(default_factory=set)

    CONNECTION_VAR = "WB_TEST_AZURE_CONNECTION"
    ACCOUNT = "devstoreaccount1"

    def connection_string(self, key: str = AZURITE_KEY) -> str:
        return (
            f"DefaultEndpointsProtocol=http;AccountName={self.ACCOUNT};AccountKey={key};"
            f"BlobEndpoint=http://127.0.0.1:{self.port}/{self.ACCOUNT};"
        )

    def storage_options(self) -> dict[str, str]:
        return {"connection_string": f"env:{self.CONNECTION_VAR}"}

    def fs(self):  # type: ignore[no-untyped-def]
        import adlfs

        return adlfs.AzureBlobFileSystem(
            connection_string=self.connection_string(), skip_instance_cache=True
        )

    def put(self, local: Path, remote: str) -> None:
        """Upload with the Azure SDK (adlfs's put sends large raw bodies through aiohttp,
        which warns)."""
        from azure.storage.blob import BlobServiceClient

        container, _, blob = remote.partition("/")
        service = BlobServiceClient.from_connection_string(self.connection_string())
        with open(local, "rb") as f:
            service.get_blob_client(container, blob).upload_blob(f, overwrite=True)

    def create_container(self, name: str) -> None:
        if name not in self.containers:
            from azure.storage.blob import BlobServiceClient

            BlobServiceClient.from_connection_string(self.connection_string()).create_container(
                name
            )
            self.containers.add(name)


@pytest.fixture(scope="session")
def azurite_server() -> Iterator[AzuriteServer]:
    if not AZURITE.exists():
        pytest.fail(f"Azurite is not installed at {AZURITE}: run `make system-deps`")
    if shutil.which("node") is None:
        pytest.fail("node is not installed: run `make system-deps`")
    port = free_port()
    args = [
        str(AZURITE),
        "--blobHost",
        "127.0.0.1",
        "--blobPort",
        str(port),
        "--inMemoryPersistence",
        "--skipApiVersionCheck",
        "--loose",
        "--disableTelemetry",
        "--silent",
    ]
    proc = _start(args, dict(os.environ), port, "azurite-blob")
    try:
        yield AzuriteServer(port, proc.pid)
    finally:
        stop(proc)


@pytest.fixture
def azurite(azurite_server: AzuriteServer, monkeypatch: pytest.MonkeyPatch) -> AzuriteServer:
    monkeypatch.setenv(AzuriteServer.CONNECTION_VAR, azurite_server.connection_string())
    return azurite_server


@dataclass
class GCSServer:
    endpoint: str
    bucket: str
    pid: int

    def storage_options(self) -> dict[str, str]:
        return {"endpoint_url": self.endpoint, "token": "anon", "project": "test"}


@pytest.fixture(scope="session")
def gcs_server() -> Iterator[GCSServer]:
    port = free_port()
    bucket = "wb-gcs"
    env = {**os.environ, "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT": "false"}
    args = [
        str(BIN / "gcp-storage-emulator"),
        "start",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--in-memory",
        "--default-bucket",
        bucket,
        "-q",
    ]
    proc = _start(args, env, port, "gcp-storage-emulator")
    try:
        yield GCSServer(f"http://127.0.0.1:{port}", bucket, proc.pid)
    finally:
        stop(proc)


@pytest.fixture(autouse=True)
def _data_isolation(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test: no team catalog from the environment, a private data cache."""
    monkeypatch.delenv("WORKBENCH_CATALOG", raising=False)
    monkeypatch.setenv("WORKBENCH_DATA_CACHE", str(tmp_path / "data-cache"))
    monkeypatch.setenv("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")


# -- datasets the tests write -------------------------------------------------------------
ROWS_PER_FILE = 30_000
ROW_GROUP = 5_000
N_FILES = 3


def make_frame(start: int, n: int, seed: int):  # type: ignore[no-untyped-def]
    """Deterministic rows: a sorted id, a float, a wide random text column, a group."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    letters = np.frombuffer(b"abcdefghijklmnopqrstuvwxyz0123456789", dtype="S1")
    text = rng.choice(letters, size=(n, 40)).view("S40").ravel().astype(str)
    ids = np.arange(start, start + n, dtype="int64")
    return pd.DataFrame(
        {"id": ids, "value": rng.random(n), "text": text, "group": (ids % 5).astype("int64")}
    )


@dataclass
class LocalDatasets:
    root: Path
    expected: object  # the pandas DataFrame every multi-file dataset holds

    @property
    def parquet(self) -> Path:
        return self.root / "parquet"

    @property
    def csv(self) -> Path:
        return self.root / "csv"

    @property
    def jsonl(self) -> Path:
        return self.root / "jsonl"

    @property
    def orc(self) -> Path:
        return self.root / "orc"

    @property
    def hive(self) -> Path:
        return self.root / "hive"


def write_datasets(root: Path) -> LocalDatasets:
    """Multi-file Parquet (row groups of 5000), CSV, JSON lines and ORC datasets with the
    same rows, plus a hive-partitioned Parquet dataset (year=2023, year=2024)."""
    import pandas as pd
    import pyarrow as pa
    import pyarrow.orc as orc
    import pyarrow.parquet as pq

    frames = [make_frame(i * ROWS_PER_FILE, ROWS_PER_FILE, seed=i) for i in range(N_FILES)]
    for sub in ("parquet", "csv", "jsonl", "orc"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    (root / "parquet" / "_SUCCESS").write_text("")  # readers must skip it
    for i, frame in enumerate(frames):
        table = pa.Table.from_pandas(frame, preserve_index=False)
        pq.write_table(table, root / "parquet" / f"part-{i}.parquet", row_group_size=ROW_GROUP)
        small = frame.iloc[:2000]
        small.to_csv(root / "csv" / f"part-{i}.csv", index=False)
        small.to_json(root / "jsonl" / f"part-{i}.jsonl", orient="records", lines=True)
        orc.write_table(
            pa.Table.from_pandas(small, preserve_index=False), str(root / "orc" / f"part-{i}.orc")
        )
    for year, frame in zip((2023, 2024), frames[:2], strict=False):
        d = root / "hive" / f"year={year}"
        d.mkdir(parents=True, exist_ok=True)
        pq.write_table(
            pa.Table.from_pandas(frame.iloc[:1000], preserve_index=False), d / "part-0.parquet"
        )
    return LocalDatasets(root, pd.concat(frames, ignore_index=True))


@pytest.fixture(scope="session")
def datasets(tmp_path_factory: pytest.TempPathFactory) -> LocalDatasets:
    return write_datasets(tmp_path_factory.mktemp("datasets"))


@pytest.fixture(scope="module")
def cpu_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """A real two-worker CPU Dask cluster launched through workbench (one per module)."""
    import workbench

    state = tmp_path_factory.mktemp("cluster-state")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("WORKBENCH_STATE_DIR", str(state))
        mp.setenv("WORKBENCH_CONFIG_DIR", str(state / "config"))
        handle = workbench.launch(
            "local-cpu",
            wait=2,
            n_workers=2,
            threads_per_worker=1,
            memory_limit="2GiB",
            dashboard_address=":0",
        )
        try:
            yield handle
        finally:
            handle.close()
