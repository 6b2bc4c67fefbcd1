"""The template gallery and data catalog routes over real HTTP, with Jupyter's token auth.

Notebooks are created by the same ``workbench.templates.new_notebook`` as ``workbench
new`` (checked by comparing with the CLI's output), only under the server's root.
The catalog routes serve real catalog files (a malformed team catalog included), and
the load cell they give is run in a fresh Python process against a real CSV file.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import nbformat
import pytest
from click.testing import CliRunner

from workbench.cli import main
from workbench.server.datasets import load_code
from workbench.server.templates import resolve_in_root
from workbench.templates import TemplateError, get_template, new_notebook, scan_templates

from .test_templates import make_template


@pytest.fixture
def team_templates(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    team = tmp_path / "team-templates"
    make_template(
        team,
        "etl",
        "n_workers = 2  # workers to start\nname = 'a'\nratio = 0.5\nverbose = False\n"
        "columns = ['x']\napi_token = ''\n",
        title="Team ETL",
    )
    (team / "broken.ipynb").write_text("{not a notebook")
    monkeypatch.setenv("WORKBENCH_TEMPLATES", str(team))
    return team


async def test_templates_are_listed_with_parameters_and_problems(
    api: Any, team_templates: Path
) -> None:
    reply = await api("GET", "templates")
    assert reply.status == 200, reply.data
    by_name = {t["name"]: t for t in reply.data["templates"]}
    assert by_name["infrastructure-health-check"]["scope"] == "built-in"
    etl = by_name["etl"]
    assert etl["scope"] == "team" and etl["title"] == "Team ETL"
    assert etl["description"] == "d" and etl["tags"] == ["x"]
    assert etl["source"] == str(team_templates / "etl.ipynb")
    params = {p["name"]: p for p in etl["parameters"]}
    assert params["n_workers"] == {
        "name": "n_workers",
        "default": 2,
        "type": "int",
        "help": "workers to start",
    }
    assert [params[k]["type"] for k in ("name", "ratio", "verbose", "columns")] == [
        "str",
        "float",
        "bool",
        "list",
    ]
    # the malformed template is reported, not a 500, and the others are still served
    assert "broken" not in by_name
    (problem,) = reply.data["problems"]
    assert "broken.ipynb: not a readable notebook" in problem

    one = await api("GET", "templates/etl")
    assert one.status == 200 and one.data["name"] == "etl"


async def test_create_notebook_is_what_workbench_new_makes(
    api: Any, team_templates: Path, jp_root_dir: Path, tmp_path: Path, workbench_home: Path
) -> None:
    # (team_templates also holds a broken template: it must not break creating others)
    params = {"n_workers": 3, "ratio": 2, "verbose": True, "columns": ["a", "b"]}
    reply = await api("POST", "templates/etl", body={"path": "work/etl-run", "parameters": params})
    assert reply.status == 201, reply.data
    assert reply.data["path"] == "work/etl-run.ipynb" and reply.data["template"] == "etl"
    made = nbformat.read(jp_root_dir / "work" / "etl-run.ipynb", as_version=4)
    injected = [c for c in made.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert injected[0].source == (
        "# Parameters\nn_workers = 3\nratio = 2.0\nverbose = True\ncolumns = ['a', 'b']\n"
    )

    cli_path = tmp_path / "cli.ipynb"
    args = ["n_workers=3", "ratio=2", "verbose=true", 'columns=["a", "b"]']
    result = CliRunner().invoke(
        main, ["new", "etl", str(cli_path), *(x for a in args for x in ("-p", a))]
    )
    assert result.exit_code == 0, result.output
    by_cli = nbformat.read(cli_path, as_version=4)
    assert [c.source for c in by_cli.cells] == [c.source for c in made.cells]
    assert by_cli.metadata["workbench"] == made.metadata["workbench"]


async def test_create_refuses_bad_requests(
    api: Any, team_templates: Path, jp_root_dir: Path, tmp_path: Path
) -> None:
    outside = tmp_path / "outside.ipynb"
    cases: list[tuple[str, Any, int, str]] = [
        ("nope", {"path": "a.ipynb"}, 404, "unknown template 'nope'"),
        ("etl-x", {"path": "a.ipynb"}, 404, "Did you mean 'etl'"),
        ("etl", {"path": "a", "parameters": {"n_workers": "two"}}, 400, "expects int"),
        ("etl", {"path": "a", "parameters": {"verbose": "yes"}}, 400, "expects bool"),
        ("etl", {"path": "a", "parameters": {"bogus": 1}}, 400, "has no parameter 'bogus'"),
        ("etl", {"path": "../escape.ipynb"}, 400, "must not contain '..'"),
        ("etl", {"path": "a/../../escape"}, 400, "must not contain '..'"),
        ("etl", {"path": str(outside)}, 400, "must be relative to the Jupyter server's root"),
        ("etl", {"path": "~/x.ipynb"}, 400, "must be relative"),
        ("etl", {"path": ".hidden/x.ipynb"}, 400, "hidden"),
        ("etl", {"path": ""}, 400, "path: String should have at least 1 character"),
        ("etl", {"parameters": {}}, 400, "path: Field required"),
        ("etl", {"path": "a", "extra": 1}, 400, "extra: Extra inputs are not permitted"),
        ("etl", {"path": "a", "overwrite": "yes"}, 400, "overwrite: Input should be a valid"),
    ]
    for name, body, status, message in cases:
        reply = await api("POST", f"templates/{name}", body=body)
        assert reply.status == status, (name, body, reply.data)
        text = " ".join([reply.data["message"], *reply.data.get("problems", [])])
        assert message in text, (name, body, reply.data)
    assert not outside.exists() and not (tmp_path / "escape.ipynb").exists()
    assert list(jp_root_dir.rglob("*.ipynb")) == []

    # a notebook path that happens to exist on disk is not a template over HTTP
    (jp_root_dir / "local.ipynb").write_text(nbformat.writes(nbformat.v4.new_notebook()))
    reply = await api("POST", "templates/local.ipynb", body={"path": "b.ipynb"})
    assert reply.status == 404

    # a credential in a parameter is refused and never echoed back
    reply = await api(
        "POST", "templates/etl", body={"path": "s", "parameters": {"api_token": "sk_Secret123"}}
    )
    assert reply.status == 400 and "looks like a credential" in reply.data["message"]
    assert "sk_Secret123" not in json.dumps(reply.data)
    assert not (jp_root_dir / "s.ipynb").exists()
    reply = await api("GET", "templates/nope")
    assert reply.status == 404


async def test_existing_files_and_links_out_of_the_root(
    api: Any, team_templates: Path, jp_root_dir: Path, tmp_path: Path
) -> None:
    first = await api("POST", "templates/etl", body={"path": "run.ipynb"})
    assert first.status == 201
    again = await api("POST", "templates/etl", body={"path": "run.ipynb"})
    assert again.status == 409 and "already exists" in again.data["message"]
    replaced = await api(
        "POST",
        "templates/etl",
        body={"path": "run.ipynb", "parameters": {"n_workers": 9}, "overwrite": True},
    )
    assert replaced.status == 201
    assert "n_workers = 9" in (jp_root_dir / "run.ipynb").read_text()

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (jp_root_dir / "link").symlink_to(elsewhere)
    reply = await api("POST", "templates/etl", body={"path": "link/x.ipynb"})
    assert reply.status == 400 and "leads out of the server root" in reply.data["message"]
    assert list(elsewhere.iterdir()) == []


def test_a_broken_template_fails_only_when_asked_for(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    team = tmp_path / "team"
    make_template(team, "etl", "n_workers = 2\nname = 'a'\n")
    (team / "broken.ipynb").write_text("{not json")
    monkeypatch.setenv("WORKBENCH_TEMPLATES", str(team))
    templates, problems = scan_templates()
    assert "etl" in templates and "broken" not in templates
    assert len(problems) == 1 and "broken.ipynb: not a readable notebook" in problems[0]
    assert new_notebook("etl", tmp_path / "out.ipynb").is_file()
    with pytest.raises(TemplateError, match=r"broken\.ipynb: not a readable notebook"):
        get_template("broken")


def test_resolve_in_root(tmp_path: Path) -> None:
    dest, rel = resolve_in_root(tmp_path, "a/./b/c")
    assert dest == tmp_path.resolve() / "a" / "b" / "c.ipynb" and rel == "a/b/c.ipynb"
    assert resolve_in_root(tmp_path, "x.ipynb")[1] == "x.ipynb"
    assert resolve_in_root(tmp_path, "sub\\y.ipynb")[1] == "sub/y.ipynb"
    for bad in ("/etc/x.ipynb", "..", "a/..", "./", "~user/x"):
        with pytest.raises(ValueError):
            resolve_in_root(tmp_path, bad)


# -- datasets -------------------------------------------------------------------------------
@pytest.fixture
def catalog(workbench_home: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    data = tmp_path / "catalog-data"
    data.mkdir()
    (data / "trips.csv").write_text("fare,city\n1.5,a\n2.5,b\n4.0,c\n")
    user = workbench_home / "config" / "catalog.yaml"
    user.write_text(
        textwrap.dedent(
            f"""
            datasets:
              trips:
                uri: {data}/trips.csv
                format: csv
                description: |
                  Trips, a small CSV
                  second line
                tags: [demo]
              remote:
                uri: s3://bucket/events/
                format: parquet
                storage_options:
                  endpoint_url: http://127.0.0.1:9000
                  key: env:WB_TEST_KEY
                  secret: env:WB_TEST_SECRET
              leaky:
                uri: s3://bucket/x/
                storage_options: {{secret: hunter2-literal}}
            """
        )
    )
    team = tmp_path / "team-catalog.yaml"
    team.write_text("datasets:\n  bad: [1, 2\n")  # malformed YAML
    monkeypatch.setenv("WORKBENCH_CATALOG", str(team))
    monkeypatch.setenv("WB_TEST_KEY", "AKIAEXAMPLEKEYVALUE")
    monkeypatch.setenv("WB_TEST_SECRET", "very-secret-value-123")
    return data


async def test_datasets_listing_with_problems_and_no_secrets(api: Any, catalog: Path) -> None:
    reply = await api("GET", "datasets")
    assert reply.status == 200, reply.data
    by_name = {d["name"]: d for d in reply.data["datasets"]}
    assert sorted(by_name) == ["remote", "trips"]  # 'leaky' is invalid: not served
    trips = by_name["trips"]
    assert trips["uri"] == f"{catalog}/trips.csv" and trips["format"] == "csv"
    assert trips["description"].startswith("Trips, a small CSV") and trips["scope"] == "user"
    assert 'df = workbench.data.load("trips")' in trips["code"].replace("'", '"')
    remote = by_name["remote"]
    assert remote["storage_options"] == {
        "endpoint_url": "http://127.0.0.1:9000",
        "key": "env:WB_TEST_KEY",
        "secret": "env:WB_TEST_SECRET",
    }
    problems = " | ".join(reply.data["problems"])
    assert "team-catalog.yaml" in problems and "invalid YAML" in problems
    assert "dataset 'leaky'" in problems and "literal credential" in problems
    text = json.dumps(reply.data)
    for secret in ("AKIAEXAMPLEKEYVALUE", "very-secret-value-123", "hunter2-literal"):
        assert secret not in text
    assert {f["scope"] for f in reply.data["files"]} == {"team", "user"}


async def test_dataset_detail_and_errors(api: Any, catalog: Path) -> None:
    reply = await api("GET", "datasets/trips")
    assert reply.status == 200 and reply.data["name"] == "trips"
    reply = await api("GET", "datasets/trip")
    assert reply.status == 404
    assert "unknown dataset 'trip'" in reply.data["message"]
    assert "Did you mean 'trips'" in reply.data["message"]
    reply = await api("GET", "datasets/leaky")
    assert reply.status == 400 and "dataset 'leaky' is invalid" in reply.data["message"]
    assert "hunter2-literal" not in json.dumps(reply.data)


async def test_the_load_cell_loads_the_dataset(api: Any, catalog: Path) -> None:
    reply = await api("GET", "datasets/trips")
    code = reply.data["code"]
    assert code.splitlines()[0] == "import workbench.data"
    done = subprocess.run(
        [sys.executable, "-c", code + "\nprint('rows', len(df), 'sum', df.fare.sum().compute())"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "rows 3 sum 8.0" in done.stdout, done.stderr[-2000:]


def test_load_code_is_safe_python_for_any_name() -> None:
    code = load_code('we"ird\nname', "desc\nmore", "s3://b/", "parquet")
    compile(code, "cell", "exec")  # a valid cell whatever the name holds
    assert "# desc" in code and "more" not in code
    assert "df = workbench.data.load('we\"ird\\nname')" in code
