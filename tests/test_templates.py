"""Notebook templates: discovery, parameters, `workbench new`, and a real execution."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest
from click.testing import CliRunner

from workbench.cli import main
from workbench.templates import (
    TemplateError,
    get_template,
    list_templates,
    new_notebook,
    parse_parameters,
)


def make_template(directory: Path, name: str, params: str, title: str = "T") -> Path:
    nb = nbformat.v4.new_notebook()
    nb.metadata["workbench"] = {"template": {"title": title, "description": "d", "tags": ["x"]}}
    cell = nbformat.v4.new_code_cell(params, metadata={"tags": ["parameters"]})
    run = nbformat.v4.new_code_cell("print(n_workers * 2, name)")
    run.outputs = [nbformat.v4.new_output("stream", text="stale output\n")]
    nb.cells = [nbformat.v4.new_markdown_cell("# hi"), cell, run]
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.ipynb"
    nbformat.write(nb, path)
    return path


def test_parse_parameters_reads_defaults_and_help() -> None:
    params = parse_parameters('a = 1  # how many\nb = "x"\nc = [1, 2]\nimport os\n')
    assert {k: p.default for k, p in params.items()} == {"a": 1, "b": "x", "c": [1, 2]}
    assert params["a"].help == "how many" and params["a"].type_name == "int"
    with pytest.raises(TemplateError, match="must be a literal"):
        parse_parameters("a = os.getcwd()")
    with pytest.raises(TemplateError, match="not valid Python"):
        parse_parameters("a = (")


def test_builtin_templates_are_listed() -> None:
    templates = list_templates()
    health = templates["infrastructure-health-check"]
    assert health.scope == "built-in" and health.title == "Infrastructure health check"
    assert set(health.parameters) >= {"profile", "storage_dir", "object_store_uri", "size_mb"}


def test_team_directory_overrides_and_adds(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    team = tmp_path / "team"
    make_template(team, "etl", "n_workers = 2\nname = 'a'\n", title="Team ETL")
    make_template(team, "infrastructure-health-check", "n_workers = 1\nname = ''\n", title="Ours")
    monkeypatch.setenv("WORKBENCH_TEMPLATES", str(team))
    templates = list_templates()
    assert templates["etl"].scope == "team" and templates["etl"].title == "Team ETL"
    assert templates["infrastructure-health-check"].title == "Ours"


def test_team_directory_from_config(tmp_path: Path, workbench_home: Path) -> None:
    make_template(tmp_path / "t", "mine", "n_workers = 2\nname = 'a'\n")
    (workbench_home / "config" / "config.yaml").write_text(f"templates_dir: {tmp_path / 't'}\n")
    assert get_template("mine").scope == "team"


def test_new_notebook_injects_parameters_and_clears_outputs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_template(tmp_path / "team", "etl", "n_workers = 2  # workers\nname = 'a'\nratio = 0.5\n")
    monkeypatch.setenv("WORKBENCH_TEMPLATES", str(tmp_path / "team"))
    dest = new_notebook("etl", tmp_path / "out" / "my", {"n_workers": 8, "ratio": 1})
    assert dest == tmp_path / "out" / "my.ipynb"
    nb = nbformat.read(dest, as_version=4)
    tags = [c.metadata.get("tags", []) for c in nb.cells]
    assert tags[1] == ["parameters"] and tags[2] == ["injected-parameters"]
    assert nb.cells[2].source == "# Parameters\nn_workers = 8\nratio = 1.0\n"
    assert all(c.get("outputs", []) == [] for c in nb.cells if c.cell_type == "code")
    assert nb.metadata["workbench"]["created_from"]["template"] == "etl"
    assert "template" not in nb.metadata["workbench"]
    with pytest.raises(TemplateError, match="already exists"):
        new_notebook("etl", dest)
    new_notebook("etl", dest, {"name": "b"}, overwrite=True)
    assert "name = 'b'" in nbformat.read(dest, as_version=4).cells[2].source


def test_bad_parameters_are_clear_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    make_template(tmp_path / "team", "etl", "n_workers = 2\nname = 'a'\n")
    monkeypatch.setenv("WORKBENCH_TEMPLATES", str(tmp_path / "team"))
    with pytest.raises(
        TemplateError, match="no parameter 'n_wrkers'; its parameters: n_workers, name"
    ):
        new_notebook("etl", tmp_path / "a", {"n_wrkers": 1})
    with pytest.raises(TemplateError, match=r"expects int .*got 'many'"):
        new_notebook("etl", tmp_path / "a", {"n_workers": "many"})
    with pytest.raises(TemplateError, match="Did you mean 'etl'"):
        new_notebook("elt", tmp_path / "a")
    assert not (tmp_path / "a.ipynb").exists()


def test_secrets_are_never_written_into_notebooks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_template(tmp_path / "team", "s3", "bucket = ''\naws_secret = ''\n")
    monkeypatch.setenv("WORKBENCH_TEMPLATES", str(tmp_path / "team"))
    with pytest.raises(TemplateError, match="looks like a credential"):
        new_notebook("s3", tmp_path / "x", {"aws_secret": "hunter2"})
    assert not (tmp_path / "x.ipynb").exists()
    dest = new_notebook("s3", tmp_path / "x", {"aws_secret": "env:AWS_SECRET_ACCESS_KEY"})
    assert "env:AWS_SECRET_ACCESS_KEY" in dest.read_text()


def test_cli_new_and_list(tmp_path: Path) -> None:
    runner = CliRunner()
    out = runner.invoke(main, ["templates", "list", "--json"])
    assert out.exit_code == 0
    names = [t["name"] for t in json.loads(out.stdout)]
    assert "infrastructure-health-check" in names
    dest = tmp_path / "check.ipynb"
    out = runner.invoke(
        main,
        [
            "new",
            "infrastructure-health-check",
            str(dest),
            "-p",
            "size_mb=16",
            "-p",
            "profile=local-cpu",
        ],
    )
    assert out.exit_code == 0, out.stderr
    assert "size_mb = 16" in dest.read_text()
    out = runner.invoke(main, ["new", "infrastructure-health-check", str(dest)])
    assert out.exit_code == 1 and "already exists" in out.stderr


def test_health_check_defaults_start_on_a_machine_with_one_gpu() -> None:
    """The network test launches its profile with its worker count: with the defaults that
    must be valid where one GPU is visible (the ``local`` profile runs one worker per GPU,
    so ``local`` with 2 workers is an error there)."""
    from workbench.clusters.local import LocalBackend
    from workbench.clusters.profiles import get_profile
    from workbench.gpus import GPUInfo, GPUInventory
    from workbench.templates import list_templates

    params = list_templates()["infrastructure-health-check"].parameters
    profile = get_profile(params["profile"].default)
    options = profile.resolve(n_workers=params["network_workers"].default)
    one_gpu = GPUInventory(gpus=[GPUInfo(0, "GPU-one", "NVIDIA H100 80GB HBM3", 80 << 30)])
    assert profile.backend == "local"
    backend = LocalBackend(options, profile=profile.name, inventory=one_gpu)
    assert backend.selected == []  # CPU workers: a 2-worker network test on any machine
    assert [m for m, _, _ in backend.needed_modules()] == []
    backend.check()
    source = "".join(
        c.source
        for c in nbformat.read(list_templates()["infrastructure-health-check"].path, 4).cells
    )
    assert "n_workers=network_workers" in source and "n_workers=2" not in source


@pytest.mark.gpu
def test_health_check_code_runs_on_a_gpu_machine(tmp_path: Path) -> None:
    """The template's code cells, with its defaults, on a GPU: doctor, storage, the worker
    network and the GPU measurements beside their limits (run in this process: the device
    check has no Jupyter kernel)."""
    import contextlib
    import io

    from workbench.templates import list_templates

    nb = nbformat.read(list_templates()["infrastructure-health-check"].path, as_version=4)
    namespace: dict[str, object] = {}
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        for cell in nb.cells:
            if cell.cell_type == "code":
                exec(compile(cell.source, "health-check", "exec"), namespace)
    text = out.getvalue()
    assert "host-to-device copy:" in text and "GPU matmul (bf16):" in text, text
    assert "worker-to-worker network:" in text and "bottleneck:" in text


@pytest.mark.slow
def test_health_check_template_runs_end_to_end(tmp_path: Path) -> None:
    """Execute the created notebook in a real kernel: doctor, storage and network measured."""
    from nbclient import NotebookClient

    dest = new_notebook(
        "infrastructure-health-check", tmp_path / "check", {"profile": "local-cpu", "size_mb": 16}
    )
    nb = nbformat.read(dest, as_version=4)
    NotebookClient(
        nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    text = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    assert "[ok] profiles:" in text
    assert "storage read (local):" in text and "worker-to-worker network:" in text
    assert "bottleneck:" in text
