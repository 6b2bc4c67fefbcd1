"""GPU selection and the errors for asking more than exists."""

from __future__ import annotations

from pathlib import Path

import pytest

import workbench
from workbench.clusters.local import select_gpus
from workbench.errors import ResourceError
from workbench.gpus import (
    GPUInfo,
    GPUInventory,
    detect_gpus,
    filter_visible,
    worker_gpu_uuids,
    worker_gpus,
)
from workbench.metrics.nvml_replay import ReplayNVML

TWO_GPUS = Path(__file__).parent / "fixtures" / "nvml" / "handwritten-2gpu.json"

GPUS = [
    GPUInfo(0, "GPU-aaaa-1111", "A", 1),
    GPUInfo(1, "GPU-bbbb-2222", "B", 1),
    GPUInfo(2, "GPU-cccc-3333", "C", 1),
]


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        (None, [0, 1, 2]),
        ("2,0", [2, 0]),
        ("GPU-bbbb", [1]),
        ("1,7,2", [1]),
        ("", []),
        ("0,0", [0]),
        ("-1", []),
    ],
)
def test_cuda_visible_devices_follows_cuda_rules(env: str | None, expected: list[int]) -> None:
    assert [g.index for g in filter_visible(GPUS, env)] == expected


def test_select_gpus() -> None:
    inv = GPUInventory(gpus=GPUS[:2])
    assert select_gpus("auto", inv) == GPUS[:2]
    assert select_gpus("none", inv) == [] and select_gpus(0, inv) == []
    assert select_gpus(1, inv) == GPUS[:1]
    assert select_gpus([1, "GPU-aaaa-1111"], inv) == [GPUS[1], GPUS[0]]
    with pytest.raises(ResourceError, match=r"asks for 3 GPUs, but this machine has 2 visible"):
        select_gpus(3, inv, "big")
    with pytest.raises(ResourceError, match=r"GPU 'GPU-zzzz'.*Visible GPUs: 0 \(GPU-aaaa-1111\)"):
        select_gpus(["GPU-zzzz"], inv)


def test_auto_falls_back_to_cpu_and_all_does_not() -> None:
    none = GPUInventory(reason="NVML could not start")
    assert select_gpus("auto", none) == []
    with pytest.raises(ResourceError, match="no GPU is visible \\(NVML could not start\\)"):
        select_gpus("all", none, "p")


def test_detect_gpus_explains_absence() -> None:
    inv = detect_gpus()
    assert (inv.count == 0) == (inv.reason is not None)


def test_launch_asking_for_more_gpus_than_exist_is_a_clear_error() -> None:
    have = detect_gpus().count
    with pytest.raises(ResourceError) as exc:
        workbench.launch("local", gpus=have + 1, dashboard_address=":0")
    assert f"asks for {have + 1} GPU" in str(exc.value)
    assert f"has {have} visible" in str(exc.value)


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        (None, ["GPU-a", "GPU-b"]),  # a plain worker may use every GPU of its machine
        ("1,0", ["GPU-b"]),  # a dask-cuda worker uses the first device it is given
        ("MIG-1234", ["MIG-1234"]),  # a MIG instance is named by its own UUID
        ("", []),
    ],
)
def test_a_worker_reports_the_gpus_it_uses(
    monkeypatch: pytest.MonkeyPatch, env: str | None, expected: list[str]
) -> None:
    if env is None:
        monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    else:
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", env)
    assert worker_gpu_uuids(ReplayNVML(TWO_GPUS)) == expected


def test_worker_gpus_asks_every_worker_once() -> None:
    """On a real CPU cluster each worker answers through NVML (no driver here: nothing)."""
    with workbench.launch(
        "local-cpu", n_workers=2, threads_per_worker=1, dashboard_address=":0", wait=2
    ) as handle:
        assert worker_gpus(handle.client) == []
        assert handle.gpus == []


@pytest.mark.gpu
def test_worker_gpus_on_gpu_workers_are_the_uuids_nvml_reports() -> None:
    pytest.importorskip(
        "dask_cuda", reason="GPU workers need dask-cuda: pip install 'workbench[gpu]'"
    )
    inventory = detect_gpus()
    with workbench.launch(
        "local", enable_cudf_spill=False, dashboard_address=":0", wait=inventory.count
    ) as handle:
        assert sorted(worker_gpus(handle.client)) == sorted(g.uuid for g in inventory.gpus)
        assert sorted(worker_gpus(handle.client)) == sorted(handle.gpus)
