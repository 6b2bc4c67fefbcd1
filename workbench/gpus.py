"""Which NVIDIA GPUs this process can see, through NVML.

NVML initialisation (not an ImportError) decides whether GPUs are present: on a
machine without a driver ``nvmlInit`` fails with ``NVMLError_LibraryNotFound``
and workbench falls back to CPU, reporting why in ``GPUInventory.reason``.
``CUDA_VISIBLE_DEVICES`` is honoured (indices or ``GPU-``/``MIG-`` UUIDs), as CUDA does.
"""

from __future__ import annotations

import contextlib
import importlib
import os
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class GPUInfo:
    index: int
    uuid: str
    name: str
    memory_total: int  # bytes

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class GPUInventory:
    gpus: list[GPUInfo] = field(default_factory=list)
    driver_version: str | None = None
    cuda_driver_version: str | None = None
    #: Why no GPU is visible (NVML missing, no driver, CUDA_VISIBLE_DEVICES empty), else None.
    reason: str | None = None

    @property
    def count(self) -> int:
        return len(self.gpus)

    def to_dict(self) -> dict[str, Any]:
        return {
            "gpus": [g.to_dict() for g in self.gpus],
            "driver_version": self.driver_version,
            "cuda_driver_version": self.cuda_driver_version,
            "reason": self.reason,
        }


def nvml_text(value: Any) -> str:
    """A string NVML returned (bytes in older bindings, str in newer ones)."""
    return value.decode() if isinstance(value, bytes) else str(value)


def physical_gpus(nvml: Any) -> list[tuple[GPUInfo, Any]]:
    """Every GPU the driver reports, in NVML's index order, with its NVML handle
    (``nvml`` is the initialised bindings module, or a replay of it)."""
    out: list[tuple[GPUInfo, Any]] = []
    for i in range(nvml.nvmlDeviceGetCount()):
        h = nvml.nvmlDeviceGetHandleByIndex(i)
        info = GPUInfo(
            index=i,
            uuid=nvml_text(nvml.nvmlDeviceGetUUID(h)),
            name=nvml_text(nvml.nvmlDeviceGetName(h)),
            memory_total=int(nvml.nvmlDeviceGetMemoryInfo(h).total),
        )
        out.append((info, h))
    return out


def filter_visible(gpus: list[GPUInfo], cuda_visible_devices: str | None) -> list[GPUInfo]:
    """Apply ``CUDA_VISIBLE_DEVICES`` (``None`` means unset) to the physical GPUs.

    Like CUDA, parsing stops at the first entry that names no device.
    """
    if cuda_visible_devices is None:
        return list(gpus)
    chosen: list[GPUInfo] = []
    for raw in cuda_visible_devices.split(","):
        token = raw.strip()
        if not token:
            break
        match: GPUInfo | None = None
        if token.lstrip("-").isdigit():
            idx = int(token)
            match = next((g for g in gpus if g.index == idx), None)
        else:
            match = next((g for g in gpus if g.uuid == token or g.uuid.startswith(token)), None)
        if match is None or match in chosen:
            break
        chosen.append(match)
    return chosen


def detect_gpus(nvml: Any = None) -> GPUInventory:
    """Inventory of the GPUs this process may use. Never raises.

    ``nvml``: the NVML bindings to ask (default ``pynvml``; tests pass a replay of recorded
    replies, see :mod:`workbench.metrics.nvml_replay`).
    """
    pynvml = nvml
    if pynvml is None:
        try:
            pynvml = importlib.import_module("pynvml")
        except ImportError:
            return GPUInventory(reason="the NVML bindings (nvidia-ml-py) are not installed")
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as exc:
        return GPUInventory(reason=f"NVML could not start ({exc}): no NVIDIA driver is visible")
    try:
        physical = [info for info, _ in physical_gpus(pynvml)]
        driver = nvml_text(pynvml.nvmlSystemGetDriverVersion())
        try:
            cuda = pynvml.nvmlSystemGetCudaDriverVersion()
            cuda_version: str | None = f"{cuda // 1000}.{(cuda % 1000) // 10}"
        except pynvml.NVMLError:
            cuda_version = None
    except pynvml.NVMLError as exc:
        return GPUInventory(reason=f"NVML failed while listing GPUs: {exc}")
    finally:
        with contextlib.suppress(pynvml.NVMLError):
            pynvml.nvmlShutdown()
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    visible = filter_visible(physical, env)
    reason = None
    if not physical:
        reason = "the NVIDIA driver reports no GPU"
    elif not visible:
        reason = f"CUDA_VISIBLE_DEVICES={env!r} hides every GPU"
    return GPUInventory(
        gpus=visible, driver_version=driver, cuda_driver_version=cuda_version, reason=reason
    )


def worker_gpu_uuids(nvml: Any = None) -> list[str]:
    """Runs on a Dask worker: UUIDs of the GPUs that worker uses, through NVML.

    A worker with ``CUDA_VISIBLE_DEVICES`` set uses the first device listed (dask-cuda's
    convention, also that of ``dask cuda worker`` in a pod or a batch job); a worker without
    it may use every GPU of its machine. Empty where no GPU or no driver is visible.
    ``nvml``: as for :func:`detect_gpus`.
    """
    inventory = detect_gpus(nvml)
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    first = (visible or "").split(",")[0].strip()
    if first.startswith("MIG-") and inventory.driver_version is not None:
        return [first]  # a MIG instance: its own UUID names what the worker uses
    if not inventory.gpus:
        return []
    return [inventory.gpus[0].uuid] if visible else [g.uuid for g in inventory.gpus]


def worker_gpus(client: Any) -> list[str]:
    """UUIDs of the GPUs a cluster's workers use, asked of the workers themselves.

    One round trip (``client.run``: NVML on every connected worker); each GPU is listed once,
    in worker order. For clusters whose workers run elsewhere (dask-gateway, Kubernetes),
    where this process cannot see their GPUs.
    """
    answers = client.run(worker_gpu_uuids)
    seen: dict[str, None] = {}
    for address in sorted(answers):
        for uuid in answers[address]:
            seen.setdefault(uuid, None)
    return list(seen)
