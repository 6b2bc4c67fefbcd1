"""Where MLflow runs go (env, config.yaml, default SQLite store) and what a run holds."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from workbench.training import InvalidDataError, TrainingError
from workbench.training.tracking import Tracker, flatten_params, lineage_dict, tracking_uri


def test_default_store_is_sqlite_under_the_state_dir(workbench_home: Path, monkeypatch) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert tracking_uri() == f"sqlite:///{workbench_home / 'state' / 'mlflow' / 'mlflow.db'}"


def test_config_yaml_then_environment(workbench_home: Path, monkeypatch) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    (workbench_home / "config" / "config.yaml").write_text(
        "mlflow_tracking_uri: http://mlflow.example:5000\n"
    )
    assert tracking_uri() == "http://mlflow.example:5000"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:////tmp/elsewhere.db")
    assert tracking_uri() == "sqlite:////tmp/elsewhere.db"
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    (workbench_home / "config" / "config.yaml").write_text("mlflow_tracking_uri: 42\n")
    with pytest.raises(TrainingError, match="'mlflow_tracking_uri' must be a URI string"):
        tracking_uri()


class Manifest:
    def to_dict(self) -> dict[str, Any]:
        return {"uri": "s3://bucket/flights/", "fingerprint": "f00d", "files": [{"uri": "a"}]}


def test_lineage_from_dict_or_manifest_object() -> None:
    assert lineage_dict(Manifest())["fingerprint"] == "f00d"
    assert lineage_dict({"a": 1}) == {"a": 1}
    assert lineage_dict(None) is None
    with pytest.raises(InvalidDataError, match="dict or an object with to_dict"):
        lineage_dict(["not", "a", "dict"])


def test_flatten_params() -> None:
    flat = flatten_params({"a": 1, "opt": {"lr": 0.1, "betas": [0.9, 0.99]}, "s": "x" * 9000})
    assert flat["a"] == "1"
    assert flat["opt.lr"] == "0.1"
    assert flat["opt.betas"] == "[0.9, 0.99]"
    assert len(flat["s"]) == 6000


def test_tracker_writes_to_the_configured_store(
    workbench_home: Path, _mlflow_template: Path, tmp_path: Path, monkeypatch
) -> None:
    """A store named in config.yaml gets the run; artifacts land next to its database."""
    from mlflow import MlflowClient

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    db = tmp_path / "team" / "mlflow.db"
    db.parent.mkdir()
    shutil.copy(_mlflow_template, db)
    (workbench_home / "config" / "config.yaml").write_text(f"mlflow_tracking_uri: sqlite:///{db}\n")
    tracker = Tracker("team-experiment", run_name="r1", flush_interval=3600)
    tracker.start(params={"lr": 0.01, "layers": [64, 10]}, tags={"who": "tests"})
    tracker.on_step(_event(1, 0.9))
    tracker.on_step(_event(2, 0.5))
    tracker.log_lineage(Manifest())
    tracker.finish()
    client = MlflowClient(tracking_uri=f"sqlite:///{db}")
    run = client.get_run(tracker.run_id)
    assert run.data.params == {"lr": "0.01", "layers": "[64, 10]"}
    assert run.data.tags["who"] == "tests"
    assert run.data.tags["workbench.data.uri"] == "s3://bucket/flights/"
    assert [(m.step, m.value) for m in client.get_metric_history(tracker.run_id, "train-loss")] == [
        (1, 0.9),
        (2, 0.5),
    ]
    assert run.info.artifact_uri.startswith((db.parent / "artifacts").as_uri())
    saved = Path(client.download_artifacts(tracker.run_id, "lineage.json", str(tmp_path)))
    assert json.loads(saved.read_text())["fingerprint"] == "f00d"


def _event(step: int, loss: float) -> Any:
    from workbench.training import ProgressEvent

    return ProgressEvent(kind="step", job="torch", step=step, total=2, metrics={"train-loss": loss})


@pytest.fixture
def mlflow_server(tmp_path: Path, _mlflow_template: Path) -> Any:
    """A real MLflow tracking server (uvicorn) on a free port, serving artifacts."""
    import socket
    import subprocess
    import sys
    import time
    import urllib.request

    db = tmp_path / "server.db"
    shutil.copy(_mlflow_template, db)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = (tmp_path / "server.log").open("w")
    proc = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "mlflow"),
            "server",
            "--backend-store-uri",
            f"sqlite:///{db}",
            "--artifacts-destination",
            str(tmp_path / "artifacts"),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                log.flush()
                pytest.fail(
                    f"mlflow server did not start:\n{(tmp_path / 'server.log').read_text()}"
                )
            time.sleep(0.3)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


@pytest.mark.slow
def test_training_logs_to_a_server_named_in_config(
    train_cluster, breast_cancer, workbench_home: Path, mlflow_server: str, monkeypatch
) -> None:
    from mlflow import MlflowClient

    from workbench.training import train_xgboost

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    (workbench_home / "config" / "config.yaml").write_text(
        f"mlflow_tracking_uri: {mlflow_server}\n"
    )
    model = train_xgboost(
        train_cluster,
        breast_cancer,
        "target",
        params={"objective": "binary:logistic", "max_depth": 2},
        num_boost_round=5,
        lineage={"uri": "sklearn://breast_cancer"},
        progress=None,
        experiment="server-tests",
    )
    assert model.tracking_uri == mlflow_server
    assert model.tracking_error is None
    client = MlflowClient(tracking_uri=mlflow_server)
    run = client.get_run(model.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params["max_depth"] == "2"
    assert {a.path for a in client.list_artifacts(model.run_id)} >= {"model", "lineage.json"}
    assert not (workbench_home / "state" / "mlflow").exists()  # nothing went to the local store
