"""Samplers, ring buffers and the sampler registry, without a cluster or a browser.

Host samplers read the real /proc of this machine (with real traffic and real writes
made by the test). InfiniBand and RAPL samplers read directory trees laid out like
sysfs. The NVML conversion is tested with recorded readings replayed through the
same DeviceReader/GPUSeries/GPUSampler code that runs on GPU machines; the GPU test
at the end runs it against a real driver.
"""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pynvml
import pytest

from workbench.gpus import detect_gpus
from workbench.metrics import (
    SamplerContext,
    SampleRing,
    create_samplers,
    known_samplers,
    parse_key,
    register_sampler,
    series_key,
)
from workbench.metrics.base import _registry, get_sampler_factory
from workbench.metrics.host import DiskSampler, HostSampler, NetworkSampler, ProcessSampler
from workbench.metrics.nvml import DeviceReader, GPUSampler, GPUSeries
from workbench.metrics.plugin import SamplingLoop
from workbench.metrics.rates import CounterRates, EnergyIntegrator
from workbench.metrics.sysfs import InfinibandSampler, RaplSampler


# -- series keys and the ring ------------------------------------------------------------------
def test_series_keys_round_trip_with_escaping() -> None:
    labels = {"gpu": "0", "name": 'A "quoted"\\ name\nline2'}
    key = series_key("workbench_x", labels)
    assert key.startswith('workbench_x{gpu="0",name="A \\"quoted\\"')
    assert parse_key(key) == ("workbench_x", tuple(labels.items()))
    assert parse_key("plain") == ("plain", ())


def test_ring_deltas_send_only_new_keys_and_rows() -> None:
    ring = SampleRing(capacity=5)
    ring.append(1.0, {"a": 1.0})
    ring.append(2.0, {"a": 2.0, "b": 20.0})
    first = ring.delta_for("viewer")
    assert first["keys"] == ["a", "b"] and first["key_offset"] == 0
    assert first["t"] == [1.0, 2.0] and first["rows"] == [[1.0], [2.0, 20.0]]
    ring.append(3.0, {"b": 30.0})
    second = ring.delta_for("viewer")
    assert second["keys"] == [] and second["key_offset"] == 2
    assert second["rows"] == [[None, 30.0]] and second["lost"] == 0
    assert ring.delta_for("viewer")["rows"] == []  # nothing new
    # another consumer has its own cursor and gets everything
    assert ring.delta_for("other")["t"] == [1.0, 2.0, 3.0]

    mirror = SampleRing(capacity=10)
    assert mirror.apply(first) and mirror.apply(second)
    assert list(mirror) == list(ring)
    assert mirror.latest() == (3.0, {"b": 30.0})


def test_ring_overflow_reports_lost_rows_and_epoch_restarts_the_mirror() -> None:
    ring = SampleRing(capacity=3)
    for i in range(2):
        ring.append(float(i), {"x": float(i)})
    mirror = SampleRing()
    assert mirror.apply(ring.delta_for("v"))
    for i in range(2, 8):  # 6 new rows into a ring of 3: 3 were overwritten
        ring.append(float(i), {"x": float(i)})
    delta = ring.delta_for("v")
    assert delta["lost"] == 3 and delta["t"] == [5.0, 6.0, 7.0]
    assert mirror.apply(delta)
    assert [t for t, _ in mirror] == [0.0, 1.0, 5.0, 6.0, 7.0]

    restarted = SampleRing(capacity=3)  # the worker restarted: new epoch, new key table
    restarted.append(100.0, {"y": 1.0})
    assert mirror.apply(restarted.delta_for("v"))
    assert mirror.keys == ["y"] and [t for t, _ in mirror] == [100.0]


def test_mirror_asks_for_reset_when_keys_were_lost_and_reset_has_no_duplicates() -> None:
    ring = SampleRing()
    ring.append(1.0, {"a": 1.0})
    mirror = SampleRing()
    mirror.apply(ring.delta_for("v"))
    ring.append(2.0, {"a": 2.0, "b": 1.0})
    ring.delta_for("v")  # this reply got lost on the way
    ring.append(3.0, {"a": 3.0, "c": 1.0})
    assert mirror.apply(ring.delta_for("v")) is False  # key table gap detected
    assert mirror.apply(ring.delta_for("v", reset=True))
    assert mirror.keys == ["a", "b", "c"]
    assert [t for t, _ in mirror] == [1.0, 2.0, 3.0]


def test_counter_rates_and_energy_integration() -> None:
    rates = CounterRates()
    assert rates.rate("k", 100.0, 10.0) is None
    assert rates.rate("k", 300.0, 12.0) == 100.0
    assert rates.rate("k", 50.0, 13.0) is None  # counter reset
    assert rates.rate("w", 2**32 - 10, 0.0, wrap=2**32) is None
    assert rates.rate("w", 30.0, 1.0, wrap=2**32) == 40.0
    energy = EnergyIntegrator(max_gap=5)
    assert energy.add(100.0, 0.0) == 0.0
    assert energy.add(200.0, 2.0) == 300.0  # trapezoid: (100+200)/2 * 2
    assert energy.add(200.0, 60.0) == 300.0  # a 58 s gap is not integrated


# -- host samplers on the real /proc ---------------------------------------------------------
def test_host_sampler_reads_cpu_and_memory() -> None:
    sampler = HostSampler()
    first = sampler.sample(time.time())
    assert "workbench_cpu_utilization_percent" not in first  # needs two readings
    time.sleep(0.2)
    values = sampler.sample(time.time())
    assert 0.0 <= values["workbench_cpu_utilization_percent"] <= 100.0
    assert 0 < values["workbench_memory_used_bytes"] < values["workbench_memory_total_bytes"]


def test_network_rate_sees_real_loopback_traffic() -> None:
    sampler = NetworkSampler(exclude=())
    payload = b"x" * (1 << 20)
    total = 24 * len(payload)
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]

    def sink() -> None:
        conn, _ = server.accept()
        with conn:
            while conn.recv(1 << 20):
                pass

    thread = threading.Thread(target=sink)
    thread.start()
    t0 = time.time()
    sampler.sample(t0)
    with socket.create_connection(("127.0.0.1", port)) as client:
        for _ in range(24):
            client.sendall(payload)
    thread.join(10)
    server.close()
    t1 = time.time()
    values = sampler.sample(t1)
    rx = values[series_key("workbench_network_receive_bytes_per_second", {"nic": "lo"})]
    assert rx * (t1 - t0) >= 0.95 * total
    # loopback is left out by default: it would count every local byte twice
    default = NetworkSampler()
    default.sample(time.time())
    assert not any('nic="lo"' in k for k in default.sample(time.time()))


def test_process_and_disk_samplers_see_a_real_fsynced_write(tmp_path: Path) -> None:
    process, disk = ProcessSampler(), DiskSampler()
    assert disk.reason is None
    t0 = time.time()
    process.sample(t0)
    disk.sample(t0)
    size = 32 << 20
    with open(tmp_path / "blob", "wb") as f:
        f.write(os.urandom(size))
        f.flush()
        os.fsync(f.fileno())
    t1 = time.time()
    p = process.sample(t1)
    d = disk.sample(t1)
    assert p["workbench_process_write_bytes_per_second"] * (t1 - t0) >= 0.9 * size
    assert p["workbench_process_memory_rss_bytes"] > 0
    written = sum(v for k, v in d.items() if k.startswith("workbench_disk_write"))
    assert written * (t1 - t0) >= 0.9 * size
    assert not any('disk="loop' in k for k in d)


# -- sysfs samplers on directory trees laid out like sysfs -------------------------------------
def _ib_tree(root: Path, rcv: int, xmit: int) -> None:
    port = root / "mlx5_0" / "ports" / "1"
    (port / "counters").mkdir(parents=True, exist_ok=True)
    (port / "counters" / "port_rcv_data").write_text(f"{rcv}\n")
    (port / "counters" / "port_xmit_data").write_text(f"{xmit}\n")
    (port / "rate").write_text("200 Gb/sec (4X HDR)\n")


def test_infiniband_counters_are_4_byte_words(tmp_path: Path) -> None:
    _ib_tree(tmp_path, 1000, 5000)
    sampler = InfinibandSampler(root=tmp_path)
    assert sampler.reason is None and len(sampler.ports) == 1
    sampler.sample(100.0)
    _ib_tree(tmp_path, 1000 + 250_000_000, 5000 + 1_000)
    values = sampler.sample(102.0)
    labels = {"device": "mlx5_0", "port": "1"}
    rx = values[series_key("workbench_infiniband_receive_bytes_per_second", labels)]
    tx = values[series_key("workbench_infiniband_transmit_bytes_per_second", labels)]
    assert rx == 4 * 250_000_000 / 2 and tx == 4 * 1_000 / 2
    rate = values[series_key("workbench_infiniband_link_rate_bytes_per_second", labels)]
    assert rate == 25e9  # HDR: 200 Gb/s


def test_infiniband_absent_gives_a_reason(tmp_path: Path) -> None:
    sampler = InfinibandSampler(root=tmp_path / "nothing")
    assert "no InfiniBand ports" in (sampler.reason or "")
    assert sampler.sample(1.0) == {}


def _rapl_zone(path: Path, name: str, uj: int, max_uj: int | None = None) -> None:
    path.mkdir(parents=True, exist_ok=True)
    (path / "name").write_text(name + "\n")
    (path / "energy_uj").write_text(f"{uj}\n")
    if max_uj is not None:
        (path / "max_energy_range_uj").write_text(f"{max_uj}\n")


def test_rapl_power_energy_and_wraparound(tmp_path: Path) -> None:
    _rapl_zone(tmp_path / "intel-rapl:0", "package-0", 999_000_000, 1_000_000_000)
    _rapl_zone(tmp_path / "intel-rapl:0:0", "core", 5)  # inside the package: not added
    _rapl_zone(tmp_path / "intel-rapl:0:1", "dram", 0, 1_000_000_000)
    sampler = RaplSampler(root=tmp_path)
    assert sampler.reason is None
    assert sorted(z[0] for z in sampler.zones) == ["dram-0", "package-0"]  # dram of package 0
    first = sampler.sample(10.0)
    pkg_energy = series_key("workbench_cpu_energy_joules_total", {"zone": "package-0"})
    assert first[pkg_energy] == 0.0
    # 2 s later the package counter wrapped: 999 J -> 1000 J (wrap) -> 199 J = 200 J used
    _rapl_zone(tmp_path / "intel-rapl:0", "package-0", 199_000_000)
    _rapl_zone(tmp_path / "intel-rapl:0:1", "dram", 10_000_000)
    values = sampler.sample(12.0)
    assert values[pkg_energy] == pytest.approx(200.0)
    pkg_power = series_key("workbench_cpu_power_watts", {"zone": "package-0"})
    assert values[pkg_power] == pytest.approx(100.0)
    dram_power = series_key("workbench_cpu_power_watts", {"zone": "dram-0"})
    assert values[dram_power] == pytest.approx(5.0)


def test_rapl_unreadable_counters_give_a_reason(tmp_path: Path) -> None:
    zone = tmp_path / "intel-rapl:0"
    _rapl_zone(zone, "package-0", 1)
    (zone / "energy_uj").write_text("")  # what an unprivileged read looks like
    sampler = RaplSampler(root=tmp_path)
    assert "not readable" in (sampler.reason or "")


# -- NVML: recorded readings through the real reader/converter ---------------------------------
class RecordedNVML:
    """Replays recorded NVML answers per device and tick; counts every call.

    A recording maps function names to a value, to ``{"error": NVML error code}``, or to
    a list with one entry per tick. Errors are raised as pynvml's own exception classes.
    """

    NVMLError = pynvml.NVMLError

    def __init__(self, devices: list[dict[str, Any]]) -> None:
        self.devices = devices
        self.tick = 0
        self.calls: dict[str, int] = {}
        for name in dir(pynvml):
            if name.startswith("NVML_ERROR_"):
                setattr(self, name, getattr(pynvml, name))

    def _answer(self, device: int, fn: str) -> Any:
        self.calls[fn] = self.calls.get(fn, 0) + 1
        value = self.devices[device][fn]
        if isinstance(value, list):
            value = value[min(self.tick, len(value) - 1)]
        if isinstance(value, dict) and "error" in value:
            raise pynvml.NVMLError(value["error"])
        return value

    def nvmlInit(self) -> None:
        pass

    def nvmlShutdown(self) -> None:
        pass

    def nvmlDeviceGetCount(self) -> int:
        return len(self.devices)

    def nvmlDeviceGetHandleByIndex(self, i: int) -> int:
        return i

    def __getattr__(self, fn: str) -> Any:
        if not fn.startswith("nvmlDevice"):
            raise AttributeError(fn)

        def call(handle: int, *args: Any) -> Any:
            value = self._answer(handle, fn)
            if fn == "nvmlDeviceGetFieldValues":
                return [
                    SimpleNamespace(
                        fieldId=v["fieldId"],
                        nvmlReturn=v.get("ret", 0),
                        value=SimpleNamespace(ullVal=v.get("value", 0)),
                    )
                    for v in value
                ]
            if isinstance(value, dict):
                return SimpleNamespace(**value)
            return value

        return call


NOT_SUPPORTED = {"error": pynvml.NVML_ERROR_NOT_SUPPORTED}
GPU_LOST = {"error": pynvml.NVML_ERROR_GPU_IS_LOST}


def _h100(uuid: str = "GPU-h100-0") -> dict[str, Any]:
    """Three ticks (1 s apart) of an H100 SXM under load, in NVML units (hand-written)."""
    gib = 1 << 30
    return {
        "nvmlDeviceGetUUID": uuid,
        "nvmlDeviceGetName": "NVIDIA H100 80GB HBM3",
        "nvmlDeviceGetMemoryInfo": [
            {"used": 10 * gib, "total": 80 * gib},
            {"used": 40 * gib, "total": 80 * gib},
            {"used": 41 * gib, "total": 80 * gib},
        ],
        "nvmlDeviceGetUtilizationRates": [{"gpu": 0, "memory": 0}, {"gpu": 97, "memory": 60}],
        "nvmlDeviceGetTemperature": [35, 61, 63],
        "nvmlDeviceGetPowerUsage": [90_000, 650_000, 700_000],  # mW
        "nvmlDeviceGetEnforcedPowerLimit": 700_000,
        "nvmlDeviceGetTotalEnergyConsumption": [5_000_000, 5_400_000, 6_100_000],  # mJ
        "nvmlDeviceGetFieldValues": [  # PCIe TX/RX byte counters, then NVLink TX/RX KiB
            [{"fieldId": 197, "value": 0}, {"fieldId": 196, "value": 0}],
            [{"fieldId": 138, "value": 0}, {"fieldId": 139, "value": 0}],
            [{"fieldId": 197, "value": 2_000_000_000}, {"fieldId": 196, "value": 25_000_000_000}],
            [{"fieldId": 138, "value": 100_000_000}, {"fieldId": 139, "value": 50_000_000}],
        ],
        "nvmlDeviceGetMigMode": NOT_SUPPORTED,
    }


class _FieldTicks(RecordedNVML):
    """Field-value answers alternate PCIe/NVLink within a tick."""

    def _answer(self, device: int, fn: str) -> Any:
        if fn != "nvmlDeviceGetFieldValues":
            return super()._answer(device, fn)
        self.calls[fn] = self.calls.get(fn, 0) + 1
        answers = self.devices[device][fn]
        if isinstance(answers, dict):
            raise pynvml.NVMLError(answers["error"])
        group = self.calls[fn] % 2 == 0  # first call of a tick: PCIe, second: NVLink
        per_tick = answers[0:2] if self.tick == 0 else answers[2:4]
        return per_tick[1 if group else 0]


def _sample(nvml: RecordedNVML, sampler: GPUSampler, t: float) -> dict[str, float]:
    values = sampler.sample(t)
    nvml.tick += 1
    return values


def test_nvml_h100_energy_counter_and_counter_rates() -> None:
    nvml = _FieldTicks([_h100()])
    sampler = GPUSampler(SamplerContext(role="host"), nvml=nvml)
    assert sampler.reason is None and len(sampler.devices) == 1
    labels = {"gpu": "0", "uuid": "GPU-h100-0"}
    k = lambda name: series_key(name, labels)  # noqa: E731
    first = _sample(nvml, sampler, 100.0)
    assert first[k("workbench_gpu_energy_joules_total")] == 0.0
    assert k("workbench_gpu_pcie_transmit_bytes_per_second") not in first  # needs 2 readings
    second = _sample(nvml, sampler, 101.0)
    assert second[k("workbench_gpu_utilization_percent")] == 97.0
    assert second[k("workbench_gpu_memory_used_bytes")] == 40 * (1 << 30)
    assert second[k("workbench_gpu_temperature_celsius")] == 61.0
    assert second[k("workbench_gpu_power_watts")] == 650.0
    assert second[k("workbench_gpu_power_limit_watts")] == 700.0
    assert second[k("workbench_gpu_energy_joules_total")] == pytest.approx(400.0)  # counter
    assert second[k("workbench_gpu_pcie_transmit_bytes_per_second")] == 2e9
    assert second[k("workbench_gpu_pcie_receive_bytes_per_second")] == 25e9
    assert second[k("workbench_gpu_nvlink_transmit_bytes_per_second")] == 100_000_000 * 1024
    third = _sample(nvml, sampler, 102.0)
    assert third[k("workbench_gpu_energy_joules_total")] == pytest.approx(1100.0)
    assert sampler.devices[0][2].energy_source == "counter"
    assert nvml.calls.get("nvmlDeviceGetPcieThroughput", 0) == 0  # counters were enough
    info = sampler.info()
    assert info["gpus"][0]["name"] == "NVIDIA H100 80GB HBM3"
    assert "mig_mode" in info["gpus"][0]["skipped"]


def _t4() -> dict[str, Any]:
    """An older GPU: no energy counter, no PCIe counters, no NVLink (hand-written)."""
    return {
        "nvmlDeviceGetUUID": "GPU-t4-0",
        "nvmlDeviceGetName": "Tesla T4",
        "nvmlDeviceGetMemoryInfo": {"used": 1 << 30, "total": 16 << 30},
        "nvmlDeviceGetUtilizationRates": {"gpu": 50, "memory": 20},
        "nvmlDeviceGetTemperature": 50,
        "nvmlDeviceGetPowerUsage": [60_000, 70_000, GPU_LOST, 70_000],
        "nvmlDeviceGetEnforcedPowerLimit": NOT_SUPPORTED,
        "nvmlDeviceGetTotalEnergyConsumption": NOT_SUPPORTED,
        "nvmlDeviceGetFieldValues": NOT_SUPPORTED,
        "nvmlDeviceGetPcieThroughput": 1_500,  # KB/s
        "nvmlDeviceGetMigMode": NOT_SUPPORTED,
    }


def test_nvml_unsupported_fields_are_skipped_for_good_and_power_is_integrated() -> None:
    nvml = RecordedNVML([_t4()])
    sampler = GPUSampler(SamplerContext(role="host"), nvml=nvml)
    k = lambda name: series_key(name, {"gpu": "0", "uuid": "GPU-t4-0"})  # noqa: E731
    ticks = [_sample(nvml, sampler, 10.0 + i) for i in range(4)]
    # energy from power: 60 W then 70 W for 1 s = 65 J (trapezoid)
    assert ticks[1][k("workbench_gpu_energy_joules_total")] == pytest.approx(65.0)
    assert sampler.devices[0][2].energy_source == "integrated"
    # a lost GPU drops the power reading of that sample only; it is asked again after
    assert k("workbench_gpu_power_watts") not in ticks[2]
    assert ticks[3][k("workbench_gpu_power_watts")] == 70.0
    assert nvml.calls["nvmlDeviceGetPowerUsage"] == 4
    # unsupported calls were made once, never again
    assert nvml.calls["nvmlDeviceGetTotalEnergyConsumption"] == 1
    assert nvml.calls["nvmlDeviceGetEnforcedPowerLimit"] == 1
    assert nvml.calls["nvmlDeviceGetFieldValues"] == 2  # PCIe counters once, NVLink once
    # PCIe fell back to the driver's KB/s sample
    assert ticks[0][k("workbench_gpu_pcie_transmit_bytes_per_second")] == 1_500_000
    assert not any("nvlink" in key for tick in ticks for key in tick)
    unsupported = sampler.info()["unsupported"]
    assert "Not Supported" in unsupported["workbench_gpu_nvlink_transmit_bytes_per_second"]
    assert "workbench_gpu_power_watts" not in unsupported  # power works


def test_nvml_mig_instances_report_their_memory() -> None:
    device = _t4()
    device.update(
        {
            "nvmlDeviceGetMigMode": (1, 1),
            "nvmlDeviceGetMaxMigDeviceCount": 3,
            "nvmlDeviceGetMigDeviceHandleByIndex": 0,
        }
    )
    nvml = RecordedNVML([device])
    # the MIG handles point back at device 0's recording; slot 1 is empty
    answers = iter([0, pynvml.NVMLError(pynvml.NVML_ERROR_NOT_FOUND), 0])

    def mig_handle(handle: int, index: int) -> int:
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        return answer

    nvml.nvmlDeviceGetMigDeviceHandleByIndex = mig_handle  # type: ignore[method-assign]
    reader = DeviceReader(nvml, 0)
    raw = reader.read()
    assert [m["mem_used"] for m in raw["mig"]] == [1 << 30, 1 << 30]
    values = GPUSeries(0, "GPU-t4-0").update(raw, 1.0)
    mig = [k for k in values if k.startswith("workbench_gpu_mig_memory_used_bytes")]
    assert len(mig) == 1 and 'mig="GPU-t4-0"' in mig[0]  # recorded UUIDs are the same


def test_worker_samples_its_own_gpu_host_samples_all(monkeypatch: pytest.MonkeyPatch) -> None:
    nvml = _FieldTicks([_h100("GPU-a"), _h100("GPU-b")])
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1,0")  # dask-cuda's order for worker 1
    worker = GPUSampler(SamplerContext(role="worker"), nvml=nvml)
    assert [g.uuid for g, _, _ in worker.devices] == ["GPU-b"]
    host = GPUSampler(SamplerContext(role="host"), nvml=nvml)
    assert [g.uuid for g, _, _ in host.devices] == ["GPU-b", "GPU-a"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    hidden = GPUSampler(SamplerContext(role="host"), nvml=nvml)
    assert hidden.devices == [] and "hides every GPU" in (hidden.reason or "")


def test_gpu_sampler_without_a_driver_says_why() -> None:
    inventory = detect_gpus()
    if inventory.count:
        pytest.skip("this machine has a GPU")
    sampler = GPUSampler(SamplerContext(role="host"))
    assert sampler.reason and "NVML" in sampler.reason
    assert sampler.sample(time.time()) == {}
    sampler.close()


@pytest.mark.gpu
def test_gpu_sampler_on_real_nvml() -> None:
    sampler = GPUSampler(SamplerContext(role="host"))
    try:
        assert sampler.reason is None, sampler.reason
        sampler.sample(time.time())
        time.sleep(1.0)
        values = sampler.sample(time.time())
        for gpu, _, _ in sampler.devices:
            labels = {"gpu": str(gpu.index), "uuid": gpu.uuid}
            total = values[series_key("workbench_gpu_memory_total_bytes", labels)]
            assert total == gpu.memory_total
            used = values[series_key("workbench_gpu_memory_used_bytes", labels)]
            assert 0 <= used <= total
            util = values.get(series_key("workbench_gpu_utilization_percent", labels))
            assert util is None or 0 <= util <= 100
            energy = values.get(series_key("workbench_gpu_energy_joules_total", labels))
            assert energy is None or energy >= 0
    finally:
        sampler.close()


# -- registry and the sampling loop --------------------------------------------------------------
class _Constant:
    name = "constant"
    blocking = True
    metrics = ()

    def __init__(self, context: SamplerContext) -> None:
        self.reason = None

    def sample(self, now: float) -> dict[str, float]:
        return {"test_constant": 42.0}

    def close(self) -> None:
        pass


class _Broken(_Constant):
    name = "broken"

    def sample(self, now: float) -> dict[str, float]:
        raise RuntimeError("sensor on fire")


def _refuses(context: SamplerContext) -> Any:
    raise OSError("no such device")


def test_registry_plugs_samplers_in_by_name(caplog: pytest.LogCaptureFixture) -> None:
    assert {"host", "gpu", "dask-worker", "infiniband"} <= set(known_samplers())
    assert "dask-worker" not in known_samplers("host")
    try:
        register_sampler("test-constant", _Constant, roles=("host",))
        register_sampler("test-lazy", "tests.test_metrics_samplers:_Broken", roles=())
        register_sampler("test-refuses", _refuses, roles=())
        with pytest.raises(ValueError, match="already registered"):
            register_sampler("test-constant", _Constant)
        assert "test-constant" in known_samplers("host")
        assert "test-constant" not in known_samplers("worker")
        assert get_sampler_factory("test-lazy") is _Broken
        with pytest.raises(KeyError, match="no sampler named 'nope'"):
            get_sampler_factory("nope")
        context = SamplerContext(role="host")
        with caplog.at_level(logging.ERROR):
            samplers = create_samplers(["test-constant", "test-lazy", "test-refuses"], context)
        assert [s.name for s in samplers] == ["constant", "broken"]
        assert "sampler 'test-refuses' could not start" in caplog.text
        loop = SamplingLoop(samplers, capacity=10)
        with caplog.at_level(logging.ERROR):
            values = loop.sample_all(1.0)
        assert values["test_constant"] == 42.0  # the broken sampler did not stop it
        assert "sampler 'broken' failed" in caplog.text
        assert values["workbench_sampler_samples_total"] == 1.0
    finally:
        for name in ("test-constant", "test-lazy", "test-refuses"):
            _registry.pop(name, None)


def test_metrics_package_never_imports_panel() -> None:
    code = (
        "import sys, workbench.metrics as m\n"
        "import workbench.metrics.store, workbench.metrics.plugin, workbench.metrics.prometheus\n"
        "m.catalog(); m.create_samplers(None, m.SamplerContext(role='host'))\n"
        "bad = sorted(x for x in ('panel', 'bokeh', 'holoviews', 'hvplot') if x in sys.modules)\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert out.stdout.strip() == "", f"workbench.metrics imported {out.stdout.strip()}"


def test_data_io_sampler_rates_per_protocol_from_the_first_read() -> None:
    """A protocol first read between two samples gets a rate at once (it was 0 before)."""
    from workbench.data import iostats
    from workbench.metrics.data_io import IOStatsSampler

    sampler = IOStatsSampler()
    assert "data-io" in known_samplers("worker") and "data-io" in known_samplers("host")
    assert "memtest" not in iostats.process_counters()  # a protocol nothing else reads
    sampler.sample(100.0)
    iostats.count_process_read("memtest://bucket/a.parquet", 4_000_000, 0.5)
    iostats.count_process_read("memtest://bucket/b.parquet", 2_000_000, 0.5)
    values = sampler.sample(102.0)
    labels = {"protocol": "memtest"}
    assert values[series_key("workbench_data_read_bytes_per_second", labels)] == 3_000_000
    assert values[series_key("workbench_data_read_bytes_total", labels)] == 6e6
    assert values[series_key("workbench_data_reads_total", labels)] == 2
    iostats.count_process_read("/local/file.csv", 1000, 0.1)
    assert 'protocol="file"' in "".join(sampler.sample(103.0))
