"""Fixtures of the training tests: one small CPU cluster, datasets shipped with scikit-learn,
and a pre-migrated MLflow SQLite store (creating one takes seconds; copying it, milliseconds).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest


@pytest.fixture(scope="session")
def train_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A 2-worker CPU cluster (1 thread each) shared by the training tests.

    Its record goes to a private record store, and its Client is not made the default,
    so tests of other features never see it.
    """
    from distributed import Client

    import workbench
    from workbench.clusters import RecordStore

    store = RecordStore(tmp_path_factory.mktemp("train-clusters"))
    handle = workbench.launch(
        "local-cpu",
        n_workers=2,
        threads_per_worker=1,
        memory_limit="2GiB",
        dashboard_address=":0",
        store=store,
    )
    client = Client(handle.cluster, set_as_default=False)
    try:
        client.wait_for_workers(2, timeout=120)
        yield client
    finally:
        client.close()
        handle.close()


@pytest.fixture(scope="session")
def _mlflow_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import warnings

    from mlflow import MlflowClient

    db = tmp_path_factory.mktemp("mlflow-template") / "mlflow.db"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        MlflowClient(tracking_uri=f"sqlite:///{db}").search_experiments()
    return db


@pytest.fixture
def tracking_store(
    workbench_home: Path, _mlflow_template: Path, monkeypatch: pytest.MonkeyPatch
) -> Path:
    """The default MLflow store of this test's state directory, already migrated."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    target = workbench_home / "state" / "mlflow" / "mlflow.db"
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(_mlflow_template, target)
    return target


@pytest.fixture(scope="session")
def breast_cancer() -> Any:
    """scikit-learn's breast cancer data (569 rows, 30 features, binary 'target')."""
    import pandas as pd
    from sklearn.datasets import load_breast_cancer

    X, y = load_breast_cancer(return_X_y=True, as_frame=True)
    X.columns = [c.replace(" ", "_") for c in X.columns]
    return pd.concat([X, y], axis=1).sample(frac=1.0, random_state=0).reset_index(drop=True)


@pytest.fixture(scope="session")
def digits() -> Any:
    """scikit-learn's 8x8 digits (1797 rows, 64 features scaled to [0, 1], 'target' 0-9)."""
    import pandas as pd
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True, as_frame=True)
    X = (X / 16.0).astype("float32")
    return pd.concat([X, y], axis=1).sample(frac=1.0, random_state=0).reset_index(drop=True)
