"""The backend registry: backend *classes* looked up lazily by name, fsspec-style.

(Running clusters are not here: their records are in
:mod:`workbench.clusters.record_store`.)

Built-ins are listed by import path (nothing is imported until asked for);
third parties add theirs with an entry point in the ``workbench.backends`` group::

    [project.entry-points."workbench.backends"]
    mybackend = "mypackage.workbench_backend:MyBackend"

or at run time with :func:`register_backend`.
"""

from __future__ import annotations

import difflib
import importlib.util
import time
from importlib.metadata import entry_points
from typing import TypedDict

from ..errors import BackendError, MissingDependencyError, UnknownBackendError, WorkbenchError
from ..imports import import_module
from .backend import Backend

ENTRY_POINT_GROUP = "workbench.backends"


class _Known(TypedDict):
    path: str
    hint: str


#: Backends that ship with workbench. ``hint`` is shown when importing fails.
known_backends: dict[str, _Known] = {
    "local": {
        "path": "workbench.clusters.local:LocalBackend",
        "hint": "pip install workbench (GPU workers: pip install 'workbench[gpu]')",
    },
    "gateway": {
        "path": "workbench.clusters.gateway:GatewayBackend",
        "hint": "pip install 'workbench[cloud]'",
    },
    "kubernetes": {
        "path": "workbench.clusters.kubernetes:KubernetesBackend",
        "hint": "pip install 'workbench[cloud]'",
    },
    "slurm": {
        "path": "workbench.clusters.slurm:SLURMBackend",
        "hint": "pip install 'workbench[slurm]'",
    },
}

_registry: dict[str, type[Backend]] = {}


def register_backend(name: str, cls: type[Backend] | str, clobber: bool = False) -> None:
    """Register a backend class (or an ``"module:Class"`` path) under ``name``."""
    if not clobber and (name in _registry or name in known_backends):
        raise ValueError(f"backend {name!r} is already registered; pass clobber=True to replace")
    if isinstance(cls, str):
        known_backends[name] = {"path": cls, "hint": f"install the package providing {cls}"}
        _registry.pop(name, None)
    else:
        _registry[name] = cls


def _entry_points() -> dict[str, str]:
    return {ep.name: ep.value for ep in entry_points(group=ENTRY_POINT_GROUP)}


def available_backends() -> list[str]:
    """Every backend name that can be asked for (importable or not)."""
    return sorted({*_registry, *known_backends, *_entry_points()})


def _load(name: str, path: str, hint: str) -> type[Backend]:
    module_name, _, attr = path.partition(":")
    try:
        module = import_module(module_name)
    except ImportError as exc:
        raise MissingDependencyError(
            f"backend {name!r} could not be imported ({exc}). Install it with: {hint}"
        ) from exc
    try:
        cls = getattr(module, attr)
    except AttributeError as exc:
        raise BackendError(f"backend {name!r}: {module_name} has no attribute {attr!r}") from exc
    if not (isinstance(cls, type) and issubclass(cls, Backend)):
        raise BackendError(f"backend {name!r}: {path} is not a workbench Backend subclass")
    return cls


def get_backend_class(name: str) -> type[Backend]:
    """The backend class registered as ``name``, importing it on first use."""
    if name in _registry:
        return _registry[name]
    if name in known_backends:
        spec = known_backends[name]
        cls = _load(name, spec["path"], spec["hint"])
    else:
        eps = _entry_points()
        if name not in eps:
            choices = available_backends()
            close = difflib.get_close_matches(name, choices, n=1)
            suggestion = f" Did you mean {close[0]!r}?" if close else ""
            raise UnknownBackendError(
                f"unknown backend {name!r}.{suggestion} Available backends: {', '.join(choices)}"
            )
        cls = _load(name, eps[name], f"reinstall the package that provides entry point {name!r}")
    _registry[name] = cls
    return cls


def import_backend_modules() -> dict[str, str]:
    """Import every available backend and its ``imports_at_server_start``, now, on this
    thread.

    The Jupyter server extension calls it on the server's main thread at start: a module
    that sets signal handlers at import (dask-jobqueue) would fail when first imported by
    a REST route in the thread pool, and the import must not replace the server's own
    handlers either (:func:`workbench.imports.import_module`). Returns, for each backend,
    what happened: the seconds it took, or why it was skipped (not installed, broken).
    """
    done: dict[str, str] = {}
    for name in available_backends():
        start = time.perf_counter()
        try:
            cls = get_backend_class(name)
            wanted = cls.imports_at_server_start
            missing = [m for m in wanted if importlib.util.find_spec(m) is None]
            for module in wanted:
                if module not in missing:
                    import_module(module)
        except (WorkbenchError, ImportError) as exc:
            done[name] = f"skipped: {exc}"
            continue
        took = f"{time.perf_counter() - start:.2f} s"
        done[name] = f"{took}, not installed: {', '.join(missing)}" if missing else took
    return done
