"""Secure by default (issue 14), against the real components.

- every workbench REST handler is authorized (jupyter_server's ``@authorized``) with a
  declared resource and the right action, by construction (the base handler), checked
  by walking the live server's router and with a deny-writes Authorizer over real HTTP;

The TLS cases (a client without the cluster's credentials is refused, one with them
works) are in the backend contract suite, tests/test_contract.py.
"""

from __future__ import annotations

import json
import os
from typing import Any, ClassVar

import pytest
from jupyter_server.auth.authorizer import Authorizer
from tornado import web

from workbench.clusters import ClusterControl
from workbench.server import API_PREFIX
from workbench.server.base import AUTH_MARK

from .test_lab_server import METHODS, _workbench_routes

pytestmark = pytest.mark.usefixtures("stop_clusters_after")


class DenyWrites(Authorizer):
    """A read-only collaborator: reads are allowed, every change or launch is refused.
    Remembers what it was asked."""

    asked: list[tuple[str, str]] = []
    #: Off: everything is allowed (the other tests of this module use the same server).
    deny = False

    #: Resources refused even for reading (a role without the dashboards, say).
    denied: ClassVar[set[str]] = set()

    def is_authorized(self, handler: Any, user: Any, action: str, resource: str) -> bool:
        DenyWrites.asked.append((action, resource))
        if resource in DenyWrites.denied:
            return False
        return action == "read" or not DenyWrites.deny


@pytest.fixture
def jp_server_config() -> Any:
    from traitlets.config import Config

    return Config(
        {
            "ServerApp": {
                "jpserver_extensions": {"workbench.server": True, "jupyter_server_proxy": True},
                "authorizer_class": DenyWrites,
            }
        }
    )


def unauthorized_methods(serverapp: Any) -> list[str]:
    """'METHOD pattern (Handler): why' for each implemented method of a workbench route that
    is not authorized with a declared resource."""
    problems = []
    for pattern, handler in _workbench_routes(serverapp):
        resource = getattr(handler, "auth_resource", None)
        for method in METHODS:
            fn = getattr(handler, method)
            if fn is getattr(web.RequestHandler, method):
                continue
            where = f"{method.upper()} {pattern} ({handler.__name__})"
            if not getattr(fn, AUTH_MARK, None):
                problems.append(f"{where}: not @authorized")
            elif not (isinstance(resource, str) and resource.startswith("workbench:")):
                problems.append(f"{where}: no auth_resource of its own ({resource!r})")
    return problems


def test_every_registered_handler_is_authorized(jp_serverapp: Any) -> None:
    routes = _workbench_routes(jp_serverapp)
    assert len(routes) >= 18
    assert unauthorized_methods(jp_serverapp) == []
    actions = {
        (h.__name__, m): getattr(getattr(h, m), AUTH_MARK)
        for _, h in routes
        for m in METHODS
        if getattr(h, m) is not getattr(web.RequestHandler, m)
    }
    assert actions[("ClustersHandler", "get")] == "read"
    assert actions[("ClustersHandler", "post")] == "execute"  # a launch
    assert actions[("ClusterDashboardHandler", "post")] == "execute"  # starts a process
    assert actions[("ClusterHandler", "delete")] == "write"
    assert actions[("ScaleHandler", "post")] == "write"
    assert actions[("TemplateHandler", "post")] == "write"
    assert actions[("AutoConnectHandler", "put")] == "write"
    assert {a for (_, m), a in actions.items() if m == "get"} == {"read"}


async def test_the_dashboard_route_asks_the_authorizer(jp_fetch: Any) -> None:
    """A user whose role does not include the dashboards gets neither a page nor a
    websocket of a cluster's view (the route never even looks the cluster up)."""
    DenyWrites.denied = {"workbench:dashboards"}
    try:
        for headers in ({}, {"Upgrade": "websocket", "Connection": "Upgrade"}):
            reply = await jp_fetch(
                "workbench",
                "api",
                "clusters",
                "abc",
                "view",
                "dask",
                "status",
                headers=headers,
                raise_error=False,
            )
            assert reply.code == 403, (headers, reply.code)
        assert ("read", "workbench:dashboards") in DenyWrites.asked
    finally:
        DenyWrites.denied = set()


def test_the_walk_catches_a_handler_without_authorization(jp_serverapp: Any) -> None:
    from jupyter_server.base.handlers import APIHandler
    from jupyter_server.utils import url_path_join

    class Open(APIHandler):  # not a WorkbenchHandler: nothing asks the Authorizer
        @web.authenticated
        async def get(self) -> None:
            self.finish("{}")

    path = url_path_join(jp_serverapp.base_url, API_PREFIX, "open-probe")
    jp_serverapp.web_app.add_handlers(".*$", [(path, Open)])
    assert unauthorized_methods(jp_serverapp) == [f"GET {path}$ (Open): not @authorized"]


async def test_a_deny_writes_authorizer_is_asked_for_every_request(
    api: Any, user_profiles: Any
) -> None:
    from ._lab_fixtures import SMALL_CLUSTER

    user_profiles(
        "profiles:\n  tiny:\n    backend: local\n    options: "
        + str(dict(SMALL_CLUSTER)).replace("'", '"')
        + "\n"
    )
    DenyWrites.asked.clear()
    DenyWrites.deny = True
    try:
        await _refused_writes(api)
    finally:
        DenyWrites.deny = False


async def _refused_writes(api: Any) -> None:
    assert (await api("GET", "clusters")).status == 200
    assert (await api("GET", "profiles")).status == 200
    assert ("read", "workbench:clusters") in DenyWrites.asked
    assert ("read", "workbench:profiles") in DenyWrites.asked
    refused = [
        ("POST", "clusters", {"profile": "tiny"}, ("execute", "workbench:clusters")),
        ("DELETE", "clusters/abc", None, ("write", "workbench:clusters")),
        ("POST", "clusters/abc/scale", {"n": 2}, ("write", "workbench:clusters")),
        ("POST", "clusters/abc/adapt", {}, ("write", "workbench:clusters")),
        ("POST", "clusters/abc/dashboard", {}, ("execute", "workbench:dashboards")),
        ("PUT", "autoconnect", {"cluster": "abc"}, ("write", "workbench:autoconnect")),
        ("DELETE", "autoconnect", None, ("write", "workbench:autoconnect")),
        (
            "POST",
            "templates/gpu-etl-from-object-storage",
            {"path": "x.ipynb"},
            ("write", "workbench:templates"),
        ),
    ]
    for method, path, body, asked in refused:
        DenyWrites.asked.clear()
        reply = await api(method, path, body=body)
        assert reply.status == 403, (method, path, reply.data)
        assert DenyWrites.asked == [asked], (method, path)
    assert ClusterControl().list() == []  # the refused launch started nothing


# -- no secret value ever shown ------------------------------------------------------------
MARKER = "Zq7MARKERsecret93"
PROFILES = f"""
profiles:
  literal:
    backend: local
    options:
      api_token: {MARKER}
  prologue:
    backend: slurm
    options:
      job_script_prologue: ["export MY_API_TOKEN={MARKER}"]
  args:
    backend: slurm
    options:
      worker_extra_args: ["--password", "{MARKER}"]
  tiny:
    backend: local
    options: {{n_workers: 1, threads_per_worker: 1, memory_limit: 1GiB}}
"""
CATALOG = f"""
datasets:
  sas:
    uri: "abfs://data@acct.dfs.core.windows.net/t.parquet?sv=2022-11-02&sig={MARKER}"
    format: parquet
  presigned:
    uri: "https://b.s3.amazonaws.com/t.parquet?X-Amz-Credential=AKIA&X-Amz-Signature={MARKER}"
    format: parquet
  userpass:
    uri: "s3://user:{MARKER}@minio.local/bucket/t.parquet"
    format: parquet
  options:
    uri: s3://bucket/t.parquet
    format: parquet
    storage_options:
      secret: {MARKER}
      client_kwargs: {{endpoint_url: "http://u:{MARKER}@minio.local:9000"}}
"""


def _cli_out(*args: str) -> str:
    import os
    import subprocess

    from .conftest import WORKBENCH

    out = subprocess.run(
        [*WORKBENCH, *args], env=dict(os.environ), capture_output=True, text=True, timeout=120
    )
    return out.stdout + out.stderr


async def test_a_planted_secret_appears_in_no_output(
    api: Any, user_profiles: Any, workbench_home: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """The marker goes into every input path (profile options, a prologue, worker
    arguments, catalog URIs, storage options, a launch request's options); every output
    is grepped for it: REST bodies, the server log, CLI output, load cells, manifests."""
    import asyncio
    import logging

    from workbench.data.lineage import FileEntry, Manifest
    from workbench.training.tracking import lineage_dict

    caplog.set_level(logging.DEBUG)
    user_profiles(PROFILES)
    (workbench_home / "config" / "catalog.yaml").write_text(CATALOG)
    outputs: dict[str, str] = {}
    for path in ("profiles", "profiles/literal", "profiles/prologue", "datasets"):
        reply = await api("GET", path)
        outputs[f"GET {path}"] = json.dumps(reply.data)
    for name in ("sas", "presigned", "userpass", "options"):
        reply = await api("GET", f"datasets/{name}")
        outputs[f"GET datasets/{name}"] = json.dumps(reply.data)
    assert "sig=REDACTED" in outputs["GET datasets/sas"]
    assert "X-Amz-Signature=REDACTED" in outputs["GET datasets/presigned"]
    launches = [
        {"profile": "literal"},
        {"profile": "prologue"},
        {"profile": "tiny", "options": {"api_token": MARKER}},
        {"profile": "tiny", "options": {"local_directory": f"/tmp/x\nexport TOKEN={MARKER}"}},
        {"profile": "prologue", "options": {"job_script_prologue": [f"export SECRET={MARKER}"]}},
        # a secret where a name was expected: the 400 says what is wrong, not the value
        {"profile": {"password": MARKER}},
        {"profile": "tiny", "options": {"storage": {"clientSecret": MARKER}}},
        {"profile": "tiny", "options": {"headers": f"Authorization: Bearer {MARKER}"}},
    ]
    for body in launches:
        reply = await api("POST", "clusters", body=body)
        # 403: a profile-file setting the sidebar may not change (prologue, directories)
        assert reply.status in (400, 403), reply.data
        outputs[f"POST clusters {body}"[:40]] = json.dumps(reply.data)
    for args in (
        ("profiles", "list"),
        ("profiles", "show", "prologue"),
        ("profiles", "validate", str(workbench_home / "config" / "profiles.yaml")),
        ("data", "list"),
        ("data", "show", "sas"),
        ("data", "show", "options"),
        ("data", "validate"),
    ):
        outputs[" ".join(args)] = await asyncio.to_thread(_cli_out, *args)
    manifest = Manifest(
        load_id="x",
        uri=f"s3://u:{MARKER}@h/b/t.parquet",
        protocol="s3",
        format="parquet",
        files=[FileEntry(f"https://h/b/t.parquet?X-Amz-Signature={MARKER}", size=1)],
        created="now",
        storage_options={"secret": MARKER},
    )
    outputs["manifest"] = manifest.to_json() + manifest.summary() + manifest._repr_html_()
    outputs["lineage for MLflow"] = json.dumps(
        lineage_dict(manifest.to_dict() | {"note": f"https://h/?sig={MARKER}"})
    )
    outputs["server log"] = caplog.text
    leaked = [where for where, text in outputs.items() if MARKER in text]
    around = {
        w: t[max(0, t.index(MARKER) - 200) : t.index(MARKER) + 40]
        for w, t in outputs.items()
        if MARKER in t
    }
    for where, text in around.items():
        print("LEAK", where, repr(text))
    assert leaked == []
    assert ClusterControl().list() == []


# -- the health check sends credentials only to the Jupyter server's own origin ------------
class _Recorder:
    """A real HTTP server that records the headers it gets; ``/redirect`` sends a 302 to
    ``target``."""

    def __init__(self, target: str = "") -> None:
        import http.server
        import threading

        seen: list[dict[str, str]] = []
        self.seen = seen

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                seen.append(dict(self.headers.items()))
                if self.path.startswith("/redirect"):
                    self.send_response(302)
                    self.send_header("Location", target)
                else:
                    self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_health_check_credentials_go_only_to_the_servers_own_origin() -> None:
    from urllib.parse import urljoin

    from workbench.server.probes import fetch

    other = _Recorder()
    own = _Recorder(target=other.url + "after-redirect")
    creds = {"Authorization": "token Zq7-caller-token", "Cookie": "_xsrf=Zq7-cookie"}
    try:
        # Its own origin: the caller's credentials go with the request.
        assert fetch(own.url + "proxy/8787/status", creds, origin=own.url)[0] == 200
        assert own.seen[-1].get("Authorization") == creds["Authorization"]
        # A '//host/...' path (a gateway's dashboard_route may be one) leaves the origin.
        target = urljoin(own.url, "//" + other.url.split("//")[1] + "steal")
        assert target.startswith(other.url)
        assert fetch(target, creds, origin=own.url)[0] == 200
        assert "Authorization" not in other.seen[-1] and "Cookie" not in other.seen[-1]
        # A redirect from its own origin is reported, not followed with the credentials.
        before = len(other.seen)
        code, _ = fetch(own.url + "redirect", creds, origin=own.url)
        assert code == 302 and len(other.seen) == before
        # Without an origin nothing is sent.
        fetch(own.url, creds)
        assert "Authorization" not in own.seen[-1]
    finally:
        own.close()
        other.close()


# -- state and scratch directories of the user's alone ----------------------------------------
OTHER_UID = 65534  # nobody


def _record(cluster_id: str = "unsafe0001") -> Any:
    from workbench.clusters import ClusterRecord

    return ClusterRecord(
        id=cluster_id,
        profile="p",
        backend="local",
        scheduler_address="tcp://127.0.0.1:9",
        owner_pid=1,
    )


@pytest.mark.skipif(os.getuid() != 0, reason="making a directory another user's needs root")
def test_a_state_directory_not_the_users_alone_is_refused(workbench_home: Any) -> None:
    """Another user's state directory, one writable by others, or a symbolic link: nothing
    is written there, and the error says what is wrong and how to fix it. One readable by
    others is made private (only reading was at risk)."""
    import stat

    from workbench.clusters import RecordStore
    from workbench.errors import UnsafeStateError

    state = workbench_home / "state"
    state.mkdir(mode=0o755)
    RecordStore().add(_record("fine000001"))  # 0755: fixed to 0700
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    os.chown(state, OTHER_UID, OTHER_UID)
    with pytest.raises(UnsafeStateError, match=r"belongs to another user .uid 65534") as err:
        RecordStore().add(_record())
    assert "WORKBENCH_STATE_DIR" in str(err.value) and str(state) in str(err.value)
    os.chown(state, os.getuid(), os.getgid())
    os.chmod(state, 0o777)
    with pytest.raises(UnsafeStateError, match=r"writable by others \(mode 0777\)") as err:
        RecordStore().add(_record())
    assert f"chmod 700 {state}" in str(err.value)
    os.chmod(state, 0o700)
    clusters = state / "clusters"
    clusters.rename(state / "real-clusters")
    clusters.symlink_to(state / "real-clusters")
    with pytest.raises(UnsafeStateError, match="is a symbolic link"):
        RecordStore().add(_record())
    assert not (state / "real-clusters" / "unsafe0001.json").exists()
    # a log file someone else made in the logs folder is not appended to
    from workbench.private import open_private_log

    logs = state / "logs"
    logs.mkdir(mode=0o700)
    planted = logs / "server-errors.log"
    planted.write_text("")
    os.chown(planted, OTHER_UID, OTHER_UID)
    with pytest.raises(UnsafeStateError, match="belongs to another user"):
        open_private_log(planted)


@pytest.mark.skipif(os.getuid() != 0, reason="making a directory another user's needs root")
def test_a_squatted_scratch_directory_is_refused(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another user who made $TMPDIR/workbench-<uid> first does not get the workers' spilled
    data: the launch stops with a clear error."""
    from workbench.errors import UnsafeStateError
    from workbench.private import private_tmp_dir

    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr("tempfile.tempdir", None)  # read TMPDIR again
    scratch = private_tmp_dir("dask-scratch")
    assert scratch == tmp_path / f"workbench-{os.getuid()}" / "dask-scratch"
    assert oct(scratch.parent.stat().st_mode & 0o777) == "0o700"
    os.chown(scratch.parent, OTHER_UID, OTHER_UID)
    with pytest.raises(UnsafeStateError, match="belongs to another user"):
        private_tmp_dir("dask-scratch")
    monkeypatch.setattr("tempfile.tempdir", None)


def _http_address(dask_worker: Any) -> tuple[str, int]:
    (sock,) = dask_worker.http_server._sockets.values()
    host, port = sock.getsockname()[:2]
    return str(host), int(port)


@pytest.mark.slow
def test_local_workers_spill_into_a_directory_of_the_users_alone(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import ssl
    import stat
    import urllib.error
    import urllib.request

    import workbench

    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr("tempfile.tempdir", None)
    handle = workbench.launch(
        "local-cpu",
        wait=1,
        progress="off",
        n_workers=1,
        threads_per_worker=1,
        memory_limit="1GiB",
        dashboard_address="127.0.0.1:0",
    )
    try:
        (where,) = handle.client.run(lambda dask_worker: dask_worker.local_directory).values()
        # the worker's own HTTP server (HTTPS with the cluster's certificate) answers
        # /health only: no /metrics or pages for whoever reaches the port
        ((host, port),) = handle.client.run(_http_address).values()
        assert host == "127.0.0.1"
        anyone = ssl.create_default_context()
        anyone.check_hostname, anyone.verify_mode = False, ssl.CERT_NONE
        url = f"https://{host}:{port}"
        with urllib.request.urlopen(f"{url}/health", timeout=10, context=anyone) as r:
            assert r.read() == b"ok"
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(f"{url}/metrics", timeout=10, context=anyone)
        assert err.value.code == 404
        err.value.close()
    finally:
        handle.close()
        monkeypatch.setattr("tempfile.tempdir", None)
    private = tmp_path / f"workbench-{os.getuid()}"
    assert str(where).startswith(str(private / "dask-scratch")), where
    for folder in (private, private / "dask-scratch"):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700, folder
        assert folder.stat().st_uid == os.getuid()
    assert not (tmp_path / "dask-scratch-space").exists()


# -- private state, Jupyter's tokens not inherited, exact ids for stop/scale-------------------
@pytest.mark.slow
def test_detached_cluster_state_is_private_and_tokens_are_not_inherited(
    workbench_home: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import os
    import stat

    import psutil

    from workbench.clusters.detached import launch_detached
    from workbench.errors import ClusterNotFoundError

    from ._lab_fixtures import SMALL_CLUSTER

    monkeypatch.setenv("JUPYTER_TOKEN", "Zq7-jupyter-token")
    monkeypatch.setenv("JUPYTERHUB_API_TOKEN", "Zq7-hub-token")
    os.umask(0o022)
    record = launch_detached("local-cpu", dict(SMALL_CLUSTER), timeout=120)
    control = ClusterControl()
    try:
        for pid in (record.owner_pid, *(record.watchdog or ())[:1]):
            env = psutil.Process(pid).environ()
            assert "JUPYTER_TOKEN" not in env and "JUPYTERHUB_API_TOKEN" not in env, pid
        state = workbench_home / "state"
        bad = []
        for root, dirs, files in os.walk(state):
            for name in dirs:
                mode = stat.S_IMODE(os.stat(os.path.join(root, name)).st_mode)
                if mode != 0o700:
                    bad.append(f"{os.path.join(root, name)} {mode:o}")
            for name in files:
                mode = stat.S_IMODE(os.stat(os.path.join(root, name)).st_mode)
                if mode & 0o077:
                    bad.append(f"{os.path.join(root, name)} {mode:o}")
        assert stat.S_IMODE(os.stat(state).st_mode) == 0o700
        assert bad == []
        assert {p.name for p in state.iterdir()} >= {"clusters", "credentials", "logs"}
        # Destructive calls take the exact id only.
        with pytest.raises(ClusterNotFoundError, match="full id"):
            control.stop(record.id[:6])
        with pytest.raises(ClusterNotFoundError, match="full id"):
            control.scale(record.id[:6], 0)
        with pytest.raises(ClusterNotFoundError, match="full id"):
            control.adapt(record.id[:6], 0, 1)
        assert control.info(control.get(record.id[:6]))["workers"] == SMALL_CLUSTER["n_workers"]
        assert control.status(control.get(record.id)) == "running"
    finally:
        control.stop(record.id)
    assert control.list() == []


# -- dashboards: loopback by default, a token anywhere else --------------------------------
def test_dashboard_server_needs_a_token_off_loopback() -> None:
    import urllib.error
    import urllib.request

    from workbench.dashboards.server import DashboardServer
    from workbench.errors import MetricsError
    from workbench.metrics.store import close_store, get_store

    store = get_store(None, interval=0.5)
    try:
        with pytest.raises(MetricsError, match="without a token"):
            DashboardServer(store, 0, "0.0.0.0")
        server = DashboardServer(store, 0, "0.0.0.0", token="Zq7-dash-token")
        try:
            url = server.metrics_url
            with pytest.raises(urllib.error.HTTPError) as refused:
                urllib.request.urlopen(url, timeout=10)
            assert refused.value.code == 401
            refused.value.close()
            with pytest.raises(urllib.error.HTTPError) as wrong:
                urllib.request.urlopen(url + "?token=wrong", timeout=10)
            assert wrong.value.code == 401
            wrong.value.close()
            request = urllib.request.Request(
                url, headers={"Authorization": "Bearer Zq7-dash-token"}
            )
            with urllib.request.urlopen(request, timeout=10) as reply:
                assert reply.status == 200 and b"workbench" in reply.read()
            # The pages ask for the token (Panel's login page), not the dashboards.
            with urllib.request.urlopen(server.url, timeout=10) as page:
                assert "login" in page.url
        finally:
            server.stop()
    finally:
        close_store(None)


def test_doctor_flags_a_profile_without_tls(user_profiles: Any) -> None:
    from workbench.doctor import check_security

    assert check_security().status == "ok"  # the built-in profiles
    user_profiles(
        "profiles:\n  plain:\n    backend: local\n    options: {security: none}\n"
        "  open:\n    backend: slurm\n    options: {dashboard_address: ':8787'}\n"
    )
    check = check_security()
    assert check.status == "warn"
    assert "security: none" in check.summary and "plain" in check.summary
    assert "open (:8787)" in check.summary
    out = _cli_out("doctor")
    assert "security: none" in out and "plain" in out


# -- scale is bounded, launches are capped ---------------------------------------------------
@pytest.mark.slow
async def test_scale_is_bounded_by_max_workers(api: Any, user_profiles: Any) -> None:
    import asyncio

    import workbench
    from workbench.clusters.backend import DEFAULT_MAX_WORKERS
    from workbench.server.clusters import MAX_CONCURRENT_LAUNCHES

    assert DEFAULT_MAX_WORKERS >= 1 and MAX_CONCURRENT_LAUNCHES >= 1
    handle = await asyncio.to_thread(
        workbench.launch,
        "local-cpu",
        wait=1,
        progress="off",
        n_workers=1,
        threads_per_worker=1,
        memory_limit="1GiB",
        dashboard_address="127.0.0.1:0",
        max_workers=2,
    )
    try:
        assert handle.record.max_workers == 2
        with pytest.raises(ValueError, match="max_workers"):
            handle.scale(3)
        with pytest.raises(ValueError, match="max_workers"):
            handle.adapt(0, 5)
        reply = await api("POST", f"clusters/{handle.id}/scale", body={"n": 3})
        assert reply.status == 400 and "max_workers" in reply.data["message"], reply.data
        reply = await api("POST", f"clusters/{handle.id}/adapt", body={"maximum": 100})
        assert reply.status == 400 and "max_workers" in reply.data["message"], reply.data
        reply = await api("POST", f"clusters/{handle.id}/scale", body={"n": 2})
        assert reply.status == 200, reply.data
        assert handle.n_workers() <= 2
    finally:
        await asyncio.to_thread(handle.close)
    # A launch that asks for more than max_workers is refused before anything starts, on
    # every backend with a worker count, and through the REST route too.
    from workbench.clusters.control import ClusterControl
    from workbench.clusters.gateway_options import GatewayOptions
    from workbench.clusters.kubernetes_options import KubernetesOptions
    from workbench.clusters.slurm_options import SLURMOptions
    from workbench.errors import ProfileError

    with pytest.raises(ProfileError, match=r"asks for 3 workers, above max_workers \(2\)"):
        workbench.launch("local-cpu", n_workers=3, max_workers=2, progress="off")
    assert ClusterControl().list() == []
    refused = {
        "slurm jobs x processes": lambda: SLURMOptions(jobs=3, processes=2, cores=2, max_workers=5),
        "slurm jobs x GPUs": lambda: SLURMOptions(jobs=2, gpus_per_job=4, max_workers=7),
        "gateway": lambda: GatewayOptions(address="http://127.0.0.1:1", n_workers=9, max_workers=8),
        "kubernetes groups": lambda: KubernetesOptions(
            n_workers=2, worker_groups={"cpu": {"n_workers": 3}}, max_workers=4
        ),
    }
    for what, make in refused.items():
        with pytest.raises(ValueError, match="above max_workers"):
            make()
            pytest.fail(what)
    assert SLURMOptions(jobs=3, processes=2, cores=2, max_workers=6).launch_workers() == 6
    # max_workers is the profile file's; a request may not raise it (403), nor go above it
    path = user_profiles(
        "profiles:\n  capped:\n    extends: local-cpu\n    options: {max_workers: 4}\n"
    )
    reply = await api("POST", "clusters", body={"profile": "capped", "options": {"n_workers": 5}})
    assert reply.status == 400 and reply.data["problems"] == [
        f"{path} options: the launch asks for 5 workers, above max_workers (4): ask for "
        "fewer, or raise max_workers"
    ], reply.data
    reply = await api("POST", "clusters", body={"profile": "capped", "options": {"max_workers": 8}})
    assert reply.status == 403 and "max_workers" in reply.data["message"], reply.data
    assert ClusterControl().list() == []


async def test_launches_beyond_the_cap_are_refused(
    api: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from workbench.server import clusters

    monkeypatch.setattr(clusters, "_launching", clusters.MAX_CONCURRENT_LAUNCHES)
    reply = await api("POST", "clusters", body={"profile": "local-cpu"})
    assert reply.status == 429 and "in progress" in reply.data["message"], reply.data
    assert ClusterControl().list() == []


# -- template writes: mkstemp in the target directory, ContentsManager on the server --------
def test_new_notebook_never_follows_a_planted_temp_symlink(tmp_path: Any) -> None:
    import os

    from workbench.templates import new_notebook

    victim = tmp_path / "victim.txt"
    victim.write_text("untouched")
    dest = tmp_path / "nb" / "etl.ipynb"
    dest.parent.mkdir()
    # The old predictable temporary name, planted as a link to another file.
    os.symlink(victim, dest.parent / ".etl.ipynb.tmp")
    new_notebook("gpu-etl-from-object-storage", dest)
    assert victim.read_text() == "untouched"
    assert dest.is_file() and not dest.is_symlink()
    assert [p.name for p in dest.parent.iterdir() if p.name.endswith(".tmp")] == [".etl.ipynb.tmp"]


async def test_the_server_creates_notebooks_through_its_contents_manager(
    api: Any, jp_serverapp: Any
) -> None:
    saved: list[str] = []
    cm = jp_serverapp.contents_manager
    hook = cm.pre_save_hook

    def record(model: Any, path: str, contents_manager: Any, **kwargs: Any) -> None:
        saved.append(path)

    cm.pre_save_hook = record
    try:
        reply = await api(
            "POST", "templates/gpu-etl-from-object-storage", body={"path": "work/etl.ipynb"}
        )
    finally:
        cm.pre_save_hook = hook
    assert reply.status == 201, reply.data
    assert saved == ["work", "work/etl.ipynb"]  # the ContentsManager wrote both
    assert (await cm.get("work/etl.ipynb"))["type"] == "notebook"


# -- a profile that opens a cluster to others, on a shared machine --------------------------
def test_exposure_risks_and_who_shares_the_machine(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from workbench.clusters.local_options import LocalOptions
    from workbench.host_sharing import exposure_risks, shared_host_reason, uid_range

    assert exposure_risks(LocalOptions()) == []
    assert exposure_risks(LocalOptions(dashboard_address="[::1]:0")) == []
    (risk,) = exposure_risks(LocalOptions(security="none", protocol="tcp"))
    assert risk.startswith("security: none: ") and "run code as you" in risk
    (risk,) = exposure_risks(LocalOptions(dashboard_address=":8787"))
    assert risk.startswith("dashboard_address :8787: ")
    assert len(exposure_risks(LocalOptions(dashboard_address="0.0.0.0:8787"))) == 1
    defs = tmp_path / "login.defs"
    defs.write_text("# comment\nUID_MIN\t\t 2000\nUID_MAX 3000\n")
    assert uid_range(str(defs)) == (2000, 3000)
    monkeypatch.setenv("WORKBENCH_SHARED_HOST", "1")
    assert shared_host_reason() == "WORKBENCH_SHARED_HOST=1"
    monkeypatch.setenv("WORKBENCH_SHARED_HOST", "0")
    monkeypatch.setenv("JUPYTERHUB_USER", "alice")
    assert shared_host_reason() is None  # said outright
    monkeypatch.delenv("WORKBENCH_SHARED_HOST")
    assert shared_host_reason() == "JupyterHub started this server"


@pytest.mark.skipif(os.getuid() != 0, reason="a process of another uid needs root")
def test_another_persons_process_makes_the_machine_shared(monkeypatch: pytest.MonkeyPatch) -> None:
    import subprocess

    from workbench.host_sharing import shared_host_reason, uid_range

    monkeypatch.delenv("WORKBENCH_SHARED_HOST", raising=False)
    monkeypatch.delenv("JUPYTERHUB_USER", raising=False)
    before = shared_host_reason()
    low, _ = uid_range()
    other = subprocess.Popen(["sleep", "60"], user=low + 4321 if low + 4321 < 60000 else low)
    try:
        reason = shared_host_reason()
        assert reason is not None and "other user" in reason, (before, reason)
    finally:
        other.kill()
        other.wait()


def test_launching_an_open_profile_on_a_shared_machine_warns(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import warnings

    import workbench
    from workbench.errors import SharedHostRiskWarning

    from ._lab_fixtures import IN_PROCESS_CLUSTER

    monkeypatch.setenv("WORKBENCH_SHARED_HOST", "1")
    with pytest.warns(SharedHostRiskWarning, match="on a shared machine .*security: none"):
        handle = workbench.launch(
            "local-cpu", progress="off", protocol="tcp", security="none", **IN_PROCESS_CLUSTER
        )
    handle.close()
    monkeypatch.setenv("WORKBENCH_SHARED_HOST", "0")
    with warnings.catch_warnings():
        warnings.simplefilter("error", SharedHostRiskWarning)
        workbench.launch(
            "local-cpu", progress="off", protocol="tcp", security="none", **IN_PROCESS_CLUSTER
        ).close()
