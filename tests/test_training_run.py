"""The training-run lifecycle (workbench/training/_run.py) over the real trainers: a run that
raises ends FAILED in MLflow and with a ``failed`` end event, for every trainer and for both
ways a job fails (the work on the cluster raises; a user callback raises mid-run).

Real 2-worker Dask cluster, real MLflow SQLite store (tests/_train_fixtures.py).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

torch = pytest.importorskip("torch")

from workbench.training import (  # noqa: E402
    ProgressEvent,
    Tracker,
    TrainingError,
    train_torch,
    train_xgboost,
    tune,
)


class CallbackFailed(RuntimeError):
    pass


class Events:
    """Every event of the run; raises at the first step when ``fail_at_step``."""

    def __init__(self, fail_at_step: bool) -> None:
        self.fail_at_step = fail_at_step
        self.seen: list[ProgressEvent] = []

    def __call__(self, event: ProgressEvent) -> None:
        self.seen.append(event)
        if self.fail_at_step and event.kind == "step":
            raise CallbackFailed("the user's callback broke")


class Refuses(torch.nn.Module):
    """A model that trains for no one: its forward pass raises on the workers (the check on
    two rows in the notebook runs in eval mode and passes)."""

    def __init__(self) -> None:
        super().__init__()
        self.net = torch.nn.Linear(64, 10)

    def forward(self, x: Any) -> Any:
        if self.training:
            raise ValueError("Refuses will not train")
        return self.net(x)


def quadratic(trial: Any) -> float:
    x = trial.suggest_float("x", -3, 3)
    return float((x - 1) ** 2)


def broken(trial: Any) -> float:
    trial.suggest_float("x", 0, 1)
    raise ValueError("the objective is broken")


def run_xgboost(cluster: Any, data: Any, bad: bool, tracker: Tracker, events: Events) -> Any:
    params = {"objective": "reg:no-such-objective" if bad else "binary:logistic", "seed": 7}
    return train_xgboost(
        cluster,
        data["breast_cancer"],
        "target",
        params=params,
        num_boost_round=5,
        progress=None,
        tracking=tracker,
        callbacks=events,
    )


def run_torch(cluster: Any, data: Any, bad: bool, tracker: Tracker, events: Events) -> Any:
    torch.manual_seed(0)
    model = Refuses() if bad else torch.nn.Linear(64, 10)
    return train_torch(
        cluster,
        model,
        data["digits"],
        "target",
        epochs=2,
        n_workers=1,  # a rank that fails mid-step would leave a DDP peer in a collective
        progress=None,
        tracking=tracker,
        callbacks=events,
    )


def run_tune(cluster: Any, data: Any, bad: bool, tracker: Tracker, events: Events) -> Any:
    return tune(
        cluster,
        broken if bad else quadratic,
        n_trials=3,
        n_parallel=1,
        progress=None,
        tracking=tracker,
        callbacks=events,
    )


TRAINERS: dict[str, Callable[..., Any]] = {
    "xgboost": run_xgboost,
    "torch": run_torch,
    "tune": run_tune,
}
# What each trainer raises when its own work fails (not the callback).
JOB_ERRORS = {
    "xgboost": (TrainingError, "XGBoost training failed"),
    "torch": (TrainingError, "Refuses will not train"),
    "tune": (TrainingError, "the objective is broken"),
}


@pytest.mark.parametrize("failure", ["job", "callback"])
@pytest.mark.parametrize("trainer", sorted(TRAINERS))
def test_a_run_that_raises_is_failed_in_mlflow_and_in_the_reporter(
    trainer: str, failure: str, train_cluster, breast_cancer, digits, tracking_store
) -> None:
    from mlflow import MlflowClient

    tracker = Tracker("lifecycle")
    events = Events(fail_at_step=failure == "callback")
    error, message = JOB_ERRORS[trainer] if failure == "job" else (CallbackFailed, "callback broke")
    data = {"breast_cancer": breast_cancer, "digits": digits}
    with pytest.raises(error, match=message):
        TRAINERS[trainer](train_cluster, data, failure == "job", tracker, events)

    kinds = [e.kind for e in events.seen]
    assert kinds[0] == "start" and kinds.count("end") == 1 and kinds[-1] == "end", kinds
    assert events.seen[-1].status == "failed"
    assert tracker.run_id is not None, "the MLflow run was started"
    run = MlflowClient(tracking_uri=tracker.uri).get_run(tracker.run_id)
    assert run.info.status == "FAILED"
    assert run.data.tags["workbench.job"] == trainer
