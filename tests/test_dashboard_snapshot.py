"""The GPU tab as data and as a picture: snapshots of a store, restored elsewhere, and the
tab drawn to a PNG with matplotlib (no browser). The samples come from the GPU sampler
replaying NVML replies (tests/fixtures/nvml), the same path a real GPU's samples take."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from workbench.dashboards import DashboardState, create_view
from workbench.dashboards.snapshot import save_png, snapshot, store_from_snapshot
from workbench.metrics import SamplerContext
from workbench.metrics.nvml import GPUSampler
from workbench.metrics.nvml_replay import ReplayNVML, load
from workbench.metrics.plugin import SamplingLoop
from workbench.metrics.store import MetricsStore, Source

FIXTURES = Path(__file__).parent / "fixtures" / "nvml"
PNG = b"\x89PNG\r\n\x1a\n"


def _replayed_store(name: str = "handwritten-h100.json") -> MetricsStore:
    """A store whose host source holds what the GPU sampler made of a recording."""
    recording = load(FIXTURES / name)
    sampler = GPUSampler(SamplerContext(role="host"), nvml=ReplayNVML(recording))
    loop = SamplingLoop([sampler], capacity=100)
    start = time.time() - len(recording["tick_times"])
    for i, _ in enumerate(recording["tick_times"]):
        loop.sample_all(start + i)
    store = MetricsStore(None, sample_host=False)
    source = Source("host", "host", loop.ring, host="gpu-host", name="host")
    source.info = loop.info()
    store.sources["host"] = source
    store._merge_specs(source.info)
    store.version += 1
    return store


def test_a_snapshot_restores_the_same_gpu_tab(tmp_path: Path) -> None:
    store = _replayed_store()
    data = json.loads(json.dumps(snapshot(store)))  # JSON-able
    restored = store_from_snapshot(data)
    assert restored.gpu_status() == store.gpu_status() == (1, [])
    before, after = DashboardState(store), DashboardState(restored)
    for plot in before.plots("GPU"):
        a, b = before.frame(plot), after.frame(plot)
        assert a.equals(b), plot.title
    view = create_view(restored)
    view.panel()
    view.tabs.active = 0
    view.update(force=True)
    shown = [s.plot.title for s in view.slots["GPU"].values() if s.showing_plot]
    assert {"GPU utilization (%)", "GPU memory", "PCIe throughput"} <= set(shown)
    later = store_from_snapshot(json.loads(json.dumps(data)), ending_at=time.time() + 3600)
    newest = max(t for s in later.snapshot_sources() if (t := s.ring.last_time()))
    assert newest == pytest.approx(time.time() + 3600, abs=5)
    with pytest.raises(ValueError, match="not a workbench-metrics-snapshot"):
        store_from_snapshot({"format": "something else"})


def test_the_gpu_tab_is_drawn_to_a_png_without_a_browser(tmp_path: Path) -> None:
    path = tmp_path / "gpu.png"
    titles = save_png(_replayed_store(), path, tab="GPU")
    assert {"GPU utilization (%)", "GPU memory", "PCIe throughput"} <= set(titles)
    data = path.read_bytes()
    assert data.startswith(PNG) and len(data) > 20_000
    from PIL import Image

    with Image.open(path) as image:
        width, height = image.size
        colours = len(image.convert("RGB").getcolors(maxcolors=1 << 20) or [])
    assert width > 800 and height > 300 and colours > 50  # curves, not a blank canvas


def test_a_tab_without_data_says_why_instead_of_drawing(tmp_path: Path) -> None:
    store = MetricsStore(None, sample_host=False)
    info: dict[str, Any] = {"unavailable": {"gpu": "NVML could not start"}, "samplers": {}}
    source = Source("host", "host", _empty_ring(), host="h", name="host")
    source.info = info
    store.sources["host"] = source
    with pytest.raises(ValueError, match="GPU tab has nothing to draw: notebook host h: NVML"):
        save_png(store, tmp_path / "none.png", tab="GPU")
    assert not (tmp_path / "none.png").exists()


def _empty_ring() -> Any:
    from workbench.metrics import SampleRing

    return SampleRing(10)


@pytest.mark.gpu
def test_the_gpu_tab_shows_real_series_and_is_drawn(tmp_path: Path) -> None:
    """The host store sampling a real GPU: the GPU tab has no notice, its plots show, and
    the PNG holds them."""
    from workbench.metrics import get_store
    from workbench.metrics import store as metrics_store

    store = get_store(None, interval=0.5)
    try:
        store.wait_for(lambda s: len(s.sources["host"].ring) >= 4, timeout=30)
        view = create_view(store)
        view.panel()
        assert view.state.gpu_notice() is None and view.active_tab == "GPU"
        view.update(force=True)
        shown = {s.plot.title for s in view.slots["GPU"].values() if s.showing_plot}
        assert {"GPU utilization (%)", "GPU memory", "GPU temperature (°C)"} <= shown
        titles = save_png(store, tmp_path / "gpu.png", tab="GPU")
        assert "GPU memory" in titles and (tmp_path / "gpu.png").read_bytes().startswith(PNG)
        restored = store_from_snapshot(json.loads(json.dumps(snapshot(store))))
        assert restored.gpu_status()[0] == store.gpu_status()[0] >= 1
    finally:
        metrics_store.close_all()
