"""Hyperparameter search with Optuna, trials run in parallel as tasks on the Dask workers.

The study lives on the Dask scheduler (``optuna_integration.DaskStorage``), so every worker
reads and writes the same trials and the sampler sees them all, with no database to set up
and no shared filesystem. The notebook keeps ``n_parallel`` trials in flight, one Dask task
each; each finished trial is reported live (progress, callbacks, an MLflow child run) and the
next one is submitted. At the end the study is copied back into this process (or into
``storage=``) and removed from the scheduler.

The objective is plain Optuna: ``objective(trial) -> float``, or ``objective(trial, data)``
when ``data=`` is given. ``data`` (a dask or pandas DataFrame) is materialised once on the
cluster and handed to every trial as a pandas DataFrame, without passing through the
notebook.
"""

from __future__ import annotations

import html
import inspect
import logging
import time
import uuid
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ._cluster import get_client
from ._run import TrainingRun
from ._xgboost import check_eval_metrics
from .errors import InvalidDataError, TrainingError
from .progress import CallbackLike, DisplayLike, Status
from .tracking import DEFAULT_EXPERIMENT, Tracker, lineage_dict

if TYPE_CHECKING:
    import optuna
    import pandas as pd

logger = logging.getLogger(__name__)


def _dask_storage(client: Any) -> Any:
    import optuna

    try:
        from optuna_integration.dask import DaskStorage
    except ImportError as exc:
        raise TrainingError(
            "tune() needs optuna-integration: pip install 'workbench[train]'"
        ) from exc
    with warnings.catch_warnings():
        # DaskStorage is marked experimental by Optuna; it is the documented way to share a
        # study across Dask workers, and we depend on it knowingly.
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return DaskStorage(client=client)


def _worker_storage(name: str) -> Any:
    """The scheduler-held study storage, from a worker (no second registration)."""
    import optuna
    from optuna_integration.dask import DaskStorage

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return DaskStorage(name=name, register=False)


def run_trial(
    study_name: str,
    storage_name: str,
    objective: Callable[..., Any],
    sampler: Any,
    data: Any,
    pass_data: bool,
) -> dict[str, Any]:
    """One trial, as a task on a worker."""
    import optuna
    from distributed import get_worker

    try:
        worker = get_worker().address
    except ValueError:
        worker = ""
    storage = _worker_storage(storage_name)
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # trials are reported by the client
    if sampler is not None:
        sampler.reseed_rng()  # every task starts a fresh copy: do not repeat its random draws
    study = optuna.load_study(study_name=study_name, storage=storage, sampler=sampler)
    seen: dict[str, Any] = {}

    def wrapped(trial: optuna.Trial) -> Any:
        seen["number"] = trial.number
        seen["id"] = trial._trial_id
        trial.set_user_attr("worker", worker)
        try:
            return objective(trial, data) if pass_data else objective(trial)
        except optuna.TrialPruned:
            raise
        except Exception as exc:
            seen["error"] = f"{type(exc).__name__}: {exc}"
            raise

    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        study.optimize(wrapped, n_trials=1, catch=(Exception,), gc_after_trial=False)
    frozen = storage.get_trial(seen["id"]) if "id" in seen else None
    return {
        "number": seen.get("number"),
        "state": frozen.state.name if frozen is not None else "FAIL",
        "value": frozen.value if frozen is not None else None,
        "values": frozen.values if frozen is not None else None,
        "params": dict(frozen.params) if frozen is not None else {},
        "worker": worker,
        "duration": time.perf_counter() - start,
        "error": seen.get("error"),
    }


@dataclass
class TuneResult:
    """The outcome of :func:`tune`: the study (a local copy) and what was tried where."""

    study: optuna.Study
    trials: list[dict[str, Any]] = field(default_factory=list)
    run_id: str | None = None
    status: str = "finished"
    tracking_uri: str | None = None
    #: why logging to MLflow failed after the search (the study is kept), else None
    tracking_error: str | None = None

    @property
    def best_params(self) -> dict[str, Any]:
        return dict(self.study.best_params)

    @property
    def best_value(self) -> float:
        return float(self.study.best_value)

    @property
    def best_trial(self) -> optuna.trial.FrozenTrial:
        return self.study.best_trial

    @property
    def workers(self) -> set[str]:
        return {t["worker"] for t in self.trials if t.get("worker")}

    def trials_dataframe(self) -> pd.DataFrame:
        return self.study.trials_dataframe()

    def _repr_html_(self) -> str:
        done = sum(t["state"] == "COMPLETE" for t in self.trials)
        head = (
            f"<b>Optuna search</b> {done}/{len(self.trials)} trials complete on "
            f"{len(self.workers)} worker(s), status {html.escape(self.status)}"
        )
        try:
            best = f"<br>best value {self.best_value:.6g} with {html.escape(str(self.best_params))}"
        except ValueError:
            best = "<br>no trial completed"
        return head + best


def tune(
    cluster: Any,
    objective: Callable[..., Any],
    n_trials: int,
    *,
    data: Any = None,
    direction: str = "minimize",
    n_parallel: int | None = None,
    sampler: Any = None,
    study_name: str | None = None,
    storage: Any = None,
    timeout: float | None = None,
    lineage: Any = None,
    callbacks: list[CallbackLike] | CallbackLike | None = None,
    progress: DisplayLike = "auto",
    tracking: bool | Tracker | str | None = True,
    experiment: str = DEFAULT_EXPERIMENT,
    run_name: str | None = None,
) -> TuneResult:
    """Run ``n_trials`` Optuna trials of ``objective`` in parallel on the cluster's workers.

    ``n_parallel`` trials run at once (default: the cluster's worker threads). ``timeout``
    (seconds) stops submitting new trials. A trial whose objective raises is recorded as
    failed and the search goes on; if every trial fails, :class:`TrainingError` reports the
    first error. ``storage`` (an Optuna storage or URL) receives the final study; default: an
    in-memory copy. Progress events report ``value`` and ``best`` per trial.
    """

    if n_trials < 1:
        raise TrainingError(f"n_trials must be at least 1, got {n_trials}")
    if direction not in ("minimize", "maximize"):
        raise TrainingError(f"direction must be 'minimize' or 'maximize', got {direction!r}")
    if not callable(objective):
        raise TrainingError(f"objective must be callable, got {type(objective).__name__}")
    client = get_client(cluster)
    with client.as_current():
        return _tune(
            client,
            objective,
            n_trials,
            data,
            direction,
            n_parallel,
            sampler,
            study_name,
            storage,
            timeout,
            lineage,
            callbacks,
            progress,
            tracking,
            experiment,
            run_name,
        )


def _tune(
    client: Any,
    objective: Callable[..., Any],
    n_trials: int,
    data: Any,
    direction: str,
    n_parallel: int | None,
    sampler: Any,
    study_name: str | None,
    storage: Any,
    timeout: float | None,
    lineage: Any,
    callbacks: list[CallbackLike] | CallbackLike | None,
    progress: DisplayLike,
    tracking: bool | Tracker | str | None,
    experiment: str,
    run_name: str | None,
) -> TuneResult:
    import optuna

    pass_data = data is not None
    if pass_data:
        try:
            n_args = len(inspect.signature(objective).parameters)
        except (TypeError, ValueError):
            n_args = 2
        if n_args < 2:
            raise TrainingError("with data=..., the objective must take (trial, data)")

    lineage_data = lineage_dict(lineage, data)
    if n_parallel is None:
        n_parallel = max(
            1, sum(w["nthreads"] for w in client.scheduler_info(n_workers=-1)["workers"].values())
        )
    n_parallel = max(1, min(n_parallel, n_trials))
    study_name = study_name or f"workbench-{uuid.uuid4().hex[:8]}"

    data_future = None
    if data is not None:
        import dask.dataframe as dd
        import pandas as pd

        if isinstance(data, dd.DataFrame):
            data_future = client.compute(data)
        elif isinstance(data, pd.DataFrame):
            data_future = client.scatter(data, hash=False)
        else:
            raise InvalidDataError(
                f"tune(data=...): expected a dask or pandas DataFrame, got {type(data).__name__}"
            )

    dask_storage = _dask_storage(client)
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            optuna.create_study(
                study_name=study_name,
                storage=dask_storage,
                direction="minimize" if direction == "minimize" else "maximize",
                sampler=sampler,
            )
    finally:
        optuna.logging.set_verbosity(verbosity)

    from distributed import as_completed

    with TrainingRun(
        "tune",
        n_trials,
        tracking=tracking,
        run_name=run_name or study_name,
        experiment=experiment,
        callbacks=callbacks,
        progress=progress,
        title=f"Optuna {study_name}",
    ) as run:
        run.track(
            {
                "n_trials": n_trials,
                "n_parallel": n_parallel,
                "direction": direction,
                "sampler": type(sampler).__name__ if sampler is not None else "TPESampler",
                "objective": getattr(objective, "__name__", type(objective).__name__),
            },
            {"workbench.job": "tune", "optuna.study": study_name},
            lineage_data,
        )
        submitted = 0
        results: list[dict[str, Any]] = []
        best: float | None = None
        deadline = None if timeout is None else time.monotonic() + timeout
        status: Status = "finished"

        def submit() -> Any:
            nonlocal submitted
            submitted += 1
            return client.submit(
                run_trial,
                study_name,
                dask_storage.name,
                objective,
                sampler,
                data_future,
                pass_data,
                pure=False,
                key=f"workbench-trial-{study_name}-{submitted}",
            )

        run.start(n_parallel=n_parallel, study=study_name)
        pending = as_completed([submit() for _ in range(n_parallel)])
        try:
            for future in pending:
                try:
                    res = future.result()
                except Exception as exc:  # the task itself failed (worker died, pickling...)
                    res = {
                        "number": None,
                        "state": "FAIL",
                        "value": None,
                        "params": {},
                        "worker": "",
                        "error": f"{type(exc).__name__}: {exc}",
                    }
                results.append(res)
                if res["state"] == "COMPLETE" and res["value"] is not None:
                    v = float(res["value"])
                    if best is None or (v < best if direction == "minimize" else v > best):
                        best = v
                metrics = {}
                if res["value"] is not None:
                    metrics["value"] = float(res["value"])
                if best is not None:
                    metrics["best"] = best
                if run.tracker is not None:
                    _log_trial(run.tracker, res)
                stop = run.reporter.step(
                    len(results),
                    metrics,
                    trial=res["number"],
                    state=res["state"],
                    params=res["params"],
                    worker=res["worker"],
                )
                out_of_time = deadline is not None and time.monotonic() > deadline
                if stop or out_of_time:
                    status = "stopped"
                elif submitted < n_trials:
                    pending.add(submit())
        except KeyboardInterrupt:
            status = "interrupted"
            logger.warning("interrupted: waiting for no more trials; the ones finished are kept")
            for f in list(pending.futures):
                f.cancel()

        local_storage = storage if storage is not None else optuna.storages.InMemoryStorage()
        verbosity = optuna.logging.get_verbosity()
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            optuna.copy_study(
                from_study_name=study_name, from_storage=dask_storage, to_storage=local_storage
            )
            try:
                dask_storage.delete_study(dask_storage.get_study_id_from_name(study_name))
            except Exception:
                logger.debug("could not delete study %s from the scheduler", study_name)
        optuna.logging.set_verbosity(verbosity)
        study = optuna.load_study(study_name=study_name, storage=local_storage, sampler=sampler)
        result = TuneResult(study=study, trials=results, status=status)
        complete = [r for r in results if r["state"] == "COMPLETE"]

        def log(tracker: Tracker) -> None:
            if complete:
                tracker.log_metrics({"best_value": result.best_value})
                tracker.set_tags({"best_params": str(result.best_params)[:5000]})
                tracker.log_params({f"best.{k}": v for k, v in result.best_params.items()})
            tracker.log_dict({"trials": results}, "trials.json")

        result.tracking_error = run.complete(
            status if complete else "failed", log, completed=len(complete)
        )
        result.run_id = run.run_id
        result.tracking_uri = run.uri
    if not complete and status == "finished":
        first = next((r["error"] for r in results if r.get("error")), "no error recorded")
        raise TrainingError(f"all {len(results)} trials failed; the first error was: {first}")
    return result


def _log_trial(tracker: Tracker, res: dict[str, Any]) -> None:
    """One MLflow child run per trial, nested under the search's run."""
    child = Tracker(
        tracker.experiment,
        run_name=f"trial-{res['number']}",
        uri=tracker.uri,
        parent_run_id=tracker.run_id,
        tags={"workbench.job": "tune-trial", "optuna.state": res["state"]},
    )
    child._client = tracker.client
    child.start(params={**res["params"], "worker": res["worker"]})
    if res["value"] is not None:
        child.log_metrics({"value": float(res["value"])})
    if res.get("error"):
        child.set_tags({"error": str(res["error"])[:5000]})
    child.finish("FINISHED" if res["state"] == "COMPLETE" else "FAILED")


# -- a ready-made objective: XGBoost on a tabular frame ----------------------------------------

SearchSpace = dict[str, Any]

DEFAULT_XGBOOST_SPACE: SearchSpace = {
    "max_depth": (2, 8),
    "learning_rate": (0.02, 0.3, "log"),
    "subsample": (0.5, 1.0),
    "colsample_bytree": (0.5, 1.0),
    "min_child_weight": (1.0, 10.0, "log"),
    "reg_lambda": (1e-3, 10.0, "log"),
}


def suggest(trial: optuna.Trial, space: SearchSpace) -> dict[str, Any]:
    """Parameters for a trial from a compact space: ``(lo, hi)`` ints or floats, ``(lo, hi,
    "log")``, or a list of choices."""
    params: dict[str, Any] = {}
    for name, spec in space.items():
        if isinstance(spec, list):
            params[name] = trial.suggest_categorical(name, spec)
        elif isinstance(spec, tuple) and len(spec) in (2, 3):
            lo, hi = spec[0], spec[1]
            log = len(spec) == 3 and spec[2] == "log"
            if isinstance(lo, int) and isinstance(hi, int) and not isinstance(lo, bool):
                params[name] = trial.suggest_int(name, lo, hi, log=log)
            else:
                params[name] = trial.suggest_float(name, float(lo), float(hi), log=log)
        else:
            raise TrainingError(
                f"search space {name!r}: expected (low, high), (low, high, 'log') or a list "
                f"of choices, got {spec!r}"
            )
    return params


class XGBoostObjective:
    """Objective for :func:`tune`: XGBoost on one worker's copy of the data, scored on a
    held-out part. Picklable, so it runs on any worker."""

    def __init__(
        self,
        label: str,
        *,
        task: str = "auto",
        metric: str | None = None,
        space: SearchSpace | None = None,
        num_boost_round: int = 200,
        early_stopping_rounds: int = 20,
        valid_fraction: float = 0.25,
        seed: int = 0,
    ) -> None:
        if task not in ("auto", "classification", "regression"):
            raise TrainingError(
                f"task must be 'auto', 'classification' or 'regression', got {task!r}"
            )
        if metric is not None:
            check_eval_metrics({"eval_metric": metric})
        if not 0 < valid_fraction < 1:
            raise TrainingError(f"valid_fraction must be between 0 and 1, got {valid_fraction}")
        self.label = label
        self.task = task
        self.metric = metric
        self.space = dict(space or DEFAULT_XGBOOST_SPACE)
        self.num_boost_round = num_boost_round
        self.early_stopping_rounds = early_stopping_rounds
        self.valid_fraction = valid_fraction
        self.seed = seed
        self.__name__ = f"xgboost_objective({label!r})"

    def __call__(self, trial: optuna.Trial, data: pd.DataFrame) -> float:
        import numpy as np
        import xgboost as xgb
        from sklearn.model_selection import train_test_split

        from ._cluster import worker_has_cuda
        from ._data import select_columns

        features = select_columns([str(c) for c in data.columns], self.label, None, "tune data")
        y = data[self.label].to_numpy()
        classes = np.unique(y)
        task = self.task
        if task == "auto":
            is_int = np.issubdtype(y.dtype, np.integer) or np.all(np.mod(y, 1) == 0)
            task = "classification" if is_int and len(classes) <= 50 else "regression"
        params: dict[str, Any] = {
            "tree_method": "hist",
            "device": "cuda" if worker_has_cuda() else "cpu",
            "seed": self.seed,
            **suggest(trial, self.space),
        }
        if task == "classification":
            if len(classes) > 2:
                params.update(objective="multi:softprob", num_class=len(classes))
                params["eval_metric"] = self.metric or "mlogloss"
            else:
                params.update(objective="binary:logistic", eval_metric=self.metric or "logloss")
        else:
            params.update(objective="reg:squarederror", eval_metric=self.metric or "rmse")
        stratify = y if task == "classification" else None
        Xtr, Xva, ytr, yva = train_test_split(
            data[features],
            y,
            test_size=self.valid_fraction,
            random_state=self.seed,
            stratify=stratify,
        )
        dtrain = xgb.DMatrix(Xtr, label=ytr, enable_categorical=True)
        dvalid = xgb.DMatrix(Xva, label=yva, enable_categorical=True)
        history: dict[str, Any] = {}
        booster = xgb.train(
            params,
            dtrain,
            num_boost_round=self.num_boost_round,
            evals=[(dvalid, "valid")],
            early_stopping_rounds=self.early_stopping_rounds,
            evals_result=history,
            verbose_eval=False,
        )
        trial.set_user_attr("best_iteration", int(booster.best_iteration))
        metric = params["eval_metric"]
        return float(history["valid"][metric][booster.best_iteration])


def xgboost_objective(label: str, **kwargs: Any) -> XGBoostObjective:
    """An objective that tunes XGBoost on ``data`` (see :class:`XGBoostObjective`)::

    search = tune(cluster, xgboost_objective("target"), n_trials=40, data=df)
    search.best_params
    """
    return XGBoostObjective(label, **kwargs)
