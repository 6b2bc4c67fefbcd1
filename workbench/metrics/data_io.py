"""The data loader's IO as metrics: bytes and reads of ``workbench.data`` loads per protocol.

Each process counts the reads it does itself (``workbench.data.iostats.process_counters``),
so this sampler on a worker reports that worker's reads, and on the notebook host the reads
done there (listing, Parquet footers while planning a load, or loads without a cluster).
"""

from __future__ import annotations

from ..data import iostats
from .base import MetricSpec, SamplerContext, define, series_key
from .rates import CounterRates

READ_RATE = "workbench_data_read_bytes_per_second"
READ_BYTES = "workbench_data_read_bytes_total"
READS = "workbench_data_reads_total"

DATA_IO_SPECS = define(
    MetricSpec(
        READ_RATE,
        "Bytes per second read from storage by workbench.data loads in this process.",
        "bytes/s",
        scope="process",
        tab="Storage",
        plot="Data loader reads",
        label="read",
    ),
    MetricSpec(
        READ_BYTES,
        "Bytes read from storage by workbench.data loads in this process.",
        "bytes",
        kind="counter",
        scope="process",
    ),
    MetricSpec(
        READS,
        "Read calls (file reads, range requests) of workbench.data loads in this process.",
        "count",
        kind="counter",
        scope="process",
    ),
)


class IOStatsSampler:
    """Rates and totals of this process's ``workbench.data`` reads, per protocol."""

    name = "data-io"
    blocking = False  # in-memory counters: cheap enough for the event loop
    metrics = DATA_IO_SPECS

    def __init__(self, context: SamplerContext | None = None) -> None:
        self.reason: str | None = None
        self._rates = CounterRates()
        self._seen: set[str] = set()
        self._last: float | None = None

    def sample(self, now: float) -> dict[str, float]:
        out: dict[str, float] = {}
        for protocol, c in iostats.process_counters().items():
            labels = {"protocol": protocol}
            rate_key = series_key(READ_RATE, labels)
            if protocol not in self._seen:
                self._seen.add(protocol)
                if self._last is not None:  # absent at the last sample: it was 0 then
                    self._rates.rate(rate_key, 0.0, self._last)
            rate = self._rates.rate(rate_key, float(c["bytes"]), now)
            if rate is not None:
                out[rate_key] = rate
            out[series_key(READ_BYTES, labels)] = float(c["bytes"])
            out[series_key(READS, labels)] = float(c["reads"])
        self._last = now
        return out

    def close(self) -> None:
        pass
