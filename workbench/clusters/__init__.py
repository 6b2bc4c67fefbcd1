"""Dask clusters from named profiles on pluggable backends.

Two registries, not to be confused: the *backend registry* (:mod:`.backend_registry`:
backend classes by name, ``get_backend_class("slurm")``) and the *record store*
(:mod:`.record_store`: one record per running cluster on disk), which
:class:`ClusterControl` acts on from any process.
"""

from __future__ import annotations

import warnings
from typing import Any

from .backend import Backend, BackendOptions
from .backend_registry import available_backends, get_backend_class, register_backend
from .control import ClusterControl
from .handle import ClusterHandle, launch
from .profiles import Profile, get_profile, list_profiles, load_catalog
from .record import ClusterRecord
from .record_store import RecordStore

__all__ = [
    "Backend",
    "BackendOptions",
    "ClusterControl",
    "ClusterHandle",
    "ClusterRecord",
    "Profile",
    "RecordStore",
    "available_backends",
    "get_backend_class",
    "get_profile",
    "launch",
    "list_profiles",
    "load_catalog",
    "register_backend",
]


def __getattr__(name: str) -> Any:
    if name == "ClusterRegistry":
        warnings.warn(
            "workbench.clusters.ClusterRegistry is now ClusterControl (requests about "
            "running clusters) over RecordStore (their records on disk)",
            DeprecationWarning,
            stacklevel=2,
        )
        return ClusterControl
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
