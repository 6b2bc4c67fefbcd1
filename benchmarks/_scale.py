"""Cost curves: one cost measured at several sizes, workbench against the raw library it
wraps, in the same run; a table, the ratio at each size, a PNG of each curve.

A scale benchmark is a module in ``benchmarks/`` with a function
``scale(options: ScaleOptions) -> list[Curve]`` and an entry in ``BENCHMARKS`` of
``benchmarks/scale.py`` (``make bench-scale`` runs them all). It measures both sides in
the same run, interleaved (:func:`interleave`), and returns one :class:`Curve` per thing
it varies (data on local disk, data on S3, ...), each with one :class:`Point` per size.
Everything else is shared: the tables printed, the ratio and its spread, the targets,
the PNG plots and the JSON of every sample (``docs/performance/<curve>.png|json``), and
the tables in docs/performance.md between ``<!-- scale:<curve> -->`` markers.

Ratios: ``kind="speed"`` is raw time / workbench time (workbench's throughput as a share
of the raw library's: at least the target is good), ``kind="time"`` is workbench time /
raw time (at most the target is good). The ratio of the medians is reported, and as its
spread the lowest and highest ratio of the runs paired by round (each round runs both
sides back to back, so a paired ratio cancels what the shared machine did meanwhile).
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

WORKBENCH = "workbench"
RAW = "raw"


class Unavailable(Exception):
    """Raised by a benchmark that cannot run on this machine (with the reason)."""


@dataclass
class ScaleOptions:
    """What every scale benchmark is told: how hard to try, where to write."""

    #: smaller sizes and fewer repeats (a smoke run), not for published figures
    quick: bool = False
    #: multiplies each benchmark's default repeats (at least 1 repeat is always run)
    repeat_factor: float = 1.0
    out: Path = Path("docs/performance")

    def repeats(self, default: int) -> int:
        return max(1, round(default * self.repeat_factor)) if not self.quick else 1


@dataclass
class Point:
    """One size: seconds of each round, for workbench, the raw library, and any others."""

    size: str  # the label in tables: "100 MB", "4 jobs"
    x: float  # its position on the x axis
    samples: dict[str, list[float]]  # series name -> seconds, one per round (plotted)
    note: str = ""
    #: more measurements per round, in the tables only (e.g. the planning part of a load)
    details: dict[str, list[float]] = field(default_factory=dict)

    def median(self, series: str) -> float:
        values = self.samples.get(series) or self.details[series]
        return statistics.median(values)


@dataclass
class Curve:
    key: str  # file name and docs marker: "data-local"
    title: str
    x_label: str
    workbench: str  # how the workbench series is called in tables: "workbench.data.load"
    raw: str  # and the raw library's: "dask.dataframe.read_parquet"
    kind: Literal["speed", "time"]
    target: float
    target_from: float | None = None  # the target applies from this x on (None: everywhere)
    y_label: str = "seconds"
    unit: Literal["s", "ms"] = "s"  # of the times in tables and plots (samples stay seconds)
    logx: bool = False
    points: list[Point] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    elapsed: float = 0.0  # seconds the benchmark took to measure this curve
    #: details not in seconds: name -> (unit label, factor from the stored value)
    detail_units: dict[str, tuple[str, float]] = field(default_factory=dict)

    # -- ratios ----------------------------------------------------------------------------
    def _ratio(self, wb: float, raw: float) -> float:
        return raw / wb if self.kind == "speed" else wb / raw

    def ratio(self, p: Point) -> float:
        return self._ratio(p.median(WORKBENCH), p.median(RAW))

    def paired(self, p: Point) -> list[float]:
        return [
            self._ratio(w, r) for w, r in zip(p.samples[WORKBENCH], p.samples[RAW], strict=False)
        ]

    def applies(self, p: Point) -> bool:
        return self.target_from is None or p.x >= self.target_from

    def meets(self, p: Point) -> bool:
        r = self.ratio(p)
        return r >= self.target if self.kind == "speed" else r <= self.target

    @property
    def target_text(self) -> str:
        sign = ">=" if self.kind == "speed" else "<="
        where = f" from {self.target_from:g}" if self.target_from is not None else ""
        what = "raw/workbench time" if self.kind == "speed" else "workbench/raw time"
        return f"{what} {sign} {self.target:g}{where}"

    # -- output ----------------------------------------------------------------------------
    @property
    def _factor(self) -> float:
        return 1000.0 if self.unit == "ms" else 1.0

    def _spread(self, values: list[float]) -> str:
        return _spread([v * self._factor for v in values])

    def table(self) -> str:
        """A markdown table: one row per size."""
        u = self.unit
        head = (
            f"| {self.x_label} | {self.raw} ({u}) | {self.workbench} ({u}) | ratio | "
            "paired ratios (min-max) | target |\n| --- | --- | --- | --- | --- | --- |"
        )
        rows = []
        for p in self.points:
            raw, wb = p.samples[RAW], p.samples[WORKBENCH]
            paired = self.paired(p)
            verdict = ("met" if self.meets(p) else "**missed**") if self.applies(p) else "-"
            rows.append(
                f"| {p.size} | {self._spread(raw)} | {self._spread(wb)} | {self.ratio(p):.3f} | "
                f"{min(paired):.3f}-{max(paired):.3f} | {verdict} |"
            )
        return "\n".join([head, *rows])

    def extra_table(self) -> str:
        """Other series and details measured alongside (medians), if any."""
        others = sorted({s for p in self.points for s in p.samples} - {WORKBENCH, RAW})
        others += sorted({s for p in self.points for s in p.details})
        if not others:
            return ""
        units = {s: self.detail_units.get(s, (self.unit, self._factor)) for s in others}
        head = f"| {self.x_label} | " + " | ".join(f"{s} ({units[s][0]})" for s in others) + " |"
        sep = "| --- |" + " --- |" * len(others)
        rows = []
        for p in self.points:
            values = {**p.samples, **p.details}
            cells = [
                _spread([v * units[s][1] for v in values[s]]) if s in values else "-"
                for s in others
            ]
            rows.append(f"| {p.size} | " + " | ".join(cells) + " |")
        return "\n".join([head, sep, *rows])

    def markdown(self, png: str | None = None) -> str:
        n = {len(p.samples[RAW]) for p in self.points}
        rounds = "/".join(str(k) for k in sorted(n))
        parts = [
            f"**{self.title}** ({rounds} interleaved rounds per size; target: {self.target_text}; "
            f"medians, min-max in brackets)",
            "",
            self.table(),
        ]
        extra = self.extra_table()
        if extra:
            parts += ["", extra]
        if self.notes:
            parts += ["", *[f"- {note}" for note in self.notes]]
        if png:
            parts += ["", f"![{self.title}]({png})"]
        return "\n".join(parts).rstrip() + "\n"

    def plot(self, path: Path) -> Path | None:
        """Seconds per size for each series (left) and the ratio with its target (right)."""
        try:
            import matplotlib

            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
        except ImportError:
            print("  (no plot: matplotlib is not installed)")
            return None
        xs = [p.x for p in self.points]
        fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8))
        others = sorted({s for p in self.points for s in p.samples} - {WORKBENCH, RAW})
        series = [RAW, WORKBENCH, *others]
        for s in series:
            pts = [p for p in self.points if s in p.samples]
            label = {RAW: self.raw, WORKBENCH: self.workbench}.get(s, s)
            f = self._factor
            med = [p.median(s) * f for p in pts]
            lo = [m - min(p.samples[s]) * f for m, p in zip(med, pts, strict=True)]
            hi = [max(p.samples[s]) * f - m for m, p in zip(med, pts, strict=True)]
            left.errorbar(
                [p.x for p in pts], med, yerr=[lo, hi], marker="o", capsize=3, label=label
            )
        times = [v for p in self.points for vs in p.samples.values() for v in vs]
        if times and min(times) > 0 and max(times) / min(times) > 30:
            left.set_yscale("log")  # sizes that span orders of magnitude
        left.set_xlabel(self.x_label)
        left.set_ylabel(self.y_label)
        left.legend(fontsize=8)
        ratios = [self.ratio(p) for p in self.points]
        # the ratio of medians can lie outside the paired ratios when a side has fewer rounds
        lows = [max(0.0, r - min(self.paired(p))) for r, p in zip(ratios, self.points, strict=True)]
        highs = [
            max(0.0, max(self.paired(p)) - r) for r, p in zip(ratios, self.points, strict=True)
        ]
        right.errorbar(xs, ratios, yerr=[lows, highs], marker="o", capsize=3, color="C1")
        right.axhline(self.target, linestyle="--", color="grey", label=f"target {self.target:g}")
        right.axhline(1.0, linestyle=":", color="black", linewidth=0.8)
        right.set_xlabel(self.x_label)
        right.set_ylabel("raw / workbench time" if self.kind == "speed" else "workbench / raw time")
        right.legend(fontsize=8)
        for ax in (left, right):
            if self.logx:
                ax.set_xscale("log")
            ax.set_xticks(xs, [p.size for p in self.points], fontsize=8)
            ax.minorticks_off()
            ax.grid(alpha=0.3)
        fig.suptitle(self.title, fontsize=10)
        fig.tight_layout()
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=90)
        plt.close(fig)
        return path

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["ratios"] = {p.size: self.ratio(p) for p in self.points}
        return data


def _spread(values: list[float]) -> str:
    med = statistics.median(values)
    digits = 4 if med < 0.1 else 3
    if len(values) == 1:
        return f"{med:.{digits}f}"
    return f"{med:.{digits}f} ({min(values):.{digits}f}-{max(values):.{digits}f})"


def interleave(
    runs: dict[str, Callable[[], float | None]], rounds: int, warmup: int = 0
) -> dict[str, list[float]]:
    """Run every callable once per round, in an order that rotates each round (no side
    always runs first, or right after the same other one). A callable returns the seconds
    it measured, or None to be timed here from call to return. The ``warmup`` first
    rounds are run and not kept."""
    names = list(runs)
    out: dict[str, list[float]] = {name: [] for name in names}
    for i in range(warmup + rounds):
        k = i % len(names)
        for name in names[k:] + names[:k]:
            start = time.perf_counter()
            took = runs[name]()
            elapsed = time.perf_counter() - start if took is None else took
            if i >= warmup:
                out[name].append(elapsed)
    return out


def machine() -> str:
    """One line about where the numbers come from."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        load = f"load average {os.getloadavg()[0]:.1f}"
    except OSError:
        load = ""
    return f"{os.cpu_count()} CPUs ({cpu}), {platform.system()} {platform.release()}; {load}"


def write(curves: list[Curve], out: Path) -> dict[str, Path]:
    """PNG and JSON of each curve into ``out``; returns the PNG paths by curve key."""
    out.mkdir(parents=True, exist_ok=True)
    pngs: dict[str, Path] = {}
    for curve in curves:
        (out / f"{curve.key}.json").write_text(json.dumps(curve.to_dict(), indent=1) + "\n")
        png = curve.plot(out / f"{curve.key}.png")
        if png is not None:
            pngs[curve.key] = png
    return pngs


def update_docs(doc: Path, curves: list[Curve], pngs: dict[str, Path], header: str) -> list[str]:
    """Replace each curve's section of ``doc`` (between ``<!-- scale:KEY -->`` and
    ``<!-- /scale:KEY -->``) with its fresh table and plot; returns the keys that had no
    section (they are appended at the end)."""
    text = doc.read_text() if doc.exists() else ""
    missing = []
    for curve in curves:
        png = pngs.get(curve.key)
        rel = os.path.relpath(png, doc.parent) if png is not None else None
        start, end = f"<!-- scale:{curve.key} -->", f"<!-- /scale:{curve.key} -->"
        body = f"{start}\n{header}\n\n{curve.markdown(rel)}{end}"
        if start in text and end in text:
            before, rest = text.split(start, 1)
            _, after = rest.split(end, 1)
            text = before + body + after
        else:
            missing.append(curve.key)
            text = text.rstrip() + "\n\n" + body + "\n"
    doc.write_text(text)
    return missing
