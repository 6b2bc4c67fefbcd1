"""Distributed XGBoost on a real 2-worker Dask cluster, tracked in a real MLflow store."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from workbench.training import (
    Callback,
    InvalidDataError,
    NotTrainedError,
    ProgressEvent,
    TrainingError,
    UnknownNameError,
    XGBoostTrainer,
    train_xgboost,
)

PARAMS = {"objective": "binary:logistic", "max_depth": 3, "eta": 0.3, "seed": 7}
LINEAGE = {"uri": "sklearn://breast_cancer", "files": [], "fingerprint": "abc123", "rows": 569}


def split(df: Any) -> tuple[Any, Any]:
    return df.iloc[:450], df.iloc[450:]


class Recorder(Callback):
    def __init__(self) -> None:
        self.kinds: list[str] = []
        self.steps: list[int] = []
        self.ends: list[ProgressEvent] = []

    def on_start(self, event: ProgressEvent) -> None:
        self.kinds.append("start")

    def on_step(self, event: ProgressEvent) -> None:
        self.kinds.append("step")
        self.steps.append(event.step)
        assert event.metrics, "every round reports metrics"

    def on_end(self, event: ProgressEvent) -> None:
        self.kinds.append("end")
        self.ends.append(event)


def test_xgboost_trains_reports_and_tracks(train_cluster, breast_cancer, tracking_store) -> None:
    import mlflow.xgboost
    from mlflow import MlflowClient

    train, valid = split(breast_cancer)
    rec = Recorder()
    plain: list[ProgressEvent] = []
    model = train_xgboost(
        train_cluster,
        train,
        label="target",
        valid=valid,
        params={**PARAMS, "eval_metric": ["logloss", "error"]},
        num_boost_round=25,
        lineage=LINEAGE,
        callbacks=[rec, plain.append],
        progress=None,
        experiment="tests",
    )
    # trained on the cluster, on CPU workers, and it learned something
    assert model.train_params["device"] == "cpu"
    assert model.booster.num_boosted_rounds() == 25
    assert model.history["valid"]["error"][-1] < 0.1
    assert len(model.history["train"]["logloss"]) == 25
    pred = model.predict(valid, train_cluster)
    acc = ((train_cluster.compute(pred, sync=True) > 0.5) == valid["target"].to_numpy()).mean()
    assert acc > 0.9
    # progress: start, one step per round in order, end
    assert rec.kinds == ["start"] + ["step"] * 25 + ["end"]
    assert rec.steps == list(range(1, 26))
    assert rec.ends[0].status == "finished"
    assert [e.kind for e in plain][-1] == "end"
    step = next(e for e in plain if e.kind == "step")
    assert set(step.metrics) == {"train-logloss", "train-error", "valid-logloss", "valid-error"}
    # MLflow: the default SQLite store under the state directory
    assert model.tracking_uri == f"sqlite:///{tracking_store}"
    client = MlflowClient(tracking_uri=model.tracking_uri)
    run = client.get_run(model.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params["max_depth"] == "3"
    assert run.data.params["device"] == "cpu"
    assert run.data.tags["workbench.data.fingerprint"] == "abc123"
    history = client.get_metric_history(model.run_id, "valid-error")
    assert [m.step for m in history] == list(range(1, 26))
    assert history[-1].value == pytest.approx(model.history["valid"]["error"][-1])
    names = {a.path for a in client.list_artifacts(model.run_id)}
    assert {"model", "lineage.json"} <= names
    lineage_path = client.download_artifacts(model.run_id, "lineage.json")
    assert json.loads(Path(lineage_path).read_text()) == LINEAGE
    loaded = mlflow.xgboost.load_model(client.download_artifacts(model.run_id, "model"))
    import xgboost as xgb

    features = valid[model.features]
    np.testing.assert_allclose(
        loaded.predict(xgb.DMatrix(features)), model.booster.predict(xgb.DMatrix(features))
    )


def test_xgboost_is_raw_xgboost_dask_underneath(train_cluster, breast_cancer) -> None:
    """Same data, parameters and seed as a raw xgboost.dask run: the same model."""
    import dask.dataframe as dd
    import xgboost.dask as xgb_dask

    model = train_xgboost(
        train_cluster,
        breast_cancer,
        "target",
        params=PARAMS,
        num_boost_round=10,
        progress=None,
        tracking=False,
    )
    ddf = dd.from_pandas(breast_cancer, npartitions=2)
    features = [c for c in breast_cancer.columns if c != "target"]
    with train_cluster.as_current():  # xgboost.dask finds its client with get_client()
        dtrain = xgb_dask.DaskQuantileDMatrix(train_cluster, ddf[features], ddf["target"])
        raw = xgb_dask.train(
            train_cluster,
            {"tree_method": "hist", "device": "cpu", **PARAMS},
            dtrain,
            num_boost_round=10,
            evals=[(dtrain, "train")],
            verbose_eval=False,
        )
    X = breast_cancer[features].to_numpy()
    np.testing.assert_allclose(
        model.booster.inplace_predict(X), raw["booster"].inplace_predict(X), rtol=1e-5
    )
    assert model.history["train"] == {k: list(v) for k, v in raw["history"]["train"].items()}


def test_callback_returning_true_stops_training(train_cluster, breast_cancer) -> None:
    def stop_after_three(event: ProgressEvent) -> bool:
        return event.kind == "step" and event.step >= 3

    model = train_xgboost(
        train_cluster,
        breast_cancer,
        "target",
        params={**PARAMS, "max_depth": 2},
        num_boost_round=2000,
        callbacks=stop_after_three,
        progress=None,
        tracking=False,
    )
    rounds = model.booster.num_boosted_rounds()
    assert model.status == "stopped"
    assert 3 <= rounds < 2000
    assert len(model.history["train"]["logloss"]) == rounds


def test_interrupt_keeps_the_model_trained_so_far(
    train_cluster, breast_cancer, tracking_store
) -> None:
    from mlflow import MlflowClient

    def interrupt(event: ProgressEvent) -> None:
        if event.kind == "step" and event.step == 2:
            raise KeyboardInterrupt  # what Jupyter's "interrupt kernel" raises in the cell

    model = train_xgboost(
        train_cluster,
        breast_cancer,
        "target",
        params={**PARAMS, "max_depth": 2},
        num_boost_round=2000,
        callbacks=interrupt,
        progress=None,
    )
    assert model.status == "interrupted"
    assert 2 <= model.booster.num_boosted_rounds() < 2000
    run = MlflowClient(tracking_uri=model.tracking_uri).get_run(model.run_id)
    assert run.info.status == "KILLED"


def test_bad_input_is_reported_before_training(train_cluster, breast_cancer) -> None:
    kw: dict[str, Any] = {"progress": None, "tracking": False, "num_boost_round": 2}
    with pytest.raises(InvalidDataError, match=r"label column 'churn' is not in the data.*mean_"):
        train_xgboost(train_cluster, breast_cancer, "churn", **kw)
    with pytest.raises(InvalidDataError, match="empty"):
        train_xgboost(train_cluster, breast_cancer.iloc[:0], "target", **kw)
    with pytest.raises(UnknownNameError, match=r"unknown metric 'accurcy'.*logloss"):
        train_xgboost(
            train_cluster, breast_cancer, "target", params={"eval_metric": "accurcy"}, **kw
        )
    text = breast_cancer.assign(city="Paris")
    with pytest.raises(InvalidDataError, match=r"unsupported type: city"):
        train_xgboost(train_cluster, text, "target", **kw)
    holes = breast_cancer.astype({"target": "float64"})
    holes.loc[3, "target"] = np.nan
    with pytest.raises(InvalidDataError, match="1 of 569 rows have no label"):
        train_xgboost(train_cluster, holes, "target", **kw)
    with pytest.raises(InvalidDataError, match=r"feature column\(s\) 'nope'"):
        train_xgboost(train_cluster, breast_cancer, "target", features=["nope"], **kw)
    with pytest.raises(TrainingError, match="needs a validation set"):
        train_xgboost(train_cluster, breast_cancer, "target", early_stopping_rounds=3, **kw)
    with pytest.raises(InvalidDataError, match="lineage is not JSON-serialisable"):
        train_xgboost(train_cluster, breast_cancer, "target", lineage={"f": object()}, **kw)
    with pytest.raises(TrainingError, match=r"XGBoost training failed.*objective"):
        train_xgboost(
            train_cluster, breast_cancer, "target", params={"objective": "reg:nonsense"}, **kw
        )
    with pytest.raises(TrainingError, match="device='cuda' but the cluster's workers have no GPU"):
        train_xgboost(train_cluster, breast_cancer, "target", device="cuda", **kw)
    fresh = XGBoostTrainer(PARAMS)
    with pytest.raises(NotTrainedError, match="not been trained"):
        fresh.predict(breast_cancer)
    assert "not trained" in repr(fresh)


def test_workbench_handle_and_default_client(breast_cancer, workbench_home) -> None:
    """A ClusterHandle from workbench.launch works directly, and so does the default client."""
    import workbench

    with workbench.launch(
        "local-cpu", n_workers=1, threads_per_worker=1, dashboard_address=":0", wait=True
    ) as handle:
        model = train_xgboost(
            handle,
            breast_cancer,
            "target",
            params=PARAMS,
            num_boost_round=5,
            progress=None,
            tracking=False,
        )
        assert model.train_params["device"] == "cpu"  # handle.gpus is empty
        handle.client  # noqa: B018  (creates the default client)
        again = train_xgboost(
            None,
            breast_cancer,
            "target",
            params=PARAMS,
            num_boost_round=5,
            progress=None,
            tracking=False,
        )
        np.testing.assert_allclose(
            again.booster.inplace_predict(breast_cancer[again.features].to_numpy()),
            model.booster.inplace_predict(breast_cancer[model.features].to_numpy()),
            rtol=1e-5,
        )


@pytest.mark.gpu
def test_xgboost_trains_on_gpus_with_cuda(breast_cancer, workbench_home) -> None:
    pytest.importorskip("xgboost", reason="XGBoost's CUDA build: pip install 'workbench[train]'")
    pytest.importorskip(
        "dask_cuda", reason="GPU workers need dask-cuda: pip install 'workbench[gpu]'"
    )
    import workbench

    with workbench.launch(
        "local", gpus=1, enable_cudf_spill=False, dashboard_address=":0", wait=True
    ) as handle:
        assert handle.gpus
        model = train_xgboost(
            handle,
            breast_cancer,
            "target",
            params=PARAMS,
            num_boost_round=10,
            progress=None,
            tracking=False,
        )
        assert model.train_params["device"] == "cuda"
        config = json.loads(model.booster.save_config())
        assert config["learner"]["generic_param"]["device"].startswith("cuda")


def test_a_tracking_failure_after_training_keeps_the_model(
    train_cluster, breast_cancer, tracking_store
) -> None:
    from mlflow import MlflowClient

    from workbench.training import Tracker

    class FullDisk(Tracker):
        def log_model(self, save: Any, artifact_path: str = "model") -> None:
            raise OSError(28, "No space left on device")

    model = train_xgboost(
        train_cluster,
        breast_cancer,
        "target",
        params=PARAMS,
        num_boost_round=5,
        progress=None,
        tracking=FullDisk("tests"),
    )
    assert model.booster.num_boosted_rounds() == 5  # the model is there
    assert model.tracking_error is not None and "No space left" in model.tracking_error
    run = MlflowClient(tracking_uri=model.tracking_uri).get_run(model.run_id)
    assert run.info.status == "FAILED"


def test_data_loaded_by_workbench_is_tracked_with_its_manifest(
    train_cluster, breast_cancer, tracking_store, tmp_path
) -> None:
    """No lineage argument: the manifest workbench.data.load recorded for the frame is the
    run's lineage.json, with the files that were read."""
    from mlflow import MlflowClient

    from workbench.data import load, manifest_of

    folder = tmp_path / "cancer"
    folder.mkdir()
    for i, start in enumerate(range(0, 569, 200)):
        breast_cancer.iloc[start : start + 200].to_parquet(folder / f"part-{i}.parquet")
    df = load(str(folder), client=train_cluster)
    manifest = manifest_of(df).to_dict()
    model = train_xgboost(
        train_cluster,
        df,
        "target",
        params=PARAMS,
        num_boost_round=3,
        progress=None,
        experiment="tests",
    )
    client = MlflowClient(tracking_uri=model.tracking_uri)
    logged = json.loads(Path(client.download_artifacts(model.run_id, "lineage.json")).read_text())
    assert logged == json.loads(json.dumps(manifest))
    assert sorted(Path(f["uri"]).name for f in logged["files"]) == [
        "part-0.parquet",
        "part-1.parquet",
        "part-2.parquet",
    ]
    tags = client.get_run(model.run_id).data.tags
    assert tags["workbench.data.fingerprint"] == manifest["fingerprint"]
    # a frame derived from the loaded one has no manifest of its own: nothing is invented
    derived = df[df["target"] >= 0]
    model2 = train_xgboost(
        train_cluster,
        derived,
        "target",
        params=PARAMS,
        num_boost_round=2,
        progress=None,
        experiment="tests",
    )
    names = {a.path for a in client.list_artifacts(model2.run_id)}
    assert "lineage.json" not in names
