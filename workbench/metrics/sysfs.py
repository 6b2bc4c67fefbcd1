"""Samplers over Linux sysfs: InfiniBand port counters and RAPL CPU energy.

Both read plain files, so they are cheap and testable against a directory tree laid
out like sysfs (``root=``). Absent hardware gives ``reason`` and no values.
"""

from __future__ import annotations

import re
from pathlib import Path

from .base import MetricSpec, SamplerContext, define, series_key
from .rates import CounterRates

IB_ROOT = Path("/sys/class/infiniband")
RAPL_ROOT = Path("/sys/class/powercap")

IB_SPECS = define(
    MetricSpec(
        "workbench_infiniband_receive_bytes_per_second",
        "Bytes received per second on an InfiniBand/RoCE port (port_rcv_data x 4).",
        "bytes/s",
        scope="host",
        tab="Network",
        plot="InfiniBand throughput",
        label="rx",
    ),
    MetricSpec(
        "workbench_infiniband_transmit_bytes_per_second",
        "Bytes sent per second on an InfiniBand/RoCE port (port_xmit_data x 4).",
        "bytes/s",
        scope="host",
        tab="Network",
        plot="InfiniBand throughput",
        label="tx",
    ),
    MetricSpec(
        "workbench_infiniband_link_rate_bytes_per_second",
        "Signalling rate of an InfiniBand port (its 'rate' file), the ceiling for rx/tx.",
        "bytes/s",
        scope="host",
    ),
)

RAPL_SPECS = define(
    MetricSpec(
        "workbench_cpu_power_watts",
        "CPU package / DRAM power from RAPL energy counters.",
        "watts",
        scope="host",
        tab="Energy",
        plot="CPU power (RAPL)",
        label="CPU",
    ),
    MetricSpec(
        "workbench_cpu_energy_joules_total",
        "CPU package / DRAM energy from RAPL counters since the sampler started.",
        "joules",
        kind="counter",
        scope="host",
        tab="Energy",
        plot="CPU energy in window (RAPL)",
        label="CPU",
        show_increase=True,
    ),
)

_RATE = re.compile(r"([\d.]+)\s*Gb/sec")


def _read_int(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


class InfinibandSampler:
    """Per-port byte rates from ``/sys/class/infiniband/*/ports/*/counters``.

    ``port_rcv_data`` and ``port_xmit_data`` count 4-byte words (the IBA spec's
    "octets divided by 4"), so byte rates are four times the word rates.
    """

    name = "infiniband"
    blocking = True
    metrics = IB_SPECS

    def __init__(self, context: SamplerContext | None = None, root: Path | str | None = None):
        if root is None and context is not None:
            root = context.options.get("infiniband_root")
        self.root = Path(root) if root is not None else IB_ROOT
        self._rates = CounterRates()
        self.ports: list[tuple[str, str, Path]] = []
        if self.root.is_dir():
            for dev in sorted(self.root.iterdir()):
                ports = dev / "ports"
                if not ports.is_dir():
                    continue
                for port in sorted(ports.iterdir(), key=lambda p: p.name):
                    if (port / "counters" / "port_rcv_data").exists():
                        self.ports.append((dev.name, port.name, port))
        self.reason: str | None = (
            None if self.ports else f"no InfiniBand ports with counters under {self.root}"
        )

    def sample(self, now: float) -> dict[str, float]:
        out: dict[str, float] = {}
        for dev, port, path in self.ports:
            labels = {"device": dev, "port": port}
            for name, counter in (
                ("workbench_infiniband_receive_bytes_per_second", "port_rcv_data"),
                ("workbench_infiniband_transmit_bytes_per_second", "port_xmit_data"),
            ):
                words = _read_int(path / "counters" / counter)
                if words is None:
                    continue
                key = series_key(name, labels)
                r = self._rates.rate(key, 4.0 * words, now)
                if r is not None:
                    out[key] = r
            try:
                m = _RATE.search((path / "rate").read_text())
            except OSError:
                m = None
            if m:
                out[series_key("workbench_infiniband_link_rate_bytes_per_second", labels)] = (
                    float(m.group(1)) * 1e9 / 8
                )
        return out

    def close(self) -> None:
        pass


class RaplSampler:
    """CPU package and DRAM energy from Intel/AMD RAPL (``/sys/class/powercap``).

    Top-level ``package-N`` zones and ``dram`` sub-zones are read (cores are inside the
    package, so they are not added again). ``energy_uj`` wraps at
    ``max_energy_range_uj``; recent kernels let only root read it.
    """

    name = "rapl"
    blocking = True
    metrics = RAPL_SPECS

    def __init__(self, context: SamplerContext | None = None, root: Path | str | None = None):
        if root is None and context is not None:
            root = context.options.get("rapl_root")
        self.root = Path(root) if root is not None else RAPL_ROOT
        self._last: dict[str, tuple[float, float]] = {}
        self.zones: list[tuple[str, Path, float | None]] = []
        self._energy: dict[str, float] = {}
        self.reason: str | None = None
        unreadable = []
        if self.root.is_dir():
            for zone in sorted(self.root.glob("intel-rapl:*")):
                try:
                    name = (zone / "name").read_text().strip()
                except OSError:
                    continue
                top = zone.name.count(":") == 1
                if not ((top and name.startswith("package")) or name == "dram"):
                    continue
                if _read_int(zone / "energy_uj") is None:
                    unreadable.append(str(zone / "energy_uj"))
                    continue
                wrap = _read_int(zone / "max_energy_range_uj")
                label = name if top else f"{name}-{zone.name.split(':')[1]}"
                self.zones.append((label, zone / "energy_uj", float(wrap) if wrap else None))
        if not self.zones:
            self.reason = (
                f"RAPL energy counters are not readable ({', '.join(unreadable[:2])}; "
                "recent kernels allow only root)"
                if unreadable
                else f"no RAPL energy counters under {self.root}"
            )

    def sample(self, now: float) -> dict[str, float]:
        out: dict[str, float] = {}
        for label, path, wrap in self.zones:
            uj = _read_int(path)
            if uj is None:
                continue
            energy_key = series_key("workbench_cpu_energy_joules_total", {"zone": label})
            last = self._last.get(label)
            self._last[label] = (float(uj), now)
            total = self._energy.setdefault(energy_key, 0.0)
            if last is not None:
                delta = uj - last[0]
                if delta < 0:
                    delta = delta + wrap if wrap else 0.0
                dt = now - last[1]
                if delta >= 0 and dt > 0:
                    total += delta / 1e6
                    self._energy[energy_key] = total
                    out[series_key("workbench_cpu_power_watts", {"zone": label})] = delta / 1e6 / dt
            out[energy_key] = total
        return out

    def close(self) -> None:
        pass
