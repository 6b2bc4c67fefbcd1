"""What ``load`` learned while planning, served to dask's own planning of the same frame.

``load`` lists the files once (for the lineage manifest) and reads every Parquet footer
once (row counts, validation). A moment later, in the same process, dask's
``read_parquet`` plans the frame and asks the filesystem the same questions again: is the
path a directory, is there a ``_metadata`` file, which files lie below it, what does the
first file's footer say. Against object storage each of those is a round trip (a
listing, two ranged reads of the same footer) on the critical path of every load.

A :class:`PlanSnapshot` holds the answers ``load`` already has: the recursive listing
of the directory (``find(root, withdirs=True, detail=True)``, taken once) and the tail
bytes of each file whose footer was read. While a snapshot is attached to the
:class:`~workbench.data.metering.MeteredFileSystem` that dask plans with (only during
``load``, only in this process: a snapshot never travels to workers), listing and
metadata calls under the root are answered from it, and opening a file whose tail is
known gives a file object that serves reads inside the tail from memory and opens the
real file only for reads outside it. Anything the snapshot does not know is asked of the
store as before. Reads served from memory are not storage reads and are not counted by
the IO metrics (they were counted once, when ``load`` read the footers).
"""

from __future__ import annotations

import io
import posixpath
from collections.abc import Callable
from typing import Any


def normalize(path: str) -> str:
    """A stripped path without trailing slashes (the form listings use as keys)."""
    return path.rstrip("/") or path


class PlanSnapshot:
    """A listing of ``root`` (or none) and known file tails, answered without IO."""

    def __init__(
        self,
        root: str | None,
        entries: dict[str, dict[str, Any]] | None,
        tails: dict[str, tuple[int, bytes]] | None = None,
    ) -> None:
        self.root = normalize(root) if root is not None else None
        #: what ``find(root, withdirs=True, detail=True)`` returned, in its order
        self.found = {normalize(k): v for k, v in entries.items()} if entries is not None else None
        self.entries = dict(self.found) if self.found is not None else None
        if self.entries is not None and self.root is not None and self.root not in self.entries:
            self.entries[self.root] = {"name": self.root, "size": 0, "type": "directory"}
        self.tails = dict(tails or {})
        self.served = 0  # calls answered from the snapshot (for tests and debugging)

    def _under_root(self, path: str) -> bool:
        return self.root is not None and (path == self.root or path.startswith(self.root + "/"))

    # -- listing and metadata ------------------------------------------------------------
    def info(self, path: str) -> dict[str, Any] | None:
        """The entry of ``path``, None when the snapshot cannot tell; raises
        FileNotFoundError for a path under the root that the listing does not hold."""
        if self.entries is None:
            return None
        path = normalize(path)
        if not self._under_root(path):
            return None
        self.served += 1
        entry = self.entries.get(path)
        if entry is None:
            raise FileNotFoundError(path)
        return entry

    def find(
        self, path: str, maxdepth: int | None, withdirs: bool, detail: bool, kwargs: dict[str, Any]
    ) -> Any:
        """``fs.find(path, ...)`` for the root itself (no depth limit), else None."""
        if self.found is None or maxdepth is not None or kwargs or normalize(path) != self.root:
            return None
        self.served += 1
        out = {
            name: info
            for name, info in self.found.items()
            if withdirs or info.get("type") != "directory"
        }
        return out if detail else list(out)

    # -- file tails ------------------------------------------------------------------------
    def open(self, path: str, opener: Callable[[], Any]) -> Any:
        """A file serving the known tail of ``path`` from memory, or None."""
        known = self.tails.get(normalize(path))
        if known is None:
            return None
        offset, data = known
        self.served += 1
        return TailFile(path, offset, data, opener)


class TailFile(io.RawIOBase):
    """A read-only file of size ``offset + len(data)`` whose last bytes are ``data``.

    Reads within the tail come from memory; the first read before ``offset`` opens the
    real file with ``opener`` and reads from it from then on.
    """

    def __init__(self, path: str, offset: int, data: bytes, opener: Callable[[], Any]) -> None:
        super().__init__()
        self.path = path
        self.name = posixpath.basename(path)
        self.size = offset + len(data)
        self._offset = offset
        self._data = memoryview(data)
        self._opener = opener
        self._real: Any = None
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if whence == io.SEEK_SET:
            pos = offset
        elif whence == io.SEEK_CUR:
            pos = self._pos + offset
        elif whence == io.SEEK_END:
            pos = self.size + offset
        else:
            raise ValueError(f"invalid whence {whence}")
        if pos < 0:
            raise OSError(f"negative seek position {pos}")
        self._pos = pos
        return pos

    def read(self, size: int | None = -1) -> bytes:
        end = self.size if size is None or size < 0 else min(self.size, self._pos + size)
        if end <= self._pos:
            return b""
        if self._pos >= self._offset:
            out = bytes(self._data[self._pos - self._offset : end - self._offset])
        else:
            if self._real is None:
                self._real = self._opener()
            self._real.seek(self._pos)
            out = self._real.read(end - self._pos)
        self._pos += len(out)
        return out

    def readall(self) -> bytes:
        return self.read(-1)

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        data = self.read(len(view))
        view[: len(data)] = data
        return len(data)

    def close(self) -> None:
        if self._real is not None:
            self._real.close()
            self._real = None
        super().close()
