"""Local copies of remote files, for repeated reads (``load(..., cache=True)``).

:class:`LocalCopyFileSystem` is an fsspec layer: the first read of a remote file copies
the whole file into the cache directory (``WORKBENCH_DATA_CACHE``, default
``~/.cache/workbench/data``) and later reads are served from that copy. Each copy is
named by a hash of the file's URL *and* its version (ETag, version id, size and
modification time from one ``info`` call), so a changed remote file is fetched again
rather than served stale. Copies are written to a temporary name and renamed into place,
so several worker processes can share the directory and an interrupted download never
looks complete. Nothing is evicted: delete the directory to reclaim space.

Compared with fsspec's ``filecache``, it keeps no shared metadata file (which concurrent
Dask workers would overwrite) and returns file objects that close themselves quietly.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from typing import Any

import fsspec
from fsspec.implementations.local import LocalFileOpener, LocalFileSystem
from fsspec.spec import AbstractFileSystem

from .fslayer import IDENTITY_METHODS, DelegatingFileSystem
from .storage import file_facts

PROTOCOL = "wbcache"


class LocalCopyFileSystem(DelegatingFileSystem):
    """Serves reads of ``fs`` from whole-file local copies in ``cache_dir``."""

    protocol = PROTOCOL
    own_methods = frozenset(
        {
            "cache_dir",
            "open",
            "_open",
            "cat_file",
            "cat_ranges",
            "cat",
            "read_block",
            "head",
            "tail",
            "local_copy",
        }
        | IDENTITY_METHODS
    )

    def __init__(
        self,
        fs: AbstractFileSystem | None = None,
        cache_dir: str = "",
        target_protocol: str | None = None,
        target_options: dict[str, Any] | None = None,
        fo: Any = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if fs is None:
            if target_protocol is None:
                raise ValueError("LocalCopyFileSystem needs fs= or target_protocol=")
            fs = fsspec.filesystem(target_protocol, **(target_options or {}))
        if not cache_dir:
            raise ValueError("LocalCopyFileSystem needs cache_dir=")
        self.fs = fs
        self.cache_dir = os.path.abspath(os.path.expanduser(cache_dir))

    def layer_settings(self) -> dict[str, Any]:
        return {"cache_dir": self.cache_dir}

    def __repr__(self) -> str:
        return f"<LocalCopyFileSystem {self.cache_dir} over {self.fs!r}>"

    # -- the cache --------------------------------------------------------------------
    def local_copy(self, path: str) -> str:
        """Path of an up-to-date local copy of ``path``, downloading it if needed."""
        path = self.fs._strip_protocol(path)
        facts = file_facts(self.fs.info(path))
        url = self.fs.unstrip_protocol(path)
        key = "|".join(
            [
                url,
                str(facts["etag"]),
                str(facts["version"]),
                str(facts["size"]),
                str(facts["mtime"]),
            ]
        )
        digest = hashlib.sha256(key.encode()).hexdigest()
        name = os.path.join(self.cache_dir, digest[:2], digest + _suffix(path))
        if os.path.exists(name) and (
            facts["size"] is None or os.path.getsize(name) == facts["size"]
        ):
            return name
        os.makedirs(os.path.dirname(name), exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(name), prefix=".part-")
        os.close(fd)
        try:
            self.fs.get_file(path, tmp)
            os.replace(tmp, name)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        return name

    open = AbstractFileSystem.open
    read_block = AbstractFileSystem.read_block
    head = AbstractFileSystem.head
    tail = AbstractFileSystem.tail

    def _open(self, path: str, mode: str = "rb", **kwargs: Any) -> Any:
        if "r" not in mode:
            return self.fs._open(path, mode=mode, **kwargs)
        return LocalFileOpener(self.local_copy(path), "rb", fs=LocalFileSystem())

    def cat_file(
        self, path: str, start: int | None = None, end: int | None = None, **kw: Any
    ) -> Any:
        return LocalFileSystem().cat_file(self.local_copy(path), start=start, end=end)

    def cat_ranges(
        self, paths: list[str], starts: Any, ends: Any, *args: Any, **kwargs: Any
    ) -> list[Any]:
        local = {p: self.local_copy(p) for p in dict.fromkeys(paths)}
        return list(
            LocalFileSystem().cat_ranges([local[p] for p in paths], starts, ends, *args, **kwargs)
        )

    def cat(self, path: Any, recursive: bool = False, on_error: str = "raise", **kw: Any) -> Any:
        paths = self.fs.expand_path(path, recursive=recursive)
        if isinstance(path, str) and len(paths) == 1 and paths[0] == self.fs._strip_protocol(path):
            return self.cat_file(paths[0])
        return {p: self.cat_file(p) for p in paths}


def _suffix(path: str) -> str:
    """Keep the file's extension on the copy (readers infer compression from it)."""
    base = path.rsplit("/", 1)[-1]
    return "." + base.split(".", 1)[1] if "." in base else ""


fsspec.register_implementation(PROTOCOL, LocalCopyFileSystem, clobber=True)
