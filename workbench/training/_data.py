"""Checking tabular training data before any training starts.

Training functions take a dask DataFrame (from ``workbench.data.load``, ``dd.read_parquet``,
anything) or a pandas DataFrame, a label column and optionally the feature columns.
Everything that would make training fail later, or silently train on the wrong thing, is
reported here with the column names involved.
"""

from __future__ import annotations

import concurrent.futures
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .errors import InvalidDataError

if TYPE_CHECKING:
    import dask.dataframe as dd
    from distributed import Client


@dataclass
class Tabular:
    """Validated features and label, persisted on the cluster."""

    X: dd.DataFrame
    y: dd.Series
    features: list[str]
    label: str
    n_rows: int
    categorical: bool
    #: the row and missing-label counts still being computed (``prepare(wait=False)``)
    pending: Any = field(default=None, repr=False, compare=False)
    what: str = field(default="training data", repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        return {"features": self.features, "label": self.label, "n_rows": self.n_rows}

    def check(self) -> Tabular:
        """Wait for the row counts; InvalidDataError for empty data or missing labels."""
        if self.pending is None:
            return self
        fetched = self.pending
        n_rows, n_missing = (int(v) for v in fetched.result())
        self.pending = None
        if n_rows == 0:
            raise InvalidDataError(
                f"{self.what} is empty (0 rows); check the filters used to load it"
            )
        if n_missing:
            raise InvalidDataError(
                f"{self.what}: {n_missing} of {n_rows} rows have no label ({self.label!r} is "
                f"missing); drop them first, e.g. df.dropna(subset=[{self.label!r}])"
            )
        self.n_rows = n_rows
        return self


_gather_pool: concurrent.futures.ThreadPoolExecutor | None = None
_gather_lock = threading.Lock()


def _gatherer() -> concurrent.futures.ThreadPoolExecutor:
    global _gather_pool
    with _gather_lock:
        if _gather_pool is None:
            _gather_pool = concurrent.futures.ThreadPoolExecutor(
                max_workers=2, thread_name_prefix="workbench-counts"
            )
        return _gather_pool


def as_dask(df: Any, npartitions: int, what: str = "data") -> dd.DataFrame:
    """A dask DataFrame from a dask or pandas DataFrame."""
    import dask.dataframe as dd
    import pandas as pd

    if isinstance(df, dd.DataFrame):
        return df
    if isinstance(df, pd.DataFrame):
        out: dd.DataFrame = dd.from_pandas(df, npartitions=max(1, min(npartitions, len(df) or 1)))
        return out
    raise InvalidDataError(
        f"{what}: expected a dask or pandas DataFrame (e.g. from workbench.data.load), "
        f"got {type(df).__name__}"
    )


def _is_usable_dtype(dtype: Any) -> bool:
    import pandas as pd

    return bool(
        pd.api.types.is_numeric_dtype(dtype)
        or pd.api.types.is_bool_dtype(dtype)
        or isinstance(dtype, pd.CategoricalDtype)
    )


def select_columns(
    columns: list[str], label: str, features: list[str] | None, what: str = "data"
) -> list[str]:
    if not isinstance(label, str) or not label:
        raise InvalidDataError(f"label must be a column name, got {label!r}")
    if label not in columns:
        raise InvalidDataError(
            f"{what}: label column {label!r} is not in the data; columns are: "
            f"{', '.join(map(str, columns)) or '(none)'}"
        )
    if features is None:
        features = [c for c in columns if c != label]
    else:
        features = list(features)
        missing = [f for f in features if f not in columns]
        if missing:
            raise InvalidDataError(
                f"{what}: feature column(s) {', '.join(map(repr, missing))} not in the data; "
                f"columns are: {', '.join(map(str, columns))}"
            )
        if label in features:
            raise InvalidDataError(f"{what}: the label column {label!r} is also a feature")
    if not features:
        raise InvalidDataError(f"{what}: no feature columns besides the label {label!r}")
    return features


def prepare(
    client: Client,
    df: Any,
    label: str,
    features: list[str] | None = None,
    *,
    what: str = "training data",
    allow_categorical: bool = True,
    wait: bool = True,
) -> Tabular:
    """Validate, select and persist features and label; count rows and missing labels.

    The data is persisted once on the workers (training would load it anyway), so counting
    rows and missing labels afterwards costs no second read of the source. With
    ``wait=False`` the counts are left running on the cluster while the caller goes on
    (building a DMatrix, say); :meth:`Tabular.check` waits for them and raises what they
    show, before training starts.
    """
    n_workers = max(1, len(client.scheduler_info(n_workers=-1)["workers"]))
    ddf = as_dask(df, npartitions=n_workers, what=what)
    columns = [str(c) for c in ddf.columns]
    features = select_columns(columns, label, features, what)
    dtypes = ddf.dtypes
    bad = [f"{c} ({dtypes[c]})" for c in features if not _is_usable_dtype(dtypes[c])]
    if bad:
        hint = (
            "convert them to numbers or to 'category' dtype, or leave them out with features=[...]"
            if allow_categorical
            else "convert them to numbers, or leave them out with features=[...]"
        )
        raise InvalidDataError(
            f"{what}: feature column(s) of unsupported type: {', '.join(bad)}; {hint}"
        )
    if not _is_usable_dtype(dtypes[label]):
        raise InvalidDataError(
            f"{what}: label column {label!r} has type {dtypes[label]}; it must be numeric "
            "(encode class names as integers, e.g. with .cat.codes)"
        )
    categorical = any(str(dtypes[c]) == "category" for c in features)
    if categorical and not allow_categorical:
        raise InvalidDataError(
            f"{what}: categorical feature columns are not supported here; one-hot encode them"
        )
    X = ddf[features]
    y = ddf[label]
    X, y = client.persist([X, y])
    counts = client.compute([y.size, y.isna().sum()])
    # gathered by a helper thread, so that the round trip overlaps the caller's next steps
    fetched = _gatherer().submit(client.gather, counts)
    data = Tabular(
        X=X,
        y=y,
        features=features,
        label=label,
        n_rows=-1,
        categorical=categorical,
        pending=fetched,
        what=what,
    )
    return data.check() if wait else data
