"""PyTorch training over dask DataFrames: DDP across two real Dask workers (gloo), and the
single-worker path."""

from __future__ import annotations

from typing import Any

import pytest

torch = pytest.importorskip("torch")

from workbench.training import (  # noqa: E402
    InvalidDataError,
    NotTrainedError,
    ProgressEvent,
    TorchTrainer,
    TrainingError,
    UnknownNameError,
    train_torch,
)


def mlp(n_in: int = 64, hidden: int = 32, n_out: int = 10) -> Any:
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Linear(n_in, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, n_out)
    )


def test_ddp_across_two_workers(train_cluster, digits, tracking_store) -> None:
    import dask.dataframe as dd
    from mlflow import MlflowClient

    train = dd.from_pandas(digits.iloc[:1500], npartitions=4)
    valid = digits.iloc[1500:]
    net = mlp()
    before = [p.detach().clone() for p in net.parameters()]
    events: list[ProgressEvent] = []
    fit = train_torch(
        train_cluster,
        net,
        train,
        "target",
        valid=valid,
        epochs=6,
        lr=5e-3,
        batch_size=64,
        lineage={"uri": "sklearn://digits", "fingerprint": "d1g1t5"},
        callbacks=events.append,
        progress=None,
    )
    # two ranks, one per worker process, each on its own shard of the rows
    assert fit.world_size == 2
    ranks = fit.ranks
    assert {r["rank"] for r in ranks} == {0, 1}
    assert len({r["pid"] for r in ranks}) == 2
    assert len({r["worker"] for r in ranks}) == 2
    assert sum(r["rows"] for r in ranks) == 1500
    assert all(r["rows"] > 0 for r in ranks)
    # DDP kept the replicas identical: both ranks end with the same weights
    assert ranks[0]["checksum"] == pytest.approx(ranks[1]["checksum"], rel=1e-6)
    # the model passed in was trained in place, and it learned
    assert any(not torch.equal(a, b) for a, b in zip(before, net.parameters(), strict=True))
    assert fit.model is net
    assert fit.history["valid-accuracy"][-1] > 0.85
    assert len(fit.history["train-loss"]) == 6
    assert fit.history["train-loss"][-1] < fit.history["train-loss"][0]
    out = fit.predict(valid)
    acc = (out.argmax(dim=1).numpy() == valid["target"].to_numpy()).mean()
    assert acc == pytest.approx(fit.history["valid-accuracy"][-1], abs=1e-6)
    steps = [e.step for e in events if e.kind == "step"]
    assert steps == [1, 2, 3, 4, 5, 6]
    # tracked: DDP parameters, per-epoch metrics, the model and the lineage
    client = MlflowClient(tracking_uri=fit.tracking_uri)
    run = client.get_run(fit.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params["world_size"] == "2"
    assert run.data.params["backend"] == "gloo"
    assert len(client.get_metric_history(fit.run_id, "valid-accuracy")) == 6
    artifacts = {a.path for a in client.list_artifacts(fit.run_id)}
    assert {"model", "lineage.json", "ranks.json"} <= artifacts
    import mlflow.pytorch

    loaded = mlflow.pytorch.load_model(client.download_artifacts(fit.run_id, "model"))
    x = torch.tensor(valid.drop(columns="target").to_numpy(), dtype=torch.float32)
    torch.testing.assert_close(loaded(x), net(x))


def test_single_worker_path(train_cluster, digits) -> None:
    net = mlp()
    fit = train_torch(
        train_cluster,
        net,
        digits.iloc[:1500],
        "target",
        valid=digits.iloc[1500:],
        n_workers=1,
        epochs=4,
        lr=5e-3,
        progress=None,
        tracking=False,
    )
    assert fit.world_size == 1
    assert len(fit.ranks) == 1 and fit.ranks[0]["rows"] == 1500
    assert fit.ranks[0]["data_device"] == "cpu"  # pandas partitions, through NumPy
    assert fit.history["valid-accuracy"][-1] > 0.8


def test_regression_with_mse_and_rmse(train_cluster, digits) -> None:
    data = digits.assign(target=digits["target"].astype("float32"))
    fit = train_torch(
        train_cluster,
        mlp(n_out=1),
        data.iloc[:1500],
        "target",
        valid=data.iloc[1500:],
        loss="mse",
        metrics=["rmse", "mae"],
        epochs=5,
        lr=5e-3,
        progress=None,
        tracking=False,
    )
    assert set(fit.history) == {"train-loss", "valid-loss", "valid-rmse", "valid-mae"}
    assert fit.history["valid-rmse"][-1] < fit.history["valid-rmse"][0]
    assert fit.history["valid-rmse"][-1] == pytest.approx(fit.history["valid-loss"][-1] ** 0.5)


def test_callback_stops_all_ranks_together(train_cluster, digits) -> None:
    fit = train_torch(
        train_cluster,
        mlp(),
        digits,
        "target",
        epochs=1000,  # minutes of work if the stop request were ignored
        callbacks=lambda e: e.kind == "step" and e.step >= 2,
        progress=None,
        tracking=False,
    )
    assert fit.status == "stopped"
    epochs = {r["epochs"] for r in fit.ranks}
    assert len(epochs) == 1  # no rank ran ahead of the other
    assert 2 <= epochs.pop() < 1000


def test_bad_input(train_cluster, digits) -> None:
    kw: dict[str, Any] = {"progress": None, "tracking": False, "epochs": 1}
    with pytest.raises(UnknownNameError, match=r"unknown loss 'crossentropy'.*cross_entropy"):
        train_torch(train_cluster, mlp(), digits, "target", loss="crossentropy", **kw)
    with pytest.raises(UnknownNameError, match=r"unknown metric 'f1'"):
        train_torch(train_cluster, mlp(), digits, "target", metrics=["f1"], **kw)
    with pytest.raises(UnknownNameError, match=r"unknown optimizer 'adagrad'"):
        train_torch(train_cluster, mlp(), digits, "target", optimizer="adagrad", **kw)
    with pytest.raises(InvalidDataError, match="label column 'digit' is not in the data"):
        train_torch(train_cluster, mlp(), digits, "digit", **kw)
    with pytest.raises(InvalidDataError, match="the model cannot take the data: 64 feature"):
        train_torch(train_cluster, mlp(n_in=10), digits, "target", **kw)
    with pytest.raises(InvalidDataError, match="labels run from 0 to 9 but the model has 5"):
        train_torch(train_cluster, mlp(n_out=5), digits, "target", **kw)
    with pytest.raises(InvalidDataError, match="empty"):
        train_torch(train_cluster, mlp(), digits.iloc[:0], "target", **kw)
    with pytest.raises(TrainingError, match="n_workers=5 but the cluster has 2"):
        train_torch(train_cluster, mlp(), digits, "target", n_workers=5, **kw)
    with pytest.raises(TrainingError, match="accuracy' needs a classification loss"):
        TorchTrainer(mlp(), loss="mse", metrics=["accuracy"])
    with pytest.raises(TrainingError, match=r"torch\.nn\.Module"):
        TorchTrainer("not a model")  # type: ignore[arg-type]
    with pytest.raises(NotTrainedError):
        TorchTrainer(mlp()).predict(digits.drop(columns="target"))


@pytest.mark.gpu
def test_torch_trains_on_the_workers_gpu(digits, workbench_home) -> None:
    pytest.importorskip(
        "dask_cuda", reason="GPU workers need dask-cuda: pip install 'workbench[gpu]'"
    )
    import workbench

    with workbench.launch(
        "local", gpus=1, enable_cudf_spill=False, dashboard_address=":0", wait=True
    ) as handle:
        fit = train_torch(
            handle, mlp(), digits, "target", epochs=4, lr=5e-3, progress=None, tracking=False
        )
        assert fit.trained_device == "cuda"
        assert fit.ranks[0]["device"] == "cuda:0"
        assert fit.ranks[0]["data_device"] == "cpu"  # pandas rows, copied per batch
        assert fit.history["train-loss"][-1] < fit.history["train-loss"][0]


@pytest.mark.gpu
def test_torch_trains_on_cudf_partitions_without_a_host_copy(digits, tmp_path) -> None:
    """On a GPU cluster ``load`` gives cuDF partitions; a rank concatenates its partitions
    with cuDF and hands the columns to torch through DLPack: the rows are on the GPU before
    the first step, and never went through pandas."""
    cudf = pytest.importorskip(
        "cudf", reason="cuDF partitions need cuDF: pip install 'workbench[gpu]'"
    )
    import dask.dataframe as dd

    import workbench
    import workbench.data as wd

    dd.from_pandas(digits, npartitions=4).to_parquet(tmp_path / "digits")
    with workbench.launch("local", gpus=1, dashboard_address=":0", wait=True) as handle:
        df = wd.load(str(tmp_path / "digits"), client=handle)
        assert isinstance(df.partitions[0].compute(), cudf.DataFrame)
        fit = train_torch(
            handle, mlp(), df, "target", epochs=6, lr=5e-3, progress=None, tracking=False
        )
    (rank,) = fit.ranks
    assert rank["data_device"] == "cuda:0" and rank["device"] == "cuda:0"
    assert rank["rows"] == len(digits)
    assert fit.history["train-loss"][-1] < fit.history["train-loss"][0] / 2


def test_a_rank_that_fails_stops_the_others_with_its_own_error(train_cluster, digits) -> None:
    """One rank's validation data holds a row the model refuses: that rank fails after its
    first epoch, the other rank learns of it in the same all-reduce and stops there too, and
    the error the user sees is the real one, not "another rank failed"."""
    import time

    class Picky(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = mlp()

        def forward(self, x: Any) -> Any:
            if not self.training and bool((x > 5).any()):
                raise ValueError("Picky saw a feature above 5")
            return self.net(x)

    valid = digits.copy()
    valid.loc[len(valid) - 1, "pixel_0_0"] = 7.0  # in the last partition: one rank only
    started = time.monotonic()
    with pytest.raises(TrainingError, match="on the cluster: Picky saw a feature above 5") as info:
        train_torch(
            train_cluster,
            Picky(),
            digits,
            "target",
            valid=valid,
            epochs=200,
            progress=None,
            tracking=False,
            n_workers=2,
        )
    assert "another rank" not in str(info.value)
    # the healthy rank stopped at the first all-reduce, not after 200 epochs or the timeout
    assert time.monotonic() - started < 60
    assert train_cluster.run(lambda: 1)  # the workers are free again
