"""Training on a workbench cluster: distributed XGBoost, PyTorch (DDP) and Optuna tuning.

    import workbench
    from workbench import training

    cluster = workbench.launch("local")
    model = training.train_xgboost(cluster, df, label="y", params={"objective": "binary:logistic"})
    net = training.train_torch(cluster, torch_module, df, label="y", loss="cross_entropy")
    search = training.tune(cluster, objective, n_trials=50, data=df)

Every call shows live progress (widgets in a notebook, tqdm in a terminal), accepts
``callbacks=`` for programmatic progress, and logs parameters, metrics, the model and the
data lineage to MLflow (:mod:`workbench.training.tracking`). The heavy libraries (xgboost,
torch, optuna, mlflow) are imported only by the functions that need them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_attributes
from .errors import (
    InvalidDataError,
    NotTrainedError,
    OptimizationError,
    TrainingError,
    UnknownNameError,
)
from .progress import (
    Callback,
    History,
    NotebookProgress,
    ProgressEvent,
    TerminalProgress,
)

if TYPE_CHECKING:
    from ._torch_driver import TorchTrainer, train_torch
    from ._tune import TuneResult, tune, xgboost_objective
    from ._xgboost import XGBoostTrainer, train_xgboost
    from .tracking import Tracker, tracking_uri

__all__ = [
    "Callback",
    "History",
    "InvalidDataError",
    "NotTrainedError",
    "NotebookProgress",
    "OptimizationError",
    "ProgressEvent",
    "TerminalProgress",
    "TorchTrainer",
    "Tracker",
    "TrainingError",
    "TuneResult",
    "UnknownNameError",
    "XGBoostTrainer",
    "tracking_uri",
    "train_torch",
    "train_xgboost",
    "tune",
    "xgboost_objective",
]

_LAZY = {
    "XGBoostTrainer": "_xgboost",
    "train_xgboost": "_xgboost",
    "TorchTrainer": "_torch_driver",
    "train_torch": "_torch_driver",
    "tune": "_tune",
    "TuneResult": "_tune",
    "xgboost_objective": "_tune",
    "Tracker": "tracking",
    "tracking_uri": "tracking",
}

__getattr__ = lazy_attributes(__name__, _LAZY)
