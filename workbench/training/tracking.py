"""Experiment tracking with MLflow: parameters, metrics, models and data lineage.

Where runs go, first match wins:

1. ``MLFLOW_TRACKING_URI`` in the environment (MLflow's own variable);
2. ``mlflow_tracking_uri`` in workbench's ``config.yaml`` (a server such as
   ``http://mlflow.internal:5000``, or ``sqlite:////shared/team/mlflow.db``);
3. a SQLite store under the workbench state directory:
   ``$WORKBENCH_STATE_DIR/mlflow/mlflow.db``, artifacts beside it in ``artifacts/``.

Browse local runs with ``mlflow ui --backend-store-uri sqlite:///<state>/mlflow/mlflow.db``
(:func:`tracking_uri` prints the exact URI).

Everything is logged from the client process (the notebook kernel), never from workers, so
a cluster on other machines needs no access to the tracking store. Runs are written through
an explicit ``MlflowClient``: workbench never changes the global ``mlflow`` state of the
user's session.
"""

from __future__ import annotations

import contextlib
import json
import logging
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import config
from ..redact import redact_text
from .errors import InvalidDataError, TrainingError
from .progress import Callback, ProgressEvent

if TYPE_CHECKING:
    from mlflow import MlflowClient

logger = logging.getLogger(__name__)

DEFAULT_EXPERIMENT = "workbench"
MAX_PARAM_LENGTH = 6000


def default_store_dir() -> Path:
    return config.state_dir() / "mlflow"


def tracking_uri() -> str:
    """The MLflow tracking URI workbench logs to (see the module docstring for the order)."""
    import os

    env = os.environ.get("MLFLOW_TRACKING_URI")
    if env:
        return env
    value = config.settings().get("mlflow_tracking_uri")
    if value is not None:
        if not isinstance(value, str) or not value.strip():
            raise TrainingError(
                f"{config.settings_file()}: 'mlflow_tracking_uri' must be a URI string such "
                f"as 'http://host:5000' or 'sqlite:////path/mlflow.db', got {value!r}"
            )
        return value.strip()
    from ..private import private_dir

    store = private_dir(default_store_dir())
    return f"sqlite:///{store / 'mlflow.db'}"


def _artifact_location(uri: str) -> str | None:
    """Where a new experiment keeps artifacts for SQLite stores (MLflow's default is ./mlruns,
    relative to whatever directory the kernel happens to run in)."""
    if uri.startswith("sqlite:///"):
        db = Path(uri[len("sqlite:///") :])
        return (db.parent / "artifacts").resolve().as_uri()
    return None


def recorded_lineage(frame: Any) -> Any:
    """The manifest ``workbench.data.load`` recorded for ``frame``, or None (a frame not
    returned by ``load``, or one derived from it, has none)."""
    if frame is None:
        return None
    try:
        from ..data.lineage import manifest_of
    except ImportError:  # the data extra is not installed
        return None
    try:
        return manifest_of(frame)
    except LookupError:
        return None


def lineage_dict(lineage: Any, frame: Any = None) -> dict[str, Any] | None:
    """A JSON-serialisable dict from a lineage manifest (a dict or an object with to_dict).

    Without ``lineage``, the manifest recorded for ``frame`` by ``workbench.data.load``
    (if it has one) is used, so data loaded by workbench is tracked with no extra argument.
    """
    if lineage is None:
        lineage = recorded_lineage(frame)
    if lineage is None:
        return None
    data = lineage.to_dict() if hasattr(lineage, "to_dict") else lineage
    if not isinstance(data, dict):
        raise InvalidDataError(
            "lineage must be a dict or an object with to_dict() (such as the manifest "
            f"workbench.data.load records), got {type(lineage).__name__}"
        )
    try:
        json.dumps(data)
    except (TypeError, ValueError) as exc:
        raise InvalidDataError(f"lineage is not JSON-serialisable: {exc}") from None
    from ..redact import redact_value

    return dict(redact_value(data))  # no credential in a URI reaches MLflow


def pip_requirements(*packages: str) -> list[str]:
    """``name==version`` of each installed package, for an MLflow model's requirements."""
    from importlib.metadata import PackageNotFoundError, version

    out = []
    for name in packages:
        try:
            out.append(f"{name}=={version(name)}")
        except PackageNotFoundError:
            out.append(name)
    return out


def flatten_params(params: dict[str, Any], prefix: str = "") -> dict[str, str]:
    """MLflow params are flat strings: nested dicts become dotted keys, long values are cut."""
    out: dict[str, str] = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten_params(value, prefix=f"{name}."))
            continue
        text = value if isinstance(value, str) else json.dumps(value, default=str)
        out[name] = text[:MAX_PARAM_LENGTH]
    return out


class Tracker(Callback):
    """One MLflow run. As a progress callback it logs every step's metrics (buffered).

    ``Tracker(experiment="churn")`` logs to the resolved tracking URI; pass ``uri=`` to
    override it. ``parent_run_id`` nests the run (tuning trials under their search).
    """

    def __init__(
        self,
        experiment: str = DEFAULT_EXPERIMENT,
        *,
        run_name: str | None = None,
        uri: str | None = None,
        tags: dict[str, str] | None = None,
        parent_run_id: str | None = None,
        flush_interval: float = 2.0,
    ) -> None:
        self.experiment = experiment
        self.run_name = run_name
        self.uri = uri
        self.tags = dict(tags or {})
        self.parent_run_id = parent_run_id
        self.flush_interval = flush_interval
        self.run_id: str | None = None
        self._client: MlflowClient | None = None
        self._buffer: list[Any] = []
        self._last_flush = 0.0

    # -- the store -----------------------------------------------------------------------
    @property
    def client(self) -> MlflowClient:
        if self._client is None:
            from mlflow import MlflowClient

            self.uri = self.uri or tracking_uri()
            self._client = MlflowClient(tracking_uri=self.uri)
        return self._client

    def experiment_id(self) -> str:
        client = self.client
        exp = client.get_experiment_by_name(self.experiment)
        if exp is not None:
            return str(exp.experiment_id)
        assert self.uri is not None
        try:
            return str(
                client.create_experiment(
                    self.experiment, artifact_location=_artifact_location(self.uri)
                )
            )
        except Exception:
            exp = client.get_experiment_by_name(self.experiment)  # created meanwhile elsewhere
            if exp is None:
                raise
            return str(exp.experiment_id)

    # -- a run -----------------------------------------------------------------------------
    def start(
        self, params: dict[str, Any] | None = None, tags: dict[str, str] | None = None
    ) -> str:
        from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

        all_tags = {**self.tags, **(tags or {})}
        if self.parent_run_id:
            all_tags[MLFLOW_PARENT_RUN_ID] = self.parent_run_id
        run = self.client.create_run(self.experiment_id(), run_name=self.run_name, tags=all_tags)
        self.run_id = str(run.info.run_id)
        if params:
            self.log_params(params)
        return self.run_id

    def _require_run(self) -> str:
        if self.run_id is None:
            raise TrainingError("the MLflow run has not been started (call Tracker.start())")
        return self.run_id

    def log_params(self, params: dict[str, Any]) -> None:
        from mlflow.entities import Param

        flat = flatten_params(params)
        items = [Param(k, v) for k, v in flat.items()]
        for i in range(0, len(items), 100):  # MLflow's batch limit
            self.client.log_batch(self._require_run(), params=items[i : i + 100])

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        for name, value in metrics.items():
            self._buffer.append(Metric(_metric_key(name), float(value), now, step or 0))
        self.flush()

    def set_tags(self, tags: dict[str, str]) -> None:
        from mlflow.entities import RunTag

        self.client.log_batch(
            self._require_run(), tags=[RunTag(k, redact_text(str(v))) for k, v in tags.items()]
        )

    def flush(self) -> None:
        if not self._buffer or self.run_id is None:
            return
        buffer, self._buffer = self._buffer, []
        for i in range(0, len(buffer), 1000):
            self.client.log_batch(self.run_id, metrics=buffer[i : i + 1000])
        self._last_flush = time.monotonic()

    def log_dict(self, data: dict[str, Any], artifact_file: str) -> None:
        self.client.log_dict(self._require_run(), data, artifact_file)

    def log_lineage(self, lineage: Any) -> None:
        data = lineage_dict(lineage)
        if data is None:
            return
        self.log_dict(data, "lineage.json")
        tags = {"workbench.lineage": "lineage.json"}
        if isinstance(data.get("fingerprint"), str):
            tags["workbench.data.fingerprint"] = data["fingerprint"]
        if isinstance(data.get("uri"), str):
            tags["workbench.data.uri"] = data["uri"][:5000]
        self.set_tags(tags)

    def log_artifacts(self, local_dir: str | Path, artifact_path: str | None = None) -> None:
        self.client.log_artifacts(self._require_run(), str(local_dir), artifact_path)

    def log_model(self, save: Any, artifact_path: str = "model") -> None:
        """``save(directory)`` writes the model files; they are logged under artifact_path."""
        import warnings

        with tempfile.TemporaryDirectory(prefix="workbench-model-") as tmp:
            target = Path(tmp) / artifact_path
            with warnings.catch_warnings():
                # mlflow.pyfunc warns about its own type hints on first import.
                warnings.filterwarnings("ignore", message=".*Any type hint is inferred")
                save(target)
            self.log_artifacts(target, artifact_path)

    def finish(self, status: str = "FINISHED") -> None:
        """End the run: ``FINISHED``, ``FAILED`` or ``KILLED`` (interrupted)."""
        if self.run_id is None:
            return
        try:
            self.flush()
        finally:
            self.client.set_terminated(self.run_id, status=status)

    def complete(self, log: Callable[[], None], status: str) -> str | None:
        """After training: run ``log`` (final metrics, the model...) and end the run.

        A tracking failure here (store unreachable, disk full) must not cost the trained
        model: it is logged as a warning, the run is marked FAILED, and the message returned.
        """
        try:
            log()
        except Exception as exc:
            logger.warning("MLflow logging failed after training; the model is kept: %s", exc)
            with contextlib.suppress(Exception):
                self.finish("FAILED")
            return f"{type(exc).__name__}: {exc}"
        try:
            self.finish(status)
        except Exception as exc:
            logger.warning("could not end MLflow run %s: %s", self.run_id, exc)
            return f"{type(exc).__name__}: {exc}"
        return None

    # -- as a progress callback -------------------------------------------------------------
    def on_step(self, event: ProgressEvent) -> None:
        from mlflow.entities import Metric

        if self.run_id is None:
            return
        now = int(time.time() * 1000)
        for name, value in event.metrics.items():
            self._buffer.append(Metric(_metric_key(name), float(value), now, event.step))
        if time.monotonic() - self._last_flush >= self.flush_interval:
            self.flush()

    def on_end(self, event: ProgressEvent) -> None:
        self.flush()

    @property
    def run_url(self) -> str | None:
        if self.run_id is None or self.uri is None:
            return None
        if self.uri.startswith(("http://", "https://")):
            exp = self.client.get_run(self.run_id).info.experiment_id
            return f"{self.uri.rstrip('/')}/#/experiments/{exp}/runs/{self.run_id}"
        return None


def _metric_key(name: str) -> str:
    """MLflow metric names allow letters, digits, ``_-. /``; others become ``_``."""
    return "".join(c if c.isalnum() or c in "_-. /" else "_" for c in name)


def make_tracker(
    tracking: bool | Tracker | str | None, *, run_name: str | None, default_experiment: str
) -> Tracker | None:
    """``tracking=`` of the training functions: True, False/None, an experiment name, or a
    ready Tracker."""
    if tracking is None or tracking is False:
        return None
    if isinstance(tracking, Tracker):
        if tracking.run_name is None:
            tracking.run_name = run_name
        return tracking
    if tracking is True:
        return Tracker(default_experiment, run_name=run_name)
    if isinstance(tracking, str):
        return Tracker(tracking, run_name=run_name)
    raise TrainingError(
        f"tracking must be True, False, an experiment name or a Tracker, got {tracking!r}"
    )
