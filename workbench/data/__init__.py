"""Data loading into cuDF / pandas dask DataFrames, with a catalog, lineage and IO metrics.

    import workbench.data as wd

    df = wd.load("s3://bucket/trips/", columns=["fare"], filters=[("year", "==", 2024)])
    wd.last_manifest().to_json()        # what was read: files, sizes, ETags, schema, rows
    wd.iostats.snapshot()               # bytes read, files, throughput per load

``iostats`` and ``lineage`` are plain Python; the loader and the catalog (dask, fsspec,
pydantic) are imported on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_attributes
from . import iostats, lineage
from .lineage import FileEntry, Manifest, last_manifest, manifest_of

if TYPE_CHECKING:
    from .catalog import DataCatalog, Dataset, get_dataset, list_datasets, load_catalog
    from .loader import load

__all__ = [
    "DataCatalog",
    "Dataset",
    "FileEntry",
    "Manifest",
    "get_dataset",
    "iostats",
    "last_manifest",
    "lineage",
    "list_datasets",
    "load",
    "load_catalog",
    "manifest_of",
]

_LAZY = {
    "load": "loader",
    "Dataset": "catalog",
    "DataCatalog": "catalog",
    "get_dataset": "catalog",
    "list_datasets": "catalog",
    "load_catalog": "catalog",
}

__getattr__ = lazy_attributes(__name__, _LAZY)
