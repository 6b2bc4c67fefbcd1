"""GPU clusters through dask-cuda. Skipped on machines without an NVIDIA GPU and driver."""

from __future__ import annotations

import os

import pytest

import workbench
from workbench.gpus import detect_gpus

pytestmark = pytest.mark.gpu


def test_local_profile_starts_one_worker_per_gpu() -> None:
    pytest.importorskip("dask_cuda", reason="GPU workers need: pip install 'workbench[gpu]'")
    inventory = detect_gpus()
    with workbench.launch("local", dashboard_address=":0", wait=inventory.count) as handle:
        assert handle.gpus == [g.uuid for g in inventory.gpus]
        assert handle.n_workers() == inventory.count
        assert "LocalCUDACluster" in handle._repr_html_()
        # Each worker sees a different GPU first in its CUDA_VISIBLE_DEVICES.
        firsts = handle.client.run(lambda: os.environ["CUDA_VISIBLE_DEVICES"].split(",")[0])
        assert len(set(firsts.values())) == inventory.count


def test_gpu_work_runs_on_the_workers_device() -> None:
    pytest.importorskip("dask_cuda")
    cupy = pytest.importorskip("cupy")
    with workbench.launch("local", gpus=1, dashboard_address=":0", wait=1) as handle:

        def on_gpu() -> float:
            x = cupy.arange(1_000_000, dtype="float64")
            return float((x * 2).sum())

        assert handle.client.submit(on_gpu).result() == 2 * sum(range(1_000_000))


def test_cpu_profile_ignores_gpus_on_a_gpu_machine() -> None:
    with workbench.launch("local-cpu", n_workers=1, dashboard_address=":0", wait=1) as handle:
        assert handle.gpus == []
        assert "LocalCluster" in handle._repr_html_()
