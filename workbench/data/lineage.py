"""Lineage: what a load read, as a manifest that can be stored with a training run.

Every :func:`workbench.data.load` builds a :class:`Manifest`: the files (URI, size, ETag,
modification time or version id), the format, the columns and filters asked for, the
schema of the frame, the row count where it is known, and the storage options with
credentials left as references (never their values). It serialises to JSON
(:meth:`Manifest.to_json`), reads back (:meth:`Manifest.from_json`) and has a
:attr:`~Manifest.fingerprint` that changes when any file read changes::

    df, manifest = workbench.data.load("s3://bucket/trips/", return_manifest=True)
    mlflow.log_dict(manifest.to_dict(), "data/trips.json")

Retrieve it later with :func:`manifest_of` (for the frame ``load`` returned) or
:func:`last_manifest`.

The row counts come from the files' footers. ``load`` reads the first before it returns
(as a bare ``read_parquet`` does); the others are counted from the footers the readers of
the frame fetch anyway (each worker parses the footer of every file it reads), so that
validation adds no request to the store. A manifest's row fields are filled on the first
access to ``files``, ``row_count``, ``row_count_source`` or ``rows_in_files`` (or anything
built from them: ``to_dict``, ``fingerprint``...): from the counts the readers reported,
and, for the files no reader has read yet, from footers ``load`` reads then (one batch of
ranged reads). A file found corrupt there raises its
:class:`~workbench.errors.CorruptDataError` on that access, every time.
:meth:`Manifest.resolved` says whether that is still to come.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

SCHEMA_VERSION = 1


@dataclass(frozen=True)
class FileEntry:
    """One file a load reads."""

    uri: str
    size: int | None = None
    etag: str | None = None
    mtime: str | None = None
    version: str | None = None
    rows: int | None = None


@dataclass
class Manifest:
    """What one load read. Plain data: ``to_dict()`` is JSON-serialisable."""

    load_id: str
    uri: str
    protocol: str
    format: str
    files: list[FileEntry]
    created: str
    dataset: str | None = None
    columns: list[str] | None = None
    filters: Any = None
    schema: dict[str, str] = field(default_factory=dict)
    row_count: int | None = None
    row_count_source: str | None = None
    rows_in_files: int | None = None
    npartitions: int | None = None
    dataframe_backend: str = "pandas"
    backend_reason: str = ""
    storage_options: dict[str, Any] = field(default_factory=dict)
    cache: str | None = None
    workbench_version: str = ""
    schema_version: int = SCHEMA_VERSION

    # -- fields filled on first access (the footers' row counts) ---------------------------
    def defer(self, resolve: Callable[[], Any], apply: Callable[[Manifest, Any], None]) -> None:
        """Fill the row fields on first access to them: ``apply(self, resolve())`` (called
        by ``load``). If ``resolve`` raises, that access and every later one raise its
        exception (``resolve`` is not called again)."""
        object.__setattr__(self, "_pending", (resolve, apply))
        object.__setattr__(self, "_failed", None)
        object.__setattr__(self, "_lock", threading.Lock())

    def resolved(self) -> bool:
        """Whether the row fields are final (no footer still to be counted, or failed)."""
        return not self.__dict__.get("_pending")

    def _resolve(self) -> None:
        with self.__dict__["_lock"]:
            pending = self.__dict__.get("_pending")
            if pending is None:
                return
            failed = self.__dict__.get("_failed")
            if failed is not None:
                raise failed  # the damaged file's error, on every access
            resolve, apply = pending
            try:
                result = resolve()
            except Exception as exc:
                self.__dict__["_failed"] = exc
                raise
            self.__dict__["_pending"] = None
            apply(self, result)

    def __getstate__(self) -> dict[str, Any]:
        if self.__dict__.get("_pending"):
            self._resolve()
        return {k: v for k, v in self.__dict__.items() if k not in ("_pending", "_failed", "_lock")}

    def __getattribute__(self, name: str) -> Any:
        if name in _DEFERRED and object.__getattribute__(self, "__dict__").get("_pending"):
            object.__getattribute__(self, "_resolve")()
        return object.__getattribute__(self, name)

    @property
    def total_bytes(self) -> int:
        return sum(f.size or 0 for f in self.files)

    @property
    def fingerprint(self) -> str:
        """SHA-256 over the files (URI, size, ETag, version, mtime), columns and filters:
        equal fingerprints mean the same data was selected."""
        h = hashlib.sha256()
        for f in sorted(self.files, key=lambda f: f.uri):
            h.update(json.dumps([f.uri, f.size, f.etag, f.version, f.mtime]).encode())
        h.update(json.dumps([self.format, self.columns, self.filters], default=str).encode())
        return h.hexdigest()

    def to_dict(self) -> dict[str, Any]:
        """The manifest as JSON data; URIs with credentials (a SAS signature, a presigned
        URL, user:password@) are redacted, as are literal secrets in storage options."""
        from ..redact import redact_uri, redact_value

        data = asdict(self)
        data["uri"] = redact_uri(self.uri)
        data["files"] = [{**asdict(f), "uri": redact_uri(f.uri)} for f in self.files]
        data["storage_options"] = redact_value(data.get("storage_options") or {})
        data["filters"] = _jsonable(self.filters)
        data["total_bytes"] = self.total_bytes
        data["fingerprint"] = self.fingerprint
        return data

    def to_json(self, indent: int | None = 1) -> str:
        return json.dumps(self.to_dict(), indent=indent, default=str)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Manifest:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        known["files"] = [FileEntry(**f) for f in data.get("files", [])]
        return cls(**known)

    @classmethod
    def from_json(cls, text: str) -> Manifest:
        return cls.from_dict(json.loads(text))

    def summary(self) -> str:
        from ..redact import redact_uri

        rows = f"{self.row_count:,} rows" if self.row_count is not None else "rows unknown"
        return (
            f"{redact_uri(self.uri)}: {len(self.files)} {self.format} file(s), "
            f"{self.total_bytes:,} bytes, "
            f"{len(self.schema)} column(s), {rows}, {self.dataframe_backend}"
        )

    def _repr_html_(self) -> str:
        import html

        from ..redact import redact_uri

        rows = "".join(
            f"<tr><td>{html.escape(redact_uri(f.uri))}</td>"
            f"<td>{f.size if f.size is not None else ''}</td>"
            f"<td>{html.escape(f.etag or f.version or f.mtime or '')}</td></tr>"
            for f in self.files[:20]
        )
        more = f"<p>... and {len(self.files) - 20} more</p>" if len(self.files) > 20 else ""
        return (
            f"<div class='workbench-manifest'><strong>{html.escape(self.summary())}</strong>"
            f"<table><tr><th>file</th><th>bytes</th><th>etag / version / mtime</th></tr>"
            f"{rows}</table>{more}</div>"
        )


#: Manifest fields that ``load`` may fill on first access.
_DEFERRED = frozenset({"files", "row_count", "row_count_source", "rows_in_files"})


def _jsonable(value: Any) -> Any:
    """Filters as JSON: tuples become lists, values that JSON lacks become strings."""
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, set | frozenset):
        return sorted((_jsonable(v) for v in value), key=str)
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


# -- where manifests are kept ---------------------------------------------------------------
_MAX = 256
_lock = threading.Lock()
_by_frame: OrderedDict[str, Manifest] = OrderedDict()
_last: Manifest | None = None


def remember(frame_name: str, manifest: Manifest) -> None:
    global _last
    with _lock:
        _by_frame[frame_name] = manifest
        _by_frame.move_to_end(frame_name)
        while len(_by_frame) > _MAX:
            _by_frame.popitem(last=False)
        _last = manifest


def manifest_of(frame: Any) -> Manifest:
    """The manifest of a frame that ``load`` returned (not of frames derived from it:
    keep the manifest, or use ``load(..., return_manifest=True)``)."""
    name = getattr(frame, "_name", None)
    with _lock:
        manifest = _by_frame.get(str(name)) if name is not None else None
    if manifest is None:
        raise LookupError(
            "no lineage manifest for this frame: only the frame workbench.data.load returned "
            "has one (use load(..., return_manifest=True) to keep it with derived frames)"
        )
    return manifest


def last_manifest() -> Manifest | None:
    """The manifest of the latest load in this process, or None before the first."""
    with _lock:
        return _last
