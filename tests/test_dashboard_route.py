"""Workbench's own dashboard route (``clusters/<id>/view/...``) against ``jupyter lab`` as
users start it: what reaches the upstream, and what a squatter on a freed port gets.

jupyter-server-proxy's ``/proxy/<port>/`` forwards the browser's Cookie and Authorization
to whatever listens on the port (jupyter-server-proxy #358, #590). Here an upstream that
records every header it is sent (HTTP and websocket) shows that none of Jupyter's
credentials leave the server, and another process listening on the port of a stopped
cluster (127.0.0.1 and ::1) gets nothing: the route answers 404 once the record is gone,
and, for a record still there, refuses the squatter's certificate before sending a byte
of the request.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import ssl
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tornado import httpclient, httpserver, netutil, web, websocket
from tornado.ioloop import IOLoop

from workbench.clusters import ClusterControl, ClusterRecord, RecordStore

from ._lab_fixtures import JupyterProcess

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("stop_clusters_after")]

COOKIE = "username-127-0-0-1=Zq7-cookie-secret; _xsrf=Zq7-xsrf-secret"
CREDENTIAL_HEADERS = ("cookie", "authorization", "x-xsrftoken")


class Recorder:
    """A real Tornado server: ``/status`` answers a page (and tries to set a cookie),
    ``/ws`` echoes websocket messages; every request's headers are kept."""

    def __init__(self) -> None:
        self.seen: list[dict[str, str]] = []
        seen = self.seen

        class Page(web.RequestHandler):
            def get(self) -> None:
                seen.append({k.lower(): v for k, v in self.request.headers.get_all()})
                self.set_header("Set-Cookie", "planted=Zq7-from-upstream; Path=/")
                self.finish(f"<html>upstream page {self.request.uri}</html>")

        class Echo(websocket.WebSocketHandler):
            def check_origin(self, origin: str) -> bool:
                return True

            def select_subprotocol(self, subprotocols: list[str]) -> str | None:
                return subprotocols[0] if subprotocols else None

            def open(self) -> None:
                seen.append({k.lower(): v for k, v in self.request.headers.get_all()})

            def on_message(self, message: str | bytes) -> None:
                self.write_message(message, binary=isinstance(message, bytes))

        self.ready = threading.Event()
        self.port = 0

        def serve() -> None:
            asyncio.set_event_loop(asyncio.new_event_loop())
            self.loop = IOLoop.current()
            app = web.Application([(r"/status", Page), (r"/ws", Echo)])
            server = httpserver.HTTPServer(app)
            sockets = netutil.bind_sockets(0, "127.0.0.1")
            self.port = sockets[0].getsockname()[1]
            server.add_sockets(sockets)
            self.ready.set()
            self.loop.start()

        self.thread = threading.Thread(target=serve, daemon=True)
        self.thread.start()
        self.ready.wait(10)

    def close(self) -> None:
        self.loop.add_callback(self.loop.stop)
        self.thread.join(10)


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    r = Recorder()
    yield r
    r.close()


def _get(lab: JupyterProcess, path: str) -> tuple[int, str, dict[str, str]]:
    request = urllib.request.Request(
        lab.url + path,
        headers={
            "Authorization": f"token {lab.token}",
            "Cookie": COOKIE,
            "X-XSRFToken": "Zq7-xsrf-secret",
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status, answer.read().decode(), dict(answer.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(), dict(exc.headers)


def _record(cluster_id: str, link: str, extra: dict[str, Any] | None = None) -> ClusterRecord:
    return ClusterRecord(
        id=cluster_id,
        profile="p",
        backend="local",
        scheduler_address="tcp://127.0.0.1:9",
        dashboard_link=link,
        owner_pid=os.getpid(),
        extra=extra or {},
    )


def test_no_credential_of_jupyters_reaches_the_dashboard(
    lab_process: Any, recorder: Recorder, timings: Any
) -> None:
    lab: JupyterProcess = lab_process("lab")
    RecordStore().add(_record("record0001", f"http://127.0.0.1:{recorder.port}/status"))
    try:
        status, body, headers = _get(lab, "workbench/api/clusters/record0001/view/dask/status?x=1")
        assert status == 200 and "upstream page /status?x=1" in body, (status, body)
        assert "planted" not in json.dumps(headers)  # no cookie set on Jupyter's origin
        (sent,) = recorder.seen
        assert not [h for h in CREDENTIAL_HEADERS if h in sent], sent
        assert sent["host"] == "localhost" and "origin" not in sent and "referer" not in sent
        assert lab.token not in json.dumps(sent) and "Zq7" not in json.dumps(sent)

        async def talk() -> tuple[str, str | None]:
            url = lab.url.replace("http", "ws", 1)
            request = httpclient.HTTPRequest(
                f"{url}workbench/api/clusters/record0001/view/dask/ws",
                headers={"Authorization": f"token {lab.token}", "Cookie": COOKIE},
            )
            started = time.perf_counter()
            conn = await websocket.websocket_connect(request, subprotocols=["bokeh", "Zq7-tok"])
            await conn.write_message("hello through the route")
            echoed = await conn.read_message()
            timings.record(
                "websocket through the route: connect + one echo", time.perf_counter() - started
            )
            chosen = conn.selected_subprotocol
            conn.close()
            return str(echoed), chosen

        echoed, chosen = asyncio.run(talk())
        assert echoed == "hello through the route" and chosen == "bokeh"
        sent = recorder.seen[-1]
        assert not [h for h in CREDENTIAL_HEADERS if h in sent], sent
        # Bokeh's session token travels as a subprotocol: passed on as the page asked
        offered = [p.strip() for p in sent["sec-websocket-protocol"].split(",")]
        assert offered == ["bokeh", "Zq7-tok"], sent
        assert sent["origin"] == "http://localhost"
    finally:
        RecordStore().remove("record0001")


class Squatter:
    """Another program listening on a port: records the bytes of every connection; with
    ``tls``, it speaks TLS with a certificate of its own (another cluster's, say)."""

    def __init__(self, host: str, port: int, tls: ssl.SSLContext | None = None) -> None:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.tls = tls
        self.host = host
        self.sock = socket.socket(family)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, port))
        self.sock.listen(8)
        self.sock.settimeout(0.2)
        self.received: list[bytes] = []
        self.refused_handshakes: list[str] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            if self.tls is not None:
                try:
                    conn = self.tls.wrap_socket(conn, server_side=True)
                except (OSError, ssl.SSLError) as exc:  # the route refuses our certificate
                    self.refused_handshakes.append(str(exc))
                    continue
            with conn:
                conn.settimeout(2)
                data = b""
                try:
                    while chunk := conn.recv(65536):
                        data += chunk
                except OSError:
                    pass
                self.received.append(data)

    def close(self) -> None:
        self.stop.set()
        self.thread.join(5)
        self.sock.close()


def _ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


def _own_certificate(tmp_path: Any) -> ssl.SSLContext:
    """A TLS server context with a certificate that is not the cluster's (another
    cluster's credentials: the same kind, another CA)."""
    from distributed.security import Security

    other = Security.temporary()
    cert = tmp_path / "other.pem"
    cert.write_text(str(other.tls_ca_file))
    key = tmp_path / "other.key"
    key.write_text(str(other.tls_client_key))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(str(cert), str(key))
    return context


def test_a_squatter_on_a_stopped_clusters_port_gets_nothing(
    lab_process: Any, small_profile: str, tmp_path: Any
) -> None:
    """Two squatters in turn on the port of a cluster that stopped: one that speaks no TLS,
    one with a certificate of its own (another cluster's)."""
    lab: JupyterProcess = lab_process("lab")
    reply = lab.request("POST", "workbench/api/clusters", {"profile": small_profile})
    assert reply.status == 201, reply.data
    cid = reply.data["id"]
    record = ClusterControl().get(cid)
    link = record.dashboard_link or ""
    assert link.startswith("https://127.0.0.1:"), link
    status, body, _ = _get(lab, f"workbench/api/clusters/{cid}/view/dask/status")
    assert status == 200 and "bokeh" in body.lower()
    port = int(link.split(":")[2].split("/")[0])
    credentials = {p: Path(p).read_bytes() for p in set(record.extra["security"].values())}
    assert lab.request("DELETE", f"workbench/api/clusters/{cid}").status == 200

    for squatter_tls in (False, True):
        tls = _own_certificate(tmp_path) if squatter_tls else None
        squatters = [Squatter("127.0.0.1", port, tls)]
        if _ipv6_loopback():
            squatters.append(Squatter("::1", port, tls))
        try:
            _squat(lab, cid, record, credentials)
        finally:
            for squatter in squatters:
                squatter.close()
        _check_squatters(lab, squatters, squatter_tls)


def _squat(
    lab: JupyterProcess, cid: str, record: ClusterRecord, credentials: dict[str, bytes]
) -> None:
    # The record is gone: the route says the cluster stopped, and connects nowhere.
    status, body, _ = _get(lab, f"workbench/api/clusters/{cid}/view/dask/status")
    assert status == 404 and "stopped" in body, (status, body)
    # A record and credentials left behind (an owner killed before it could remove
    # them): the squatter cannot show the cluster's certificate, so the route sends it
    # no request at all.
    RecordStore().add(record)
    for path, data in credentials.items():
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
        with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as f:
            f.write(data)
    try:
        status, body, _ = _get(lab, f"workbench/api/clusters/{cid}/view/dask/status")
    finally:
        RecordStore().remove(cid)
    assert status == 502 and "did not prove it is the cluster's own" in body, (status, body)
    time.sleep(2.5)  # the squatters finish reading


def _check_squatters(lab: JupyterProcess, squatters: list[Squatter], squatter_tls: bool) -> None:
    got = b"".join(b for s in squatters for b in s.received)
    print(
        "squatters" + (" with their own certificate:" if squatter_tls else ", plain:"),
        {
            s.host: {
                "bytes received": [len(b) for b in s.received],
                "handshakes refused": s.refused_handshakes,
            }
            for s in squatters
        },
    )
    for secret in (lab.token.encode(), b"Zq7", b"Cookie", b"Authorization", b"GET /"):
        assert secret not in got, secret
    if len(squatters) > 1:
        assert squatters[1].received == squatters[1].refused_handshakes == []  # never ::1
    if squatter_tls:  # the route refused the squatter's certificate: nothing decrypted
        assert squatters[0].received == [] and squatters[0].refused_handshakes
