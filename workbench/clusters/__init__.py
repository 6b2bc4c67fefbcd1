"""Dask clusters from named profiles on pluggable backends."""

from .backend import Backend, BackendOptions
from .handle import ClusterHandle, launch
from .profiles import Profile, get_profile, list_profiles, load_catalog
from .registry import available_backends, get_backend_class, register_backend
from .running import ClusterRecord, ClusterRegistry

__all__ = [
    "Backend",
    "BackendOptions",
    "ClusterHandle",
    "ClusterRecord",
    "ClusterRegistry",
    "Profile",
    "available_backends",
    "get_backend_class",
    "get_profile",
    "launch",
    "list_profiles",
    "load_catalog",
    "register_backend",
]
