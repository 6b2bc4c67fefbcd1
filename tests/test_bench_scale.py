"""The scale-benchmark harness (benchmarks/_scale.py): rounds, ratios, tables, plots and the
docs page it refreshes. Its arithmetic is checked on given numbers; nothing here is timed."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

import _scale  # noqa: E402
from _scale import RAW, WORKBENCH, Curve, Point, interleave, update_docs, write  # noqa: E402


def curve(kind: str = "speed", target: float = 0.95) -> Curve:
    return Curve(
        key="demo",
        title="demo curve",
        x_label="dataset",
        workbench="wb",
        raw="raw lib",
        kind=kind,  # type: ignore[arg-type]
        target=target,
        target_from=100,
        points=[
            Point("10 MB", 10, {RAW: [1.0, 1.2, 1.1], WORKBENCH: [1.1, 1.3, 1.0]}),
            Point("100 MB", 100, {RAW: [2.0, 2.2, 2.1], WORKBENCH: [2.0, 2.4, 2.0]}),
            Point(
                "1 GB",
                1000,
                {RAW: [10.0, 11.0, 12.0], WORKBENCH: [12.0, 12.0, 11.0]},
                details={"plan": [0.01, 0.02, 0.03]},
            ),
        ],
    )


def test_interleave_rotates_the_order_and_drops_warmup() -> None:
    order: list[str] = []

    def run(name: str, seconds: float | None):  # type: ignore[no-untyped-def]
        def f() -> float | None:
            order.append(name)
            return seconds

        return f

    out = interleave({"a": run("a", 1.0), "b": run("b", 2.0), "c": run("c", None)}, 3, warmup=1)
    assert order == ["a", "b", "c", "b", "c", "a", "c", "a", "b", "a", "b", "c"]
    assert out["a"] == [1.0, 1.0, 1.0] and out["b"] == [2.0, 2.0, 2.0]
    assert len(out["c"]) == 3 and all(t >= 0 for t in out["c"])  # timed by interleave


def test_ratios_targets_and_tables() -> None:
    speed = curve("speed", 0.95)
    small, mid, big = speed.points
    assert speed.ratio(mid) == pytest.approx(2.1 / 2.0)  # raw / workbench medians
    assert speed.paired(big) == pytest.approx([10 / 12, 11 / 12, 12 / 11])
    assert not speed.applies(small) and speed.applies(mid)  # the target starts at 100
    assert speed.meets(mid) and not speed.meets(big)
    table = speed.table()
    assert "| 10 MB | 1.100 (1.000-1.200) | 1.100 (1.000-1.300) | 1.000 |" in table
    assert "| 1 GB |" in table and "**missed**" in table and "| met |" in table
    assert "| 1 GB | 0.0200 (0.0100-0.0300) |" in speed.extra_table()  # details, in the table
    time = curve("time", 1.05)
    assert time.ratio(big) == pytest.approx(12 / 11) and not time.meets(big)
    assert "workbench/raw time <= 1.05 from 100" in time.markdown()
    ms = curve()
    ms.unit = "ms"
    assert "| 10 MB | 1100.000 (1000.000-1200.000) |" in ms.table()
    # details in their own unit, not the curve's: "plan" counted in hundredths here
    ms.detail_units = {"plan": ("hundredths", 100.0)}
    assert "plan (hundredths)" in ms.extra_table()
    assert "| 1 GB | 2.000 (1.000-3.000) |" in ms.extra_table()


def test_plots_json_and_the_docs_page(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    c = curve()
    pngs = write([c], tmp_path / "perf")
    png = tmp_path / "perf" / "demo.png"
    assert pngs == {"demo": png} and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    data = json.loads((tmp_path / "perf" / "demo.json").read_text())
    assert data["points"][2]["samples"][RAW] == [10.0, 11.0, 12.0]
    assert data["ratios"]["100 MB"] == pytest.approx(1.05)

    doc = tmp_path / "performance.md"
    doc.write_text("# Perf\n\n<!-- scale:demo -->\nold table\n<!-- /scale:demo -->\n\nafter\n")
    assert update_docs(doc, [c], pngs, "_measured here_") == []
    text = doc.read_text()
    assert "old table" not in text and "_measured here_" in text and text.endswith("after\n")
    assert "![demo curve](perf/demo.png)" in text and c.table() in text
    other = Curve("new-one", "another", "jobs", "wb", "raw", "time", 1.05, points=c.points)
    assert update_docs(doc, [other], {}, "_h_") == ["new-one"]  # appended, with its markers
    assert doc.read_text().rstrip().endswith("<!-- /scale:new-one -->")


def test_the_runner_knows_every_benchmark_module() -> None:
    import importlib

    scale = importlib.import_module("scale")
    for name, module in scale.BENCHMARKS.items():
        assert (ROOT / "benchmarks" / f"{module}.py").exists(), name
        assert callable(getattr(importlib.import_module(module), "scale", None)), name
    assert issubclass(_scale.Unavailable, Exception)
