"""The ``local`` backend: this machine's GPUs through dask-cuda, else a CPU LocalCluster.

With GPUs visible, ``LocalCUDACluster`` starts one worker per GPU with a device
memory limit, optional RMM pool and cuDF native spilling. Without, the same
profile starts a ``distributed.LocalCluster``: one API either way, and the choice
is visible on the handle (``handle.gpus``, ``handle.backend``). The options and their
validation are in :mod:`workbench.clusters.local_options`.
"""

from __future__ import annotations

import contextlib
import importlib.util
from typing import TYPE_CHECKING, Any

from ..errors import MissingDependencyError, ResourceError
from ..gpus import GPUInfo, GPUInventory, detect_gpus
from ..private import private_tmp_dir
from .backend import Backend, BackendOptions, private_dask_scratch
from .comm import free_dashboard_address
from .dashboard_tls import WORKER_HTTP_CONFIG, dashboard_tls
from .local_options import LocalOptions

if TYPE_CHECKING:
    from distributed.deploy.cluster import Cluster

GPU_HINT = "pip install 'workbench[gpu]'"
#: Where dask-cuda's cluster options send it: option -> (module it imports, what it does).
_RMM_OPTIONS = ("rmm_pool_size", "rmm_maximum_pool_size", "rmm_async", "rmm_managed_memory")


def select_gpus(requested: Any, inventory: GPUInventory, profile: str = "") -> list[GPUInfo]:
    """The GPUs a profile's ``gpus`` option selects, or ResourceError if they do not exist."""
    visible = inventory.gpus
    why = f" ({inventory.reason})" if inventory.reason else ""
    what = f"profile {profile!r}" if profile else "the profile"
    if requested in ("none", 0):
        return []
    if requested == "auto":
        return list(visible)
    if requested == "all":
        if not visible:
            raise ResourceError(
                f"{what} asks for all GPUs, but no GPU is visible{why}. "
                "Use gpus: auto to fall back to CPU workers."
            )
        return list(visible)
    if isinstance(requested, int):
        if requested > len(visible):
            raise ResourceError(
                f"{what} asks for {requested} GPU{'s' if requested != 1 else ''}, but this "
                f"machine has {len(visible)} visible{why}."
            )
        return visible[:requested]
    chosen: list[GPUInfo] = []
    for item in requested:
        match = next(
            (
                g
                for g in visible
                if (isinstance(item, int) and g.index == item)
                or (isinstance(item, str) and (g.uuid == item or str(g.index) == item))
            ),
            None,
        )
        if match is None:
            have = ", ".join(f"{g.index} ({g.uuid})" for g in visible) or "none"
            raise ResourceError(
                f"{what} asks for GPU {item!r}, which is not visible{why}. Visible GPUs: {have}."
            )
        chosen.append(match)
    return chosen


class LocalBackend(Backend):
    name = "local"
    Options = LocalOptions
    options: LocalOptions

    def __init__(
        self, options: BackendOptions, profile: str = "", inventory: GPUInventory | None = None
    ) -> None:
        super().__init__(options, profile)
        self._inventory = inventory
        self._selected: list[GPUInfo] | None = None

    @property
    def inventory(self) -> GPUInventory:
        if self._inventory is None:
            self._inventory = detect_gpus()
        return self._inventory

    @property
    def selected(self) -> list[GPUInfo]:
        if self._selected is None:
            self._selected = select_gpus(self.options.gpus, self.inventory, self.profile)
        return self._selected

    @property
    def gpus(self) -> list[str]:
        return [g.uuid for g in self.selected]

    def check(self) -> None:
        gpus = self.selected
        n = self.options.n_workers
        if gpus and n is not None and n > len(gpus):
            raise ResourceError(
                f"profile {self.profile!r} asks for {n} workers on {len(gpus)} GPU(s); the local "
                "backend runs one worker per GPU. Lower n_workers or select more GPUs."
            )
        missing = [
            (module, why, hint)
            for module, why, hint in self.needed_modules()
            if importlib.util.find_spec(module) is None
        ]
        if missing:
            lines = "\n".join(f"  - {m} ({why}): {hint}" for m, why, hint in missing)
            what = "GPU workers" if gpus else "its workers"
            raise MissingDependencyError(
                f"profile {self.profile!r} starts {what} with options that need packages that "
                f"are not installed:\n{lines}"
            )

    def needed_modules(self) -> list[tuple[str, str, str]]:
        """(module, the option that needs it, how to get it) for what the options ask of
        this machine: dask-cuda for GPU workers, cuDF for ``enable_cudf_spill`` (on by
        default), RMM for the ``rmm_*`` options, distributed-ucxx for ``protocol: ucx``, and
        every ``pre_import`` module."""
        o = self.options
        out: list[tuple[str, str, str]] = []
        if self.selected:
            cuda = self.inventory.cuda_driver_version or ""
            extra = "gpu-cu12" if cuda.split(".")[0] == "12" else "gpu"
            hint = f"pip install 'workbench[{extra}]'"
            out.append(("dask_cuda", "GPU workers", hint))
            if o.enable_cudf_spill:
                out.append(
                    (
                        "cudf",
                        "enable_cudf_spill: true, the default",
                        f"{hint} (cuDF), or set enable_cudf_spill: false",
                    )
                )
            rmm = [
                f"{k}: {getattr(o, k)}" for k in _RMM_OPTIONS if getattr(o, k) not in (None, False)
            ]
            if rmm:
                out.append(("rmm", ", ".join(rmm), f"{hint} (RMM), or leave those options out"))
            if o.protocol == "ucx":
                suffix = "cu12" if extra == "gpu-cu12" else "cu13"
                out.append(
                    ("distributed_ucxx", "protocol: ucx", f"pip install distributed-ucxx-{suffix}")
                )
        for name in o.pre_import:
            out.append(
                (name.split(".")[0], "pre_import", "install it, or remove it from pre_import")
            )
        return out

    def cluster_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for LocalCUDACluster (GPUs) or LocalCluster (CPU)."""
        o = self.options
        kw: dict[str, Any] = {
            "n_workers": o.n_workers,
            "memory_limit": o.memory_limit,
            "dashboard_address": o.dashboard_address,
            "protocol": o.protocol,
            "local_directory": o.local_directory,
        }
        if not self.selected:
            kw.update(threads_per_worker=o.threads_per_worker, processes=o.processes)
            if not o.processes:
                # Dask measures a worker's memory as its process's: in this process that
                # is the notebook's too, and a limit would pause the workers (0: none).
                kw["memory_limit"] = 0
            return {k: v for k, v in kw.items() if v is not None}
        kw.update(
            CUDA_VISIBLE_DEVICES=",".join(str(g.index) for g in self.selected),
            threads_per_worker=o.threads_per_worker or 1,
            device_memory_limit=o.device_memory_limit,
            rmm_pool_size=o.rmm_pool_size,
            rmm_maximum_pool_size=o.rmm_maximum_pool_size,
            rmm_async=o.rmm_async,
            rmm_managed_memory=o.rmm_managed_memory,
            enable_cudf_spill=o.enable_cudf_spill,
            pre_import=o.pre_import or None,
        )
        return {k: v for k, v in kw.items() if v is not None}

    def create_cluster(self) -> Cluster:
        self.check()
        kwargs = self.cluster_kwargs()
        # Spilled data in a directory of the user's alone, not in /tmp/dask-scratch-space,
        # which every user of the machine shares (and Dask creates readable by all).
        kwargs.setdefault("local_directory", str(private_tmp_dir("dask-scratch")))
        if kwargs.get("processes", True):
            kwargs["config"] = {**kwargs.get("config", {}), **WORKER_HTTP_CONFIG}
        security = self.make_security()
        if security is not None:
            kwargs.update(security=security, protocol="tls")
        try:
            with private_dask_scratch(), dashboard_tls(self.tls_paths):
                return self._start(kwargs)
        except BaseException:
            self.forget_security()
            raise

    def _start(self, kwargs: dict[str, Any]) -> Cluster:
        if kwargs.get("dashboard_address"):
            kwargs["dashboard_address"] = free_dashboard_address(kwargs["dashboard_address"])
        if self.selected:
            from dask_cuda import LocalCUDACluster

            return LocalCUDACluster(**kwargs)  # type: ignore[no-any-return]
        from distributed import LocalCluster

        if self.options.pre_import:
            kwargs["preload"] = list(self.options.pre_import)
        return LocalCluster(**kwargs)

    def record_extra(self, cluster: Cluster) -> dict[str, Any]:
        return {"security": dict(self.tls_paths)} if self.tls_paths else {}

    def worker_processes(self, cluster: Cluster) -> list[tuple[int, float]]:
        import psutil

        out: list[tuple[int, float]] = []
        for worker in getattr(cluster, "workers", {}).values():
            process = getattr(worker, "process", None)
            pid = getattr(process, "pid", None)
            if pid:
                with contextlib.suppress(psutil.Error):
                    out.append((pid, psutil.Process(pid).create_time()))
        return out

    def describe(self) -> dict[str, Any]:
        return {
            "kind": "LocalCUDACluster" if self.selected else "LocalCluster",
            "gpu_names": [g.name for g in self.selected],
            "cpu_fallback_reason": None
            if self.selected or self.options.gpus == "none"
            else self.inventory.reason,
        }
