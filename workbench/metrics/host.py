"""Host and process samplers: CPU, memory, disk and network byte rates (psutil, /proc).

Rates come from deltas of the kernel's cumulative counters between two samples, so
the first sample of a rate is empty. Disk totals leave out virtual block devices
(loop, ram, zram, device-mapper, md) that would count the same bytes twice.
"""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Iterable

import psutil

from .base import MetricSpec, SamplerContext, define, series_key
from .rates import CounterRates

HOST_SPECS = define(
    MetricSpec(
        "workbench_cpu_utilization_percent",
        "Host CPU utilization over the last interval, all cores (0-100).",
        "percent",
        scope="host",
        agg="mean",
        tab="Cluster",
        plot="Host CPU (%)",
        label="host CPU",
    ),
    MetricSpec(
        "workbench_memory_used_bytes",
        "Host memory in use (total minus available).",
        "bytes",
        scope="host",
        tab="Cluster",
        plot="Host memory",
        label="used",
    ),
    MetricSpec(
        "workbench_memory_total_bytes",
        "Host memory installed.",
        "bytes",
        scope="host",
        tab="Cluster",
        plot="Host memory",
        label="total",
    ),
)

PROCESS_SPECS = define(
    MetricSpec(
        "workbench_process_cpu_percent",
        "CPU used by the sampled process (a Dask worker or the notebook), 100 = one core.",
        "percent",
        scope="process",
        tab="Cluster",
        plot="Process CPU (% of one core)",
        label="process CPU",
    ),
    MetricSpec(
        "workbench_process_memory_rss_bytes",
        "Resident memory of the sampled process.",
        "bytes",
        scope="process",
        tab="Cluster",
        plot="Process memory (RSS)",
        label="RSS",
    ),
    MetricSpec(
        "workbench_process_read_bytes_per_second",
        "Bytes the process caused to be read from storage (/proc/PID/io read_bytes).",
        "bytes/s",
        scope="process",
        tab="Storage",
        plot="Process storage IO",
        label="read",
    ),
    MetricSpec(
        "workbench_process_write_bytes_per_second",
        "Bytes the process caused to be written to storage (/proc/PID/io write_bytes).",
        "bytes/s",
        scope="process",
        tab="Storage",
        plot="Process storage IO",
        label="write",
    ),
)

DISK_SPECS = define(
    MetricSpec(
        "workbench_disk_read_bytes_per_second",
        "Bytes read from a block device per second.",
        "bytes/s",
        scope="host",
        tab="Storage",
        plot="Disk throughput",
        label="read",
    ),
    MetricSpec(
        "workbench_disk_write_bytes_per_second",
        "Bytes written to a block device per second.",
        "bytes/s",
        scope="host",
        tab="Storage",
        plot="Disk throughput",
        label="write",
    ),
)

NETWORK_SPECS = define(
    MetricSpec(
        "workbench_network_receive_bytes_per_second",
        "Bytes received per second on a network interface.",
        "bytes/s",
        scope="host",
        tab="Network",
        plot="Network throughput",
        label="rx",
    ),
    MetricSpec(
        "workbench_network_transmit_bytes_per_second",
        "Bytes sent per second on a network interface.",
        "bytes/s",
        scope="host",
        tab="Network",
        plot="Network throughput",
        label="tx",
    ),
)

_VIRTUAL_DISK = re.compile(r"^(loop|ram|zram|dm-|md|sr|fd|nbd)")


def hostname() -> str:
    return socket.gethostname()


class HostSampler:
    """Host CPU utilization (from /proc/stat deltas) and memory."""

    name = "host"
    blocking = True
    metrics = HOST_SPECS

    def __init__(self, context: SamplerContext | None = None) -> None:
        self.reason: str | None = None
        self._last: tuple[float, float] | None = None

    def sample(self, now: float) -> dict[str, float]:
        out: dict[str, float] = {}
        times = psutil.cpu_times()
        idle = times.idle + getattr(times, "iowait", 0.0)
        total = sum(times)
        if self._last is not None:
            d_total = total - self._last[0]
            if d_total > 0:
                busy = 1.0 - (idle - self._last[1]) / d_total
                out["workbench_cpu_utilization_percent"] = max(0.0, min(100.0, 100.0 * busy))
        self._last = (total, idle)
        mem = psutil.virtual_memory()
        out["workbench_memory_used_bytes"] = float(mem.total - mem.available)
        out["workbench_memory_total_bytes"] = float(mem.total)
        return out

    def close(self) -> None:
        pass


class ProcessSampler:
    """The sampling process itself: CPU, RSS and storage IO (the worker's own load)."""

    name = "process"
    blocking = True
    metrics = PROCESS_SPECS

    def __init__(self, context: SamplerContext | None = None, pid: int | None = None) -> None:
        self.reason: str | None = None
        self._proc = psutil.Process(pid)
        self._rates = CounterRates()
        self._io_ok = True

    def sample(self, now: float) -> dict[str, float]:
        out: dict[str, float] = {}
        with self._proc.oneshot():
            cpu = self._proc.cpu_times()
            rate = self._rates.rate("cpu", cpu.user + cpu.system, now)
            if rate is not None:
                out["workbench_process_cpu_percent"] = 100.0 * rate
            out["workbench_process_memory_rss_bytes"] = float(self._proc.memory_info().rss)
            if self._io_ok:
                try:
                    io = self._proc.io_counters()
                except (psutil.AccessDenied, AttributeError, NotImplementedError):
                    self._io_ok = False  # /proc/PID/io unreadable here: skip from now on
                else:
                    _put_rates(
                        out,
                        self._rates,
                        now,
                        (
                            ("workbench_process_read_bytes_per_second", io.read_bytes),
                            ("workbench_process_write_bytes_per_second", io.write_bytes),
                        ),
                    )
        return out

    def close(self) -> None:
        pass


class DiskSampler:
    """Read/write byte rates per physical block device."""

    name = "disk"
    blocking = True
    metrics = DISK_SPECS

    def __init__(self, context: SamplerContext | None = None) -> None:
        self.reason: str | None = None
        self._rates = CounterRates()
        try:
            psutil.disk_io_counters(perdisk=True)
        except Exception as exc:  # e.g. no /proc/diskstats in a container
            self.reason = f"disk counters are not readable here ({exc})"

    def sample(self, now: float) -> dict[str, float]:
        if self.reason:
            return {}
        out: dict[str, float] = {}
        counters = psutil.disk_io_counters(perdisk=True) or {}
        for disk, c in counters.items():
            if _VIRTUAL_DISK.match(disk):
                continue
            _put_rates(
                out,
                self._rates,
                now,
                (
                    ("workbench_disk_read_bytes_per_second", c.read_bytes),
                    ("workbench_disk_write_bytes_per_second", c.write_bytes),
                ),
                {"disk": disk},
            )
        return out

    def close(self) -> None:
        pass


class NetworkSampler:
    """Receive/transmit byte rates per network interface (loopback left out by default)."""

    name = "network"
    blocking = True
    metrics = NETWORK_SPECS

    def __init__(
        self, context: SamplerContext | None = None, exclude: tuple[str, ...] | None = None
    ) -> None:
        self.reason: str | None = None
        if exclude is None and context is not None:
            exclude = context.options.get("network_exclude")
        self.exclude = tuple(exclude) if exclude is not None else ("lo",)
        self._rates = CounterRates()

    def sample(self, now: float) -> dict[str, float]:
        out: dict[str, float] = {}
        for nic, c in (psutil.net_io_counters(pernic=True) or {}).items():
            if nic in self.exclude:
                continue
            _put_rates(
                out,
                self._rates,
                now,
                (
                    ("workbench_network_receive_bytes_per_second", c.bytes_recv),
                    ("workbench_network_transmit_bytes_per_second", c.bytes_sent),
                ),
                {"nic": nic},
            )
        return out

    def close(self) -> None:
        pass


def _put_rates(
    out: dict[str, float],
    rates: CounterRates,
    now: float,
    counters: Iterable[tuple[str, float]],
    labels: dict[str, str] | None = None,
) -> None:
    """Into ``out``: the per-second rate of each ``(metric name, counter value)`` (the series
    with ``labels``) that has a rate yet."""
    for name, value in counters:
        key = series_key(name, labels)
        r = rates.rate(key, float(value), now)
        if r is not None:
            out[key] = r


def process_info() -> dict[str, object]:
    return {"host": hostname(), "pid": os.getpid()}
