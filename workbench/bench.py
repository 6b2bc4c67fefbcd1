"""Measure the infrastructure the user has, each number beside its physical limit.

``workbench bench`` runs these and names the bottleneck: the measurement furthest below
its limit. Limits come from the hardware itself where Linux or NVML report it (PCIe link
generation and width, NIC speed, NVMe link); where nothing reports a limit (a virtual
disk, loopback between workers on one host) the limit is shown as unknown, never guessed.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from distributed import Client

GB = 1e9
#: Usable bandwidth per PCIe lane, GB/s, by link generation (after encoding overhead).
PCIE_LANE_GBPS = {1: 0.25, 2: 0.5, 3: 0.985, 4: 1.969, 5: 3.938, 6: 7.563}
#: Dense bf16/fp16 tensor-core peak, TFLOP/s, from NVIDIA data sheets (no sparsity).
GPU_PEAK_TFLOPS = {
    "H200": 989.0,
    "H100 SXM": 989.0,
    "H100 80GB HBM3": 989.0,
    "H100 PCIe": 756.0,
    "H100 NVL": 835.0,
    "GH200": 989.0,
    "A100": 312.0,
    "L40S": 362.0,
    "L40": 181.0,
    "L4": 121.0,
    "A10": 125.0,
    "V100": 125.0,
    "T4": 65.0,
}


@dataclass
class Measurement:
    name: str
    value: float
    unit: str
    limit: float | None = None
    limit_source: str = "unknown"
    detail: str = ""

    @property
    def fraction(self) -> float | None:
        return self.value / self.limit if self.limit else None

    @property
    def above_limit(self) -> bool:
        """Faster than the limit: a cache below the OS served it, or the limit is wrong."""
        return self.fraction is not None and self.fraction > 1.1

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "fraction": self.fraction}

    def __str__(self) -> str:
        limit = (
            f"{self.limit:,.2f} {self.unit} ({self.limit_source})"
            if self.limit
            else f"unknown ({self.limit_source})"
        )
        pct = f" = {100 * self.fraction:.0f}% of limit" if self.fraction is not None else ""
        warn = " (above the limit: a cache below the OS served it)" if self.above_limit else ""
        return f"{self.name}: {self.value:,.2f} {self.unit}; limit {limit}{pct}{warn}"


def _read_sys(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def _pcie_gbps(speed: str | None, width: str | None) -> float | None:
    """Bandwidth of a PCIe link from sysfs strings like '16.0 GT/s PCIe' and '4'."""
    if not speed or not width:
        return None
    gen_by_rate = {"2.5": 1, "5.0": 2, "8.0": 3, "16.0": 4, "32.0": 5, "64.0": 6}
    rate = speed.split()[0]
    gen = gen_by_rate.get(rate)
    try:
        lanes = int(width)
    except ValueError:
        return None
    return PCIE_LANE_GBPS[gen] * lanes if gen else None


def disk_limit(path: Path, sysfs: Path = Path("/sys")) -> tuple[float | None, str]:
    """The read limit of the block device holding ``path``, from sysfs (``sysfs``: its root).

    Only an NVMe drive reports one (its PCIe link); for any other disk the limit is unknown
    and said so, never guessed.
    """
    st = os.stat(path)
    dev = sysfs / "dev" / "block" / f"{os.major(st.st_dev)}:{os.minor(st.st_dev)}"
    if not dev.exists():
        return None, "not a block device (network or overlay file system)"
    real = dev.resolve()
    disk = real.parent if (real / "partition").exists() else real
    name = disk.name
    if name.startswith("nvme"):
        ctrl = disk / "device" / "device"
        gbps = _pcie_gbps(
            _read_sys(ctrl / "current_link_speed"), _read_sys(ctrl / "current_link_width")
        )
        if gbps:
            return gbps, f"{name} PCIe link"
        return None, f"{name}: PCIe link not reported"
    if name.startswith(("vd", "xvd")):
        return None, f"{name}: virtual disk, the host does not report its limit"
    kind = "rotational disk" if _read_sys(disk / "queue" / "rotational") == "1" else "disk"
    return None, f"{name}: {kind} with no link speed reported (no limit is guessed)"


def storage_read(directory: str | Path | None = None, size_mb: int = 256) -> Measurement:
    """Sequential read of a fresh file, with its pages evicted from the page cache first."""
    base = Path(directory) if directory else Path(tempfile.gettempdir())
    chunk = os.urandom(8 << 20)
    fd, name = tempfile.mkstemp(prefix=".workbench-bench-", dir=base)
    path = Path(name)
    try:
        with os.fdopen(fd, "wb") as f:
            for _ in range(max(1, size_mb // 8)):
                f.write(chunk)
            f.flush()
            os.fsync(f.fileno())
            os.posix_fadvise(f.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
        total = 0
        start = time.perf_counter()
        with open(path, "rb", buffering=0) as f:
            while block := f.read(8 << 20):
                total += len(block)
        elapsed = time.perf_counter() - start
        limit, source = disk_limit(base)
        return Measurement(
            "storage read (local)",
            total / elapsed / GB,
            "GB/s",
            limit,
            source,
            f"{total / 2**20:.0f} MiB from {base}, page cache evicted",
        )
    finally:
        path.unlink(missing_ok=True)


def nic_limit(interface: str | None = None) -> tuple[float | None, str]:
    """Speed of the fastest up network interface (or ``interface``), GB/s, from sysfs."""
    best: tuple[float | None, str] = (None, "no interface reports a link speed")
    for iface in sorted(Path("/sys/class/net").glob("*")):
        if iface.name == "lo" or (interface and iface.name != interface):
            continue
        speed = _read_sys(iface / "speed")
        if _read_sys(iface / "operstate") not in ("up", "unknown") or not speed:
            continue
        with contextlib.suppress(ValueError):
            mbps = int(speed)
            if mbps > 0 and (best[0] is None or mbps / 8000 > best[0]):
                best = (mbps / 8000, f"{iface.name} link {mbps} Mb/s")
    return best


def object_store_read(
    uri: str, storage_options: dict[str, Any] | None = None, max_mb: int = 256
) -> Measurement:
    """Read existing objects under ``uri`` (a file or a prefix) through fsspec."""
    import fsspec

    from .credentials import is_reference, resolve

    options = {k: resolve(v) if is_reference(v) else v for k, v in (storage_options or {}).items()}
    fs, root = fsspec.core.url_to_fs(uri, **options)
    files = [root] if fs.isfile(root) else [p for p in fs.find(root) if fs.size(p)]
    if not files:
        from .errors import WorkbenchError

        raise WorkbenchError(f"bench: nothing to read at {uri}; point --uri at existing objects")
    total, budget = 0, max_mb << 20
    start = time.perf_counter()
    for path in files:
        with fs.open(path, "rb", block_size=16 << 20) as f:
            while total < budget and (block := f.read(16 << 20)):
                total += len(block)
        if total >= budget:
            break
    elapsed = time.perf_counter() - start
    limit, source = nic_limit()
    return Measurement(
        "storage read (object store)",
        total / elapsed / GB,
        "GB/s",
        limit,
        source,
        f"{total / 2**20:.0f} MiB from {uri}, one stream",
    )


def _make_array(nbytes: int) -> Any:
    import numpy as np

    return np.ones(nbytes // 8, dtype="float64")


def _nbytes(x: Any) -> int:
    return int(x.nbytes)


def worker_network(client: Client, size_mb: int = 256, repeats: int = 3) -> Measurement:
    """Worker-to-worker transfer through Dask's own communication layer."""
    workers = sorted(client.scheduler_info()["workers"])
    if len(workers) < 2:
        from .errors import WorkbenchError

        raise WorkbenchError(
            f"bench: the network test needs 2 workers, the cluster has {len(workers)}"
        )
    a, b = workers[0], workers[1]
    best = 0.0
    for i in range(repeats):
        data = client.submit(
            _make_array, size_mb << 20, workers=[a], pure=False, key=f"wb-bench-{i}"
        )
        data.result()
        start = time.perf_counter()
        client.submit(_nbytes, data, workers=[b], allow_other_workers=False, pure=False).result()
        elapsed = time.perf_counter() - start
        best = max(best, (size_mb << 20) / elapsed / GB)
        del data
    hosts = {w.split("://")[-1].rsplit(":", 1)[0] for w in (a, b)}
    if len(hosts) == 1:
        limit, source = None, "both workers on one host: loopback, no NIC involved"
    else:
        limit, source = nic_limit()
    return Measurement(
        "worker-to-worker network",
        best,
        "GB/s",
        limit,
        source,
        f"{size_mb} MiB array {a} -> {b}, best of {repeats}",
    )


def gpu_measurements() -> list[Measurement]:
    """Host-to-device copy and matmul throughput on GPU 0 (empty without a GPU)."""
    from .gpus import detect_gpus

    inv = detect_gpus()
    if not inv.gpus:
        return []
    import torch

    gpu = inv.gpus[0]
    out: list[Measurement] = []
    limit, source = gpu_pcie_limit(gpu.index)
    host = torch.empty(256 << 20, dtype=torch.uint8).pin_memory()
    dev = torch.empty_like(host, device="cuda")
    dev.copy_(host, non_blocking=True)
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(10):
        dev.copy_(host, non_blocking=True)
    torch.cuda.synchronize()
    h2d = 10 * host.numel() / (time.perf_counter() - start) / GB
    out.append(
        Measurement(
            "host-to-device copy", h2d, "GB/s", limit, source, f"pinned 256 MiB x10 to {gpu.name}"
        )
    )
    n = 8192
    x = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    y = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    for _ in range(3):
        x @ y
    torch.cuda.synchronize()
    reps = 20
    start = time.perf_counter()
    for _ in range(reps):
        x @ y
    torch.cuda.synchronize()
    tflops = reps * 2 * n**3 / (time.perf_counter() - start) / 1e12
    peak = next((v for k, v in GPU_PEAK_TFLOPS.items() if k in gpu.name), None)
    out.append(
        Measurement(
            "GPU matmul (bf16)",
            tflops,
            "TFLOP/s",
            peak,
            f"{gpu.name} data sheet, dense bf16" if peak else f"{gpu.name}: not in table",
            f"{n}x{n} @ {n}x{n}, {reps} reps",
        )
    )
    return out


def gpu_pcie_limit(index: int, nvml: Any = None) -> tuple[float | None, str]:
    """Host-to-device limit of GPU ``index``: its PCIe link at the *maximum* generation and
    width the GPU and the slot support (``nvmlDeviceGetMaxPcieLinkGeneration``/``Width``).

    The current link is no limit: an idle GPU drops its link to a lower generation to save
    power, and trains it up again under load, so a copy would look faster than its limit.
    """
    try:
        if nvml is None:
            nvml = importlib.import_module("pynvml")
        nvml.nvmlInit()
        try:
            h = nvml.nvmlDeviceGetHandleByIndex(index)
            gen = nvml.nvmlDeviceGetMaxPcieLinkGeneration(h)
            width = nvml.nvmlDeviceGetMaxPcieLinkWidth(h)
        finally:
            nvml.nvmlShutdown()
    except Exception as exc:
        return None, f"PCIe link not reported by NVML ({exc})"
    gbps = PCIE_LANE_GBPS.get(gen)
    if not gbps or not width:
        return None, f"NVML reports PCIe Gen{gen} x{width}, which has no known bandwidth"
    return gbps * width, f"PCIe Gen{gen} x{width} (the link's maximum)"


def bottleneck(results: list[Measurement]) -> Measurement | None:
    """The measurement furthest below its physical limit (None if no limit is known)."""
    known = [m for m in results if m.fraction is not None and not m.above_limit]
    return min(known, key=lambda m: m.fraction or 0.0) if known else None
