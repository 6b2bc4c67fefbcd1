"""``workbench.data.load``: a dask DataFrame from files or object storage, with lineage
and IO metrics.

The reading itself is dask's (``read_parquet``, ``read_csv``, ``read_json``,
``read_orc``) under ``dask.config.set({"dataframe.backend": "cudf" | "pandas"})``, so GPU
and CPU share one code path. Around it, ``load``:

1. resolves a catalog name to its URI, format, options and storage options;
2. resolves credential references in the storage options (here, at load time);
3. lists the files once (one recursive listing), with their size, ETag / mtime / version
   (the lineage);
4. tells the format from the file names when ``format="auto"``;
5. counts rows and checks every Parquet / ORC footer (``validate=True``): exact row
   counts, and a corrupt file reported by name. Parquet: the first footer before
   returning; the others from the footers the frame's readers fetch anyway (the workers
   report each footer's row count with their reads), and those no reader has read yet
   when the manifest's row fields are first asked, read then in one batch
   (:mod:`workbench.data.lineage`). ORC: all before returning;
6. wraps the filesystem in :class:`~workbench.data.metering.MeteredFileSystem` so that
   every byte read on the workers is counted (:mod:`workbench.data.iostats`);
7. checks the columns and filters asked for against the schema, and builds the frame
   with column and filter push-down for Parquet. Dask's planning asks the filesystem
   again for the listing and the first footer: those answers come from what steps 3 and
   5 already hold (:mod:`workbench.data.planning`), so a load makes the same number of
   round trips to the store as a bare ``dask.dataframe.read_parquet``.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import io
import logging
import os
import re
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from .. import __version__, config
from ..errors import (
    CorruptDataError,
    DataError,
    DataFormatError,
    DataNotFoundError,
    UnknownDatasetError,
)
from . import (
    caching,
    dataframe_backend,
    formats,
    iostats,
    lineage,
    metering,
    planning,
    storage,
)
from .catalog import Dataset, load_catalog

logger = logging.getLogger(__name__)

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_PARQUET_TAIL = 64 * 1024
#: Partition size of line-delimited JSON read in blocks (uncompressed files only).
JSON_BLOCKSIZE = 64 * 2**20


@dataclass
class _Request:
    uri: str
    dataset: str | None
    format: str
    storage_options: dict[str, Any]
    columns: list[str] | None
    filters: Any
    read_options: dict[str, Any]
    cache: bool


def _request(
    source: Any,
    columns: list[str] | None,
    filters: Any,
    format: str,
    storage_options: dict[str, Any] | None,
    cache: bool | None,
    read_options: dict[str, Any],
) -> _Request:
    """Merge a catalog entry (if ``source`` names one) with the arguments given."""
    dataset: Dataset | None = None
    if isinstance(source, Dataset):
        dataset = source
    elif isinstance(source, os.PathLike):
        source = os.fspath(source)
    if dataset is None and not isinstance(source, str):
        raise DataError(
            f"load() takes a path, a URL or a catalog dataset name, got {type(source).__name__}"
        )
    if dataset is None and _NAME.match(source) and not os.path.exists(source):
        catalog = load_catalog()
        named = source in catalog.datasets or any(p.dataset == source for p in catalog.problems)
        if named or formats.format_of(source) is None:
            try:
                dataset = catalog.get(source)
            except UnknownDatasetError as exc:
                raise UnknownDatasetError(
                    f"{exc} (there is no file or directory named {source!r} either)"
                ) from None
        # else: a file name that does not exist, reported as such below
    if dataset is None:
        return _Request(
            source,
            None,
            format,
            dict(storage_options or {}),
            columns,
            filters,
            read_options,
            bool(cache) if cache is None else cache,
        )
    spec = dataset.spec
    return _Request(
        uri=spec.uri,
        dataset=dataset.name,
        format=spec.format if format == "auto" else format,
        storage_options={**spec.storage_options, **(storage_options or {})},
        columns=columns if columns is not None else spec.columns,
        filters=filters if filters is not None else spec.filters,
        read_options={**spec.read_options, **read_options},
        cache=spec.cache if cache is None else cache,
    )


def _cache_mode(cache: bool, protocol: str) -> str | None:
    if cache in (False, None):
        return None
    if cache is not True:
        raise DataError(f"cache must be True or False, got {cache!r}")
    if protocol in ("file", "local"):
        logger.debug("cache=True ignored for local files")
        return None
    return str(config.data_cache_dir())


# -- footers -------------------------------------------------------------------------------
def _parquet_rows(
    fs: Any, infos: list[dict[str, Any]], uri: str, protocol: str
) -> tuple[list[int], dict[str, tuple[int, bytes]]]:
    """Row count of every Parquet file (footers read in one batch), and the bytes read at
    the end of each file: ``{path: (offset, tail)}``, for dask's planning to reuse."""
    import pyarrow.parquet as pq

    paths = [str(i["name"]) for i in infos]
    sizes = [int(i.get("size") or 0) for i in infos]
    starts = [max(0, s - _PARQUET_TAIL) for s in sizes]
    try:
        tails = fs.cat_ranges(paths, starts, sizes, on_error="return")
    except Exception as exc:
        raise storage.translate_error(exc, uri, *storage.split_uri(uri), {}) from exc
    rows: list[int] = []
    known: dict[str, tuple[int, bytes]] = {}
    for path, size, tail in zip(paths, sizes, tails, strict=True):
        where = _url(fs, protocol, path)
        if isinstance(tail, BaseException):
            raise storage.translate_error(tail, where, *storage.split_uri(where), {})
        footer = metering.parquet_footer_size(tail)
        if footer is None:
            raise CorruptDataError(
                f"{where} is not a valid Parquet file (no Parquet footer; {size} bytes). It may "
                "be truncated, still being written, or another format."
            )
        if footer > len(tail):
            tail = fs.cat_file(path, start=max(0, size - footer), end=size)
        try:
            meta = pq.read_metadata(io.BytesIO(tail))
        except Exception as exc:
            raise CorruptDataError(f"{where} is not a valid Parquet file: {exc}") from exc
        rows.append(meta.num_rows)
        known[path] = (size - len(tail), bytes(tail))
    return rows, known


def _orc_rows(fs: Any, infos: list[dict[str, Any]], uri: str, protocol: str) -> list[int]:
    from pyarrow import orc

    def one(info: dict[str, Any]) -> tuple[int, Any]:
        path = str(info["name"])
        try:
            with fs.open(path, "rb") as f:
                reader = orc.ORCFile(f)
                return reader.nrows, reader.schema
        except DataError:
            raise
        except (FileNotFoundError, PermissionError) as exc:
            where = _url(fs, protocol, path)
            raise storage.translate_error(exc, where, *storage.split_uri(where), {}) from exc
        except Exception as exc:
            raise CorruptDataError(
                f"{_url(fs, protocol, path)} is not a valid ORC file: {exc}"
            ) from exc

    with ThreadPoolExecutor(max_workers=min(16, len(infos))) as pool:
        return [rows for rows, _ in pool.map(one, infos)]


# -- readers -------------------------------------------------------------------------------
def _chained(
    urls: list[str], protocol: str, options: dict[str, Any], load_id: str, cache: str | None
) -> tuple[list[str], dict[str, Any]]:
    """URLs and storage options that route a URL-taking dask reader through the meter
    (and the cache): ``[wbcache::]wbmeter::PROTOCOL://...``."""
    prefix = f"{metering.PROTOCOL}::"
    so: dict[str, Any] = {metering.PROTOCOL: {"load_id": load_id}, protocol: options}
    if cache is not None:
        prefix = f"{caching.PROTOCOL}::{prefix}"
        so[caching.PROTOCOL] = {"cache_dir": cache}
    return [prefix + u for u in urls], so


def _read(
    fmt: str,
    *,
    target: str,
    urls: list[str],
    fs: Any,
    protocol: str,
    options: dict[str, Any],
    load_id: str,
    cache: str | None,
    filters: list[list[tuple[str, str, Any]]] | None,
    blocksize: Any,
    read_options: dict[str, Any],
    uncompressed: bool,
) -> Any:
    import dask.dataframe as dd

    kw = dict(read_options)
    if fmt == "parquet":
        if blocksize is not None:
            kw["blocksize"] = blocksize
        if filters:
            kw["filters"] = filters
        return dd.read_parquet(target, filesystem=fs, **kw)
    chained, so = _chained(urls, protocol, options, load_id, cache)
    if fmt == "csv":
        if blocksize is not None:
            kw["blocksize"] = blocksize
        return dd.read_csv(chained, storage_options=so, **kw)
    if fmt == "json":
        kw.setdefault("orient", "records")
        kw.setdefault("lines", True)
        if blocksize is None and uncompressed and kw["lines"]:
            blocksize = JSON_BLOCKSIZE
        return dd.read_json(chained, storage_options=so, blocksize=blocksize, **kw)
    return dd.read_orc(chained, storage_options=so, **kw)


def _url(fs: Any, protocol: str, path: str) -> str:
    """A file's URL in the scheme the user wrote (``az://`` stays ``az://``)."""
    if protocol in ("file", "local"):
        return str(fs.unstrip_protocol(path))
    return f"{protocol}://{path.lstrip('/')}" if "://" not in path else path


def _root_cause(exc: BaseException) -> str:
    """The innermost cause's type and first line (dask wraps reader errors)."""
    while exc.__cause__ is not None:
        exc = exc.__cause__
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0][:300]}" if lines else type(exc).__name__


def _check_columns(wanted: list[str], available: list[str], uri: str, what: str) -> None:
    missing = [c for c in wanted if c not in available]
    if missing:
        raise DataFormatError(
            f"{what} {', '.join(repr(c) for c in missing)} not in {uri}; its columns are: "
            f"{', '.join(available)}"
        )


# -- the entry point ---------------------------------------------------------------------------
def load(
    source: Any,
    columns: list[str] | None = None,
    filters: Any = None,
    format: str = "auto",
    storage_options: dict[str, Any] | None = None,
    cache: bool | None = None,
    *,
    backend: str = "auto",
    client: Any = None,
    blocksize: int | str | None = None,
    validate: bool = True,
    count_rows: bool = False,
    return_manifest: bool = False,
    **read_options: Any,
) -> Any:
    """Load files or a catalog dataset as a dask DataFrame, cuDF-backed on GPU clusters.

    ``source``: a path, glob, directory (hive ``key=value`` partitions included) or URL
    (``s3://``, ``az://``/``abfs://``, ``gs://``, any fsspec protocol), or the name of a
    catalog dataset. ``columns`` and ``filters`` (pyarrow DNF, e.g.
    ``[("year", ">=", 2023)]``) are pushed into the Parquet reader; for CSV, JSON lines
    and ORC, columns are pruned by the reader where it can and filters are applied right
    after reading. ``format``: ``auto`` (from the file names), ``parquet``, ``csv``,
    ``json`` (JSON lines) or ``orc``. ``storage_options`` go to the fsspec filesystem;
    secrets must be references (``env:NAME``, ``keyring:SERVICE/USER``, ``file:PATH``).
    ``cache=True`` keeps local copies of remote files in ``WORKBENCH_DATA_CACHE``,
    checked against the remote file's version on every read.

    ``backend``: ``auto`` (cuDF when the cluster's workers have GPUs), ``pandas`` or
    ``cudf``; ``client``: the ClusterHandle or Client that decides ``auto`` and whose
    workers' IO is counted (default: the default client). ``blocksize`` sets partition
    size (reader default otherwise). ``validate`` checks every Parquet/ORC footer (row
    counts, corrupt files named): for Parquet the first before returning, the others as
    the workers read them, or on the first access to the manifest's row fields for files
    not read by then (that access raises a damaged file's error; the worker reading it
    names it too). ``count_rows`` computes the exact row count
    after filters (a pass over the data). Other keyword arguments go to the dask reader.

    Returns the frame, or ``(frame, manifest)`` with ``return_manifest=True``; the
    manifest is also available from :func:`~workbench.data.lineage.manifest_of` and
    :func:`~workbench.data.lineage.last_manifest`.
    """
    req = _request(source, columns, filters, format, storage_options, cache, read_options)
    fmt = formats.normalize_format(req.format)
    dnf = formats.normalize_filters(req.filters)
    if req.columns is not None and (
        not isinstance(req.columns, list | tuple)
        or not all(isinstance(c, str) for c in req.columns)
    ):
        raise DataFormatError(f"columns must be a list of column names, got {req.columns!r}")
    protocol, path = storage.split_uri(req.uri)
    if protocol in ("file", "local"):
        path = os.path.abspath(os.path.expanduser(path))
    storage.filesystem_class(protocol)
    storage.check_no_literal_secrets(
        req.storage_options,
        f"dataset {req.dataset!r} storage_options" if req.dataset else "storage_options",
    )
    resolved = storage.resolve_storage_options(req.storage_options)
    cache_mode = _cache_mode(req.cache, protocol)
    choice = dataframe_backend.choose(backend, client)
    dclient = dataframe_backend._client_of(client) if client is not None else None
    if dclient is None:
        dclient = dataframe_backend._client_of(None)
    if dclient is not None:
        iostats.watch(dclient)

    import fsspec

    load_id = uuid.uuid4().hex[:12]
    label = req.dataset or req.uri
    token = metering.planning.set(True)
    try:
        try:
            raw_fs = fsspec.filesystem(protocol, **resolved)
        except TypeError as exc:
            raise DataError(f"invalid storage_options for {protocol}://: {exc}") from exc
        except Exception as exc:
            raise storage.translate_error(exc, req.uri, protocol, path, resolved) from exc
        iostats.start_load(load_id, source=label, format=fmt, protocol=protocol, cache=cache_mode)
        try:
            raw_fs.invalidate_cache(path if not storage.has_glob(path) else None)
            listing = storage.list_tree(raw_fs, path)
        except Exception as exc:
            raise storage.translate_error(
                exc, req.uri, protocol, path, req.storage_options, raw_fs
            ) from exc
        infos = listing.files
        if not infos:
            raise DataNotFoundError(
                f"{req.uri} holds no data files (files and directories starting with '_' or "
                "'.' are skipped)"
            )
        file_paths = [str(i["name"]) for i in infos]
        if fmt == "auto":
            fmt = formats.detect_format(req.uri, file_paths)
        if dnf and not storage.has_glob(path):
            # hive partitions the filters rule out are not read: leave them out of the
            # footers and the lineage (the reader prunes them the same way)
            root = path.rstrip("/") + "/"
            kept = [
                info
                for info, p in zip(infos, file_paths, strict=True)
                if not p.startswith(root)
                or formats.partition_may_match(formats.hive_partitions(p[len(root) :]), dnf)
            ]
            if len(kept) < len(infos):
                logger.debug(
                    "load %s: %d of %d files ruled out by partition filters",
                    load_id,
                    len(infos) - len(kept),
                    len(infos),
                )
                infos = kept
                file_paths = [str(i["name"]) for i in infos]
        iostats.update_load(
            load_id,
            format=fmt,
            files_planned=len(infos),
            bytes_planned=sum(int(i.get("size") or 0) for i in infos),
        )
        metered = metering.MeteredFileSystem(
            fs=raw_fs, load_id=load_id, check_footer="parquet" if fmt == "parquet" else None
        )
        planner = metering.MeteredFileSystem(fs=raw_fs, load_id=load_id, phase="plan")
        rows: list[int] | None = None
        tails: dict[str, tuple[int, bytes]] = {}
        # Parquet: the first footer now (dask's planning below needs it, and gets it from
        # memory; a first file that is not Parquet fails here), the others in the
        # background once the frame is planned (the manifest waits for them). ORC: every
        # footer in a thread while dask plans, then waited for.
        orc_rows: Future[list[int]] | None = None
        pool: ThreadPoolExecutor | None = None
        if validate and fmt == "parquet":
            rows, tails = _parquet_rows(planner, infos[:1], req.uri, protocol)
        elif validate and fmt == "orc":
            pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="wb-footers")
            orc_rows = pool.submit(_orc_rows, planner, infos, req.uri, protocol)

        read_fs: Any = metered
        if cache_mode is not None and fmt == "parquet":
            read_fs = caching.LocalCopyFileSystem(fs=metered, cache_dir=cache_mode)
        urls = [_url(raw_fs, protocol, p) for p in file_paths]
        uncompressed = all(
            formats.format_of(p) and not p.lower().endswith(formats.COMPRESSION_SUFFIXES)
            for p in file_paths
        )
        read_args = dict(
            urls=urls,
            fs=read_fs,
            protocol=protocol,
            options=resolved,
            load_id=load_id,
            cache=cache_mode,
            blocksize=blocksize,
            read_options=req.read_options,
            uncompressed=uncompressed,
        )
        import dask

        # dask's planning asks the metered filesystem what load already knows: answer
        # from the listing and the footers rather than asking the store again
        metered.plan = planning.PlanSnapshot(listing.root, listing.found, tails)
        try:
            with dask.config.set({"dataframe.backend": choice.backend}):
                df = _build(fmt, path, dnf, req, read_args)
        except BaseException:
            footer_error = orc_rows.exception() if orc_rows is not None else None
            if footer_error is not None:
                raise footer_error from None  # names the bad file precisely
            raise
        finally:
            metered.plan = None
            if pool is not None:
                pool.shutdown(wait=True)
        if orc_rows is not None:
            rows = orc_rows.result()
    except BaseException as exc:
        iostats.update_load(load_id, error=f"{type(exc).__name__}: {exc}")
        raise
    finally:
        metering.planning.reset(token)

    computed = len(df) if count_rows else None
    manifest = lineage.Manifest(
        load_id=load_id,
        uri=req.uri if protocol not in ("file", "local") else path,
        protocol=protocol,
        format=fmt,
        files=[
            lineage.FileEntry(
                uri=url,
                rows=rows[i] if rows is not None and i < len(rows) else None,
                **storage.file_facts(info),
            )
            for i, (url, info) in enumerate(zip(urls, infos, strict=True))
        ],
        created=_dt.datetime.now(_dt.timezone.utc).isoformat(),
        dataset=req.dataset,
        columns=list(req.columns) if req.columns is not None else None,
        filters=dnf,
        schema={str(c): str(t) for c, t in df.dtypes.items()},
        npartitions=df.npartitions,
        dataframe_backend=choice.backend,
        backend_reason=choice.reason,
        storage_options=storage.redact_storage_options(req.storage_options),
        cache=cache_mode,
        workbench_version=__version__,
    )
    if validate and fmt == "parquet" and len(infos) > 1:
        # the other files' row counts: from the footers the frame's readers parse anyway,
        # and for files no reader has read yet, read here when the manifest is first asked
        first = list(rows or [])
        _set_rows(manifest, None, dnf, computed)
        manifest.defer(
            lambda: first + _other_rows(planner, infos[1:], req.uri, protocol, load_id),
            lambda m, counted: _set_rows(m, counted, dnf, computed),
        )
    else:
        _set_rows(manifest, rows, dnf, computed)
    lineage.remember(df._name, manifest)
    logger.info(
        "load %s: %s: %d %s file(s), %d bytes, %d column(s), %s",
        load_id,
        manifest.uri,
        len(infos),
        fmt,
        sum(int(i.get("size") or 0) for i in infos),
        len(manifest.schema),
        choice.backend,
    )
    return (df, manifest) if return_manifest else df


def _set_rows(
    manifest: lineage.Manifest, rows: list[int] | None, dnf: Any, computed: int | None
) -> None:
    """The manifest's row fields from the footers' row counts (None: not read)."""
    if rows is not None:
        manifest.files = [
            dataclasses.replace(f, rows=n) for f, n in zip(manifest.files, rows, strict=True)
        ]
    manifest.rows_in_files = sum(rows) if rows is not None else None
    manifest.row_count, manifest.row_count_source = None, None
    if rows is not None and not dnf:
        manifest.row_count, manifest.row_count_source = sum(rows), "file metadata"
    if computed is not None:
        manifest.row_count, manifest.row_count_source = computed, "computed"


def _other_rows(
    fs: Any, infos: list[dict[str, Any]], uri: str, protocol: str, load_id: str
) -> list[int]:
    """Row counts of the files after the first: those whose footer a reader of the frame
    has parsed (reported with its reads), the others read now in one batch. A damaged file
    is recorded with the load (dashboards, the log) and raised."""
    strip = type(fs.fs)._strip_protocol
    counted = {strip(path): n for path, n in iostats.footer_rows(load_id).items()}
    missing = [info for info in infos if str(info["name"]) not in counted]
    if missing:
        try:
            read = _parquet_rows(fs, missing, uri, protocol)[0]
        except Exception as exc:
            iostats.update_load(load_id, error=f"{type(exc).__name__}: {exc}")
            logger.warning("load %s: %s", load_id, exc)
            raise
        counted.update(zip((str(info["name"]) for info in missing), read, strict=True))
    logger.debug(
        "load %s: %d footer(s) counted by readers, %d read for the manifest",
        load_id,
        len(infos) - len(missing),
        len(missing),
    )
    return [counted[str(info["name"])] for info in infos]


def _build(
    fmt: str,
    target: str,
    dnf: list[list[tuple[str, str, Any]]] | None,
    req: _Request,
    read_args: dict[str, Any],
) -> Any:
    """Build the frame: check columns and filters against the schema, push them down."""
    try:
        full = _read(fmt, target=target, filters=None, **read_args)
    except DataError:
        raise
    except (FileNotFoundError, PermissionError, ConnectionError) as exc:
        protocol, path = storage.split_uri(req.uri)
        raise storage.translate_error(exc, req.uri, protocol, path, req.storage_options) from exc
    except Exception as exc:
        first = read_args["urls"][0]
        raise CorruptDataError(
            f"cannot read {req.uri} as {fmt} (schema from {first}): {_root_cause(exc)}. "
            f"Check that the files are {fmt} and that the read options match them."
        ) from exc
    available = [str(c) for c in full.columns]
    if req.columns is not None:
        _check_columns(list(req.columns), available, req.uri, "column(s)")
    if dnf:
        _check_columns(formats.filter_columns(dnf), available, req.uri, "filter column(s)")
    df = full
    if dnf and fmt == "parquet":
        df = _read(fmt, target=target, filters=dnf, **read_args)
    elif dnf:
        df = formats.apply_filters(df, dnf)
    if req.columns is not None:
        df = df[list(req.columns)]
    return df
