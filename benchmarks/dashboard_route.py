"""The dashboard route's cost: workbench's own route vs jupyter-server-proxy, same pane.

One ``jupyter server`` (a process of its own, workbench and jupyter-server-proxy enabled)
and an upstream that serves ``/bytes/<n>`` and a websocket echo at ``/ws``, as a Bokeh
dashboard serves pages and its websocket. Each request and each websocket message goes
through both, interleaved:

- ``proxy``: ``{base}proxy/<port>/...`` (jupyter-server-proxy, plain HTTP upstream);
- ``route``: ``{base}workbench/api/clusters/<id>/view/dask/...`` to the same plain upstream;
- ``route+mTLS``: the same route to a copy of the upstream that serves HTTPS and asks for
  the cluster's client certificate (what every cluster with TLS gets).

Printed: median milliseconds per HTTP request and per websocket round trip, at three
sizes, and the ratio to the proxy (target: route within 1.1x).

    python benchmarks/dashboard_route.py [--rounds 200] [--json FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import shutil
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

SIZES = (1 << 10, 64 << 10, 1 << 20)
WS_SIZES = (100, 10 << 10, 1 << 20)


def serve_upstream(tls: ssl.SSLContext | None) -> int:
    """A Tornado app in a thread: /bytes/<n> and a websocket echo at /ws; its port."""
    from tornado import httpserver, netutil, web, websocket
    from tornado.ioloop import IOLoop

    class Bytes(web.RequestHandler):
        def get(self, n: str) -> None:
            self.set_header("Content-Type", "application/octet-stream")
            self.finish(b"x" * int(n))

    class Echo(websocket.WebSocketHandler):
        def check_origin(self, origin: str) -> bool:
            return True

        def on_message(self, message: str | bytes) -> None:
            self.write_message(message, binary=isinstance(message, bytes))

    ready = threading.Event()
    port: list[int] = []

    def run() -> None:
        asyncio.set_event_loop(asyncio.new_event_loop())
        app = web.Application(
            [(r"/bytes/(\d+)", Bytes), (r"/ws", Echo)], websocket_max_message_size=8 << 20
        )
        server = httpserver.HTTPServer(app, ssl_options=tls)
        sockets = netutil.bind_sockets(0, "127.0.0.1")
        port.append(sockets[0].getsockname()[1])
        server.add_sockets(sockets)
        ready.set()
        IOLoop.current().start()

    threading.Thread(target=run, daemon=True).start()
    ready.wait(10)
    return port[0]


def credentials(folder: Path) -> dict[str, str]:
    """A cluster's credential files, as workbench makes them (one certificate, its CA)."""
    from distributed.security import Security

    temporary = Security.temporary()
    cert, key = folder / "cert.pem", folder / "key.pem"
    cert.write_text(str(temporary.tls_ca_file))
    key.write_text(str(temporary.tls_client_key))
    return {"tls_ca_file": str(cert), "tls_client_cert": str(cert), "tls_client_key": str(key)}


def mtls_server_context(paths: dict[str, str]) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=paths["tls_ca_file"])
    context.load_cert_chain(paths["tls_client_cert"], paths["tls_client_key"])
    context.verify_mode = ssl.CERT_REQUIRED  # as workbench.clusters.dashboard_tls does
    return context


def start_server(env: dict[str, str], root: Path) -> tuple[subprocess.Popen[bytes], str, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    token = secrets.token_hex(16)
    args = [
        str(Path(sys.executable).parent / "jupyter"),
        "server",
        "--no-browser",
        "--ServerApp.ip=127.0.0.1",
        f"--ServerApp.port={port}",
        f"--IdentityProvider.token={token}",
        f"--ServerApp.root_dir={root}",
        "--ServerApp.log_level=WARN",
    ]
    if os.getuid() == 0:
        args.append("--allow-root")
    proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), 1):
                break
        except OSError:
            time.sleep(0.3)
    time.sleep(1.0)
    return proc, url, token


async def measure(url: str, token: str, paths: dict[str, str], rounds: int) -> dict[str, Any]:
    import aiohttp

    headers = {"Authorization": f"token {token}"}
    out: dict[str, Any] = {"http": {}, "ws": {}}
    async with aiohttp.ClientSession(headers=headers) as session:
        for size in SIZES:
            times: dict[str, list[float]] = {name: [] for name in paths}
            for _ in range(rounds):
                for name, base in paths.items():
                    start = time.perf_counter()
                    async with session.get(f"{url}{base}bytes/{size}") as answer:
                        body = await answer.read()
                    times[name].append(time.perf_counter() - start)
                    assert answer.status == 200 and len(body) == size, (name, answer.status)
            out["http"][size] = {k: statistics.median(v) * 1000 for k, v in times.items()}
        for size in WS_SIZES:
            payload = b"y" * size
            times = {name: [] for name in paths}
            sockets = {
                name: await session.ws_connect(
                    f"{url.replace('http', 'ws', 1)}{base}ws", max_msg_size=0
                )
                for name, base in paths.items()
            }
            for _ in range(rounds):
                for name, ws in sockets.items():
                    start = time.perf_counter()
                    await ws.send_bytes(payload)
                    echoed = await ws.receive_bytes()
                    times[name].append(time.perf_counter() - start)
                    assert len(echoed) == size
            for ws in sockets.values():
                await ws.close()
            out["ws"][size] = {k: statistics.median(v) * 1000 for k, v in times.items()}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="wb-bench-route-"))
    env = {
        **os.environ,
        "WORKBENCH_STATE_DIR": str(work / "state"),
        "WORKBENCH_CONFIG_DIR": str(work / "config"),
        "JUPYTER_CONFIG_DIR": str(work / "jupyter"),
        "JUPYTER_RUNTIME_DIR": str(work / "runtime"),
    }
    os.environ.update({k: env[k] for k in ("WORKBENCH_STATE_DIR", "WORKBENCH_CONFIG_DIR")})
    from workbench.clusters import ClusterRecord, RecordStore

    (work / "creds").mkdir()
    (work / "root").mkdir()
    paths = credentials(work / "creds")
    plain_port = serve_upstream(None)
    mtls_port = serve_upstream(mtls_server_context(paths))
    me = os.getpid()
    for cid, link, extra in (
        ("bench00plain", f"http://127.0.0.1:{plain_port}/status", {}),
        ("bench000mtls", f"https://127.0.0.1:{mtls_port}/status", {"security": paths}),
    ):
        RecordStore().add(
            ClusterRecord(
                id=cid,
                profile="bench",
                backend="local",
                scheduler_address="tcp://127.0.0.1:9",
                dashboard_link=link,
                owner_pid=me,
                extra=extra,
            )
        )
    proc, url, token = start_server(env, work / "root")
    try:
        bases = {
            "proxy": f"proxy/{plain_port}/",
            "route": "workbench/api/clusters/bench00plain/view/dask/",
            "route+mTLS": "workbench/api/clusters/bench000mtls/view/dask/",
        }
        result = asyncio.run(measure(url, token, bases, args.rounds))
    finally:
        proc.terminate()
        proc.wait(30)
        shutil.rmtree(work, ignore_errors=True)
    print(f"dashboard route vs jupyter-server-proxy, median of {args.rounds} (ms; ratio to proxy)")
    for kind, label, sizes in (
        ("http", "HTTP GET", SIZES),
        ("ws", "websocket round trip", WS_SIZES),
    ):
        print(f"  {label}")
        for size in sizes:
            row = result[kind][size]
            proxy = row["proxy"]
            cells = "  ".join(f"{name} {ms:7.2f} ({ms / proxy:4.2f}x)" for name, ms in row.items())
            print(f"    {size:>8} B  {cells}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
