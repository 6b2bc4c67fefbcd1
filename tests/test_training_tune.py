"""Optuna searches whose trials run as tasks on real Dask workers (DaskStorage)."""

from __future__ import annotations

import itertools
import time
from typing import Any

import pytest

from workbench.training import TrainingError, tune, xgboost_objective


def slow_quadratic(trial: Any) -> float:
    """Minimum at x=2. Sleeps so that parallel trials visibly overlap; records its interval."""
    import os

    x = trial.suggest_float("x", -10, 10)
    start = time.time()
    time.sleep(0.3)
    trial.set_user_attr("interval", [start, time.time()])
    trial.set_user_attr("pid", os.getpid())
    return (x - 2.0) ** 2


def test_trials_run_in_parallel_on_the_workers(train_cluster, tracking_store) -> None:
    import optuna
    from mlflow import MlflowClient

    result = tune(
        train_cluster,
        slow_quadratic,
        n_trials=8,
        n_parallel=2,
        sampler=optuna.samplers.TPESampler(n_startup_trials=4),
        progress=None,
        experiment="tune-tests",
    )
    trials = result.study.trials
    assert len(trials) == 8
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
    # every worker ran trials, in its own process, and trials overlapped in time
    assert len(result.workers) == 2
    assert len({t.user_attrs["pid"] for t in trials}) == 2
    intervals = sorted(t.user_attrs["interval"] for t in trials)
    assert any(b[0] < a[1] for a, b in itertools.pairwise(intervals))
    # the sampler saw all trials: distinct suggestions, and the best is the minimum
    assert len({t.params["x"] for t in trials}) == 8
    assert result.best_value == min(t.value for t in trials)
    assert result.best_params == {"x": result.best_trial.params["x"]}
    # one MLflow run for the search, one child run per trial
    client = MlflowClient(tracking_uri=f"sqlite:///{tracking_store}")
    parent = client.get_run(result.run_id)
    assert parent.data.metrics["best_value"] == pytest.approx(result.best_value)
    children = client.search_runs(
        [parent.info.experiment_id], f"tags.mlflow.parentRunId = '{result.run_id}'"
    )
    assert len(children) == 8
    assert {c.data.tags["optuna.state"] for c in children} == {"COMPLETE"}


def test_xgboost_objective_on_cluster_data(train_cluster, breast_cancer) -> None:
    import dask.dataframe as dd

    events: list[Any] = []
    result = tune(
        train_cluster,
        xgboost_objective("target", num_boost_round=40, early_stopping_rounds=5),
        n_trials=4,
        data=dd.from_pandas(breast_cancer, npartitions=3),
        callbacks=events.append,
        progress=None,
        tracking=False,
    )
    assert len(result.trials) == 4
    assert result.best_value < 0.3  # validation logloss of a working classifier
    assert 2 <= result.best_params["max_depth"] <= 8
    steps = [e for e in events if e.kind == "step"]
    assert [e.step for e in steps] == [1, 2, 3, 4]
    assert steps[-1].metrics["best"] == pytest.approx(result.best_value)


def fails_for_negative(trial: Any) -> float:
    x = trial.suggest_float("x", -1, 1)
    if x < 0:
        raise ValueError(f"negative x={x}")
    return x


def always_fails(trial: Any) -> float:
    trial.suggest_float("x", 0, 1)
    raise RuntimeError("the objective is broken")


def test_failed_trials_are_recorded_and_reported(train_cluster) -> None:
    import optuna

    result = tune(
        train_cluster,
        fails_for_negative,
        n_trials=10,
        sampler=optuna.samplers.RandomSampler(seed=1),
        progress=None,
        tracking=False,
    )
    states = [t["state"] for t in result.trials]
    assert len(states) == 10
    failed = [t for t in result.trials if t["state"] == "FAIL"]
    assert all("ValueError: negative x" in t["error"] for t in failed)
    assert result.best_value >= 0
    with pytest.raises(TrainingError, match=r"all 3 trials failed.*the objective is broken"):
        tune(train_cluster, always_fails, n_trials=3, progress=None, tracking=False)


def test_callback_stops_the_search(train_cluster) -> None:
    result = tune(
        train_cluster,
        slow_quadratic,
        n_trials=50,
        n_parallel=2,
        callbacks=lambda e: e.kind == "step" and e.step >= 3,
        progress=None,
        tracking=False,
    )
    assert result.status == "stopped"
    assert 3 <= len(result.trials) <= 5  # the ones already running finish


def test_bad_arguments(train_cluster) -> None:
    with pytest.raises(TrainingError, match="n_trials must be at least 1"):
        tune(train_cluster, slow_quadratic, n_trials=0)
    with pytest.raises(TrainingError, match="direction must be"):
        tune(train_cluster, slow_quadratic, n_trials=1, direction="down")
    with pytest.raises(TrainingError, match=r"objective must take \(trial, data\)"):
        tune(
            train_cluster,
            slow_quadratic,
            n_trials=1,
            data=__import__("pandas").DataFrame({"a": [1]}),
        )
    with pytest.raises(TrainingError, match="unknown metric"):
        xgboost_objective("target", metric="acc")
