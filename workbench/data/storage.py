"""Where data lives: fsspec protocols, storage options with credential references, listing.

Protocols are looked up lazily, fsspec-style: nothing is imported until a URI asks for
it, and a missing optional package (s3fs, adlfs, gcsfs) is reported with the command
that installs it.

Storage options are passed to the fsspec filesystem (``S3FileSystem``,
``AzureBlobFileSystem``, ``GCSFileSystem`` ...). Secret values in them must be
references, ``env:NAME``, ``keyring:SERVICE/USER`` or ``file:PATH``, resolved here at load
time in the process that calls ``load``; a literal secret is refused. Without options,
each library's own configuration applies (``AWS_*`` variables and ``~/.aws``,
``AZURE_STORAGE_CONNECTION_STRING``, Google application default credentials).
"""

from __future__ import annotations

import copy
import datetime as _dt
import hashlib
import posixpath
import re
from dataclasses import dataclass
from typing import Any

from ..credentials import REFERENCE, find_literal_secrets, is_reference, resolve
from ..errors import (
    CredentialError,
    DataError,
    DataNotFoundError,
    StorageAccessError,
    StorageDependencyError,
)

DATA_HINT = "pip install 'workbench[data]'"

#: Install hints for the protocols people use most; others fall back to fsspec's message.
PROTOCOL_HINTS: dict[str, str] = {
    "s3": f"{DATA_HINT} (or: pip install s3fs)",
    "s3a": f"{DATA_HINT} (or: pip install s3fs)",
    "az": f"{DATA_HINT} (or: pip install adlfs)",
    "abfs": f"{DATA_HINT} (or: pip install adlfs)",
    "abfss": f"{DATA_HINT} (or: pip install adlfs)",
    "gs": f"{DATA_HINT} (or: pip install gcsfs)",
    "gcs": f"{DATA_HINT} (or: pip install gcsfs)",
    "http": "pip install aiohttp requests",
    "https": "pip install aiohttp requests",
    "hdfs": "pip install pyarrow, with a Hadoop client (libhdfs) on this machine",
}
#: Protocols whose first path component is a bucket or container.
OBJECT_STORES = frozenset({"s3", "s3a", "az", "abfs", "abfss", "gs", "gcs"})

#: Values of a ``token`` option that select a credential method, not a secret (gcsfs).
_TOKEN_METHODS = frozenset({"anon", "google_default", "cloud", "cache", "browser"})
#: Keys whose values are never written to a manifest or log, even when not secret-looking.
_REDACT_KEYS = re.compile(
    r"^(key|secret|token|password|account_key|sas_token|connection_string|credential|"
    r"client_secret|aws_access_key_id|aws_secret_access_key|aws_session_token)$",
    re.IGNORECASE,
)
REDACTED = "<redacted>"


def split_uri(uri: str) -> tuple[str, str]:
    """``(protocol, path)``; local paths have protocol ``file``."""
    from fsspec.core import split_protocol

    protocol, path = split_protocol(uri)
    return (protocol or "file"), path


def filesystem_class(protocol: str) -> type[Any]:
    """The fsspec class for ``protocol``, imported on first use."""
    import fsspec
    from fsspec.registry import known_implementations, registry

    try:
        return fsspec.get_filesystem_class(protocol)  # type: ignore[no-any-return]
    except ImportError as exc:
        hint = PROTOCOL_HINTS.get(protocol) or known_implementations.get(protocol, {}).get(
            "err", f"install the fsspec implementation of {protocol!r}"
        )
        raise StorageDependencyError(
            f"reading {protocol}:// needs a package that is not installed ({exc}). "
            f"Install it with: {hint}"
        ) from exc
    except ValueError as exc:
        common = sorted(
            p for p in {*known_implementations, *registry} if p in {*PROTOCOL_HINTS, "file"}
        )
        raise DataError(
            f"unknown storage protocol {protocol!r} (fsspec has no implementation for it). "
            f"Common ones: {', '.join(common)}"
        ) from exc


# -- storage options and credentials ------------------------------------------------------
def literal_secrets(options: dict[str, Any]) -> list[str]:
    """Dotted keys of storage options that hold a literal secret instead of a reference."""
    found = []
    for path in find_literal_secrets(options):
        value: Any = options
        for part in path:
            value = value[part]
        if path[-1] == "token" and isinstance(value, str) and value in _TOKEN_METHODS:
            continue
        found.append(".".join(str(p) for p in path))
    return found


def check_no_literal_secrets(options: dict[str, Any], where: str = "storage_options") -> None:
    bad = literal_secrets(options)
    if bad:
        raise CredentialError(
            f"{where}: {', '.join(repr(k) for k in bad)} look(s) like a literal credential. "
            "Pass a reference instead (env:NAME, keyring:SERVICE/USER or file:PATH), or leave "
            "it out and let the storage library find credentials in the environment "
            "(AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AZURE_STORAGE_CONNECTION_STRING, ...)"
        )


class Secret(str):
    """A resolved credential: a ``str`` everywhere it is used, but its ``repr`` (what
    dict reprs, dask expression reprs, tracebacks and logs show) is a short hash, never
    the value. The hash keeps different secrets apart in fsspec's instance cache."""

    __slots__ = ()

    def __repr__(self) -> str:
        return f"<secret sha256:{hashlib.sha256(self.encode()).hexdigest()[:12]}>"

    def __reduce__(self) -> tuple[Any, ...]:
        return Secret, (str(self),)


def resolve_storage_options(options: dict[str, Any] | None) -> dict[str, Any]:
    """A copy of ``options`` with every ``env:``/``keyring:``/``file:`` reference resolved
    (to :class:`Secret` values, which do not show in reprs).

    Raises CredentialError naming the option whose reference cannot be resolved.
    """

    def walk(value: Any, where: str) -> Any:
        if isinstance(value, dict):
            return {k: walk(v, f"{where}.{k}" if where else str(k)) for k, v in value.items()}
        if isinstance(value, list):
            return [walk(v, f"{where}[{i}]") for i, v in enumerate(value)]
        if isinstance(value, str) and REFERENCE.match(value):
            try:
                return Secret(resolve(value))
            except CredentialError as exc:
                raise CredentialError(f"storage option {where!r}: {exc}") from None
        return value

    return walk(copy.deepcopy(options or {}), "")  # type: ignore[no-any-return]


def redact_storage_options(options: dict[str, Any] | None) -> dict[str, Any]:
    """Options safe to record: references kept (they name, not hold, a secret), other
    values of credential-like keys replaced by ``<redacted>``."""
    secret_paths = {tuple(p) for p in find_literal_secrets(options or {})}

    def walk(value: Any, path: tuple[Any, ...]) -> Any:
        if isinstance(value, dict):
            return {k: walk(v, (*path, k)) for k, v in value.items()}
        if isinstance(value, list):
            return [walk(v, (*path, i)) for i, v in enumerate(value)]
        if is_reference(value) or value is None or isinstance(value, bool):
            return value
        key = str(path[-1]) if path else ""
        if path in secret_paths or _REDACT_KEYS.match(key):
            if key == "token" and value in _TOKEN_METHODS:
                return value
            return REDACTED
        return value

    return walk(copy.deepcopy(options or {}), ())  # type: ignore[no-any-return]


def connection_hint(protocol: str, options: dict[str, Any]) -> str:
    """Where the request went, for error messages (endpoint or account; never secrets)."""
    endpoint = options.get("endpoint_url") or (options.get("client_kwargs") or {}).get(
        "endpoint_url"
    )
    if endpoint:
        return f" at {endpoint}"
    account = options.get("account_name")
    if account and not is_reference(account):
        return f" in account {account}"
    return ""


# -- listing ------------------------------------------------------------------------------
_MAGIC = re.compile(r"[*?\[]")


def has_glob(path: str) -> bool:
    return _MAGIC.search(path) is not None


def _hidden(relative: str) -> bool:
    """Files readers skip: ``_SUCCESS``, ``_metadata``, ``.crc`` and anything under a
    ``_``/``.``-prefixed directory (the rule pyarrow and Spark use)."""
    return any(part.startswith(("_", ".")) for part in relative.split("/") if part)


def _is_file(info: dict[str, Any]) -> bool:
    return info.get("type") == "file" and not str(info.get("name", "")).endswith("/")


def list_files(fs: Any, path: str) -> list[dict[str, Any]]:
    """fsspec ``info`` dicts of the data files ``path`` names: a file, a directory (read
    recursively, hive ``key=value`` directories included) or a glob. Sorted by name."""
    if has_glob(path):
        matches = fs.glob(path, detail=True)
        infos: dict[str, dict[str, Any]] = {}
        for name, info in sorted(matches.items()):
            if info.get("type") == "directory":
                for sub, sub_info in fs.find(name, detail=True).items():
                    if _is_file(sub_info) and not _hidden(posixpath.relpath(sub, name)):
                        infos[sub] = sub_info
            elif _is_file(info) and not _hidden(posixpath.basename(name)):
                infos[name] = info
        return [infos[k] for k in sorted(infos)]
    info = fs.info(path)
    if info.get("type") == "directory":
        base = str(info.get("name", path)).rstrip("/")
        found = fs.find(base, detail=True)
        return [
            found[name]
            for name in sorted(found)
            if _is_file(found[name]) and not _hidden(posixpath.relpath(name, base))
        ]
    return [info]


@dataclass
class Listing:
    """The data files a path names, and the raw listing they came from.

    ``root`` is the directory that was listed (stripped of its protocol) and ``found`` what
    ``fs.find(root, withdirs=True, detail=True)`` returned for it: every file (hidden ones
    included) and directory below it. Both are None for a single file or a glob.
    """

    files: list[dict[str, Any]]
    root: str | None = None
    found: dict[str, dict[str, Any]] | None = None


def list_tree(fs: Any, path: str) -> Listing:
    """Like :func:`list_files`, with one recursive listing for a directory (``find``)
    instead of ``info`` and then ``find``, and that listing kept for dask's planning."""
    if has_glob(path):
        return Listing(list_files(fs, path))
    root = str(fs._strip_protocol(path)).rstrip("/") or str(fs._strip_protocol(path))
    found = fs.find(root, withdirs=True, detail=True)
    if not isinstance(found, dict):  # adlfs answers a list for a single blob
        return Listing(list_files(fs, path))
    below = {k: v for k, v in found.items() if k.rstrip("/") != root}
    if not below:
        # a single file, an empty directory, or nothing: info() tells (and raises
        # FileNotFoundError for a missing path)
        info = found.get(root) or fs.info(path)
        if not info.get("type"):
            info = fs.info(path)
        if info.get("type") == "directory":
            return Listing([], root, found)
        return Listing([info])
    files = [
        found[name]
        for name in sorted(below)
        if _is_file(found[name]) and not _hidden(posixpath.relpath(name, root))
    ]
    return Listing(files, root, found)


# -- errors -------------------------------------------------------------------------------
_ACCESS_WORDS = re.compile(
    r"InvalidAccessKeyId|SignatureDoesNotMatch|AccessDenied|AuthenticationFailed|"
    r"AuthorizationFailure|AuthorizationPermissionMismatch|InvalidAuthenticationInfo|"
    r"Forbidden|\b403\b|\b401\b|credentials",
    re.IGNORECASE,
)
_CONNECT_WORDS = re.compile(
    r"Could not connect|Cannot connect|Connection refused|EndpointConnectionError|"
    r"Name or service not known|ServiceRequestError|Failed to establish",
    re.IGNORECASE,
)


def bucket_of(protocol: str, path: str) -> str | None:
    if protocol not in OBJECT_STORES:
        return None
    return path.lstrip("/").split("/", 1)[0] or None


def _bucket_exists(fs: Any, bucket: str) -> bool | None:
    try:
        fs.invalidate_cache()
        return bool(fs.exists(bucket))
    except Exception:
        return None


def _status(exc: BaseException) -> int | None:
    for attr in ("status_code", "status", "code"):
        value = getattr(exc, attr, None)
        if isinstance(value, int):
            return value
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        value = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if isinstance(value, int):
            return value
    return None


def translate_error(
    exc: BaseException,
    uri: str,
    protocol: str,
    path: str,
    options: dict[str, Any],
    fs: Any = None,
) -> DataError:
    """A DataError that says what went wrong reading ``uri`` and what to do."""
    where = connection_hint(protocol, options)
    chain: list[BaseException] = []
    cur: BaseException | None = exc
    while cur is not None and len(chain) < 6:
        chain.append(cur)
        cur = cur.__cause__ or cur.__context__
    text = " | ".join(f"{type(e).__name__}: {e}" for e in chain)
    status = next((s for s in map(_status, chain) if s is not None), None)
    if isinstance(exc, DataError):
        return exc
    if (
        any(isinstance(e, PermissionError) for e in chain)
        or status in (401, 403)
        or any("Authentication" in type(e).__name__ for e in chain)
        or (status is None and _ACCESS_WORDS.search(text) and not _CONNECT_WORDS.search(text))
    ):
        keys = [
            k
            for k in ("key", "secret", "account_key", "connection_string", "token")
            if k in options
        ]
        which = (
            f"storage options {', '.join(repr(k) + '=' + str(options[k]) for k in keys)}"
            if keys and all(is_reference(options[k]) for k in keys)
            else "the credentials in storage_options or the environment"
        )
        return StorageAccessError(
            f"access denied reading {uri}{where}: the storage service refused {which} "
            f"({_short(chain[-1])}). Check that the credentials are valid and allow reading "
            "this location."
        )
    if _CONNECT_WORDS.search(text):
        return DataError(
            f"cannot reach the storage service for {uri}{where}: {_short(chain[-1])}. "
            "Check the endpoint URL and that the service is running."
        )
    if any(isinstance(e, FileNotFoundError) for e in chain) or status == 404:
        bucket = bucket_of(protocol, path)
        if bucket is not None and fs is not None and _bucket_exists(fs, bucket) is False:
            kind = "container" if protocol in ("az", "abfs", "abfss") else "bucket"
            return DataNotFoundError(
                f"{kind} {bucket!r} does not exist{where} (reading {uri}). Check the name, "
                "the endpoint and the account."
            )
        return DataNotFoundError(f"no such file or directory: {uri}{where}")
    return DataError(f"cannot read {uri}{where}: {_short(exc)}")


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    first = text[0] if text else ""
    return f"{type(exc).__name__}: {first[:300]}" if first else type(exc).__name__


# -- lineage facts from listings ------------------------------------------------------------
def _iso(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, _dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=_dt.timezone.utc)
        return str(value.astimezone(_dt.timezone.utc).isoformat())
    if isinstance(value, int | float):
        return _dt.datetime.fromtimestamp(float(value), tz=_dt.timezone.utc).isoformat()
    return str(value)


def file_facts(info: dict[str, Any]) -> dict[str, Any]:
    """Size, ETag, modification time and version from an fsspec ``info`` dict of any
    backend (s3fs, adlfs, gcsfs, local, memory)."""
    etag = info.get("ETag") or info.get("etag") or info.get("md5Hash")
    version = info.get("VersionId") or info.get("version_id") or info.get("generation")
    mtime = (
        info.get("LastModified")
        or info.get("last_modified")
        or info.get("updated")
        or info.get("mtime")
        or info.get("created")
    )
    size = info.get("size", info.get("Size"))
    return {
        "size": int(size) if isinstance(size, int | float) else None,
        "etag": str(etag).strip('"') if etag else None,
        "mtime": _iso(mtime),
        "version": str(version) if version not in (None, "", "null") else None,
    }
