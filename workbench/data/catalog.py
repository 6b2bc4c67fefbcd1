"""The dataset catalog: named datasets in YAML files a team can share.

A catalog file looks like::

    datasets:
      trips:
        uri: s3://analytics/trips/          # file, directory, glob; any fsspec protocol
        format: parquet                     # auto (from file names), parquet, csv, json, orc
        description: NYC taxi trips, one file per month
        storage_options:                    # passed to the filesystem; secrets by reference
          endpoint_url: https://s3.internal:9000
          key: env:TRIPS_KEY
          secret: keyring:s3/trips
        columns: [pickup, fare]             # optional defaults for load()
        filters: [[year, ">=", 2023]]
        read_options: {}                    # keyword arguments for the dask reader
        cache: false                        # true: keep local copies of remote files
        tags: [taxi]

Files are layered like profiles: team catalogs (``WORKBENCH_CATALOG`` or ``catalog`` in
config.yaml) < the user's ``catalog.yaml``; a later file's dataset replaces an earlier
one of the same name. Every problem is reported with file, line, dataset and key.
"""

from __future__ import annotations

import difflib
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from .. import config
from ..errors import CatalogError, DataError, UnknownDatasetError
from ..layered_catalog import (
    FileReader,
    Problem,
    Scope,
    SourceFile,
    dotted,
    line_of,
    load_layered,
    validation_errors,
)
from . import formats, storage


class DatasetSpec(BaseModel):
    """What a catalog entry may say (unknown keys are errors)."""

    model_config = ConfigDict(extra="forbid")

    uri: str = Field(min_length=1, description="Where the data is: path, glob or URL.")
    format: str = Field("auto", description="auto, parquet, csv, json (JSON lines) or orc.")
    description: str = ""
    storage_options: dict[str, Any] = Field(default_factory=dict)
    columns: list[str] | None = None
    filters: list[Any] | None = None
    read_options: dict[str, Any] = Field(default_factory=dict)
    cache: bool = False
    tags: list[str] = Field(default_factory=list)

    @field_validator("format")
    @classmethod
    def _format(cls, v: str) -> str:
        try:
            return formats.normalize_format(v)
        except DataError as exc:
            raise ValueError(str(exc)) from None

    @field_validator("filters")
    @classmethod
    def _filters(cls, v: list[Any] | None) -> list[Any] | None:
        try:
            formats.normalize_filters(v)
        except DataError as exc:
            raise ValueError(str(exc)) from None
        return v

    @field_validator("uri")
    @classmethod
    def _uri(cls, v: str) -> str:
        bad = sorted({f"U+{ord(c):04X}" for c in v if unicodedata.category(c)[0] == "C"})
        if bad:
            # a carriage return or newline would end the comment or string a load cell
            # writes it in, and run the rest as code in whoever inserts the cell
            raise ValueError(
                f"the URI holds control characters ({', '.join(bad)}); a URI never does: "
                "percent-encode them (%0D, %0A) if the name really has them"
            )
        protocol, _ = storage.split_uri(v)
        from fsspec.registry import known_implementations, registry

        if protocol not in known_implementations and protocol not in registry:
            raise ValueError(f"unknown storage protocol {protocol!r} in {v!r}")
        return v


@dataclass
class Dataset:
    """A named catalog entry, with where it was defined."""

    name: str
    spec: DatasetSpec
    source: str
    scope: Scope
    line: int | None = None

    @property
    def uri(self) -> str:
        return self.spec.uri

    @property
    def description(self) -> str:
        return self.spec.description

    def to_dict(self) -> dict[str, Any]:
        """Everything the catalog says; storage options as written (references only)."""
        return {
            "name": self.name,
            **self.spec.model_dump(),
            "source": self.source,
            "scope": self.scope,
            "line": self.line,
        }


@dataclass(frozen=True)
class CatalogProblem(Problem):
    """A problem in a catalog file; ``dataset`` names the dataset it concerns."""

    kind = "dataset"

    @property
    def dataset(self) -> str | None:
        return self.entry


@dataclass
class DataCatalog:
    datasets: dict[str, Dataset]
    problems: list[CatalogProblem]
    files: list[SourceFile] = field(default_factory=list)

    def get(self, name: str) -> Dataset:
        """The named dataset, or a CatalogError / UnknownDatasetError saying why not."""
        own = [p for p in self.problems if p.dataset == name]
        if own:
            raise CatalogError(f"dataset {name!r} is invalid", [str(p) for p in own])
        if name in self.datasets:
            return self.datasets[name]
        close = difflib.get_close_matches(name, list(self.datasets), n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        known = ", ".join(sorted(self.datasets)) or "none"
        unreadable = [str(p) for p in self.problems if p.dataset is None]
        raise UnknownDatasetError(
            f"unknown dataset {name!r}.{hint} Known datasets: {known}. "
            f"Add it to {config.user_catalog_file()} or a team catalog (WORKBENCH_CATALOG)"
            + (" (these catalog files could not be read:)" if unreadable else ""),
            unreadable,
        )


def parse_catalog(text: str, file: str, scope: Scope) -> tuple[list[Dataset], list[CatalogProblem]]:
    """Datasets in one catalog file's text, and every problem in it."""
    reader = FileReader(text, file, "datasets", "dataset", "uri", CatalogProblem)
    problem, lines = reader.problem, reader.lines
    out: list[Dataset] = []
    for name_s, base, body in reader.entries():
        ok = True
        options = body.get("storage_options")
        if isinstance(options, dict):
            for secret in storage.literal_secrets(options):
                path = tuple(secret.split("."))
                reader.literal_credential(
                    name_s,
                    (*base, "storage_options", *path),
                    "storage_options." + secret,
                    "catalogs",
                )
                ok = False
        try:
            spec = DatasetSpec.model_validate(body)
        except ValidationError as exc:
            for loc, message in validation_errors(exc):
                if loc and loc[0] not in DatasetSpec.model_fields:
                    close = difflib.get_close_matches(
                        str(loc[0]), list(DatasetSpec.model_fields), n=1
                    )
                    if close:
                        message += f" (did you mean {close[0]!r}?)"
                problem(line_of(lines, (*base, *loc)), name_s, dotted(loc) or None, message)
            continue
        if ok:
            out.append(Dataset(name_s, spec, file, scope, line_of(lines, base)))
    return out, reader.problems


def load_catalog(extra_files: list[Path] | None = None) -> DataCatalog:
    """Read, merge and validate every catalog file. Never raises for bad content."""
    layers = load_layered(
        config.layered_sources(
            config.team_catalog_files(), config.user_catalog_file(), extra_files
        ),
        parse_catalog,
        lambda label, scope: CatalogProblem(
            label, None, None, None, f"{scope} catalog file not found"
        ),
    )
    datasets = layers.entries
    # A later file that fixes a dataset hides the problems an earlier one had with it.
    problems = [
        p
        for p in layers.problems
        if p.dataset is None or p.dataset not in datasets or datasets[p.dataset].source == p.file
    ]
    return DataCatalog(datasets, problems, layers.files)


def validate_file(path: Path) -> list[CatalogProblem]:
    """Problems in one catalog file on its own."""
    if not path.is_file():
        return [CatalogProblem(str(path), None, None, None, "file not found")]
    return parse_catalog(path.read_text(), str(path), "file")[1]


def get_dataset(name: str) -> Dataset:
    return load_catalog().get(name)


def list_datasets() -> list[Dataset]:
    return sorted(load_catalog().datasets.values(), key=lambda d: d.name)
