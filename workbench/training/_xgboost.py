"""Distributed XGBoost on the cluster's data with ``xgboost.dask``.

The data stays on the workers: each worker builds its part of a ``DaskQuantileDMatrix``
and the workers train one model together (XGBoost's collective allreduce). On a cluster of
GPU workers training runs with ``device="cuda"``; on CPU workers with ``device="cpu"``;
everything else is the same code.
"""

from __future__ import annotations

import html
import math
import re
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import xgboost as xgb
import xgboost.dask as xgb_dask

from ._cluster import get_client, resolve_device
from ._data import Tabular, prepare
from ._live import LiveJob, publish, stop_requested
from ._run import FitCall, Trainer
from .errors import InvalidDataError, NotTrainedError, TrainingError, UnknownNameError
from .progress import CallbackLike, DisplayLike
from .tracking import DEFAULT_EXPERIMENT, Tracker, lineage_dict, pip_requirements

if TYPE_CHECKING:
    import dask.dataframe as dd

# XGBoost's evaluation metrics (``eval_metric``); ``@`` suffixes (``ndcg@5``, ``error@0.7``)
# and the ``-`` suffix of ranking metrics are allowed.
XGBOOST_METRICS = [
    "rmse",
    "rmsle",
    "mae",
    "mape",
    "mphe",
    "logloss",
    "error",
    "merror",
    "mlogloss",
    "auc",
    "aucpr",
    "pre",
    "ndcg",
    "map",
    "poisson-nloglik",
    "gamma-nloglik",
    "cox-nloglik",
    "gamma-deviance",
    "tweedie-nloglik",
    "aft-nloglik",
    "interval-regression-accuracy",
]


def check_eval_metrics(params: dict[str, Any]) -> None:
    metrics = params.get("eval_metric")
    if metrics is None:
        return
    for name in [metrics] if isinstance(metrics, str) else list(metrics):
        base = re.split(r"[@]", str(name), maxsplit=1)[0]
        if base.endswith("-") and base[:-1] in ("ndcg", "map", "pre"):
            base = base[:-1]
        if base not in XGBOOST_METRICS:
            raise UnknownNameError("metric", name, XGBOOST_METRICS)


class WorkbenchProgressRelay(xgb.callback.TrainingCallback):
    """XGBoost callback run on every worker: rank 0 reports each round, all ranks agree on
    stopping (an allreduce of the stop flag, so no rank waits for a round others skip).

    Rounds are reported in batches, at most every ``flush_interval`` seconds (and after the
    last one): each message wakes the worker's event loop, which costs the training thread
    more than a short round takes. The client still hands every round to the reporter."""

    #: seconds between two progress messages from rank 0
    flush_interval = 0.1

    def __init__(self, topic: str, stop_name: str) -> None:
        super().__init__()
        self.topic = topic
        self.stop_name = stop_name
        self._state: dict[str, Any] = {}
        self._steps: list[dict[str, Any]] = []
        self._flushed = -math.inf

    def _flush(self) -> None:
        if self._steps:
            publish(self.topic, {"steps": self._steps})
            self._steps = []
        self._flushed = time.monotonic()

    def after_iteration(self, model: Any, epoch: int, evals_log: Any) -> bool:
        from xgboost import collective

        rank = collective.get_rank()
        stop = 0
        if rank == 0:
            metrics = {
                f"{data}-{name}": _last(values)
                for data, per_metric in evals_log.items()
                for name, values in per_metric.items()
            }
            self._steps.append({"step": epoch + 1, "metrics": metrics})
            if time.monotonic() - self._flushed >= self.flush_interval:
                self._flush()
            stop = int(stop_requested(self.stop_name, self._state))
            if stop:
                self._flush()
        if collective.get_world_size() > 1:
            flag = collective.allreduce(np.array([stop], dtype=np.int32), collective.Op.MAX)
            stop = int(flag[0])
        return bool(stop)

    def after_training(self, model: Any) -> Any:
        self._flush()
        return model


def _last(values: Any) -> float:
    value = values[-1]
    return float(value[0] if isinstance(value, tuple) else value)


class XGBoostTrainer(Trainer):
    """Distributed XGBoost on a workbench cluster, sklearn-style: configure, then :meth:`fit`.

    ``params`` are XGBoost parameters (``objective``, ``max_depth``, ``eta``,
    ``eval_metric``...); ``device`` and ``tree_method`` are set from the cluster unless given.
    The validation frame's metrics (``valid=`` of :meth:`fit`) drive
    ``early_stopping_rounds``. After :meth:`fit`: ``booster``, ``history`` (metric per round
    per eval set), ``run_id`` (MLflow), ``status`` (``finished``, ``stopped``,
    ``interrupted``) and :meth:`predict`.
    """

    def __init__(
        self,
        params: dict[str, Any] | None = None,
        *,
        num_boost_round: int = 100,
        early_stopping_rounds: int | None = None,
        device: str = "auto",
        eval_train: bool = True,
        tracking: bool | Tracker | str | None = True,
        experiment: str = DEFAULT_EXPERIMENT,
        run_name: str | None = None,
    ) -> None:
        if num_boost_round < 1:
            raise TrainingError(f"num_boost_round must be at least 1, got {num_boost_round}")
        self.params = dict(params or {})
        check_eval_metrics(self.params)
        super().__init__(tracking=tracking, experiment=experiment, run_name=run_name)
        self.num_boost_round = int(num_boost_round)
        self.early_stopping_rounds = early_stopping_rounds
        self.device = device
        self.eval_train = eval_train
        self._booster: xgb.Booster | None = None
        self.history: dict[str, dict[str, list[float]]] = {}
        self.train_params: dict[str, Any] = {}
        self.n_rows = 0

    # -- training ----------------------------------------------------------------------------
    def _fit(self, call: FitCall) -> XGBoostTrainer:
        client, label = call.client, call.label
        lineage_data = lineage_dict(call.lineage, call.df)  # check before training
        if self.early_stopping_rounds is not None and call.valid is None:
            raise TrainingError(
                "early_stopping_rounds needs a validation set: pass valid=<a DataFrame>"
            )
        device = resolve_device(self.device, call.cluster, client)
        params: dict[str, Any] = {"tree_method": "hist", "device": device, **self.params}
        self.train_params = params

        # The row and missing-label counts run on the cluster while the DMatrix is built
        # from the same persisted data; they are checked before anything is tracked or
        # trained (and first, if building the DMatrix fails, for the clearer message).
        data = prepare(client, call.df, label, call.features, wait=False)
        vdata: Tabular | None = None
        if call.valid is not None:
            vdata = prepare(
                client, call.valid, label, data.features, what="validation data", wait=False
            )
        try:
            with client.as_current():
                dtrain = xgb_dask.DaskQuantileDMatrix(
                    client, data.X, data.y, enable_categorical=data.categorical
                )
                evals: list[tuple[Any, str]] = [(dtrain, "train")] if self.eval_train else []
                if vdata is not None:
                    dvalid = xgb_dask.DaskQuantileDMatrix(
                        client, vdata.X, vdata.y, ref=dtrain, enable_categorical=vdata.categorical
                    )
                    evals.append((dvalid, "valid"))
        except BaseException:
            data.check()
            if vdata is not None:
                vdata.check()
            raise
        data.check()
        if vdata is not None:
            vdata.check()

        title = f"XGBoost ({device})"
        with self._training_run(call, "xgboost", self.num_boost_round, title) as run:
            run.track(
                {
                    **params,
                    "num_boost_round": self.num_boost_round,
                    "early_stopping_rounds": self.early_stopping_rounds,
                    "label": label,
                    "features": data.features,
                    "n_rows": data.n_rows,
                    "n_workers": len(client.scheduler_info(n_workers=-1)["workers"]),
                },
                {"workbench.job": "xgboost", "workbench.device": device},
                lineage_data,
            )
            run.start(device=device, n_rows=data.n_rows, features=data.features)
            with LiveJob(client, run.reporter) as job:
                relay = WorkbenchProgressRelay(job.topic, job.stop_name)

                def train() -> dict[str, Any]:
                    with client.as_current():
                        return dict(
                            xgb_dask.train(
                                client,
                                params,
                                dtrain,
                                num_boost_round=self.num_boost_round,
                                evals=evals,
                                early_stopping_rounds=self.early_stopping_rounds,
                                callbacks=[relay],
                                verbose_eval=False,
                            )
                        )

                outcome = job.run(train, final_step=lambda out: out["booster"].num_boosted_rounds())
            if outcome.result is None:
                assert outcome.error is not None
                err = outcome.error
                if isinstance(err, xgb.core.XGBoostError):
                    raise TrainingError(f"XGBoost training failed: {err}") from err
                raise err
            booster: xgb.Booster = outcome.result["booster"]
            self._booster = booster
            self.history = {
                k: {m: [float(x) for x in v] for m, v in per.items()}
                for k, per in outcome.result["history"].items()
            }
            self.n_rows = data.n_rows

            def log(tracker: Tracker) -> None:
                final = {
                    f"final-{k}-{m}": v[-1]
                    for k, per in self.history.items()
                    for m, v in per.items()
                }
                final["rounds"] = booster.num_boosted_rounds()
                tracker.log_metrics(final)
                tracker.log_model(self._save_mlflow_model)

            self._complete(
                run, outcome, data.features, label, log, rounds=booster.num_boosted_rounds()
            )
        if outcome.error is not None:
            raise outcome.error
        return self

    def _save_mlflow_model(self, path: Path) -> None:
        import mlflow.xgboost

        mlflow.xgboost.save_model(
            self.booster,
            str(path),
            model_format="ubj",
            pip_requirements=pip_requirements("xgboost"),
        )

    # -- the trained model ----------------------------------------------------------------------
    @property
    def booster(self) -> xgb.Booster:
        if self._booster is None:
            raise NotTrainedError(
                "this XGBoostTrainer has not been trained yet: call .fit(cluster, df, label) "
                "or use workbench.training.train_xgboost(...)"
            )
        return self._booster

    @property
    def is_trained(self) -> bool:
        return self._booster is not None

    @property
    def best_iteration(self) -> int:
        booster = self.booster
        try:
            return int(booster.best_iteration)
        except AttributeError:
            return booster.num_boosted_rounds() - 1

    def predict(self, df: Any, cluster: Any = None) -> dd.Series:
        """Predictions for a dask/pandas DataFrame with the training features, computed on
        the cluster (a lazy dask Series aligned with ``df``)."""
        booster = self.booster
        client = get_client(cluster)
        from ._data import as_dask

        ddf = as_dask(df, npartitions=len(client.scheduler_info(n_workers=-1)["workers"]))
        missing = [f for f in self.features if f not in ddf.columns]
        if missing:
            raise InvalidDataError(
                f"predict: the data lacks feature column(s) {', '.join(map(repr, missing))} "
                "the model was trained on"
            )
        with client.as_current():
            return xgb_dask.inplace_predict(client, booster, ddf[self.features])  # type: ignore[no-any-return]

    def save(self, path: str | Path) -> Path:
        """Save the booster (``.ubj`` or ``.json`` by the file name)."""
        path = Path(path)
        self.booster.save_model(str(path))
        return path

    def __repr__(self) -> str:
        if not self.is_trained:
            return "<XGBoostTrainer (not trained)>"
        return (
            f"<XGBoostTrainer {self.booster.num_boosted_rounds()} rounds on {self.n_rows} rows, "
            f"device={self.train_params.get('device')}, status={self.status}, run={self.run_id}>"
        )

    def _repr_html_(self) -> str:
        if not self.is_trained:
            return "<b>XGBoostTrainer</b> (not trained)"
        rows = [
            ("Rounds", str(self.booster.num_boosted_rounds())),
            ("Device", str(self.train_params.get("device"))),
            ("Rows", str(self.n_rows)),
            ("Features", str(len(self.features))),
            ("Status", str(self.status)),
            ("MLflow run", str(self.run_id)),
        ]
        for k, per in self.history.items():
            for m, v in per.items():
                rows.append((f"{k}-{m}", f"{v[-1]:.5g}"))
        body = "".join(
            f"<tr><th style='text-align:left'>{html.escape(a)}</th>"
            f"<td style='text-align:left'>{html.escape(b)}</td></tr>"
            for a, b in rows
        )
        return f"<b>XGBoostTrainer</b><table>{body}</table>"


def train_xgboost(
    cluster: Any,
    df: Any,
    label: str,
    *,
    params: dict[str, Any] | None = None,
    num_boost_round: int = 100,
    features: list[str] | None = None,
    valid: Any = None,
    early_stopping_rounds: int | None = None,
    device: str = "auto",
    lineage: Any = None,
    callbacks: list[CallbackLike] | CallbackLike | None = None,
    progress: DisplayLike = "auto",
    tracking: bool | Tracker | str | None = True,
    experiment: str = DEFAULT_EXPERIMENT,
    run_name: str | None = None,
) -> XGBoostTrainer:
    """Train XGBoost on the cluster; returns the fitted :class:`XGBoostTrainer`.

    ::

        model = train_xgboost(cluster, df, label="arr_delay",
                              params={"objective": "reg:squarederror", "max_depth": 6},
                              num_boost_round=200, valid=df_valid, early_stopping_rounds=10)
        model.predict(df_test).compute()
    """
    trainer = XGBoostTrainer(
        params,
        num_boost_round=num_boost_round,
        early_stopping_rounds=early_stopping_rounds,
        device=device,
        tracking=tracking,
        experiment=experiment,
        run_name=run_name,
    )
    return trainer.fit(
        cluster,
        df,
        label,
        features=features,
        valid=valid,
        lineage=lineage,
        callbacks=callbacks,
        progress=progress,
    )
