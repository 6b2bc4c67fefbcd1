"""An fsspec filesystem layer that counts the bytes readers take from storage.

``MeteredFileSystem`` wraps any fsspec filesystem (local, s3fs, adlfs, gcsfs, ...) and
delegates everything to it, except the calls that move file content (``open``,
``cat_file``, ``cat_ranges``, ``get_file`` ...), which it times and counts. Each file a
reader closes becomes one record, sent to the Dask scheduler as an event (topic
``workbench.io``, in batches from the worker's event loop: :mod:`workbench.data.outbox`)
when read on a worker, or counted directly in :mod:`workbench.data.iostats` when read in
this process.

It is registered with fsspec as protocol ``wbmeter`` so that chained URLs work where a
reader takes a URL and storage options rather than a filesystem object
(``wbmeter::s3://bucket/key`` with ``storage_options={"wbmeter": {...}, "s3": {...}}``),
and it pickles to workers with the filesystem it wraps.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import sys
import time
from collections.abc import Iterator
from typing import Any

import fsspec
from fsspec.spec import AbstractFileSystem

from . import iostats
from .fslayer import IDENTITY_METHODS, DelegatingFileSystem
from .outbox import outbox
from .planning import PlanSnapshot

PROTOCOL = "wbmeter"

#: "plan" while ``load`` is working out what to read in this process, else "read".
planning: contextvars.ContextVar[bool] = contextvars.ContextVar("wb_planning", default=False)

_OWN_METHODS = frozenset(
    {
        "load_id",
        "phase",
        "check_footer",
        "open",
        "_open",
        "cat_file",
        "cat_ranges",
        "cat",
        "get_file",
        "get",
        "read_block",
        "head",
        "tail",
        "_emit",
        "_footer_rows",
        # answered from a PlanSnapshot while ``load`` plans (see workbench.data.planning)
        "plan",
        "find",
        "info",
        "isdir",
        "isfile",
        "exists",
        "_planned",
        "_open_metered",
    }
    | IDENTITY_METHODS
)


def _current_worker() -> Any:
    """The Dask worker running this code, or None (without importing distributed)."""
    distributed = sys.modules.get("distributed")
    if distributed is None:
        return None
    try:
        return distributed.get_worker()
    except ValueError:
        return None


#: The magic bytes that end a Parquet file (after its footer).
PARQUET_MAGIC = b"PAR1"


def parquet_footer_size(data: Any) -> int | None:
    """Bytes at the end of a Parquet file taken by its footer, its length and the magic
    bytes, read from ``data``, the file's last bytes; None when they do not end with the
    magic bytes (or are too short for a Parquet file)."""
    if len(data) < 12 or bytes(data[-len(PARQUET_MAGIC) :]) != PARQUET_MAGIC:
        return None
    return int.from_bytes(bytes(data[-8:-4]), "little") + 8


def parquet_footer_rows(data: Any) -> int | None:
    """The row count in the Parquet footer at the end of ``data``, when ``data`` is the
    end of a Parquet file with its whole footer (what a reader fetches to plan its reads);
    None for any other bytes. Readers parse that footer anyway: counting its rows here
    spares ``load`` reading it again for the manifest."""
    n = len(data)
    footer = parquet_footer_size(data)
    if footer is None or footer > n:
        return None
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        tail = pa.py_buffer(data)
        return int(pq.read_metadata(pa.BufferReader(tail.slice(n - footer))).num_rows)
    except Exception:  # bytes that only look like a footer: the reader decides
        return None


class MeteredFile:
    """A read-only file object that counts bytes and time spent in reads.

    With ``check_footer="parquet"``, a read that reaches the end of the file must end with
    Parquet's magic bytes, or it raises :class:`~workbench.errors.CorruptDataError` naming
    the file (the reader's own error does not say which file of a dataset is damaged).
    """

    def __init__(
        self, f: Any, path: str, owner: MeteredFileSystem, check_footer: str | None = None
    ) -> None:
        self._f = f
        self._path = path
        self._owner = owner
        self._bytes = 0
        self._seconds = 0.0
        self._started = time.time()
        self._reported = False
        self._rows: int | None = None
        size = getattr(f, "size", None)
        self._size = size if check_footer == "parquet" and isinstance(size, int) else None

    def _check(self, data: Any) -> None:
        if self._size is None or len(data) < len(PARQUET_MAGIC) or self._f.tell() != self._size:
            return
        if bytes(data[-len(PARQUET_MAGIC) :]) != PARQUET_MAGIC:
            from ..errors import CorruptDataError

            raise CorruptDataError(
                f"{self._path} is not a valid Parquet file (no Parquet footer; {self._size} "
                "bytes). It may be truncated, still being written, or another format."
            )
        if self._rows is None:
            self._rows = parquet_footer_rows(data)

    # -- counted reads ---------------------------------------------------------------
    def read(self, *args: Any) -> Any:
        t0 = time.perf_counter()
        data = self._f.read(*args)
        self._seconds += time.perf_counter() - t0
        self._bytes += len(data)
        self._check(data)
        return data

    def read1(self, *args: Any) -> Any:
        reader = getattr(self._f, "read1", None) or self._f.read
        t0 = time.perf_counter()
        data = reader(*args)
        self._seconds += time.perf_counter() - t0
        self._bytes += len(data)
        self._check(data)
        return data

    def readinto(self, buffer: Any) -> Any:
        t0 = time.perf_counter()
        n = self._f.readinto(buffer)
        self._seconds += time.perf_counter() - t0
        self._bytes += n or 0
        if n:
            self._check(memoryview(buffer).cast("B")[:n])
        return n

    def readinto1(self, buffer: Any) -> Any:
        reader = getattr(self._f, "readinto1", None) or self._f.readinto
        t0 = time.perf_counter()
        n = reader(buffer)
        self._seconds += time.perf_counter() - t0
        self._bytes += n or 0
        if n:
            self._check(memoryview(buffer).cast("B")[:n])
        return n

    def readline(self, *args: Any) -> Any:
        t0 = time.perf_counter()
        line = self._f.readline(*args)
        self._seconds += time.perf_counter() - t0
        self._bytes += len(line)
        return line

    def readlines(self, hint: int = -1) -> list[Any]:
        lines: list[Any] = []
        total = 0
        for line in self:
            lines.append(line)
            total += len(line)
            if 0 < hint <= total:
                break
        return lines

    def __iter__(self) -> Iterator[Any]:
        return iter(self.readline, b"")

    # -- lifecycle --------------------------------------------------------------------
    def close(self) -> None:
        try:
            self._f.close()
        finally:
            self._report()

    def _report(self) -> None:
        if self._reported:
            return
        self._reported = True
        self._owner._emit(
            self._path, self._bytes, self._seconds, self._started, time.time(), self._rows
        )

    def __enter__(self) -> MeteredFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self._report()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._f, name)

    def __repr__(self) -> str:
        return f"<MeteredFile {self._path!r} wrapping {self._f!r}>"


class MeteredFileSystem(DelegatingFileSystem):
    """Delegates to ``fs`` (or ``target_protocol`` + ``target_options``) and counts reads
    against ``load_id``."""

    protocol = PROTOCOL
    own_methods = _OWN_METHODS

    def __init__(
        self,
        fs: AbstractFileSystem | None = None,
        target_protocol: str | None = None,
        target_options: dict[str, Any] | None = None,
        load_id: str = "",
        phase: str = "read",
        check_footer: str | None = None,
        fo: Any = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if fs is None:
            if target_protocol is None:
                raise ValueError("MeteredFileSystem needs fs= or target_protocol=")
            fs = fsspec.filesystem(target_protocol, **(target_options or {}))
        self.fs = fs
        self.load_id = load_id
        self.phase = phase
        #: "parquet": files read whole to their end must end like a Parquet file
        self.check_footer = check_footer
        #: set by ``load`` while dask plans the frame in this process; never pickled
        self.plan: PlanSnapshot | None = None

    def layer_settings(self) -> dict[str, Any]:
        settings: dict[str, Any] = {"load_id": self.load_id, "phase": self.phase}
        if self.check_footer:
            settings["check_footer"] = self.check_footer
        return settings

    def __repr__(self) -> str:
        return f"<MeteredFileSystem load={self.load_id} over {self.fs!r}>"

    # -- metered content access ---------------------------------------------------------
    open = AbstractFileSystem.open  # -> self._open, then compression / text on top
    read_block = AbstractFileSystem.read_block
    head = AbstractFileSystem.head
    tail = AbstractFileSystem.tail

    def _open(self, path: str, mode: str = "rb", **kwargs: Any) -> Any:
        plan = self.plan
        if plan is not None and mode == "rb":
            served = plan.open(
                self.fs._strip_protocol(path), lambda: self._open_metered(path, mode, kwargs)
            )
            if served is not None:
                return served
        return self._open_metered(path, mode, kwargs)

    def _open_metered(self, path: str, mode: str, kwargs: dict[str, Any]) -> Any:
        f = self.fs._open(path, mode=mode, **kwargs)
        if "r" not in mode:
            return f
        return MeteredFile(f, self.fs.unstrip_protocol(path), self, self.check_footer)

    # -- listing and metadata: from the plan snapshot while there is one ---------------------
    def _planned(self, path: str) -> dict[str, Any] | None:
        """The snapshot's entry for ``path`` (None: ask the store); FileNotFoundError for a
        path the snapshot knows is absent."""
        plan = self.plan
        if plan is None:
            return None
        return plan.info(self.fs._strip_protocol(path))

    def find(
        self,
        path: str,
        maxdepth: int | None = None,
        withdirs: bool = False,
        detail: bool = False,
        **kwargs: Any,
    ) -> Any:
        plan = self.plan
        if plan is not None:
            hit = plan.find(self.fs._strip_protocol(path), maxdepth, withdirs, detail, kwargs)
            if hit is not None:
                return hit
        return self.fs.find(path, maxdepth=maxdepth, withdirs=withdirs, detail=detail, **kwargs)

    def info(self, path: str, **kwargs: Any) -> Any:
        if not kwargs:
            entry = self._planned(path)
            if entry is not None:
                return entry
        return self.fs.info(path, **kwargs)

    def isdir(self, path: str) -> bool:
        try:
            entry = self._planned(path)
        except FileNotFoundError:
            return False
        return entry.get("type") == "directory" if entry is not None else self.fs.isdir(path)

    def isfile(self, path: str) -> bool:
        try:
            entry = self._planned(path)
        except FileNotFoundError:
            return False
        return entry.get("type") == "file" if entry is not None else self.fs.isfile(path)

    def exists(self, path: str, **kwargs: Any) -> bool:
        if not kwargs:
            try:
                if self._planned(path) is not None:
                    return True
            except FileNotFoundError:
                return False
        return bool(self.fs.exists(path, **kwargs))

    def cat_file(
        self, path: str, start: int | None = None, end: int | None = None, **kw: Any
    ) -> Any:
        started, t0 = time.time(), time.perf_counter()
        data = self.fs.cat_file(path, start=start, end=end, **kw)
        self._emit(
            self.fs.unstrip_protocol(path),
            len(data),
            time.perf_counter() - t0,
            started,
            time.time(),
            self._footer_rows(data),
        )
        return data

    def _footer_rows(self, data: Any) -> int | None:
        """Rows of the Parquet footer ``data`` ends with (Parquet loads only)."""
        if self.check_footer != "parquet" or not isinstance(data, bytes | bytearray | memoryview):
            return None
        return parquet_footer_rows(data)

    def cat_ranges(
        self, paths: list[str], starts: Any, ends: Any, *args: Any, **kwargs: Any
    ) -> list[Any]:
        started, t0 = time.time(), time.perf_counter()
        out = list(self.fs.cat_ranges(paths, starts, ends, *args, **kwargs))
        elapsed, ended = time.perf_counter() - t0, time.time()
        per_path: dict[str, int] = {}
        rows: dict[str, int] = {}
        for path, data in zip(paths, out, strict=False):
            if isinstance(data, bytes | bytearray | memoryview):
                per_path[path] = per_path.get(path, 0) + len(data)
                n = self._footer_rows(data)
                if n is not None:
                    rows[path] = n
        total = sum(per_path.values()) or 1
        for path, n in per_path.items():
            self._emit(
                self.fs.unstrip_protocol(path),
                n,
                elapsed * n / total,
                started,
                ended,
                rows.get(path),
            )
        return out

    def cat(self, path: Any, recursive: bool = False, on_error: str = "raise", **kw: Any) -> Any:
        started, t0 = time.time(), time.perf_counter()
        out = self.fs.cat(path, recursive=recursive, on_error=on_error, **kw)
        elapsed, ended = time.perf_counter() - t0, time.time()
        if isinstance(out, dict):
            for p, data in out.items():
                if isinstance(data, bytes | bytearray):
                    self._emit(
                        self.fs.unstrip_protocol(p),
                        len(data),
                        elapsed,
                        started,
                        ended,
                        self._footer_rows(data),
                    )
        elif isinstance(out, bytes | bytearray):
            self._emit(
                self.fs.unstrip_protocol(str(path)),
                len(out),
                elapsed,
                started,
                ended,
                self._footer_rows(out),
            )
        return out

    def get_file(self, rpath: str, lpath: str, **kwargs: Any) -> Any:
        started, t0 = time.time(), time.perf_counter()
        out = self.fs.get_file(rpath, lpath, **kwargs)
        size = os.path.getsize(lpath) if os.path.isfile(lpath) else 0
        self._emit(
            self.fs.unstrip_protocol(rpath), size, time.perf_counter() - t0, started, time.time()
        )
        return out

    def get(self, rpath: Any, lpath: Any, recursive: bool = False, **kwargs: Any) -> Any:
        started, t0 = time.time(), time.perf_counter()
        out = self.fs.get(rpath, lpath, recursive=recursive, **kwargs)
        elapsed, ended = time.perf_counter() - t0, time.time()
        if isinstance(rpath, list | tuple) and isinstance(lpath, list | tuple):
            pairs = list(zip(rpath, lpath, strict=False))
        elif isinstance(rpath, str) and isinstance(lpath, str) and os.path.isfile(lpath):
            pairs = [(rpath, lpath)]
        else:
            pairs = []
        for r, loc in pairs:
            if os.path.isfile(loc):
                size = os.path.getsize(loc)
                self._emit(self.fs.unstrip_protocol(r), size, elapsed / len(pairs), started, ended)
        return out

    # -- reporting ------------------------------------------------------------------------
    def _emit(
        self,
        path: str,
        nbytes: int,
        seconds: float,
        started: float,
        ended: float,
        rows: int | None = None,
    ) -> None:
        """One read's record; ``rows``: the row count of a Parquet footer it held."""
        worker = _current_worker()
        iostats.count_process_read(path, int(nbytes), float(seconds))
        phase = "plan" if worker is None and planning.get() else self.phase
        record = {
            "load_id": self.load_id,
            "path": path,
            "bytes": int(nbytes),
            "seconds": float(seconds),
            "started": started,
            "ended": ended,
            "phase": phase,
            "pid": os.getpid(),
            "worker": getattr(worker, "address", None),
        }
        if rows is not None:
            record["rows"] = rows
        if worker is not None:
            try:
                # sent from the worker's event loop, in batches; a footer's row count at
                # the loop's next turn (the manifest may be asked as the computation ends)
                outbox(worker).put(record, soon=rows is not None)
                return
            except Exception:  # worker shutting down: count it here instead
                pass
        iostats.record_read(record)


fsspec.register_implementation(PROTOCOL, MeteredFileSystem, clobber=True)
