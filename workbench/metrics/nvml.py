"""GPU sampler through NVML: utilization, memory, temperature, power, energy, PCIe,
NVLink and MIG instances.

Reading and converting are separate so that the conversion (field skipping, energy
integration, rates) is tested with recorded readings through the same code:

* :class:`DeviceReader` calls NVML for one device and returns a *raw reading*, a
  JSON-able dict in NVML's own units (mW, mJ, KB/s, KiB). A call that fails with
  ``NotSupported``, ``FunctionNotFound``, ``NoPermission`` or ``InvalidArgument`` is
  remembered and never made again (``skipped`` says why); other errors (a GPU that
  fell off the bus, a timeout) drop the field for this sample only. Nothing raises.
* :class:`GPUSeries` turns successive raw readings of one GPU into series values:
  watts, joules (the driver's energy counter where the GPU has one, else power
  integrated over time), byte rates from counters.

Which GPUs a process samples: on a Dask worker with ``CUDA_VISIBLE_DEVICES`` set, the
first visible device (dask-cuda's convention: that is the worker's GPU); otherwise
every visible GPU. Views deduplicate by GPU UUID, so a GPU seen by several
processes counts once.

Every NVML id (field ids, sensor and direction selectors, modes) is the bindings' named
constant, read from the module the sampler was given (``pynvml`` or a replay of it). The
tests replay real NVML replies recorded on a GPU machine
(:mod:`workbench.metrics.nvml_replay`).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
from collections.abc import Callable
from typing import Any

from ..gpus import GPUInfo, filter_visible, nvml_text, physical_gpus
from .base import MetricSpec, SamplerContext, define, series_key
from .rates import CounterRates, EnergyIntegrator

#: A GPU whose utilization is below this (percent of time a kernel ran) counts as idle.
IDLE_UTILIZATION_PERCENT = 5.0

GPU_SPECS = define(
    MetricSpec(
        "workbench_gpu_utilization_percent",
        "Percent of time a kernel ran on the GPU over the driver's sample period.",
        "percent",
        scope="gpu",
        agg="mean",
        tab="GPU",
        plot="GPU utilization (%)",
        label="compute",
    ),
    MetricSpec(
        "workbench_gpu_memory_bandwidth_utilization_percent",
        "Percent of time device memory was read or written.",
        "percent",
        scope="gpu",
        agg="mean",
        tab="GPU",
        plot="GPU utilization (%)",
        label="memory bandwidth",
    ),
    MetricSpec(
        "workbench_gpu_memory_used_bytes",
        "Device memory in use.",
        "bytes",
        scope="gpu",
        tab="GPU",
        plot="GPU memory",
        label="used",
    ),
    MetricSpec(
        "workbench_gpu_memory_total_bytes",
        "Device memory installed.",
        "bytes",
        scope="gpu",
        tab="GPU",
        plot="GPU memory",
        label="total",
    ),
    MetricSpec(
        "workbench_gpu_temperature_celsius",
        "GPU die temperature.",
        "celsius",
        scope="gpu",
        agg="max",
        tab="GPU",
        plot="GPU temperature (°C)",
        label="temperature",
    ),
    MetricSpec(
        "workbench_gpu_pcie_transmit_bytes_per_second",
        "PCIe bytes per second from the GPU to the host.",
        "bytes/s",
        scope="gpu",
        tab="GPU",
        plot="PCIe throughput",
        label="tx",
    ),
    MetricSpec(
        "workbench_gpu_pcie_receive_bytes_per_second",
        "PCIe bytes per second from the host to the GPU.",
        "bytes/s",
        scope="gpu",
        tab="GPU",
        plot="PCIe throughput",
        label="rx",
    ),
    MetricSpec(
        "workbench_gpu_nvlink_transmit_bytes_per_second",
        "NVLink data bytes per second sent, all links.",
        "bytes/s",
        scope="gpu",
        tab="GPU",
        plot="NVLink throughput",
        label="tx",
    ),
    MetricSpec(
        "workbench_gpu_nvlink_receive_bytes_per_second",
        "NVLink data bytes per second received, all links.",
        "bytes/s",
        scope="gpu",
        tab="GPU",
        plot="NVLink throughput",
        label="rx",
    ),
    MetricSpec(
        "workbench_gpu_mig_memory_used_bytes",
        "Device memory in use by one MIG instance.",
        "bytes",
        scope="gpu",
        tab="GPU",
        plot="MIG instance memory",
        label="used",
    ),
    MetricSpec(
        "workbench_gpu_power_watts",
        "GPU board power draw.",
        "watts",
        scope="gpu",
        tab="Energy",
        plot="GPU power (W)",
        label="power",
    ),
    MetricSpec(
        "workbench_gpu_power_limit_watts",
        "Power limit the driver enforces.",
        "watts",
        scope="gpu",
        tab="Energy",
        plot="GPU power (W)",
        label="limit",
    ),
    MetricSpec(
        "workbench_gpu_energy_joules_total",
        "GPU energy since sampling started: the driver's counter where the GPU has one, "
        "else power integrated over time.",
        "joules",
        kind="counter",
        scope="gpu",
        tab="Energy",
        plot="GPU energy in window",
        label="energy",
        show_increase=True,
    ),
    MetricSpec(
        "workbench_gpu_idle_seconds_total",
        f"Seconds this GPU was allocated but under {IDLE_UTILIZATION_PERCENT:g}% utilized, since "
        "sampling started (the time before a reading counts when that reading is idle).",
        "seconds",
        kind="counter",
        scope="gpu",
        tab="Energy",
        plot="GPU idle time in window",
        label="idle",
        show_increase=True,
    ),
)

#: scopeId of an NVLink throughput field that sums every link: nvml.h says "a scopeId of
#: UINT_MAX returns aggregate value summed up across all links" (the bindings name no constant).
ALL_LINKS = ctypes.c_uint32(-1).value
#: (field, scopeId) pairs read with nvmlDeviceGetFieldValues, by the bindings' constant names.
PCIE_COUNTER_FIELDS = ("NVML_FI_DEV_PCIE_COUNT_TX_BYTES", "NVML_FI_DEV_PCIE_COUNT_RX_BYTES")
NVLINK_FIELDS = ("NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_TX", "NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_RX")

#: Which DeviceReader call groups each metric comes from (to explain a missing plot).
METRIC_GROUPS: dict[str, tuple[str, ...]] = {
    "workbench_gpu_utilization_percent": ("utilization",),
    "workbench_gpu_idle_seconds_total": ("utilization",),
    "workbench_gpu_memory_used_bytes": ("memory",),
    "workbench_gpu_temperature_celsius": ("temperature",),
    "workbench_gpu_power_watts": ("power", "energy"),
    "workbench_gpu_energy_joules_total": ("power", "energy"),
    "workbench_gpu_pcie_transmit_bytes_per_second": ("pcie_counters", "pcie_throughput"),
    "workbench_gpu_pcie_receive_bytes_per_second": ("pcie_counters", "pcie_throughput"),
    "workbench_gpu_nvlink_transmit_bytes_per_second": ("nvlink",),
    "workbench_gpu_nvlink_receive_bytes_per_second": ("nvlink",),
    "workbench_gpu_mig_memory_used_bytes": ("mig_mode",),
}

# Errors that will not go away by asking again: stop calling that function.
_PERMANENT = {
    "NVML_ERROR_NOT_SUPPORTED",
    "NVML_ERROR_FUNCTION_NOT_FOUND",
    "NVML_ERROR_NO_PERMISSION",
    "NVML_ERROR_INVALID_ARGUMENT",
}


def _permanent_codes(nvml: Any) -> set[int]:
    return {getattr(nvml, n) for n in _PERMANENT if hasattr(nvml, n)}


class DeviceReader:
    """Raw readings of one NVML device handle; unsupported calls are skipped for good."""

    def __init__(self, nvml: Any, handle: Any) -> None:
        self.nvml = nvml
        self.handle = handle
        self.skipped: dict[str, str] = {}
        self._permanent = _permanent_codes(nvml)
        self._pcie_counters = True

    def _call(self, group: str, fn: Callable[[], Any]) -> Any:
        if group in self.skipped:
            return None
        try:
            return fn()
        except self.nvml.NVMLError as exc:
            if getattr(exc, "value", None) in self._permanent:
                self.skipped[group] = str(exc)
            return None

    def _fields(self, group: str, ids: list[tuple[int, int]]) -> list[int] | None:
        """Field values (unsigned) for ``ids``, or None if any of them is not available."""
        if not ids:
            return None
        values = self._call(group, lambda: self.nvml.nvmlDeviceGetFieldValues(self.handle, ids))
        if values is None:
            return None
        out: list[int] = []
        for v in values:
            if v.nvmlReturn != self.nvml.NVML_SUCCESS:
                if v.nvmlReturn in self._permanent:
                    self.skipped[group] = f"field {v.fieldId}: NVML error {v.nvmlReturn}"
                return None
            out.append(int(v.value.ullVal))
        return out

    def _field_ids(self, group: str, names: tuple[str, ...], scope: int) -> list[tuple[int, int]]:
        """The (field id, scopeId) pairs of ``names``; empty (and skipped for good) where the
        installed bindings predate one of those fields."""
        ids = [getattr(self.nvml, name, None) for name in names]
        if any(i is None for i in ids):
            missing = [n for n, i in zip(names, ids, strict=True) if i is None]
            self.skipped[group] = f"the NVML bindings have no {', '.join(missing)}"
            return []
        return [(int(i), scope) for i in ids if i is not None]

    def read(self) -> dict[str, Any]:
        n, h = self.nvml, self.handle
        raw: dict[str, Any] = {}
        util = self._call("utilization", lambda: n.nvmlDeviceGetUtilizationRates(h))
        if util is not None:
            raw["util_gpu"], raw["util_memory"] = util.gpu, util.memory
        mem = self._call("memory", lambda: n.nvmlDeviceGetMemoryInfo(h))
        if mem is not None:
            raw["mem_used"], raw["mem_total"] = mem.used, mem.total
        temp = self._call(
            "temperature", lambda: n.nvmlDeviceGetTemperature(h, n.NVML_TEMPERATURE_GPU)
        )
        if temp is not None:
            raw["temperature"] = temp
        power = self._call("power", lambda: n.nvmlDeviceGetPowerUsage(h))
        if power is not None:
            raw["power_mw"] = power
        limit = self._call("power_limit", lambda: n.nvmlDeviceGetEnforcedPowerLimit(h))
        if limit is not None:
            raw["power_limit_mw"] = limit
        energy = self._call("energy", lambda: n.nvmlDeviceGetTotalEnergyConsumption(h))
        if energy is not None:
            raw["energy_mj"] = energy
        # PCIe: cumulative byte counters (recent GPUs, no waiting) or the driver's
        # 20 ms throughput sample in KB/s (older GPUs).
        if self._pcie_counters:
            pcie = self._fields(
                "pcie_counters", self._field_ids("pcie_counters", PCIE_COUNTER_FIELDS, 0)
            )
            if pcie is not None:
                raw["pcie_tx_bytes"], raw["pcie_rx_bytes"] = pcie
            elif "pcie_counters" in self.skipped:
                self._pcie_counters = False
        if not self._pcie_counters:
            tx = self._call(
                "pcie_throughput",
                lambda: n.nvmlDeviceGetPcieThroughput(h, n.NVML_PCIE_UTIL_TX_BYTES),
            )
            rx = self._call(
                "pcie_throughput",
                lambda: n.nvmlDeviceGetPcieThroughput(h, n.NVML_PCIE_UTIL_RX_BYTES),
            )
            if tx is not None and rx is not None:
                raw["pcie_tx_kbps"], raw["pcie_rx_kbps"] = tx, rx
        nvlink = self._fields("nvlink", self._field_ids("nvlink", NVLINK_FIELDS, ALL_LINKS))
        if nvlink is not None:
            raw["nvlink_tx_kib"], raw["nvlink_rx_kib"] = nvlink
        mig = self._call("mig_mode", lambda: n.nvmlDeviceGetMigMode(h))
        if mig is not None and mig[0] == n.NVML_DEVICE_MIG_ENABLE:
            raw["mig"] = self._read_mig()
        return raw

    def _read_mig(self) -> list[dict[str, Any]]:
        n, h = self.nvml, self.handle
        count = self._call("mig_count", lambda: n.nvmlDeviceGetMaxMigDeviceCount(h)) or 0
        out = []
        for i in range(count):
            try:
                mh = n.nvmlDeviceGetMigDeviceHandleByIndex(h, i)
            except n.NVMLError:
                continue  # no instance in this slot
            try:
                mem = n.nvmlDeviceGetMemoryInfo(mh)
                uuid = nvml_text(n.nvmlDeviceGetUUID(mh))
            except n.NVMLError:
                continue
            out.append({"uuid": uuid, "mem_used": mem.used, "mem_total": mem.total})
        return out


class GPUSeries:
    """Series values of one GPU from successive raw readings (the pure part)."""

    def __init__(self, index: int, uuid: str) -> None:
        self.labels = {"gpu": str(index), "uuid": uuid}
        self._keys: dict[str, str] = {}
        self._rates = CounterRates()
        self._integrator = EnergyIntegrator()
        self._energy0: float | None = None
        self._idle_seconds = 0.0
        self._util_time: float | None = None
        self.energy_source: str | None = None  # "counter" or "integrated"

    def key(self, name: str) -> str:
        k = self._keys.get(name)
        if k is None:
            k = self._keys[name] = series_key(name, self.labels)
        return k

    def update(self, raw: dict[str, Any], now: float) -> dict[str, float]:
        out: dict[str, float] = {}
        k = self.key
        for field, name, scale in (
            ("util_gpu", "workbench_gpu_utilization_percent", 1.0),
            ("util_memory", "workbench_gpu_memory_bandwidth_utilization_percent", 1.0),
            ("mem_used", "workbench_gpu_memory_used_bytes", 1.0),
            ("mem_total", "workbench_gpu_memory_total_bytes", 1.0),
            ("temperature", "workbench_gpu_temperature_celsius", 1.0),
            ("power_limit_mw", "workbench_gpu_power_limit_watts", 1e-3),
            ("pcie_tx_kbps", "workbench_gpu_pcie_transmit_bytes_per_second", 1e3),
            ("pcie_rx_kbps", "workbench_gpu_pcie_receive_bytes_per_second", 1e3),
        ):
            if raw.get(field) is not None:
                out[k(name)] = float(raw[field]) * scale
        if raw.get("util_gpu") is not None:
            out[k("workbench_gpu_idle_seconds_total")] = self._idle(float(raw["util_gpu"]), now)
        for field, name, scale in (
            ("pcie_tx_bytes", "workbench_gpu_pcie_transmit_bytes_per_second", 1.0),
            ("pcie_rx_bytes", "workbench_gpu_pcie_receive_bytes_per_second", 1.0),
            ("nvlink_tx_kib", "workbench_gpu_nvlink_transmit_bytes_per_second", 1024.0),
            ("nvlink_rx_kib", "workbench_gpu_nvlink_receive_bytes_per_second", 1024.0),
        ):
            if raw.get(field) is not None:
                r = self._rates.rate(field, float(raw[field]) * scale, now)
                if r is not None:
                    out[k(name)] = r
        watts = raw["power_mw"] / 1e3 if raw.get("power_mw") is not None else None
        if raw.get("energy_mj") is not None:
            joules = raw["energy_mj"] / 1e3
            if self._energy0 is None or joules < self._energy0:  # first reading, driver reload
                self._energy0 = joules
            out[k("workbench_gpu_energy_joules_total")] = joules - self._energy0
            self.energy_source = "counter"
            if watts is None:  # power from the energy counter where only it is readable
                watts = self._rates.rate("energy", joules, now)
        elif watts is not None:
            out[k("workbench_gpu_energy_joules_total")] = self._integrator.add(watts, now)
            self.energy_source = "integrated"
        if watts is not None:
            out[k("workbench_gpu_power_watts")] = watts
        for inst in raw.get("mig") or ():
            labels = {**self.labels, "mig": inst["uuid"]}
            out[series_key("workbench_gpu_mig_memory_used_bytes", labels)] = float(inst["mem_used"])
        return out

    def _idle(self, utilization: float, now: float) -> float:
        """Idle seconds so far: NVML's utilization covers the driver's last sample period,
        so the time since the previous reading counts as idle when this reading is idle."""
        if self._util_time is not None and utilization < IDLE_UTILIZATION_PERCENT:
            self._idle_seconds += max(0.0, now - self._util_time)
        self._util_time = now
        return self._idle_seconds


def _worker_selection(cuda_visible_devices: str | None, role: str) -> str | None:
    """The CUDA_VISIBLE_DEVICES value that decides which GPUs this process samples."""
    if role == "worker" and cuda_visible_devices:
        return cuda_visible_devices.split(",")[0]
    return cuda_visible_devices


class GPUSampler:
    """Every selected GPU of this process, through NVML. Never raises."""

    name = "gpu"
    blocking = True
    metrics = GPU_SPECS

    def __init__(self, context: SamplerContext | None = None, nvml: Any = None) -> None:
        self.reason: str | None = None
        self.devices: list[tuple[GPUInfo, DeviceReader, GPUSeries]] = []
        self._nvml = nvml
        self._initialised = False
        if nvml is None:
            try:
                import pynvml as nvml_module
            except ImportError:
                self.reason = "the NVML bindings (nvidia-ml-py) are not installed"
                return
            self._nvml = nvml_module
        n = self._nvml
        try:
            n.nvmlInit()
            self._initialised = True
        except n.NVMLError as exc:
            self.reason = f"NVML could not start ({exc}): no NVIDIA driver is visible"
            return
        role = context.role if context is not None else "host"
        env = os.environ.get("CUDA_VISIBLE_DEVICES")
        try:
            self._open(n, _worker_selection(env, role))
        except n.NVMLError as exc:
            self.reason = f"NVML failed while listing GPUs: {exc}"
            self.close()
            return
        if not self.devices:
            self.reason = (
                f"CUDA_VISIBLE_DEVICES={env!r} hides every GPU"
                if env is not None
                else "the NVIDIA driver reports no GPU"
            )

    def _open(self, n: Any, selection: str | None) -> None:
        found = physical_gpus(n)
        physical = [info for info, _ in found]
        handles = {info.index: h for info, h in found}
        if selection is not None and selection.strip().startswith("MIG-"):
            # A MIG instance: sample its parent GPU (and so every instance on it).
            mig = n.nvmlDeviceGetHandleByUUID(selection.strip())
            parent_handle = n.nvmlDeviceGetDeviceHandleFromMigDeviceHandle(mig)
            parent = nvml_text(n.nvmlDeviceGetUUID(parent_handle))
            chosen = [g for g in physical if g.uuid == parent]
        else:
            chosen = filter_visible(physical, selection)
        for g in chosen:
            self.devices.append((g, DeviceReader(n, handles[g.index]), GPUSeries(g.index, g.uuid)))

    def sample(self, now: float) -> dict[str, float]:
        out: dict[str, float] = {}
        for _, reader, series in self.devices:
            out.update(series.update(reader.read(), now))
        return out

    def info(self) -> dict[str, Any]:
        unsupported: dict[str, str] = {}
        for g, r, _ in self.devices:
            for metric, groups in METRIC_GROUPS.items():
                why = [f"{group}: {r.skipped[group]}" for group in groups if group in r.skipped]
                if len(why) == len(groups):  # every way of reading it failed
                    unsupported.setdefault(metric, f"GPU {g.index} ({g.name}): {'; '.join(why)}")
        return {
            "unsupported": unsupported,
            "gpus": [
                {
                    **g.to_dict(),
                    "skipped": dict(r.skipped),
                    "energy": s.energy_source,
                }
                for g, r, s in self.devices
            ],
        }

    def close(self) -> None:
        if self._initialised:
            self._initialised = False
            with contextlib.suppress(Exception):
                self._nvml.nvmlShutdown()
