"""Package attributes imported on first use (PEP 562), so that importing a package does
not import the heavy libraries behind it (dask, xgboost, torch, mlflow...)."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any


def lazy_attributes(package: str, modules: Mapping[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` for ``package``: ``name`` is imported from the submodule
    ``modules[name]`` on first use and kept in the package, so the next lookup finds it
    directly; any other name is an ``AttributeError``."""

    def __getattr__(name: str) -> Any:
        if name in modules:
            value = getattr(importlib.import_module(f"{package}.{modules[name]}"), name)
            setattr(sys.modules[package], name, value)
            return value
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__
