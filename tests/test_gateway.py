"""The gateway backend against a real dask-gateway-server (see tests/_gateway_fixtures.py)."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

pytest.importorskip(
    "dask_gateway_server",
    reason="the gateway tests run a real dask-gateway-server: pip install 'workbench[cloud-test]'",
)
from pydantic import ValidationError

import workbench
from workbench.clusters import ClusterControl, RecordStore
from workbench.clusters.gateway_options import GatewayOptions
from workbench.errors import (
    AuthenticationError,
    BackendError,
    CredentialError,
    ProfileError,
    ServiceUnreachableError,
)

from ._gateway_fixtures import GATEWAY_PASSWORD_ENV, GatewayServer
from .conftest import WORKBENCH

pytestmark = pytest.mark.timeout(240)


def wait_until(predicate, timeout: float = 60.0, interval: float = 0.2) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s")


def _worker_facts(handle: workbench.ClusterHandle) -> list[dict]:  # type: ignore[type-arg]
    return list(handle.client.scheduler_info()["workers"].values())


@pytest.mark.slow
def test_launch_compute_scale_close(
    gateway_server: GatewayServer, gateway_password: str, user_profiles
) -> None:
    user_profiles(gateway_server.profile(image="registry.example/analysis:1", n_workers=1))
    with workbench.launch("gw", wait=1, timeout=120) as handle:
        assert handle.backend == "gateway"
        assert handle.scheduler_address.startswith(gateway_server.proxy_address + "/")
        assert handle.dashboard_link and handle.dashboard_link.startswith(gateway_server.address)
        assert handle.client.submit(sum, [1, 2, 3]).result() == 6
        assert handle.gpus == []  # asked of the workers, which see no GPU on this machine
        # The profile's cluster options reached the gateway's workers.
        (worker,) = _worker_facts(handle)
        assert worker["nthreads"] == 1 and worker["memory_limit"] == 512 * 2**20
        name = handle.record.extra["cluster_name"]
        assert name in gateway_server.running_clusters()

        handle.scale(2).wait_for_workers(2, timeout=120)
        assert handle.n_workers() == 2
        handle.scale(1)
        wait_until(lambda: handle.n_workers() == 1)
        # Adaptive scaling runs on the gateway's side, within the bounds given here.
        handle.adapt(minimum=2, maximum=2)
        handle.wait_for_workers(2, timeout=120)
        assert "gateway" in handle._repr_html_() and handle.status == "running"
    assert handle.status == "closed"
    wait_until(lambda: name not in gateway_server.running_clusters())
    assert ClusterControl().list() == []


@pytest.mark.gpu
@pytest.mark.slow
def test_gpus_of_the_gateways_workers_are_asked_of_them(
    gateway_server: GatewayServer, gateway_password: str, user_profiles
) -> None:
    """This machine's GPUs are the gateway's workers' GPUs here (its local backend starts
    them as processes of this machine): the handle reports them by asking the workers, so
    training chooses CUDA and loading chooses cuDF where cuDF is installed."""
    from workbench.data.dataframe_backend import choose
    from workbench.gpus import detect_gpus
    from workbench.training._cluster import resolve_device

    user_profiles(gateway_server.profile(n_workers=1))
    with workbench.launch("gw", wait=1, timeout=120) as handle:
        assert handle.gpus == [g.uuid for g in detect_gpus().gpus]
        assert RecordStore().get(handle.id).gpus == handle.gpus
        assert resolve_device("auto", handle, handle.client) == "cuda"
        assert resolve_device("cuda", handle, handle.client) == "cuda"
        choice = choose("auto", handle)
        assert f"has {len(handle.gpus)} GPU(s)" in choice.reason
        assert choice.backend == ("cudf" if importlib.util.find_spec("dask_cudf") else "pandas")


@pytest.mark.slow
def test_connect_code_carries_security_and_no_secret(
    gateway_server: GatewayServer, gateway_password: str, user_profiles, subprocess_env
) -> None:
    user_profiles(gateway_server.profile(n_workers=1))
    with workbench.launch("gw", wait=1, timeout=120) as handle:
        code = handle.connect_code()
        record_json = (RecordStore().root / f"{handle.id}.json").read_text()
        # References only: the resolved password is nowhere, nor the cluster's TLS key.
        for text in (code, record_json):
            assert gateway_password not in text
            assert "BEGIN PRIVATE KEY" not in text and "BEGIN RSA" not in text
        assert f"env:{GATEWAY_PASSWORD_ENV}" in code and "security=cluster.security" in code
        assert json.loads(record_json)["extra"]["password"] == f"env:{GATEWAY_PASSWORD_ENV}"

        # Another kernel runs the code and computes on the same cluster, through TLS.
        script = code + textwrap.dedent("""
            assert client.submit(lambda x: x * 7, 6).result() == 42
            assert str(client.scheduler.address).startswith("gateway://")
            print("connected", cluster.name, flush=True)
            client.close()
            cluster.close()
        """)
        out = subprocess.run(
            [sys.executable, "-c", script],
            env=subprocess_env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert out.returncode == 0, out.stderr[-3000:]
        assert f"connected {handle.record.extra['cluster_name']}" in out.stdout
        # Connecting elsewhere does not stop the cluster (shutdown_on_close=False there).
        assert handle.client.submit(sum, [2, 2]).result() == 4


@pytest.mark.slow
def test_stop_and_scale_from_another_process(
    gateway_server: GatewayServer, gateway_password: str, user_profiles, subprocess_env
) -> None:
    user_profiles(gateway_server.profile())
    handle = workbench.launch("gw")
    try:
        name = handle.record.extra["cluster_name"]
        scale = subprocess.run(
            [*WORKBENCH, "clusters", "scale", handle.id, "1"],
            env=subprocess_env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert scale.returncode == 0, scale.stderr
        handle.wait_for_workers(1, timeout=120)
        listed = subprocess.run(
            [*WORKBENCH, "clusters", "list", "--json"],
            env=subprocess_env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        (entry,) = json.loads(listed.stdout)
        assert entry["backend"] == "gateway" and entry["status"] == "running"
        assert entry["workers"] == 1
        stop = subprocess.run(
            [*WORKBENCH, "clusters", "stop", handle.id],
            env=subprocess_env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert stop.returncode == 0, stop.stderr
        wait_until(lambda: name not in gateway_server.running_clusters())
        assert ClusterControl().list() == []
    finally:
        handle.close()


@pytest.mark.slow
def test_killed_owner_and_watchdog_are_cleaned_up_by_a_sweep(
    gateway_server: GatewayServer,
    gateway_password: str,
    user_profiles,
    subprocess_env,
    tmp_path: Path,
) -> None:
    user_profiles(gateway_server.profile())
    script = tmp_path / "owner.py"
    script.write_text(
        textwrap.dedent("""
        import os, signal, time, workbench
        h = workbench.launch("gw")
        os.kill(h.record.watchdog[0], signal.SIGKILL)  # only a sweep can clean up now
        print(h.id, h.record.extra["cluster_name"], flush=True)
        time.sleep(600)
    """)
    )
    with subprocess.Popen(
        [sys.executable, str(script)], env=subprocess_env, stdout=subprocess.PIPE, text=True
    ) as proc:
        try:
            assert proc.stdout is not None
            cluster_id, name = proc.stdout.readline().split()
            assert name in gateway_server.running_clusters()
        finally:
            os.kill(proc.pid, signal.SIGKILL)
    assert ClusterControl().status(ClusterControl().get(cluster_id)) == "stale"
    out = subprocess.run(
        [*WORKBENCH, "clusters", "cleanup"],
        env=subprocess_env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0 and cluster_id in out.stdout, out.stderr
    wait_until(lambda: name not in gateway_server.running_clusters())


def test_wrong_password_is_an_authentication_error(
    gateway_server: GatewayServer, user_profiles, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(GATEWAY_PASSWORD_ENV, "not-the-password")
    user_profiles(gateway_server.profile())
    with pytest.raises(AuthenticationError) as exc:
        workbench.launch("gw")
    message = str(exc.value)
    assert "rejected the credentials (HTTP 401" in message
    assert f"password from env:{GATEWAY_PASSWORD_ENV}" in message and "alice" in message
    assert "not-the-password" not in message
    assert ClusterControl().list() == []


def test_credential_that_cannot_be_resolved(
    user_profiles, monkeypatch: pytest.MonkeyPatch, closed_port: int
) -> None:
    # No gateway is contacted: the reference fails first, and says which one.
    monkeypatch.delenv("WB_NO_SUCH_SECRET", raising=False)
    user_profiles(
        "profiles:\n  gw:\n    backend: gateway\n    options:\n"
        f"      address: http://127.0.0.1:{closed_port}\n"
        "      auth: jupyterhub\n      token: env:WB_NO_SUCH_SECRET\n"
    )
    with pytest.raises(CredentialError, match="env:WB_NO_SUCH_SECRET"):
        workbench.launch("gw")


def test_unreachable_gateway_is_a_clear_error(user_profiles, closed_port: int) -> None:
    user_profiles(
        "profiles:\n  gw:\n    backend: gateway\n    options:\n"
        f"      address: http://127.0.0.1:{closed_port}\n      auth: none\n"
    )
    with pytest.raises(ServiceUnreachableError) as exc:
        workbench.launch("gw")
    assert f"cannot reach the dask-gateway at http://127.0.0.1:{closed_port}" in str(exc.value)


def test_gateway_that_never_answers_times_out(user_profiles, silent_server: str) -> None:
    user_profiles(
        "profiles:\n  gw:\n    backend: gateway\n    options:\n"
        f"      address: http://{silent_server}\n      auth: none\n      request_timeout: 1\n"
    )
    start = time.monotonic()
    with pytest.raises(ServiceUnreachableError, match="did not answer within 1s"):
        workbench.launch("gw")
    assert time.monotonic() - start < 60  # bounded by request_timeout, not aiohttp's 5 min


def test_options_the_gateway_does_not_offer_or_accept(
    gateway_server: GatewayServer, gateway_password: str, user_profiles
) -> None:
    user_profiles(gateway_server.profile(cluster_options={"queue": "gpu"}))
    with pytest.raises(BackendError) as exc:
        workbench.launch("gw")
    assert "has no cluster option 'queue'" in str(exc.value)
    assert "worker_cores, worker_memory, worker_gpus, image" in str(exc.value)

    user_profiles(gateway_server.profile(worker_gpus=1))  # this gateway has no GPUs: max 0
    with pytest.raises(BackendError, match="does not accept cluster option worker_gpus=1"):
        workbench.launch("gw")
    assert gateway_server.running_clusters() == []


def test_literal_secret_and_bad_options_are_profile_errors(user_profiles) -> None:
    user_profiles(
        "profiles:\n  gw:\n    backend: gateway\n    options:\n"
        "      address: http://gw.example\n      auth: basic\n      password: hunter2\n"
    )
    with pytest.raises(ProfileError, match="literal credential"):
        workbench.launch("gw")
    # The options model refuses it too, whatever path the value comes by.
    with pytest.raises(ValidationError, match="must be a credential reference"):
        GatewayOptions(address="http://gw.example", password="hunter2")
    user_profiles(
        "profiles:\n  gw:\n    backend: gateway\n    options:\n"
        "      address: gw.example:8000\n      worker_memory: lots\n"
    )
    with pytest.raises(ProfileError) as exc:
        workbench.launch("gw")
    message = str(exc.value)
    assert "profiles.yaml:5: profile 'gw': key 'options.address'" in message
    assert "expected an http:// or https:// URL" in message
    assert "profiles.yaml:6: profile 'gw': key 'options.worker_memory'" in message
    user_profiles("profiles:\n  gw:\n    backend: gateway\n    options: {auth: token}\n")
    with pytest.raises(ProfileError, match="auth: token needs token: env:NAME"):
        workbench.launch("gw")


def test_missing_cloud_extra_gives_install_hint(user_profiles, subprocess_env) -> None:
    # A kernel without dask-gateway / dask-kubernetes: sys.modules[name] = None is
    # Python's own way of making a module unimportable.
    script = textwrap.dedent("""
        import sys
        for name in ("dask_gateway", "dask_kubernetes", "kr8s"):
            sys.modules[name] = None
        import workbench
        from workbench.clusters.profiles import load_catalog
        from workbench.errors import MissingDependencyError
        assert not load_catalog().problems, load_catalog().problems
        for profile in ("gw", "kube"):
            try:
                workbench.launch(profile)
            except MissingDependencyError as exc:
                print(profile, exc)
    """)
    user_profiles(
        "profiles:\n"
        "  gw:\n    backend: gateway\n    options: {address: 'http://gw.example'}\n"
        "  kube:\n    backend: kubernetes\n    options: {n_workers: 1}\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], env=subprocess_env, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("gw ") and "dask_gateway" in lines[0]
    assert lines[1].startswith("kube ") and "dask_kubernetes" in lines[1]
    assert all("pip install 'workbench[cloud]'" in line for line in lines)


def test_auth_none_against_a_gateway_that_wants_credentials(
    gateway_server: GatewayServer, user_profiles
) -> None:
    user_profiles(gateway_server.profile(auth="none", username=None, password=None))
    with pytest.raises(AuthenticationError) as exc:
        workbench.launch("gw")
    assert "asks for authentication (WWW-Authenticate: Basic)" in str(exc.value)
    assert "auth: none" in str(exc.value)


@pytest.mark.parametrize(
    ("auth", "extra", "expected"),
    [
        ("token", {"token": "file:/run/secrets/gw"}, "TokenAuth(resolve('file:/run/secrets/gw')"),
        ("jupyterhub", {}, "JupyterHubAuth(api_token=resolve('env:JUPYTERHUB_API_TOKEN'))"),
        ("kerberos", {}, "KerberosAuth()"),
        ("none", {}, "NoAuth()"),
        (None, {}, "auth=None  # from dask config gateway.auth"),
    ],
)
def test_connect_code_for_each_auth_type(auth: str | None, extra: dict, expected: str) -> None:  # type: ignore[type-arg]
    from workbench.clusters.gateway import gateway_connect_code

    spec = {"address": "https://gw.example", "proxy_address": 8786, "auth": auth, **extra}
    code = gateway_connect_code(spec, "c0ffee")
    compile(code, "<connect code>", "exec")  # valid Python
    assert expected in code
    assert "gateway.connect('c0ffee')" in code and "security=cluster.security" in code
    assert "proxy_address=8786" in code
