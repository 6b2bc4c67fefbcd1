"""File formats: names, detection from file names, and filters in pyarrow's DNF form."""

from __future__ import annotations

import posixpath
from collections.abc import Iterable
from typing import Any

from ..errors import DataFormatError

FORMATS = ("parquet", "csv", "json", "orc")
_ALIASES = {
    "pq": "parquet",
    "parq": "parquet",
    "jsonl": "json",
    "ndjson": "json",
    "json-lines": "json",
    "jsonlines": "json",
    "tsv": "csv",
}
EXTENSIONS = {
    ".parquet": "parquet",
    ".parq": "parquet",
    ".pq": "parquet",
    ".csv": "csv",
    ".tsv": "csv",
    ".json": "json",
    ".jsonl": "json",
    ".ndjson": "json",
    ".orc": "orc",
}
COMPRESSION_SUFFIXES = (".gz", ".bz2", ".xz", ".zst", ".lz4", ".snappy", ".zip")
FILTER_OPS = ("==", "=", "!=", "<", "<=", ">", ">=", "in", "not in")


def normalize_format(fmt: str) -> str:
    """``auto`` or one of :data:`FORMATS`; raises DataFormatError naming the choices."""
    if not isinstance(fmt, str):
        raise DataFormatError(f"format must be a string, got {type(fmt).__name__}")
    name = fmt.strip().lower()
    name = _ALIASES.get(name, name)
    if name != "auto" and name not in FORMATS:
        raise DataFormatError(
            f"unknown format {fmt!r}; supported: auto, {', '.join(FORMATS)} "
            "(json means JSON lines: one record per line)"
        )
    return name


def format_of(path: str) -> str | None:
    """The format a file name says, ignoring a compression suffix (``a.csv.gz`` is csv)."""
    name = posixpath.basename(path).lower()
    for suffix in COMPRESSION_SUFFIXES:
        if name.endswith(suffix) and name.count(".") > 1:
            name = name[: -len(suffix)]
            break
    return EXTENSIONS.get(posixpath.splitext(name)[1])


def detect_format(uri: str, paths: Iterable[str]) -> str:
    """The one format the file names of a dataset agree on."""
    found: dict[str, list[str]] = {}
    unknown: list[str] = []
    for path in paths:
        fmt = format_of(path)
        if fmt is None:
            unknown.append(path)
        else:
            found.setdefault(fmt, []).append(path)
    if len(found) == 1 and not unknown:
        return next(iter(found))
    choices = f"pass format= one of {', '.join(FORMATS)}"
    if not found:
        example = posixpath.basename(unknown[0]) if unknown else uri
        raise DataFormatError(
            f"cannot tell the format of {uri} from its file names (e.g. {example!r}); {choices}"
        )
    if len(found) > 1:
        mix = ", ".join(f"{len(v)} {k} (e.g. {posixpath.basename(v[0])})" for k, v in found.items())
        raise DataFormatError(
            f"{uri} mixes formats: {mix}; narrow it with a glob (e.g. '*.parquet') or {choices}"
        )
    fmt = next(iter(found))
    raise DataFormatError(
        f"{uri} has {len(found[fmt])} {fmt} file(s) and {len(unknown)} file(s) of unknown "
        f"format (e.g. {posixpath.basename(unknown[0])!r}); narrow it with a glob or pass "
        f"format={fmt!r} to read them all as {fmt}"
    )


def normalize_filters(filters: Any) -> list[list[tuple[str, str, Any]]] | None:
    """Filters in disjunctive normal form: a list of (column, op, value) tuples (AND), or
    a list of such lists (OR of ANDs), as pyarrow and dask take them."""
    if filters is None:
        return None
    bad = DataFormatError(
        "filters must be a list of (column, op, value) tuples, or a list of such lists "
        f"(OR of ANDs), with op one of {', '.join(FILTER_OPS)}; got {filters!r}"
    )
    if not isinstance(filters, list | tuple) or not filters:
        raise bad
    groups = [filters] if _is_predicate(filters[0]) else list(filters)
    out: list[list[tuple[str, str, Any]]] = []
    for group in groups:
        if not isinstance(group, list | tuple) or not group:
            raise bad
        conj = []
        for pred in group:
            if not _is_predicate(pred):
                raise bad
            col, op, value = pred
            op = op.lower().strip()
            if op not in FILTER_OPS:
                raise DataFormatError(
                    f"filter {tuple(pred)!r}: unknown operator {op!r}; use one of "
                    f"{', '.join(FILTER_OPS)}"
                )
            if op in ("in", "not in") and not isinstance(value, list | tuple | set | frozenset):
                raise DataFormatError(f"filter {tuple(pred)!r}: {op!r} needs a list of values")
            conj.append((col, "==" if op == "=" else op, value))
        out.append(conj)
    return out


def _is_predicate(item: Any) -> bool:
    return (
        isinstance(item, list | tuple)
        and len(item) == 3
        and isinstance(item[0], str)
        and isinstance(item[1], str)
    )


def filter_columns(filters: list[list[tuple[str, str, Any]]] | None) -> list[str]:
    return sorted({col for group in filters or [] for col, _, _ in group})


def apply_filters(df: Any, filters: list[list[tuple[str, str, Any]]]) -> Any:
    """Row filter for formats that cannot push filters into the reader (CSV, JSON, ORC)."""
    mask = None
    for group in filters:
        conj = None
        for col, op, value in group:
            s = df[col]
            if op == "==":
                term = s == value
            elif op == "!=":
                term = s != value
            elif op == "<":
                term = s < value
            elif op == "<=":
                term = s <= value
            elif op == ">":
                term = s > value
            elif op == ">=":
                term = s >= value
            elif op == "in":
                term = s.isin(list(value))
            else:
                term = ~s.isin(list(value))
            conj = term if conj is None else conj & term
        mask = conj if mask is None else mask | conj
    return df[mask]


def hive_partitions(relative_path: str) -> dict[str, str]:
    """``{"year": "2024", "month": "1"}`` from ``year=2024/month=1/part-0.parquet``."""
    out: dict[str, str] = {}
    for segment in relative_path.replace("\\", "/").split("/")[:-1]:
        key, sep, value = segment.partition("=")
        if sep and key:
            out[key] = value
    return out


def _as_type_of(text: str, like: Any) -> Any:
    """A partition value (always text in the path) as the type of the filter's value."""
    if isinstance(like, bool):
        return text.lower() in ("true", "1")
    if isinstance(like, int):
        return int(text)
    if isinstance(like, float):
        return float(text)
    return text


def _holds(value: str, op: str, target: Any) -> bool | None:
    """Whether ``value op target`` holds; None when it cannot be told from the path."""
    try:
        if op in ("in", "not in"):
            members = list(target)
            if not members:
                return op == "not in"
            inside = _as_type_of(value, members[0]) in members
            return inside if op == "in" else not inside
        v = _as_type_of(value, target)
        return bool(
            {
                "==": lambda: v == target,
                "!=": lambda: v != target,
                "<": lambda: v < target,
                "<=": lambda: v <= target,
                ">": lambda: v > target,
                ">=": lambda: v >= target,
            }[op]()
        )
    except (ValueError, TypeError, KeyError):
        return None


def partition_may_match(
    partitions: dict[str, str], dnf: list[list[tuple[str, str, Any]]] | None
) -> bool:
    """False only when the hive partition values of a file rule out every OR-group of the
    filters (a predicate on a column that is not a partition key never rules a file out)."""
    if not dnf or not partitions:
        return True
    for group in dnf:
        if all(
            col not in partitions or _holds(partitions[col], op, value) is not False
            for col, op, value in group
        ):
            return True
    return False
