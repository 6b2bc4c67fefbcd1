"""The backend registry: lazy lookup by name, entry points, install hints."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from workbench.clusters import backend_registry as registry
from workbench.clusters.local import LocalBackend
from workbench.clusters.local_options import LocalOptions
from workbench.clusters.profiles import get_profile, load_catalog
from workbench.errors import MissingDependencyError, ProfileError, UnknownBackendError
from workbench.gpus import GPUInfo, GPUInventory


@pytest.fixture
def clean_registry() -> Iterator[None]:
    saved = dict(registry._registry), dict(registry.known_backends)
    yield
    registry._registry.clear()
    registry._registry.update(saved[0])
    registry.known_backends.clear()
    registry.known_backends.update(saved[1])


@pytest.fixture
def third_party(tmp_path: Path, clean_registry: None) -> Iterator[Path]:
    """A real installed distribution (dist-info on sys.path) declaring two entry points."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "wb_thirdparty.py").write_text(
        textwrap.dedent("""
        from workbench.clusters.local import LocalBackend

        class ThirdParty(LocalBackend):
            name = "thirdparty"
    """)
    )
    (site / "wb_broken.py").write_text("import wb_package_that_does_not_exist\n")
    dist = site / "wb_thirdparty-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: wb-thirdparty\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(
        "[workbench.backends]\nthirdparty = wb_thirdparty:ThirdParty\nbroken = wb_broken:Broken\n"
    )
    sys.path.insert(0, str(site))
    try:
        yield site
    finally:
        sys.path.remove(str(site))
        for mod in ("wb_thirdparty", "wb_broken"):
            sys.modules.pop(mod, None)


def test_builtin_local_backend_resolves_lazily() -> None:
    assert "local" in registry.available_backends()
    assert registry.get_backend_class("local") is LocalBackend


def test_unknown_backend_lists_choices_and_suggests() -> None:
    with pytest.raises(UnknownBackendError) as exc:
        registry.get_backend_class("locall")
    assert "Did you mean 'local'?" in str(exc.value)
    assert "Available backends: " in str(exc.value) and "local" in str(exc.value)


def test_entry_point_backend_is_found_and_used_by_profiles(
    third_party: Path, user_profiles
) -> None:
    assert {"thirdparty", "broken"} <= set(registry.available_backends())
    cls = registry.get_backend_class("thirdparty")
    assert cls.__name__ == "ThirdParty" and cls.__module__ == "wb_thirdparty"
    user_profiles("profiles:\n  tp:\n    backend: thirdparty\n    options: {gpus: none}\n")
    assert get_profile("tp").resolve().gpus == "none"


def test_entry_point_with_missing_dependency_gives_install_hint(
    third_party: Path, user_profiles
) -> None:
    with pytest.raises(MissingDependencyError) as exc:
        registry.get_backend_class("broken")
    assert "wb_package_that_does_not_exist" in str(exc.value)
    assert "Install it with" in str(exc.value)
    user_profiles("profiles:\n  b:\n    backend: broken\n")
    (problem,) = load_catalog().problems
    assert problem.key == "backend" and "could not be imported" in problem.message
    with pytest.raises(ProfileError):
        get_profile("b")


def test_register_backend_at_runtime(clean_registry: None) -> None:
    class Mine(LocalBackend):
        name = "mine"

    registry.register_backend("mine", Mine)
    assert registry.get_backend_class("mine") is Mine
    with pytest.raises(ValueError, match="already registered"):
        registry.register_backend("mine", Mine)
    registry.register_backend("bypath", "workbench.clusters.local:LocalBackend")
    assert registry.get_backend_class("bypath") is LocalBackend


# The inventories below stand in for NVML on this GPU-less machine: they are the
# input LocalBackend reads, so the GPU code path (selection, kwargs, install hint)
# runs for real without a driver.
TWO_GPUS = GPUInventory(
    gpus=[
        GPUInfo(0, "GPU-aaaa", "NVIDIA H100", 80 * 2**30),
        GPUInfo(1, "GPU-bbbb", "NVIDIA H100", 80 * 2**30),
    ],
    driver_version="580.00",
)


def test_gpu_cluster_needs_dask_cuda_with_install_hint() -> None:
    if __import__("importlib").util.find_spec("dask_cuda") is not None:
        pytest.skip("dask-cuda is installed here")
    backend = LocalBackend(LocalOptions(gpus="all"), profile="gpu", inventory=TWO_GPUS)
    with pytest.raises(MissingDependencyError) as exc:
        backend.check()
    assert "dask_cuda" in str(exc.value) and "pip install 'workbench[gpu]'" in str(exc.value)


def test_gpu_prelaunch_check_asks_for_what_each_option_needs() -> None:
    """cuDF spilling is on by default, so GPU workers need cuDF as well as dask-cuda (or the
    option turned off); RMM options need RMM; protocol ucx needs distributed-ucxx; every
    pre_import module must exist. Each is named with its option and what to install."""
    options = LocalOptions(gpus="all", rmm_pool_size=0.8, rmm_async=True, pre_import=["zzwb"])
    needed = LocalBackend(options, profile="gpu", inventory=TWO_GPUS).needed_modules()
    assert [(m, why) for m, why, _ in needed] == [
        ("dask_cuda", "GPU workers"),
        ("cudf", "enable_cudf_spill: true, the default"),
        ("rmm", "rmm_pool_size: 0.8, rmm_async: True"),
        ("zzwb", "pre_import"),
    ]
    hints = {m: hint for m, _, hint in needed}
    assert hints["cudf"] == "pip install 'workbench[gpu]' (cuDF), or set enable_cudf_spill: false"
    plain = LocalBackend(LocalOptions(gpus=1, enable_cudf_spill=False), inventory=TWO_GPUS)
    assert [m for m, _, _ in plain.needed_modules()] == ["dask_cuda"]
    cuda12 = GPUInventory(gpus=TWO_GPUS.gpus, driver_version="535", cuda_driver_version="12.2")
    ucx = LocalBackend(LocalOptions(gpus="all", protocol="ucx", security="none"), inventory=cuda12)
    assert ("distributed_ucxx", "protocol: ucx", "pip install distributed-ucxx-cu12") in (
        ucx.needed_modules()
    )
    assert "workbench[gpu-cu12]" in ucx.needed_modules()[0][2]
    cpu = LocalBackend(LocalOptions(gpus="none", rmm_pool_size=0.8), inventory=TWO_GPUS)
    assert cpu.needed_modules() == []  # GPU options mean nothing to CPU workers


def test_gpu_prelaunch_check_lists_every_missing_package() -> None:
    import importlib.util

    if any(importlib.util.find_spec(m) for m in ("dask_cuda", "cudf", "rmm")):
        pytest.skip("GPU packages are installed here; the GPU tests launch with them")
    options = LocalOptions(gpus="all", rmm_pool_size=0.8, pre_import=["zzwb"])
    backend = LocalBackend(options, profile="gpu", inventory=TWO_GPUS)
    with pytest.raises(MissingDependencyError) as exc:
        backend.check()
    message = str(exc.value)
    assert message.startswith("profile 'gpu' starts GPU workers with options that need")
    for line in (
        "  - dask_cuda (GPU workers): pip install 'workbench[gpu]'",
        "  - cudf (enable_cudf_spill: true, the default): pip install 'workbench[gpu]' (cuDF), "
        "or set enable_cudf_spill: false",
        "  - rmm (rmm_pool_size: 0.8): pip install 'workbench[gpu]' (RMM), "
        "or leave those options out",
        "  - zzwb (pre_import): install it, or remove it from pre_import",
    ):
        assert line in message.splitlines(), message


def test_gpu_cluster_kwargs_map_profile_options_to_dask_cuda() -> None:
    options = LocalOptions(
        gpus=["GPU-bbbb"], rmm_pool_size="20GB", device_memory_limit=0.7, memory_limit="32GB"
    )
    backend = LocalBackend(options, profile="gpu", inventory=TWO_GPUS)
    kwargs = backend.cluster_kwargs()
    assert kwargs["CUDA_VISIBLE_DEVICES"] == "1"
    assert kwargs["rmm_pool_size"] == "20GB" and kwargs["device_memory_limit"] == 0.7
    assert kwargs["enable_cudf_spill"] is True and kwargs["threads_per_worker"] == 1
    assert "processes" not in kwargs
    assert backend.gpus == ["GPU-bbbb"]


def test_cpu_cluster_kwargs_have_no_gpu_options() -> None:
    backend = LocalBackend(
        LocalOptions(gpus="auto", n_workers=2), inventory=GPUInventory(reason="x")
    )
    kwargs = backend.cluster_kwargs()
    assert kwargs["n_workers"] == 2 and "CUDA_VISIBLE_DEVICES" not in kwargs
    assert "rmm_pool_size" not in kwargs and backend.gpus == []
    assert backend.describe()["cpu_fallback_reason"] == "x"
