"""Real dask-cuda clusters on a machine with NVIDIA GPUs (skipped elsewhere).

Each test names the package it needs when that package is missing: dask-cuda for any GPU
worker, CuPy for arrays on the GPU, cuDF for the default profile's spilling.
"""

from __future__ import annotations

import importlib.util
import os

import pytest

import workbench
from workbench.errors import MissingDependencyError
from workbench.gpus import detect_gpus

pytestmark = pytest.mark.gpu
DASK_CUDA = "GPU workers need dask-cuda: pip install 'workbench[gpu]'"


def test_local_profile_starts_one_worker_per_gpu() -> None:
    pytest.importorskip("dask_cuda", reason=DASK_CUDA)
    inventory = detect_gpus()
    with workbench.launch(
        "local", enable_cudf_spill=False, dashboard_address=":0", wait=inventory.count
    ) as handle:
        assert handle.gpus == [g.uuid for g in inventory.gpus]
        assert handle.n_workers() == inventory.count
        assert "LocalCUDACluster" in handle._repr_html_()
        # Each worker sees a different GPU first in its CUDA_VISIBLE_DEVICES.
        firsts = handle.client.run(lambda: os.environ["CUDA_VISIBLE_DEVICES"].split(",")[0])
        assert len(set(firsts.values())) == inventory.count


def test_the_default_profile_spills_with_cudf_or_says_to_install_it() -> None:
    """cuDF spilling is on by default: with cuDF the workers spill, without it the launch
    stops before starting anything and names cuDF and the option."""
    pytest.importorskip("dask_cuda", reason=DASK_CUDA)
    if importlib.util.find_spec("cudf") is None:
        with pytest.raises(MissingDependencyError, match=r"cudf \(enable_cudf_spill: true"):
            workbench.launch("local", dashboard_address=":0")
        return
    with workbench.launch("local", gpus=1, dashboard_address=":0", wait=1) as handle:

        def spilling() -> bool:
            import cudf

            return bool(cudf.get_option("spill"))

        assert set(handle.client.run(spilling).values()) == {True}


def test_gpu_work_runs_on_the_workers_device() -> None:
    pytest.importorskip("dask_cuda", reason=DASK_CUDA)
    cupy = pytest.importorskip("cupy", reason="GPU arrays need CuPy: pip install cupy-cuda13x")
    with workbench.launch(
        "local", gpus=1, enable_cudf_spill=False, dashboard_address=":0", wait=1
    ) as handle:

        def on_gpu() -> float:
            x = cupy.arange(1_000_000, dtype="float64")
            return float((x * 2).sum())

        assert handle.client.submit(on_gpu).result() == 2 * sum(range(1_000_000))


def test_dask_arrays_on_cupy_compute_on_the_workers_gpu() -> None:
    """A dask array whose chunks are CuPy arrays: the reduction runs on the worker's GPU and
    the result comes back as a CuPy array, equal to NumPy's on the same numbers."""
    pytest.importorskip("dask_cuda", reason=DASK_CUDA)
    cupy = pytest.importorskip("cupy", reason="GPU arrays need CuPy: pip install cupy-cuda13x")
    import dask.array as da
    import numpy as np

    rng = np.random.default_rng(0)
    host = rng.random((4000, 500))
    with workbench.launch(
        "local", gpus=1, enable_cudf_spill=False, dashboard_address=":0", wait=1
    ) as handle:
        x = da.from_array(host, chunks=(1000, 500)).map_blocks(cupy.asarray)
        assert type(x._meta).__module__.startswith("cupy")
        gram = (x.T @ x).sum(axis=0)
        result = handle.client.compute(gram).result()
        assert type(result).__module__.startswith("cupy")
        np.testing.assert_allclose(cupy.asnumpy(result), (host.T @ host).sum(axis=0), rtol=1e-10)
        devices = handle.client.run(lambda: int(cupy.cuda.runtime.getDevice()))
        assert set(devices.values()) == {0}  # the first device each worker is given
