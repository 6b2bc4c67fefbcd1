"""Samplers, ring buffers and the sampler registry, without a cluster or a browser.

Host samplers read the real /proc of this machine (with real traffic and real writes
made by the test). InfiniBand and RAPL samplers read directory trees laid out like
sysfs. The NVML sampler is tested with NVML replies replayed (workbench.metrics.nvml_replay)
through the same GPUSampler code that runs on GPU machines: replies recorded on a real GPU by
scripts/device-check where tests/fixtures/nvml holds them, hand-written ones for hardware no
GPU run has recorded; the GPU tests at the end run it against a real driver.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pynvml
import pytest

from workbench.gpus import GPUInfo, detect_gpus
from workbench.metrics import (
    SamplerContext,
    SampleRing,
    create_samplers,
    known_samplers,
    nvml_replay,
    parse_key,
    register_sampler,
    series_key,
)
from workbench.metrics.base import _registry, get_sampler_factory
from workbench.metrics.host import DiskSampler, HostSampler, NetworkSampler, ProcessSampler
from workbench.metrics.nvml import GPUSampler
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


# -- NVML: recorded replies through the real reader/converter ---------------------------------
FIXTURES = Path(__file__).parent / "fixtures" / "nvml"


def _recording(name: str) -> dict[str, Any]:
    return nvml_replay.load(FIXTURES / name)


def _under_load() -> list[Path]:
    """Recordings of one GPU sampled idle and under copies and matmuls: those recorded on a
    real GPU (scripts/device-check), else the hand-written H100 until one exists."""
    files = sorted(FIXTURES.glob("*.json"))
    recorded = [f for f in files if nvml_replay.load(f)["source"]["kind"] == "recorded"]
    return recorded or [FIXTURES / "handwritten-h100.json"]


def _replay_ticks(recording: dict[str, Any]) -> tuple[GPUSampler, list[dict[str, float]]]:
    nvml = nvml_replay.ReplayNVML(recording)
    sampler = GPUSampler(SamplerContext(role="host"), nvml=nvml)
    assert sampler.reason is None, sampler.reason
    values = [sampler.sample(t) for t in recording["tick_times"]]
    return sampler, values


def _value(values: dict[str, float], name: str, gpu: GPUInfo) -> float | None:
    return values.get(series_key(name, {"gpu": str(gpu.index), "uuid": gpu.uuid}))


GPU_SERIES = (
    "workbench_gpu_utilization_percent",
    "workbench_gpu_memory_used_bytes",
    "workbench_gpu_power_watts",
    "workbench_gpu_energy_joules_total",
)


def _every_series_or_why_not(sampler: GPUSampler, values: dict[str, float]) -> None:
    """Each GPU has each of GPU_SERIES in ``values``, or the sampler says why it cannot
    (``info()["unsupported"]``): a missing value is never silently accepted."""
    unsupported = sampler.info()["unsupported"]
    for gpu, _, _ in sampler.devices:
        for name in GPU_SERIES:
            if _value(values, name, gpu) is None:
                assert name in unsupported, f"GPU {gpu.index}: no {name} and no reason"


@pytest.mark.parametrize("path", _under_load(), ids=lambda p: p.stem)
def test_nvml_replies_under_load_become_series(path: Path) -> None:
    """Every NVML call the sampler makes is answered from the recording (a field id the
    driver was not asked for fails here), and the series follow the recorded load."""
    recording = nvml_replay.load(path)
    sampler, ticks = _replay_ticks(recording)
    assert len(sampler.devices) == recording["source"]["gpus"]
    gpu = sampler.devices[0][0]
    assert gpu.name == recording["source"]["gpu"]
    rx = "workbench_gpu_pcie_receive_bytes_per_second"
    tx = "workbench_gpu_pcie_transmit_bytes_per_second"
    energy = [_value(v, "workbench_gpu_energy_joules_total", gpu) for v in ticks]
    assert energy[0] == 0.0 and all(e is not None for e in energy)
    assert all(b >= a for a, b in itertools.pairwise(energy))  # type: ignore[operator]
    assert energy[-1] > 0
    for tick, values in enumerate(ticks):
        phase = nvml_replay.phase_of(recording, tick)
        used = _value(values, "workbench_gpu_memory_used_bytes", gpu)
        assert used is not None and 0 <= used <= gpu.memory_total
        util = _value(values, "workbench_gpu_utilization_percent", gpu)
        assert util is not None and 0 <= util <= 100
        assert 0 < (_value(values, "workbench_gpu_power_watts", gpu) or 0) < 2000
        if tick == 0:
            assert _value(values, rx, gpu) is None  # a rate needs two readings
            continue
        down, up = _value(values, rx, gpu), _value(values, tx, gpu)
        assert down is not None and up is not None, f"tick {tick}: no PCIe rates"
        if phase == "host-to-device copy":
            assert down > 1e9 and down > 10 * up, f"tick {tick} ({phase}): rx {down}, tx {up}"
        elif phase == "device-to-host copy":
            assert up > 1e9 and up > 10 * down, f"tick {tick} ({phase}): rx {down}, tx {up}"
        elif phase == "bf16 matmul":
            assert util > 50, f"tick {tick} ({phase}): utilization {util}"
    phases = {p["what"] for p in recording["phases"]}
    assert {"host-to-device copy", "device-to-host copy", "bf16 matmul"} <= phases
    assert sampler.devices[0][2].energy_source == "counter"


def test_replay_refuses_a_call_the_driver_was_not_asked() -> None:
    """Field 196 is NVML_FI_DEV_TEMPERATURE_GPU_MAX_TLIMIT, not PCIe bytes: asking for it
    is not what the recording holds, and the replay says what was recorded instead."""
    nvml = nvml_replay.ReplayNVML(_recording("handwritten-h100.json"))
    handle = nvml.nvmlDeviceGetHandleByIndex(0)
    assert pynvml.NVML_FI_DEV_TEMPERATURE_GPU_MAX_TLIMIT == 196
    wrong = [(pynvml.NVML_FI_DEV_PCIE_COUNT_TX_BYTES, 0), (196, 0)]
    with pytest.raises(
        nvml_replay.ReplayMismatch, match=r"recorded arguments: .*\[197, 0\], \[198, 0\]"
    ):
        nvml.nvmlDeviceGetFieldValues(handle, wrong)
    right = [
        (pynvml.NVML_FI_DEV_PCIE_COUNT_TX_BYTES, 0),
        (pynvml.NVML_FI_DEV_PCIE_COUNT_RX_BYTES, 0),
    ]
    assert [v.fieldId for v in nvml.nvmlDeviceGetFieldValues(handle, right)] == [197, 198]


def test_recorded_replies_keep_the_bindings_own_structures() -> None:
    """The bindings' ctypes replies (a field value array, a memory struct) are recorded with
    their field names and come back from the replay with the same attributes."""
    values = (pynvml.c_nvmlFieldValue_t * 2)()
    for v, field, count in zip(
        values,
        (pynvml.NVML_FI_DEV_PCIE_COUNT_TX_BYTES, pynvml.NVML_FI_DEV_PCIE_COUNT_RX_BYTES),
        (7, 1 << 40),
        strict=True,
    ):
        v.fieldId, v.valueType, v.value.ullVal = (
            field,
            pynvml.NVML_VALUE_TYPE_UNSIGNED_LONG_LONG,
            count,
        )
    values[1].nvmlReturn = pynvml.NVML_ERROR_NOT_SUPPORTED
    memory = pynvml.c_nvmlMemory_t(total=80 << 30, free=70 << 30, used=10 << 30)

    class Driver:  # answers like the real bindings; no NVIDIA driver on this machine
        NVMLError = pynvml.NVMLError

        def nvmlDeviceGetFieldValues(self, handle: Any, ids: Any) -> Any:
            return values

        def nvmlDeviceGetMemoryInfo(self, handle: Any) -> Any:
            return memory

    recorder = nvml_replay.RecordingNVML(Driver())
    ids = [(pynvml.NVML_FI_DEV_PCIE_COUNT_TX_BYTES, 0), (pynvml.NVML_FI_DEV_PCIE_COUNT_RX_BYTES, 0)]
    recorder.nvmlDeviceGetFieldValues(None, ids)
    recorder.nvmlDeviceGetMemoryInfo(None)
    fields = recorder.calls[0]["reply"]
    assert [f["field"] for f in fields] == [
        "NVML_FI_DEV_PCIE_COUNT_TX_BYTES",
        "NVML_FI_DEV_PCIE_COUNT_RX_BYTES",
    ]
    assert fields[0]["value"] == 7 and fields[1]["value"] is None
    assert recorder.calls[1]["reply"] == {"total": 80 << 30, "free": 70 << 30, "used": 10 << 30}
    recording = {"format": nvml_replay.FORMAT, "source": {}, "calls": recorder.calls}
    replay = nvml_replay.ReplayNVML(json.loads(json.dumps(recording)))
    back = replay.nvmlDeviceGetFieldValues(None, ids)
    assert [(v.fieldId, v.nvmlReturn, v.value.ullVal) for v in back] == [
        (197, 0, 7),
        (198, pynvml.NVML_ERROR_NOT_SUPPORTED, 0),
    ]
    assert replay.nvmlDeviceGetMemoryInfo(None).used == 10 << 30


def test_a_recording_without_a_driver_replays_the_same_reason() -> None:
    """On this machine (no NVIDIA driver) the recorder logs nvmlInit's real error, and a
    sampler replaying it gives the reason the live one gave."""
    if detect_gpus().count:
        pytest.skip("this machine has a GPU: covered by the GPU test below")
    recorder = nvml_replay.RecordingNVML()
    live = GPUSampler(SamplerContext(role="host"), nvml=recorder)
    assert recorder.calls[0]["fn"] == "nvmlInit" and recorder.calls[0]["error_name"]
    recording = {"format": nvml_replay.FORMAT, "source": {}, "calls": recorder.calls}
    replayed = GPUSampler(SamplerContext(role="host"), nvml=nvml_replay.ReplayNVML(recording))
    assert replayed.reason == live.reason and "NVML could not start" in (live.reason or "")


def test_nvml_unsupported_fields_are_skipped_for_good_and_power_is_integrated() -> None:
    recording = _recording("handwritten-t4.json")
    nvml = nvml_replay.ReplayNVML(recording)
    sampler = GPUSampler(SamplerContext(role="host"), nvml=nvml)
    k = lambda name: series_key(name, {"gpu": "0", "uuid": "GPU-t4-0"})  # noqa: E731
    ticks = [sampler.sample(t) for t in recording["tick_times"]]
    for tick in (0, 1, 3):  # tick 2: the GPU was lost for that sample
        _every_series_or_why_not(sampler, ticks[tick])
    # energy from power: 60 W then 70 W for 1 s = 65 J (trapezoid)
    assert ticks[1][k("workbench_gpu_energy_joules_total")] == pytest.approx(65.0)
    assert sampler.devices[0][2].energy_source == "integrated"
    # a lost GPU drops the power reading of that sample only; it is asked again after
    assert k("workbench_gpu_power_watts") not in ticks[2]
    assert ticks[3][k("workbench_gpu_power_watts")] == 70.0
    assert nvml.count("nvmlDeviceGetPowerUsage") == 4
    # unsupported calls were made once, never again
    assert nvml.count("nvmlDeviceGetTotalEnergyConsumption") == 1
    assert nvml.count("nvmlDeviceGetEnforcedPowerLimit") == 1
    assert nvml.count("nvmlDeviceGetFieldValues") == 2  # PCIe counters once, NVLink once
    # PCIe fell back to the driver's KB/s sample
    assert ticks[0][k("workbench_gpu_pcie_transmit_bytes_per_second")] == 1_500_000
    assert ticks[0][k("workbench_gpu_pcie_receive_bytes_per_second")] == 3_000_000
    assert not any("nvlink" in key for tick in ticks for key in tick)
    unsupported = sampler.info()["unsupported"]
    assert "Not Supported" in unsupported["workbench_gpu_nvlink_transmit_bytes_per_second"]
    assert "workbench_gpu_power_watts" not in unsupported  # power works


def test_nvml_mig_instances_report_their_memory() -> None:
    recording = _recording("handwritten-a100-mig.json")
    sampler = GPUSampler(SamplerContext(role="host"), nvml=nvml_replay.ReplayNVML(recording))
    values = sampler.sample(recording["tick_times"][0])
    mig = {k: v for k, v in values.items() if k.startswith("workbench_gpu_mig_memory_used_bytes")}
    assert sorted(mig.values()) == [(1 << 30) // 2, 1 << 30]  # slot 1 is empty
    assert any('mig="MIG-aaaa"' in k for k in mig) and any('mig="MIG-cccc"' in k for k in mig)


def test_worker_samples_its_own_gpu_host_samples_all(monkeypatch: pytest.MonkeyPatch) -> None:
    recording = _recording("handwritten-2gpu.json")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1,0")  # dask-cuda's order for worker 1
    worker = GPUSampler(SamplerContext(role="worker"), nvml=nvml_replay.ReplayNVML(recording))
    assert [g.uuid for g, _, _ in worker.devices] == ["GPU-b"]
    host = GPUSampler(SamplerContext(role="host"), nvml=nvml_replay.ReplayNVML(recording))
    assert [g.uuid for g, _, _ in host.devices] == ["GPU-b", "GPU-a"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    hidden = GPUSampler(SamplerContext(role="host"), nvml=nvml_replay.ReplayNVML(recording))
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
        _every_series_or_why_not(sampler, values)  # a None above is one the sampler explains
    finally:
        sampler.close()


@pytest.mark.gpu
def test_a_real_recording_replays_to_the_same_series() -> None:
    """Sampling the real driver through the recorder, then replaying what it recorded through
    a new sampler, gives the same series: the recording holds every reply the sampler uses."""
    recorder = nvml_replay.RecordingNVML()
    live = GPUSampler(SamplerContext(role="host"), nvml=recorder)
    assert live.reason is None, live.reason
    times = [time.time() + i for i in range(3)]
    try:
        expected = []
        for t in times:
            expected.append(live.sample(t))
            time.sleep(0.2)
    finally:
        live.close()
    recording = {"format": nvml_replay.FORMAT, "source": {}, "calls": recorder.calls}
    replay = GPUSampler(SamplerContext(role="host"), nvml=nvml_replay.ReplayNVML(recording))
    assert [replay.sample(t) for t in times] == expected
    assert any(k.startswith("workbench_gpu_memory_used_bytes") for k in expected[-1])


@pytest.mark.gpu
def test_pcie_counters_see_host_to_device_and_back() -> None:
    """While a pinned buffer is copied to the GPU the receive rate is GB/s and above the
    transmit rate; copied back, the other way round. Real NVML, real copies."""
    torch = pytest.importorskip("torch", reason="the copies use PyTorch: pip install torch")
    sampler = GPUSampler(SamplerContext(role="host"))
    assert sampler.reason is None, sampler.reason
    host = torch.empty(512 << 20, dtype=torch.uint8).pin_memory()
    dev = torch.empty_like(host, device="cuda")
    rx = "workbench_gpu_pcie_receive_bytes_per_second"
    tx = "workbench_gpu_pcie_transmit_bytes_per_second"

    def rates_while(copy: Any) -> tuple[float, float]:
        sampler.sample(time.time())
        end = time.monotonic() + 1.5
        while time.monotonic() < end:
            copy()
            torch.cuda.synchronize()
        values = sampler.sample(time.time())
        down = max(v for k, v in values.items() if k.startswith(rx))
        up = max(v for k, v in values.items() if k.startswith(tx))
        return down, up

    try:
        down, up = rates_while(lambda: dev.copy_(host, non_blocking=True))
        assert down > 1e9 and down > up, (down, up)
        down, up = rates_while(lambda: host.copy_(dev, non_blocking=True))
        assert up > 1e9 and up > down, (down, up)
        values = sampler.sample(time.time())
        assert max(v for k, v in values.items() if k.startswith("workbench_gpu_power_watts")) > 0
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
