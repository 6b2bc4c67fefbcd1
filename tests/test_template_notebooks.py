"""The built-in templates, created with `workbench new ... -p key=value` and executed end to
end in a real kernel (nbclient) on the CPU path: the ETL one against the moto S3 server,
the XGBoost one on the real single-node SLURM, the optimization one in the kernel."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import nbformat
import pytest
from click.testing import CliRunner

from tests._slurm_fixtures import SlurmInstance
from tests._storage_fixtures import S3Server, make_frame
from workbench.cli import main

#: A small local CPU cluster, as a YAML `-p cluster_options=...` value.
SMALL_LOCAL = "{n_workers: 2, threads_per_worker: 1, memory_limit: 1GiB, dashboard_address: ':0'}"


def create(template: str, dest: Path, **params: str) -> Path:
    """`workbench new TEMPLATE DEST -p key=value ...` (values are YAML, as typed in a shell)."""
    args = ["new", template, str(dest)]
    for key, value in params.items():
        args += ["-p", f"{key}={value}"]
    out = CliRunner().invoke(main, args)
    assert out.exit_code == 0, out.output
    return dest


def execute(path: Path, timeout: int = 300) -> tuple[Any, str]:
    """Run every cell in a fresh python3 kernel; return the notebook and all text output."""
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    NotebookClient(
        nb,
        timeout=timeout,
        kernel_name="python3",
        resources={"metadata": {"path": str(path.parent)}},
    ).execute()
    nbformat.write(nb, path)
    texts = []
    for cell in nb.cells:
        for o in cell.get("outputs", []):
            assert o.get("output_type") != "error", o
            texts.append(o.get("text", "") or o.get("data", {}).get("text/plain", ""))
    return nb, "".join(texts)


def injected(nb: Any) -> str:
    return next(c.source for c in nb.cells if "injected-parameters" in c.metadata.get("tags", []))


@pytest.mark.s3
def test_etl_template_reads_filters_aggregates_and_writes_back_to_s3(
    s3: S3Server, tmp_path: Path
) -> None:
    import pandas as pd

    s3.create_bucket("etl")
    fs = s3.fs()
    frames = [make_frame(i * 4000, 4000, seed=i) for i in range(3)]
    for i, frame in enumerate(frames):
        with fs.open(f"etl/raw/part-{i}.parquet", "wb") as f:
            frame.to_parquet(f, index=False, row_group_size=1000)
    dest = create(
        "gpu-etl-from-object-storage",
        tmp_path / "etl.ipynb",
        profile="local-cpu",
        cluster_options=SMALL_LOCAL,
        source="s3://etl/raw/",
        endpoint_url=s3.endpoint,
        access_key=f"env:{S3Server.KEY_VAR}",
        secret_key=f"env:{S3Server.SECRET_VAR}",
        columns="[group, value]",
        filters="[[value, '>', 0.5]]",
        output="s3://etl/curated/summary/",
    )
    text = dest.read_text()
    assert s3.secret not in text and s3.key not in text  # references only

    _, out = execute(dest)

    assert "2 workers, backend local, GPUs: none (CPU workers)" in out
    assert "3 files" in out and "12,000 rows in the files" in out
    assert "frame backend: pandas" in out
    assert "columns: ['group', 'value']" in out

    # The summary the notebook wrote to S3 matches pandas on the same rows.
    every = pd.concat(frames, ignore_index=True)
    kept = every[every.value > 0.5]
    expected = kept.groupby("group")["value"].agg(["count", "sum", "mean"]).reset_index()
    written = pd.read_parquet(
        "s3://etl/curated/summary/",
        storage_options={"key": s3.key, "secret": s3.secret, "endpoint_url": s3.endpoint},
    ).sort_values("group")
    assert written["group"].tolist() == expected["group"].tolist()
    assert written["count"].tolist() == expected["count"].tolist()
    assert written["sum"].to_numpy() == pytest.approx(expected["sum"].to_numpy())
    assert f"{len(kept):,} rows kept by the filters" in out

    # Lineage: beside the output, naming every input file with its ETag; no secret anywhere.
    lineage = json.loads(fs.cat_file("etl/curated/summary/_lineage.json"))
    assert sorted(f["uri"] for f in lineage["files"]) == [
        f"s3://etl/raw/part-{i}.parquet" for i in range(3)
    ]
    assert all(f["etag"] for f in lineage["files"])
    assert lineage["columns"] == ["group", "value"]
    assert lineage["storage_options"]["secret"] == f"env:{S3Server.SECRET_VAR}"
    saved = dest.read_text()
    assert s3.secret not in saved and s3.key not in saved
    assert "fingerprint: " in out and "etag=" in out


@pytest.mark.slurm
def test_xgboost_on_slurm_template_trains_tracks_and_cancels_its_jobs(
    slurm: SlurmInstance,
    unique_name: Callable[[str], str],
    tracking_store: Path,
    tmp_path: Path,
) -> None:
    from mlflow import MlflowClient

    name = unique_name("wbtpl")
    dest = create(
        "distributed-xgboost-on-slurm",
        tmp_path / "xgb.ipynb",
        profile="slurm",
        cluster_options=(
            f"{{cores: 1, memory: 1GiB, walltime: '00:10:00', dashboard_address: ':0', "
            f"job_name: {name}}}"
        ),
        jobs="2",
        wait_timeout="120",
        num_boost_round="20",
        experiment="template-test",
    )
    nb, out = execute(dest)

    assert f"#SBATCH -J {name}" in out  # the job script of the jobs that ran
    assert "scikit-learn breast cancer data: 569 rows, 30 features" in out
    rows = out.split(" training rows, ")
    n_train, n_valid = int(rows[0].split()[-1]), int(rows[1].split()[0])
    assert n_train + n_valid == 569 and 0.1 < n_valid / 569 < 0.3
    assert "CPU workers=2" in out  # both jobs' workers connected
    assert "status finished, 20 rounds, device cpu" in out
    accuracy = float(out.split("validation accuracy: ")[1].split()[0])
    assert accuracy > 0.9
    assert nb.cells[-1].outputs[-1]["data"]["text/plain"] == "'closed'"
    slurm.wait_no_jobs(name, timeout=60)  # close() cancelled both jobs

    client = MlflowClient(f"sqlite:///{tracking_store}")
    (experiment,) = [e for e in client.search_experiments() if e.name == "template-test"]
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.status == "FINISHED"
    assert run.data.params["max_depth"] == "4" and "valid-logloss" in run.data.metrics
    assert f"run {run.info.run_id} in experiment 'template-test': FINISHED" in out


def test_quantize_template_compares_four_smaller_models_and_exports_onnx(tmp_path: Path) -> None:
    import onnx

    dest = create(
        "quantize-prune-distill",
        tmp_path / "opt.ipynb",
        dataset="wine",
        hidden="64",
        epochs="40",
        distill_epochs="40",
        export="pruned",
        onnx_path="exported/wine.onnx",
    )
    nb, out = execute(dest)

    assert "wine: 133 training and 45 test rows, 13 features, 3 classes" in out
    assert "int8 runs on: onnxruntime (cpu)" in out  # the CPU's fast int8 path
    assert "pruned layers: [(32, 13), (32, 32), (3, 32)]" in out  # half the neurons removed
    assert "student layers: [(16, 13), (16, 16), (3, 16)]" in out  # a quarter of the width
    (table,) = [
        o["data"]
        for c in nb.cells
        for o in c.get("outputs", [])
        if "Measured on this machine" in o.get("data", {}).get("text/html", "")
    ]
    params: dict[str, int] = {}
    for line in table["text/plain"].splitlines():  # pandas wraps: the first block has them
        words = line.split()
        wanted = ("baseline", "int8", "structured-0.5", "student")
        if words and words[0] in wanted and words[0] not in params:
            params[words[0]] = int(words[1])
    assert params["baseline"] == params["int8"] == 13 * 64 + 64 + 64 * 64 + 64 + 64 * 3 + 3
    assert params["structured-0.5"] == 13 * 32 + 32 + 32 * 32 + 32 + 32 * 3 + 3
    assert params["student"] == 13 * 16 + 16 + 16 * 16 + 16 + 16 * 3 + 3

    path = tmp_path / "exported" / "wine.onnx"
    onnx.checker.check_model(onnx.load(path))
    assert f"pruned -> wine.onnx: {path.stat().st_size:,} bytes" in out
    assert float(out.split("onnxruntime test accuracy: ")[1].split("%")[0]) > 80


def test_builtin_templates_have_titles_parameters_and_no_literal_secrets() -> None:
    from workbench.credentials import find_literal_secrets
    from workbench.templates import list_templates

    templates = {n: t for n, t in list_templates().items() if t.scope == "built-in"}
    assert set(templates) == {
        "infrastructure-health-check",
        "gpu-etl-from-object-storage",
        "distributed-xgboost-on-slurm",
        "quantize-prune-distill",
    }
    for tpl in templates.values():
        assert tpl.title and tpl.description and tpl.tags, tpl.name
        assert tpl.parameters and all(p.help for p in tpl.parameters.values()), tpl.name
        defaults = {k: p.default for k, p in tpl.parameters.items()}
        assert find_literal_secrets(defaults) == [], tpl.name
        nb = nbformat.read(tpl.path, as_version=4)
        assert all(c.get("outputs", []) == [] for c in nb.cells if c.cell_type == "code")
    etl = templates["gpu-etl-from-object-storage"].parameters
    assert etl["secret_key"].default.startswith("env:")
