"""The product as users start it: ``jupyter lab`` in a process of its own, from the venv.

An in-process test server (pytest-jupyter's ``jp_serverapp``) shares pytest's imports:
there, ``dask_jobqueue`` had been imported on pytest's main thread long before a REST
route ran the SLURM pre-launch check in the server's thread pool, so the tests passed
while every user's sidebar launch of a SLURM profile answered 500 ("signal only works in
main thread of the main interpreter": dask-jobqueue sets a SIGINT handler at import).
Here every request goes to a fresh ``jupyter lab`` started as ``make lab`` starts it,
which imports nothing of the tests:

- every route of ``workbench/server/routes.py`` answers such a server (a test checks the
  tour covers them all, so the in-process tests of tests/test_lab_server.py and the
  others cover nothing that fails only in a real server);
- every module workbench imports anywhere, imported for the first time off the main
  thread after the server extension's start-up, sets no signal handler and fails not;
- the SLURM preview (job script and ``sbatch --test-only``) and validation;
- a route that fails for an unexpected reason says which step failed and where the
  traceback is.

The contract suite's REST case (tests/test_contract.py) runs every backend's cluster life
against such a server too; the sidebar's browser tests (tests/test_lab_browser.py) drive
one in chromium.
"""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
from tornado import web

from workbench.server import API_PREFIX, ROUTES

from ._contract import wait_until
from ._lab_fixtures import JupyterProcess

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("stop_clusters_after")]

API = API_PREFIX + "/"
METHODS = ("get", "post", "put", "patch", "delete")


def _route_methods() -> set[tuple[str, str]]:
    """(route pattern, method) of every handler method the extension registers."""
    return {
        (pattern, method.upper())
        for pattern, handler in ROUTES
        for method in METHODS
        if getattr(handler, method) is not getattr(web.RequestHandler, method)
    }


def _route_of(path: str) -> str:
    """The ROUTES pattern a request path (relative to the API prefix) is served by."""
    path = "/" + path.split("?")[0].strip("/")
    matches = [p for p, _ in ROUTES if re.fullmatch(p + "/?", path)]
    assert len(matches) == 1, (path, matches)
    return matches[0]


class Tour:
    """Requests to one server, each checked, and the routes they reached."""

    def __init__(self, lab: JupyterProcess) -> None:
        self.lab = lab
        self.covered: set[tuple[str, str]] = set()
        self.seconds: dict[str, float] = {}

    def __call__(self, method: str, path: str, body: Any = None, expect: int = 200) -> Any:
        start = time.perf_counter()
        reply = self.lab.request(method, API + path, body, timeout=300)
        self.seconds[f"{method} {path}"] = time.perf_counter() - start
        assert reply.status == expect, (method, path, reply.status, reply.data)
        self.covered.add((_route_of(path), method))
        return reply.data


def test_every_route_answers_a_server_started_as_users_start_it(
    lab_process: Any, workbench_home: Path, tmp_path: Path, small_profile: str
) -> None:
    data = tmp_path / "trips.csv"
    data.write_text("fare\n1.0\n2.5\n")
    (workbench_home / "config" / "catalog.yaml").write_text(
        f"datasets:\n  trips:\n    uri: {data}\n    format: csv\n"
    )
    lab: JupyterProcess = lab_process("lab")
    go = Tour(lab)

    assert any(p["name"] == "local-cpu" for p in go("GET", "profiles")["profiles"])
    assert go("GET", "profiles/local-cpu")["backend"] == "local"
    preview = go("POST", f"profiles/{small_profile}/preview", {"options": {"n_workers": 1}})
    assert preview["job_script"] is None and preview["checked"] is True

    cluster = go("POST", "clusters", {"profile": small_profile}, 201)
    cid = cluster["id"]
    assert [c["id"] for c in go("GET", "clusters")["clusters"]] == [cid]
    assert go("GET", f"clusters/{cid}")["workers"] == 1
    go("POST", f"clusters/{cid}/scale", {"n": 1})
    go("POST", f"clusters/{cid}/adapt", {"minimum": 1, "maximum": 1})
    assert "Client(" in go("GET", f"clusters/{cid}/connect")["code"]
    health = go("GET", f"clusters/{cid}/health")
    assert health["ok"], health["checks"]
    assert go("GET", f"clusters/{cid}/panes")["dask"]["problem"] is None
    assert go("GET", "health")["checks"]

    assert go("PUT", "autoconnect", {"cluster": cid})["cluster"] == cid
    assert go("GET", "autoconnect")["cluster"] == cid
    assert go("DELETE", "autoconnect")["cluster"] is None

    templates = go("GET", "templates")["templates"]
    name = templates[0]["name"]
    assert go("GET", f"templates/{name}")["name"] == name
    made = go("POST", f"templates/{name}", {"path": "made/first.ipynb"}, 201)
    assert (lab.root / made["path"]).is_file()
    assert [d["name"] for d in go("GET", "datasets")["datasets"]] == ["trips"]
    assert "load('trips')" in go("GET", "datasets/trips")["code"]

    go("GET", f"metrics?cluster={cid}")
    go("GET", f"metrics/prometheus?cluster={cid}")
    # the Dask dashboard through workbench's route (mutual TLS to the scheduler)
    assert "<html" in go("GET", f"clusters/{cid}/view/dask/status").lower()
    assert "Individual Task Stream" in go("GET", f"clusters/{cid}/view/dask/individual-plots.json")
    # workbench's own dashboards: a Panel server process of the cluster's, on a Unix socket
    assert go("GET", f"clusters/{cid}/dashboard")["running"] is False
    started = go("POST", f"clusters/{cid}/dashboard")
    assert started["running"] is True
    assert started["url"].endswith(f"/workbench/api/clusters/{cid}/view/dashboards/")
    assert "workbench live metrics" in go("GET", f"clusters/{cid}/view/dashboards/gpu")
    assert go("DELETE", f"clusters/{cid}/dashboard")["id"] == cid

    assert go("DELETE", f"clusters/{cid}") == {"id": cid, "stopped": True}
    go("GET", f"clusters/{cid}", expect=404)

    missing = _route_methods() - go.covered
    assert not missing, f"routes no request of the tour reached: {sorted(missing)}"
    assert "Traceback" not in lab.log.read_text(), lab.log.read_text()[-3000:]
    slowest = sorted(go.seconds.items(), key=lambda kv: -kv[1])[:3]
    print("slowest requests:", ", ".join(f"{k} {v:.2f}s" for k, v in slowest))


def test_an_unexpected_failure_names_its_step_and_its_log(
    lab_process: Any, tmp_path: Path, small_profile: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """WORKBENCH_STATE_DIR under a regular file (a typo in a path, a file where a folder
    should be): nothing foresaw it, and the launch says in which step it failed, what was
    raised and where the traceback is, never the exception's class alone."""
    (tmp_path / "a-file").write_text("not a directory\n")
    monkeypatch.setenv("WORKBENCH_STATE_DIR", str(tmp_path / "a-file" / "state"))
    lab: JupyterProcess = lab_process("lab")
    reply = lab.request("POST", API + "clusters", {"profile": small_profile})
    assert reply.status == 500, reply.data
    data = reply.data
    assert data["step"] == "starting the cluster process of profile 'small'", data
    assert data["error"] == "NotADirectoryError", data
    assert data["message"].startswith(
        "starting the cluster process of profile 'small' failed unexpectedly: "
        "NotADirectoryError: [Errno 20] Not a directory: "
    ), data["message"]
    # the state directory is where the error file would go: the server's log says it all
    assert data["log"] is None
    assert data["message"].endswith("the traceback is in the Jupyter server's log."), data
    wait_until(  # the access line is written after the reply is sent
        lambda: any("500 POST /workbench/api/clusters" in e for e in lab.workbench_errors()),
        timeout=30,
    )
    logged = lab.workbench_errors()
    assert any("Traceback" in e and "private.py" in e for e in logged), logged


def test_the_traceback_of_an_unexpected_failure_is_private_and_redacted(
    workbench_home: Path,
) -> None:
    from workbench.server.base import record_unexpected

    try:
        raise RuntimeError("connecting with AccountKey=Zq7planted9secret failed")
    except RuntimeError as exc:
        log = record_unexpected("checking profile 'x'", "POST /workbench/api/clusters", exc)
    assert log == workbench_home / "state" / "server-errors.log"
    text = log.read_text()
    assert "Traceback (most recent call last)" in text
    assert "POST /workbench/api/clusters: checking profile 'x' failed" in text
    assert "Zq7planted9secret" not in text and "AccountKey=REDACTED" in text
    assert stat.S_IMODE(log.stat().st_mode) == 0o600
    assert stat.S_IMODE(log.parent.stat().st_mode) == 0o700


@pytest.mark.slurm
def test_slurm_preview_and_validation_through_a_fresh_server(lab_process: Any, slurm: Any) -> None:
    lab: JupyterProcess = lab_process("lab")
    ok = lab.request(
        "POST", API + "profiles/slurm/preview", {"options": {"cores": 1, "memory": "1GiB"}}
    )
    assert ok.status == 200, ok.data
    script = ok.data["job_script"]
    assert "#SBATCH" in script and "--mem=" in script, script
    # the workers' own HTTP server: node loopback only, no Bokeh pages
    assert "--no-dashboard --dashboard-address 127.0.0.1:0" in script, script
    assert ok.data["verdict"].startswith("SLURM: would start"), ok.data

    bad = lab.request("POST", API + "profiles/slurm/preview", {"options": {"cores": -2}})
    assert bad.status == 400, bad.data
    assert any("cores" in p for p in bad.data["problems"]), bad.data
    too_big = lab.request("POST", API + "profiles/slurm/preview", {"options": {"cores": 512}})
    assert too_big.status == 400, too_big.data
    assert "asks for 512 cores per job" in too_big.data["message"], too_big.data
    unknown = lab.request(
        "POST", API + "profiles/slurm/preview", {"options": {"partition": "gpuu"}}
    )
    assert unknown.status == 400 and "partition 'gpuu'" in unknown.data["message"]
    assert not lab.workbench_errors(), lab.workbench_errors()


# -- imports off the main thread --------------------------------------------------------

#: Every module workbench imports anywhere (module level or inside functions), imported
#: for the first time on a thread after the server extension's start-up preload; each
#: call of signal.signal from that thread is recorded (Python would raise for it).
THREAD_IMPORTS = textwrap.dedent(
    """
    import ast, importlib, importlib.util, json, logging, signal, sys, threading
    from pathlib import Path

    import workbench
    from workbench.server import preload_backend_modules

    mine = lambda *a: None
    signal.signal(signal.SIGINT, mine)
    preload_backend_modules(logging.getLogger("preload"))
    kept = signal.getsignal(signal.SIGINT) is mine

    names = set()
    for path in Path(workbench.__file__).parent.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module)
                names.update(f"{node.module}.{a.name}" for a in node.names)
    calls, failed, imported = [], {}, []
    original = signal.signal

    def watched(signum, handler):
        if threading.current_thread() is not threading.main_thread():
            calls.append(signal.Signals(signum).name)
        return original(signum, handler)

    signal.signal = watched

    def run():
        for name in sorted(names):
            try:
                if importlib.util.find_spec(name) is None:
                    continue
            except (ImportError, ValueError, AttributeError):
                continue  # a name taken from a module, not a module; or not installed
            try:
                importlib.import_module(name)
                imported.append(name)
            except Exception as exc:
                failed[name] = f"{type(exc).__name__}: {exc}"

    t = threading.Thread(target=run)
    t.start()
    t.join()
    print(json.dumps({"kept": kept, "calls": calls, "failed": failed, "imported": imported}))
    """
)


def test_every_module_workbench_imports_can_be_first_imported_off_the_main_thread() -> None:
    started = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-c", THREAD_IMPORTS],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    print(f"{len(result['imported'])} modules in {time.perf_counter() - started:.1f}s")
    assert result["kept"], "the server's start-up preload replaced the SIGINT handler"
    assert not result["calls"], result
    assert not result["failed"], result["failed"]
    # the check saw the modules that matter: dask-jobqueue's (the one that sets a
    # handler at import), the other backends', Panel's and torch's
    for name in ("dask_jobqueue.slurm", "dask_gateway", "dask_kubernetes.operator", "panel"):
        assert name in result["imported"], name


SIGNAL_SAFE = textwrap.dedent(
    """
    import json, signal, sys, threading
    from workbench.imports import import_module

    mine = lambda *a: None
    signal.signal(signal.SIGINT, mine)
    errors = []

    def off_main():
        try:
            import_module("dask_jobqueue.slurm")
        except Exception as exc:
            errors.append(f"{type(exc).__name__}: {exc}")

    t = threading.Thread(target=off_main)
    t.start()
    t.join()
    thread_ok = "dask_jobqueue.runner" in sys.modules and not errors
    kept_off_main = signal.getsignal(signal.SIGINT) is mine
    for name in [m for m in sys.modules if m.startswith("dask_jobqueue")]:
        del sys.modules[name]
    import_module("dask_jobqueue")  # again, on the main thread this time
    kept_on_main = signal.getsignal(signal.SIGINT) is mine
    # the unguarded import, for contrast: it does replace the handler
    for name in [m for m in sys.modules if m.startswith("dask_jobqueue")]:
        del sys.modules[name]
    import dask_jobqueue
    replaced = signal.getsignal(signal.SIGINT) is not mine
    print(json.dumps({"thread_ok": thread_ok, "errors": errors, "kept_off_main": kept_off_main,
                      "kept_on_main": kept_on_main, "replaced_unguarded": replaced}))
    """
)


def test_signal_safe_import_on_and_off_the_main_thread() -> None:
    """workbench.imports.import_module: dask-jobqueue imports on a thread (a plain import
    raises there) and on the main thread without replacing the program's SIGINT handler
    (a plain import replaces it with ``sys.exit``)."""
    out = subprocess.run(
        [sys.executable, "-c", SIGNAL_SAFE], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result == {
        "thread_ok": True,
        "errors": [],
        "kept_off_main": True,
        "kept_on_main": True,
        "replaced_unguarded": True,
    }, result


def test_the_sidebar_may_not_change_what_a_profile_file_decides(
    lab_process: Any, user_profiles: Any
) -> None:
    """A REST launch or preview that changes a profile-file setting (security, a bind
    address, max_workers, what runs, where it connects, credentials) is refused with 403
    naming the key, before anything is checked or started, and the value is not shown."""
    user_profiles(
        "profiles:\n"
        "  gw:\n    backend: gateway\n"
        "    options: {address: 'http://127.0.0.1:9', password: 'env:GW_PW'}\n"
        "  pinned:\n    extends: local-cpu\n    overridable: [threads_per_worker]\n"
    )
    lab: JupyterProcess = lab_process("lab")
    marker = "Zq7-not-shown-4711"
    cases = [
        ("local-cpu", {"security": "none"}, "security"),
        ("local-cpu", {"dashboard_address": "0.0.0.0:8787", "n_workers": 1}, "dashboard_address"),
        ("local-cpu", {"max_workers": 100000}, "max_workers"),
        ("slurm", {"job_script_prologue": [f"echo {marker}"]}, "job_script_prologue"),
        ("slurm", {"python": f"/tmp/{marker}/python"}, "python"),
        ("gw", {"password": f"env:{marker}"}, "password"),
        ("gw", {"address": f"http://{marker}:8000"}, "address"),
        ("pinned", {"n_workers": 2}, "n_workers"),
    ]
    for route in ("clusters", "profiles/{profile}/preview"):
        for profile, options, key in cases:
            body = (
                {"options": options}
                if "preview" in route
                else {"profile": profile, "options": options}
            )
            reply = lab.request("POST", API + route.format(profile=profile), body)
            assert reply.status == 403, (route, profile, reply.data)
            assert f"does not let the sidebar or REST change {key}" in reply.data["message"]
            assert marker not in json.dumps(reply.data)
    assert marker not in lab.log.read_text()
    detail = lab.request("GET", API + "profiles/pinned").data
    assert detail["sidebar_options"] == ["threads_per_worker"]
    assert "security" not in lab.request("GET", API + "profiles/local-cpu").data["sidebar_options"]


def test_a_launch_that_opens_the_cluster_warns_on_a_shared_machine(
    lab_process: Any, user_profiles: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    user_profiles(
        "profiles:\n  open:\n    extends: local-cpu\n    options:\n"
        "      {security: none, protocol: tcp, n_workers: 1, threads_per_worker: 1,\n"
        "       memory_limit: 1GiB, dashboard_address: '127.0.0.1:0'}\n"
    )
    monkeypatch.setenv("WORKBENCH_SHARED_HOST", "1")  # as JupyterHub or a login node would
    lab: JupyterProcess = lab_process("lab")
    reply = lab.request("POST", API + "clusters", {"profile": "open"})
    assert reply.status == 201, reply.data
    (warning,) = reply.data["warnings"]
    assert "profile 'open' on a shared machine" in warning and "security: none" in warning
    assert "security: none" in lab.log.read_text()
    assert lab.request("DELETE", API + f"clusters/{reply.data['id']}").status == 200
