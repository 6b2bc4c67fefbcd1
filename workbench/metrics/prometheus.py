"""The store's newest samples in the Prometheus text exposition format (version 0.0.4).

Every series carries the labels of where it was measured: ``worker`` (the worker's
address), ``worker_name`` and ``host`` for worker samples, ``source="notebook"`` and
``host`` for this machine, and ``scheduler`` for all. Sources whose newest sample is
older than ``stale_after`` seconds (a worker that left) are not exported, so
Prometheus marks their series stale instead of repeating old values.

Serve it with the dashboard server (``/metrics``) or on its own::

    server = serve_prometheus(store, port=9464)   # http://127.0.0.1:9464/metrics
"""

from __future__ import annotations

import math
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING

from ..errors import MetricsError
from .base import metric_spec, parse_key

if TYPE_CHECKING:
    from .store import MetricsStore

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_NAME_OK = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")


def _escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _escape_help(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n")


def _format_value(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return repr(float(value))


def render(store: MetricsStore, stale_after: float | None = None) -> str:
    """The exposition text of every fresh series in ``store``."""
    stale_after = stale_after if stale_after is not None else max(15.0, 5 * store.interval)
    now = time.time()
    base = {"scheduler": store.scheduler_address} if store.scheduler_address else {}
    families: dict[str, list[tuple[dict[str, str], float]]] = {}

    def add(key: str, value: float, extra: dict[str, str]) -> None:
        name, labels = parse_key(key)
        if not _NAME_OK.match(name):
            return
        families.setdefault(name, []).append(({**dict(labels), **extra}, value))

    for source in store.snapshot_sources():
        if source.gone:
            continue
        latest = source.ring.latest()
        if latest is None or now - latest[0] > stale_after:
            continue
        if source.kind == "worker":
            extra = {**base, "worker": source.id, "worker_name": source.name, "host": source.host}
        else:
            extra = {**base, "source": "notebook", "host": source.host}
        for key, value in latest[1].items():
            add(key, value, extra)
    latest_cluster = store.cluster.latest()
    if latest_cluster is not None and now - latest_cluster[0] <= stale_after:
        for key, value in latest_cluster[1].items():
            add(key, value, dict(base))

    lines: list[str] = []
    for name in sorted(families):
        spec = metric_spec(name)
        kind = spec.kind if spec else "gauge"
        if kind == "counter" and not name.endswith("_total"):
            kind = "gauge"
        lines.append(f"# HELP {name} {_escape_help(spec.help if spec else name)}")
        lines.append(f"# TYPE {name} {kind}")
        seen: set[str] = set()
        for labels, value in families[name]:
            inner = ",".join(f'{k}="{_escape_label(str(v))}"' for k, v in labels.items())
            line = f"{name}{{{inner}}} {_format_value(value)}" if inner else f"{name} {value}"
            series = line.rsplit(" ", 1)[0]
            if series in seen:  # the same series twice would make the scrape invalid
                continue
            seen.add(series)
            lines.append(line)
    return "\n".join(lines) + "\n"


class PrometheusServer:
    """``/metrics`` over HTTP on its own thread (no Panel, no Tornado needed)."""

    def __init__(self, store: MetricsStore, port: int = 9464, address: str = "127.0.0.1"):
        store_ref = store

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path.split("?")[0] != "/metrics":
                    self.send_error(404, "only /metrics is served here")
                    return
                body = render(store_ref).encode()
                self.send_response(200)
                self.send_header("Content-Type", CONTENT_TYPE)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        try:
            self.httpd = ThreadingHTTPServer((address, port), Handler)
        except OSError as exc:
            raise MetricsError(
                f"cannot serve Prometheus metrics on {address}:{port} ({exc.strerror or exc}); "
                "the port is probably in use: choose another with --prometheus-port"
            ) from exc
        self.httpd.daemon_threads = True
        self.address = address
        self.port = int(self.httpd.server_address[1])
        self._thread = threading.Thread(
            target=self.httpd.serve_forever, name="workbench-prometheus", daemon=True
        )
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://{self.address}:{self.port}/metrics"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def serve_prometheus(
    store: MetricsStore, port: int = 9464, address: str = "127.0.0.1"
) -> PrometheusServer:
    """Serve ``store`` at ``http://address:port/metrics`` until ``close()``."""
    return PrometheusServer(store, port, address)
