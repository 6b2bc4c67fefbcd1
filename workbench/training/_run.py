"""One training job's lifecycle: its MLflow run and its progress reporter, started, ended and
failed together.

Every trainer (``TorchTrainer``, ``XGBoostTrainer``, ``tune``) does the same around its own
work::

    with TrainingRun("xgboost", total, tracking=..., ...) as run:
        run.track(params, tags, lineage)     # the MLflow run starts (when tracking is on)
        run.start(device=...)                # the progress display and callbacks start
        ...                                  # the trainer's own work
        run.complete(status, log, ...)       # final metrics and the model logged, both ended

Any exception inside the ``with`` block marks both FAILED (the reporter's ``end`` event has
status ``"failed"``, the MLflow run is terminated FAILED) and propagates; after
:meth:`TrainingRun.complete` nothing more is changed. A fix to failure handling is made here,
once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

from ._cluster import get_client
from .progress import CallbackLike, DisplayLike, Reporter, Status
from .tracking import Tracker, make_tracker

if TYPE_CHECKING:
    from distributed import Client

    from ._live import JobOutcome

logger = logging.getLogger(__name__)
_T = TypeVar("_T", bound="Trainer")

#: The MLflow run status (``RunStatus`` names) that ends a job with each progress status.
MLFLOW_STATUS: dict[Status, str] = {
    "finished": "FINISHED",
    "stopped": "FINISHED",  # a callback asked to stop: what was trained is the result
    "interrupted": "KILLED",
    "failed": "FAILED",
}


class TrainingRun:
    """The tracker (``None`` when tracking is off) and reporter of one job.

    After :meth:`complete`, ``run_id``, ``uri`` and ``tracking_error`` hold what the
    trainer copies onto its result.
    """

    def __init__(
        self,
        job: str,
        total: int | None,
        *,
        tracking: bool | Tracker | str | None,
        run_name: str | None,
        experiment: str,
        callbacks: list[CallbackLike] | CallbackLike | None,
        progress: DisplayLike,
        title: str,
    ) -> None:
        self.tracker = make_tracker(tracking, run_name=run_name, default_experiment=experiment)
        self.reporter = Reporter(job, total, callbacks=callbacks, progress=progress, title=title)
        if self.tracker is not None:
            self.reporter.consumers.append(self.tracker)  # it logs every step's metrics
        self.run_id: str | None = None
        self.uri: str | None = None
        self.tracking_error: str | None = None
        self._reporting = False
        self._ended = False

    def __enter__(self) -> TrainingRun:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is not None:
            self.fail()

    def track(
        self, params: dict[str, Any], tags: dict[str, str], lineage: dict[str, Any] | None
    ) -> None:
        """Start the MLflow run with the job's parameters, tags and data lineage."""
        if self.tracker is None:
            return
        self.tracker.start(params=params, tags=tags)
        if lineage is not None:
            self.tracker.log_lineage(lineage)

    def start(self, **info: Any) -> None:
        """The ``start`` progress event (the display appears)."""
        self._reporting = True
        self.reporter.start(**info)

    def fail(self) -> None:
        """End both as failed (once; nothing after :meth:`complete`)."""
        if self._ended:
            return
        self._ended = True
        try:
            if self._reporting:
                self.reporter.end("failed")
        finally:
            if self.tracker is not None:
                self.tracker.finish("FAILED")

    def complete(
        self,
        status: Status,
        log: Callable[[Tracker], None] | None = None,
        *,
        failed: bool = False,
        **info: Any,
    ) -> str | None:
        """End the job with ``status`` (``info`` goes with the ``end`` event); then run
        ``log(tracker)`` (final metrics, the model...) and end the MLflow run, FAILED when
        ``failed`` (the job returned a result but also an error).

        A tracking failure here does not cost the trained result: it is returned (and kept
        in ``tracking_error``), see :meth:`Tracker.complete`.
        """
        self.reporter.end(status, **info)
        self._ended = True
        tracker = self.tracker
        if tracker is None:
            return None
        mlflow_status = MLFLOW_STATUS["failed"] if failed else MLFLOW_STATUS[status]
        self.tracking_error = tracker.complete(
            (lambda: log(tracker)) if log is not None else (lambda: None), mlflow_status
        )
        self.run_id = tracker.run_id
        self.uri = tracker.uri
        return self.tracking_error


@dataclass
class FitCall:
    """One call of a trainer's :meth:`Trainer.fit`: the client it runs on (current while the
    trainer's ``_fit`` runs) and the arguments it was given."""

    client: Client
    cluster: Any
    df: Any
    label: str
    features: list[str] | None
    valid: Any
    lineage: Any
    callbacks: list[CallbackLike] | CallbackLike | None
    progress: DisplayLike


class Trainer:
    """What every trainer class (``TorchTrainer``, ``XGBoostTrainer``) shares: the MLflow
    settings, the fitted state it reports (``features``, ``label``, ``status``, ``run_id``,
    ``tracking_uri``, ``tracking_error``), :meth:`fit` and the :class:`TrainingRun` of each
    fit. A subclass implements ``_fit(call)``.
    """

    def __init__(
        self,
        *,
        tracking: bool | Tracker | str | None,
        experiment: str,
        run_name: str | None,
    ) -> None:
        self.tracking = tracking
        self.experiment = experiment
        self.run_name = run_name
        self.features: list[str] = []
        self.label: str | None = None
        self.run_id: str | None = None
        self.tracking_uri: str | None = None
        self.status: str | None = None
        #: why logging to MLflow failed after training (the model is kept), else None
        self.tracking_error: str | None = None

    def fit(
        self: _T,
        cluster: Any,
        df: Any,
        label: str,
        *,
        features: list[str] | None = None,
        valid: Any = None,
        lineage: Any = None,
        callbacks: list[CallbackLike] | CallbackLike | None = None,
        progress: DisplayLike = "auto",
    ) -> _T:
        """Train on ``df`` (dask or pandas DataFrame) to predict column ``label``.

        ``features``: the feature columns (default: every other column). ``valid`` is an
        optional validation frame with the same columns (its metrics are reported as
        ``valid-<metric>``). ``lineage`` is the data's manifest (a dict or an object with
        ``to_dict()``), logged with the run.
        """
        client = get_client(cluster)
        # the trainers' libraries and dask look the client up with get_client(): make ours
        # current (it need not be the process-wide default)
        with client.as_current():
            return self._fit(
                FitCall(client, cluster, df, label, features, valid, lineage, callbacks, progress)
            )

    def _fit(self: _T, call: FitCall) -> _T:
        raise NotImplementedError

    def _training_run(self, call: FitCall, job: str, total: int | None, title: str) -> TrainingRun:
        """The :class:`TrainingRun` of one fit, with this trainer's tracking settings."""
        return TrainingRun(
            job,
            total,
            tracking=self.tracking,
            run_name=self.run_name,
            experiment=self.experiment,
            callbacks=call.callbacks,
            progress=call.progress,
            title=title,
        )

    def _complete(
        self,
        run: TrainingRun,
        outcome: JobOutcome[Any],
        features: list[str],
        label: str,
        log: Callable[[Tracker], None],
        **info: Any,
    ) -> None:
        """Record the fitted state, then end the run (:meth:`TrainingRun.complete`) and keep
        its MLflow run id, URI and tracking error."""
        self.features = features
        self.label = label
        self.status = outcome.status
        self.tracking_error = run.complete(
            outcome.status, log, failed=outcome.error is not None, **info
        )
        self.run_id = run.run_id
        self.tracking_uri = run.uri
