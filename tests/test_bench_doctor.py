"""`workbench bench` measurements and the extended doctor checks, on this machine."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

import workbench
from workbench import bench
from workbench.cli import main
from workbench.doctor import check_object_store_credentials, check_slurm, run_checks

from ._slurm_fixtures import SlurmInstance


def test_pcie_and_limits_arithmetic() -> None:
    assert bench._pcie_gbps("16.0 GT/s PCIe", "4") == pytest.approx(7.876)
    assert bench._pcie_gbps("32.0 GT/s PCIe", "16") == pytest.approx(63.008)
    assert bench._pcie_gbps("unknown", "4") is None and bench._pcie_gbps(None, "4") is None
    m = bench.Measurement("x", 5.0, "GB/s", 10.0, "test")
    assert m.fraction == 0.5 and "50% of limit" in str(m)
    fast = bench.Measurement("y", 20.0, "GB/s", 10.0, "test")
    assert fast.above_limit and "cache below the OS" in str(fast)
    assert bench.bottleneck([m, fast, bench.Measurement("z", 1, "GB/s")]) is m
    assert bench.bottleneck([bench.Measurement("z", 1, "GB/s")]) is None


def test_gpu_pcie_limit_is_the_links_maximum_not_its_idle_generation() -> None:
    """An idle GPU reports a lower current link generation (Gen1 in this recording); the
    limit of a copy is the link at its maximum generation and width."""
    from workbench.metrics.nvml_replay import ReplayNVML

    fixture = Path(__file__).parent / "fixtures" / "nvml" / "handwritten-h100.json"
    nvml = ReplayNVML(fixture)
    handle = nvml.nvmlDeviceGetHandleByIndex(0)
    assert nvml.nvmlDeviceGetCurrPcieLinkGeneration(handle) == 1  # idle, as recorded
    limit, source = bench.gpu_pcie_limit(0, nvml=ReplayNVML(fixture))
    assert limit == pytest.approx(bench.PCIE_LANE_GBPS[5] * 16)
    assert source == "PCIe Gen5 x16 (the link's maximum)"


def _fake_block_device(root: Path, probe: Path, name: str, rotational: str) -> Path:
    """A sysfs tree in which the disk holding ``probe`` is ``name``."""
    st = os.stat(probe)
    disk = root / "devices" / "virtual" / "block" / name
    (disk / "queue").mkdir(parents=True)
    (disk / "queue" / "rotational").write_text(rotational + "\n")
    link = root / "dev" / "block" / f"{os.major(st.st_dev)}:{os.minor(st.st_dev)}"
    link.parent.mkdir(parents=True)
    link.symlink_to(disk)
    return root


@pytest.mark.parametrize("rotational", ["0", "1"])
def test_disk_limit_is_never_guessed_for_a_disk_without_a_link_speed(
    tmp_path: Path, rotational: str
) -> None:
    sysfs = _fake_block_device(tmp_path / "sys", tmp_path, "sda", rotational)
    limit, source = bench.disk_limit(tmp_path, sysfs=sysfs)
    assert limit is None
    assert source.startswith("sda: ") and "no limit is guessed" in source


def test_storage_read_measures_a_real_file(tmp_path: Path) -> None:
    probe_dir = tmp_path / "disk"
    probe_dir.mkdir()
    m = bench.storage_read(probe_dir, size_mb=16)
    assert m.value > 0 and m.unit == "GB/s" and "16 MiB" in m.detail
    assert list(probe_dir.iterdir()) == []  # the probe file is removed
    limit, source = bench.disk_limit(probe_dir)
    assert (m.limit, m.limit_source) == (limit, source) and source


def test_object_store_read_through_fsspec(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "a.bin").write_bytes(os.urandom(3 << 20))
    (data / "b.bin").write_bytes(os.urandom(1 << 20))
    m = bench.object_store_read(f"file://{data}", max_mb=64)
    assert m.value > 0 and "4 MiB" in m.detail
    from workbench.errors import WorkbenchError

    (tmp_path / "empty").mkdir()
    with pytest.raises(WorkbenchError, match="nothing to read"):
        bench.object_store_read(f"file://{tmp_path / 'empty'}")


def test_worker_network_between_two_real_workers() -> None:
    with workbench.launch(
        "local-cpu", n_workers=2, threads_per_worker=1, dashboard_address=":0", wait=2
    ) as handle:
        m = bench.worker_network(handle.client, size_mb=16, repeats=2)
        assert m.value > 0 and m.limit is None and "loopback" in m.limit_source
        handle.scale(1)
        import time

        deadline = time.monotonic() + 30
        while handle.n_workers() > 1 and time.monotonic() < deadline:
            time.sleep(0.1)
        with pytest.raises(workbench.WorkbenchError, match="needs 2 workers"):
            bench.worker_network(handle.client, size_mb=8)


def test_gpu_measurements_empty_without_gpu() -> None:
    from workbench.gpus import detect_gpus

    if detect_gpus().count:
        pytest.skip("GPU present: covered by the gpu test")
    assert bench.gpu_measurements() == []


@pytest.mark.gpu
def test_gpu_measurements_on_a_gpu() -> None:
    """The copy and the matmul beside limits the GPU reports: the link at its maximum
    generation (a copy never beats it) and the data sheet's dense bf16 peak."""
    pytest.importorskip("torch", reason="GPU measurements use PyTorch: pip install torch")
    results = {m.name: m for m in bench.gpu_measurements()}
    copy, matmul = results["host-to-device copy"], results["GPU matmul (bf16)"]
    assert copy.value > 1 and copy.limit and "the link's maximum" in copy.limit_source
    assert not copy.above_limit, copy
    assert matmul.value > 1
    assert bench.bottleneck(list(results.values())) is not None


def test_cli_bench_json(tmp_path: Path) -> None:
    out = CliRunner().invoke(
        main, ["bench", "--storage", str(tmp_path), "--size-mb", "16", "--json"]
    )
    assert out.exit_code == 0, out.output
    data = json.loads(out.stdout)
    names = [r["name"] for r in data["results"]]
    assert names[:2] == ["storage read (local)", "worker-to-worker network"]


def test_doctor_explains_missing_object_store_credentials(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for var in (
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AZURE_STORAGE_CONNECTION_STRING",
        "AZURE_STORAGE_ACCOUNT_NAME",
        "AZURE_CLIENT_ID",
        "GOOGLE_APPLICATION_CREDENTIALS",
    ):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    checks = {c.name: c for c in check_object_store_credentials()}
    assert checks["S3 credentials"].status == "warn"
    creds = tmp_path / "creds"
    creds.write_text("[default]\naws_access_key_id = AKIA\naws_secret_access_key = shh\n")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(creds))
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "missing.json"))
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", "x")
    checks = {c.name: c for c in check_object_store_credentials()}
    assert checks["S3 credentials"].status == "ok" and "shh" not in checks["S3 credentials"].summary
    assert (
        checks["GCS credentials"].status == "fail"
        and "does not exist" in checks["GCS credentials"].summary
    )
    assert checks["Azure credentials"].status == "ok"


def test_doctor_slurm_check_without_slurm(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("SLURM_CONF", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))  # no sbatch
    check = check_slurm()
    assert check.status == "ok" and "not installed" in check.summary


@pytest.mark.slurm
def test_doctor_slurm_check_against_a_real_slurm(
    slurm: SlurmInstance, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The project's single-node SLURM (tests/_slurm_fixtures.py: the fixture fails, it does
    not skip, when SLURM cannot start) answers; a SLURM_CONF naming no controller fails."""
    check = check_slurm()
    assert check.status == "ok", check
    assert f"controller answers (SLURM_CONF {slurm.conf})" in check.summary
    assert re.search(r"partitions: \S+\* \(up, max ", check.summary), check.summary
    assert f"GPUs in GRES: gpu:{slurm.gpus}" in check.summary or re.search(
        rf"GPUs in GRES: gpu:\w+:{slurm.gpus}", check.summary
    ), check.summary
    bogus = tmp_path / "slurm.conf"
    bogus.write_text(
        "ClusterName=nowhere\nSlurmctldHost=nohost-wb-test(127.0.0.1)\nSlurmctldPort=9\n"
    )
    monkeypatch.setenv("SLURM_CONF", str(bogus))
    check = check_slurm()
    assert check.status == "fail" and "does not answer" in check.summary and check.advice


def test_doctor_lists_fabric_checks() -> None:
    names = [c.name for c in run_checks()]
    assert {
        "UCX",
        "InfiniBand",
        "SLURM",
        "S3 credentials",
        "Azure credentials",
        "GCS credentials",
    } <= set(names)
