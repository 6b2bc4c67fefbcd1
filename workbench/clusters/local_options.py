"""Options of the ``local`` backend: which GPUs, how many workers, memory limits, RMM, spilling.

:class:`LocalOptions` is the pydantic model a ``local`` profile is checked against (and the
Lab form is drawn from; ``extension/test/fixtures`` holds its schema). The backend that
starts ``LocalCUDACluster`` or ``LocalCluster`` is :mod:`workbench.clusters.local`.
"""

from __future__ import annotations

from typing import Any, Literal

from dask.utils import parse_bytes
from pydantic import Field, field_validator, model_validator

from .backend import BackendOptions, no_control_chars

Memory = str | int | float


def _check_memory(value: Memory | None, words: tuple[str, ...]) -> Memory | None:
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str) and value not in words:
        try:
            parse_bytes(value)
        except ValueError as exc:
            raise ValueError(f"not a memory size like '16GB' or one of {words}: {exc}") from None
    elif isinstance(value, int | float) and value < 0:
        raise ValueError("must not be negative")
    return value


class LocalOptions(BackendOptions):
    SIDEBAR_OPTIONS = BackendOptions.SIDEBAR_OPTIONS | {
        "gpus",
        "n_workers",
        "threads_per_worker",
        "memory_limit",
        "processes",
        "device_memory_limit",
        "rmm_pool_size",
        "rmm_maximum_pool_size",
        "rmm_async",
        "rmm_managed_memory",
        "enable_cudf_spill",
    }
    PROFILE_ONLY = BackendOptions.PROFILE_ONLY | {
        "dashboard_address",
        "protocol",
        "security",
        "local_directory",
        "pre_import",
    }

    gpus: Literal["auto", "all", "none"] | int | list[int | str] = Field(
        "auto",
        description="'auto': every visible GPU, or CPU workers if there is none; 'all': every "
        "visible GPU (error without one); 'none': CPU workers; N: the first N GPUs; "
        "or a list of GPU indices/UUIDs.",
    )
    n_workers: int | None = Field(
        None,
        ge=0,
        description="Workers to start. With GPUs: at most one per GPU (default: one per GPU).",
    )
    threads_per_worker: int | None = Field(None, ge=1, description="Threads per worker.")
    memory_limit: Memory = Field(
        "auto",
        description="Host memory limit per worker process ('auto': the machine's memory "
        "shared among the workers; in-process workers have none).",
    )
    processes: bool = Field(True, description="Workers in separate processes (CPU only).")
    dashboard_address: str | None = Field(
        "127.0.0.1:8787",
        description="Dask dashboard address (this machine only by default; JupyterLab's "
        "proxy reaches it). Another host or ':8787' exposes it on the network.",
    )
    protocol: Literal["tcp", "tls", "ucx", "inproc"] | None = Field(
        None,
        description="Communication protocol (ucx needs distributed-ucxx); tls by default. "
        "Any other needs security: none.",
    )
    security: Literal["tls", "none"] = Field(
        "tls",
        description="'tls': encrypted, authenticated connections with credentials made for "
        "this cluster (the default); 'none': plain TCP that anyone who can reach the port "
        "may use (workbench doctor flags it).",
    )
    local_directory: str | None = Field(
        None,
        description="Scratch directory the workers spill to (default: $TMPDIR/workbench-<uid>/"
        "dask-scratch, the user's alone; Dask's own default is shared by all users).",
    )
    # GPU options, used when the cluster has GPUs.
    device_memory_limit: Memory | None = Field(
        None,
        description="GPU memory at which a worker spills to host (dask-cuda default).",
    )
    rmm_pool_size: Memory | None = Field(None, description="RMM pool per GPU, e.g. '20GB' or 0.8.")
    rmm_maximum_pool_size: Memory | None = Field(None, description="Largest the RMM pool may grow.")
    rmm_async: bool = Field(False, description="Use the CUDA async allocator (cudaMallocAsync).")
    rmm_managed_memory: bool = Field(False, description="Use CUDA managed (unified) memory.")
    enable_cudf_spill: bool = Field(True, description="cuDF native spilling to host memory.")
    pre_import: list[str] = Field(
        default_factory=list, description="Modules workers import at start."
    )

    def launch_workers(self) -> int | None:
        return self.n_workers  # None: one per GPU, or dask's default for the CPUs

    @field_validator("memory_limit")
    @classmethod
    def _memory(cls, v: Memory) -> Memory:
        out = _check_memory(v, ("auto",))
        assert out is not None
        return out

    @field_validator("device_memory_limit", "rmm_pool_size", "rmm_maximum_pool_size")
    @classmethod
    def _device_memory(cls, v: Memory | None) -> Memory | None:
        return _check_memory(v, ("auto", "default"))

    @field_validator("dashboard_address", "local_directory", "pre_import", mode="before")
    @classmethod
    def _one_line(cls, v: Any) -> Any:
        return no_control_chars(v)

    @model_validator(mode="after")
    def _secure(self) -> LocalOptions:
        if self.security == "tls" and self.protocol not in (None, "tls"):
            raise ValueError(
                f"protocol {self.protocol} carries no TLS: set security: none to run without "
                "encryption and authentication, or leave protocol unset"
            )
        return self

    @model_validator(mode="after")
    def _in_process_memory(self) -> LocalOptions:
        if not self.processes and self.memory_limit != "auto":
            raise ValueError(
                "memory_limit limits worker processes; with processes: false the workers run "
                "in this process, and Dask would count all of its memory (the notebook's own "
                "data too) against each worker's limit and pause the workers, leaving "
                "computations waiting: leave memory_limit unset (in-process workers have no "
                "limit) or set processes: true"
            )
        return self

    @field_validator("gpus", mode="before")
    @classmethod
    def _gpus(cls, v: Any) -> Any:
        ok = (
            v in ("auto", "all", "none")
            or (isinstance(v, int) and not isinstance(v, bool))
            or (isinstance(v, list) and all(isinstance(i, int | str) for i in v))
        )
        if not ok:
            raise ValueError(
                "expected 'auto', 'all', 'none', a number of GPUs, or a list of GPU indices/UUIDs"
            )
        if isinstance(v, int) and v < 0:
            raise ValueError("must be 0 or more")
        return v
