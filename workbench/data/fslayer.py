"""Base class of workbench's fsspec layers: wrap a filesystem, override a few calls.

A layer (:class:`~workbench.data.metering.MeteredFileSystem`,
:class:`~workbench.data.caching.LocalCopyFileSystem`) names the methods it implements in
``own_methods``; every other attribute (listing, ``info``, ``protocol``, path handling) is
the wrapped filesystem's, so dask and pyarrow see the same paths and behaviour as with
the bare filesystem. The same technique as fsspec's own caching layers.
"""

from __future__ import annotations

from typing import Any, ClassVar

from fsspec.implementations.chained import ChainedFileSystem

_OWN_ATTRS = frozenset({"fs", "_fs_token_", "storage_args", "storage_options", "_intrans"})


class DelegatingFileSystem(ChainedFileSystem):  # type: ignore[misc]
    """A chained fsspec filesystem that forwards everything it does not override."""

    own_methods: ClassVar[frozenset[str]] = frozenset()

    def __getattribute__(self, item: str) -> Any:
        if item.startswith("__") or item in type(self).own_methods:
            return object.__getattribute__(self, item)
        d = object.__getattribute__(self, "__dict__")
        if item in _OWN_ATTRS and item in d:
            return d[item]
        fs = d.get("fs")
        if fs is None:  # still being constructed
            return object.__getattribute__(self, item)
        return getattr(fs, item)
