"""The dataset catalog: team and user YAML files, validation with precise locations,
loading by name, and the ``workbench data`` commands."""

from __future__ import annotations

import json
import subprocess
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

import workbench.data as wd
from workbench.cli import main
from workbench.data.catalog import load_catalog, validate_file
from workbench.errors import CatalogError, UnknownDatasetError

from ._storage_fixtures import LocalDatasets, S3Server
from .conftest import WORKBENCH


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip())
    return path


@pytest.fixture
def catalogs(
    workbench_home: Path, datasets: LocalDatasets, monkeypatch: pytest.MonkeyPatch
) -> tuple[Path, Path]:
    team = write(
        workbench_home / "team" / "catalog.yaml",
        f"""
        datasets:
          trips:
            uri: {datasets.parquet}
            format: parquet
            description: Trips, one file per month
            tags: [demo]
          events:
            uri: {datasets.csv}/*.csv
            description: Event log
        """,
    )
    user = write(
        workbench_home / "config" / "catalog.yaml",
        f"""
        datasets:
          trips:                      # overrides the team entry
            uri: {datasets.parquet}
            description: My trips
            columns: [id, value]
            filters: [[id, "<", 100]]
        """,
    )
    monkeypatch.setenv("WORKBENCH_CATALOG", str(team.parent))
    return team, user


def test_layering_and_load_by_name(catalogs: tuple[Path, Path], datasets: LocalDatasets) -> None:
    _team, user = catalogs
    catalog = load_catalog()
    assert catalog.problems == []
    assert set(catalog.datasets) == {"trips", "events"}
    assert catalog.datasets["trips"].source == str(user)
    assert catalog.datasets["events"].scope == "team"

    df, manifest = wd.load("trips", return_manifest=True)
    assert manifest.dataset == "trips"
    assert list(df.columns) == ["id", "value"]  # the catalog's default columns
    assert sorted(df.compute(scheduler="sync")["id"].tolist()) == list(range(100))
    # arguments override the catalog's defaults
    df2 = wd.load("trips", columns=["text"], filters=[("id", "==", 5)])
    assert df2.compute(scheduler="sync")["text"].tolist() == [
        datasets.expected["text"][5]  # type: ignore[index]
    ]
    events = wd.load("events")
    assert wd.manifest_of(events).format == "csv" and len(events) == 6000


def test_unknown_dataset_suggests_a_name(catalogs: tuple[Path, Path]) -> None:
    with pytest.raises(UnknownDatasetError, match=r"unknown dataset 'trip'\. Did you mean 'trips'"):
        wd.load("trip")


def test_problems_name_file_line_dataset_and_key(workbench_home: Path) -> None:
    bad = write(
        workbench_home / "config" / "catalog.yaml",
        """
        datasets:
          typo:
            uri: /data/x
            fromat: csv
          badformat:
            uri: /data/x
            format: xlsx
          secret:
            uri: s3://bucket/x
            storage_options:
              key: AKIAEXAMPLE
              secret: hunter2
          nouri:
            description: forgot the uri
          weird:
            uri: nosuch://bucket/x
          badfilter:
            uri: /data/x
            filters: [[id, "~", 3]]
          ok:
            uri: /data/ok
        """,
    )
    problems = [str(p) for p in validate_file(bad)]
    text = "\n".join(problems)
    assert f"{bad}:4: dataset 'typo': key 'fromat': unknown option (did you mean 'format'?)" in text
    assert f"{bad}:7: dataset 'badformat': key 'format': unknown format 'xlsx'" in text
    assert (
        f"{bad}:12: dataset 'secret': key 'storage_options.secret': looks like a literal "
        "credential" in text
    )
    assert "hunter2" not in text
    assert "dataset 'nouri': key 'uri': Field required" in text
    assert f"{bad}:16: dataset 'weird': key 'uri': unknown storage protocol 'nosuch'" in text
    assert "dataset 'badfilter': key 'filters'" in text and "unknown operator '~'" in text
    catalog = load_catalog()
    assert list(catalog.datasets) == ["ok"]
    with pytest.raises(CatalogError, match="dataset 'secret' is invalid"):
        catalog.get("secret")


def test_invalid_yaml_and_missing_team_file(
    workbench_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(workbench_home / "config" / "catalog.yaml", "datasets:\n  a: [unclosed\n")
    monkeypatch.setenv("WORKBENCH_CATALOG", str(workbench_home / "nope.yaml"))
    problems = [str(p) for p in load_catalog().problems]
    assert any("nope.yaml: team catalog file not found" in p for p in problems)
    assert any("catalog.yaml:3: invalid YAML" in p for p in problems)


def test_cli_list_show_validate(catalogs: tuple[Path, Path]) -> None:
    team, user = catalogs
    runner = CliRunner()
    out = runner.invoke(main, ["data", "list"])
    assert out.exit_code == 0, out.output
    assert "trips" in out.output and "events" in out.output and str(team) in out.output

    listed = json.loads(runner.invoke(main, ["data", "list", "--json"]).output)
    assert {d["name"] for d in listed["datasets"]} == {"trips", "events"}

    shown = runner.invoke(main, ["data", "show", "trips", "--inspect"])
    assert shown.exit_code == 0, shown.output
    assert "My trips" in shown.output and "part-2.parquet" in shown.output
    assert "30000" in shown.output and "value: float64" in shown.output

    missing = runner.invoke(main, ["data", "show", "nope"])
    assert missing.exit_code == 1 and "error: unknown dataset 'nope'" in missing.output

    bad = write(user.parent / "bad.yaml", "datasets:\n  x:\n    uri: /a\n    colums: [a]\n")
    result = runner.invoke(main, ["data", "validate", str(bad)])
    assert result.exit_code == 1
    assert f"{bad}:4: dataset 'x': key 'colums': unknown option (did you mean 'columns'?)" in (
        result.output
    )
    assert runner.invoke(main, ["data", "validate"]).exit_code == 0


def test_cli_entry_point(catalogs: tuple[Path, Path], subprocess_env: dict[str, str]) -> None:
    out = subprocess.run(
        [*WORKBENCH, "data", "show", "events", "--json"],
        capture_output=True,
        text=True,
        env=subprocess_env,
        timeout=120,
        check=True,
    )
    assert json.loads(out.stdout)["uri"].endswith("/*.csv")


@pytest.mark.s3
def test_catalog_dataset_on_s3_with_references(
    s3: S3Server, datasets: LocalDatasets, workbench_home: Path
) -> None:
    s3.create_bucket("wb-catalog")
    s3.fs().put(str(datasets.csv / "part-0.csv"), "wb-catalog/events/part-0.csv")
    write(
        workbench_home / "config" / "catalog.yaml",
        f"""
        datasets:
          s3-events:
            uri: s3://wb-catalog/events/
            storage_options:
              endpoint_url: {s3.endpoint}
              key: env:{S3Server.KEY_VAR}
              secret: env:{S3Server.SECRET_VAR}
        """,
    )
    df, manifest = wd.load("s3-events", return_manifest=True)
    assert len(df.compute(scheduler="threads")) == 2000
    assert manifest.storage_options["secret"] == f"env:{S3Server.SECRET_VAR}"
    assert s3.secret not in manifest.to_json()


def test_a_uri_with_control_characters_is_refused(workbench_home: Path) -> None:
    """A carriage return or newline in a URI would end the line a load cell writes it on:
    refused when the catalog is read, so that it never reaches a cell."""
    path = workbench_home / "config" / "catalog.yaml"
    path.write_text(
        "datasets:\n  evil:\n    uri: \"/data/x\\rimport os; os.system('id')\"\n"
        '  tab:\n    uri: "/data/a\\tb"\n  ok:\n    uri: /data/ok\n'
    )
    problems = {p.entry: str(p) for p in load_catalog().problems}
    assert "the URI holds control characters (U+000D)" in problems["evil"]
    assert "U+0009" in problems["tab"]
    assert list(load_catalog().datasets) == ["ok"]
