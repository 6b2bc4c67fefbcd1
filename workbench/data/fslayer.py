"""Base class of workbench's fsspec layers: wrap a filesystem, override a few calls.

A layer (:class:`~workbench.data.metering.MeteredFileSystem`,
:class:`~workbench.data.caching.LocalCopyFileSystem`) names the methods it implements in
``own_methods``; every other attribute (listing, ``info``, ``protocol``, path handling) is
the wrapped filesystem's, so dask and pyarrow see the same paths and behaviour as with
the bare filesystem. The same technique as fsspec's own caching layers.
"""

from __future__ import annotations

import hashlib
from typing import Any, ClassVar

from fsspec.implementations.chained import ChainedFileSystem

_OWN_ATTRS = frozenset({"fs", "_fs_token_", "storage_args", "storage_options", "_intrans"})
#: Identity methods every layer answers itself (not the wrapped filesystem).
IDENTITY_METHODS = frozenset({"_fs_token", "fsid", "layer_settings"})


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

    # -- identity: the wrapped filesystem plus this layer's settings -------------------------
    def layer_settings(self) -> dict[str, Any]:
        """The keyword arguments that, with ``fs``, rebuild this layer (and distinguish it)."""
        raise NotImplementedError

    @property
    def _fs_token(self) -> str:
        inner = getattr(self.fs, "_fs_token", repr(self.fs))
        settings = "|".join(f"{k}={v}" for k, v in self.layer_settings().items())
        return hashlib.md5(f"{type(self).protocol}|{inner}|{settings}".encode()).hexdigest()

    @property
    def fsid(self) -> str:
        return f"{type(self).protocol}-{self._fs_token}"

    def __dask_tokenize__(self) -> str:
        return self._fs_token

    def __hash__(self) -> int:
        return int(self._fs_token, 16)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, type(self)) and self._fs_token == other._fs_token

    def __reduce__(self) -> tuple[Any, ...]:
        return _rebuild, (type(self), self.fs, self.layer_settings())


def _rebuild(
    cls: type[DelegatingFileSystem], fs: Any, settings: dict[str, Any]
) -> DelegatingFileSystem:
    return cls(fs=fs, **settings)
