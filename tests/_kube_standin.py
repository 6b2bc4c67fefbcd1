"""A STAND-IN for a Kubernetes API server and the dask-kubernetes operator.

No Kubernetes can run on this machine (nor in CI), so the ``kubernetes`` backend is tested
against this stand-in, and the tests that use it say so. It is a mock of the API server,
but the Dask parts are real: what the operator would run in pods runs here as real local
processes of this user (a ``dask scheduler``, ``dask worker`` processes), so the user's
code path (``KubeCluster`` and kr8s talking HTTP to an API server, then Dask's protocol to
a real scheduler) is exercised end to end.

The API part answers discovery (``/api``, ``/apis``) for the kinds it knows, stores the
objects it is sent (``POST``), answers ``GET`` for one object and lists with
``labelSelector``/``fieldSelector`` (equality only), applies merge-patches (``PATCH``)
and deletes (``DELETE``). It keeps every request in ``requests`` and every
created body in ``posted``.

The operator part (``operator=True``), in a thread, does what the dask-kubernetes operator
does, by its documented behaviour rather than its code:

- for a new ``DaskCluster``: start the scheduler, create its ``Pod`` (Running, Ready), a
  ``LoadBalancer`` ``Service`` whose ingress is 127.0.0.1 (the real scheduler's ports) and
  the ``<name>-default`` ``DaskWorkerGroup``, then set ``status.phase: Running``;
- keep the worker processes of every ``DaskWorkerGroup`` at ``spec.worker.replicas``
  (a ``Pod`` each);
- for a ``DaskAutoscaler``, set the default group's replicas from the scheduler's
  ``adaptive_target`` between ``spec.minimum`` and ``spec.maximum``;
- when a ``DaskCluster`` is deleted, stop its processes and delete what belongs to it;
- a scheduler process that exits leaves its pod ``Failed`` and the cluster ``Error``
  (a real Deployment would restart it; the tests of a killed scheduler want it dead).

What it does not do: containers, images, resources, scheduling on nodes, watches,
authentication (any token is accepted), owner references, restarts, ``idleTimeout`` (the
handle's own idle timeout is what the contract tests).
"""

from __future__ import annotations

import contextlib
import copy
import http.server
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pytest
import yaml

DASK_API = "/apis/kubernetes.dask.org/v1"
COLLECTIONS = ("pods", "services", "daskclusters", "daskworkergroups", "daskautoscalers")


def _resource(name: str, kind: str) -> dict[str, Any]:
    return {
        "name": name,
        "singularName": kind.lower(),
        "namespaced": True,
        "kind": kind,
        "verbs": ["create", "delete", "get", "list", "patch"],
    }


#: API discovery (what kr8s asks before listing a kind given by name).
DISCOVERY: dict[str, dict[str, Any]] = {
    "/api": {"kind": "APIVersions", "versions": ["v1"]},
    "/api/v1": {
        "kind": "APIResourceList",
        "groupVersion": "v1",
        "resources": [_resource("pods", "Pod"), _resource("services", "Service")],
    },
    "/apis": {
        "kind": "APIGroupList",
        "groups": [
            {
                "name": "kubernetes.dask.org",
                "versions": [{"groupVersion": "kubernetes.dask.org/v1", "version": "v1"}],
                "preferredVersion": {"groupVersion": "kubernetes.dask.org/v1", "version": "v1"},
            }
        ],
    },
    DASK_API: {
        "kind": "APIResourceList",
        "groupVersion": "kubernetes.dask.org/v1",
        "resources": [
            _resource("daskclusters", "DaskCluster"),
            _resource("daskworkergroups", "DaskWorkerGroup"),
            _resource("daskautoscalers", "DaskAutoscaler"),
        ],
    },
}


def _get(obj: dict[str, Any], dotted: str) -> Any:
    for part in dotted.split("."):
        if not isinstance(obj, dict):
            return None
        obj = obj.get(part)  # type: ignore[assignment]
    return obj


def _merge(target: dict[str, Any], patch: dict[str, Any]) -> None:
    """RFC 7386 merge patch, in place."""
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        elif isinstance(value, dict) and isinstance(target.get(key), dict):
            _merge(target[key], value)
        else:
            target[key] = copy.deepcopy(value)


def _selected(obj: dict[str, Any], labels: str, fields: str) -> bool:
    meta = obj.get("metadata", {})
    for term in filter(None, labels.split(",")):
        key, _, value = term.partition("=")
        if meta.get("labels", {}).get(key) != value:
            return False
    for term in filter(None, fields.split(",")):
        key, _, value = term.partition("=")
        if str(_get(obj, key)) != value:
            return False
    return True


class KubeStandIn:
    """The API server on 127.0.0.1 (``url``), with the operator unless ``operator=False``."""

    def __init__(self, operator: bool = True, namespace: str = "dask") -> None:
        self.namespace = namespace
        self.objects: dict[str, dict[str, Any]] = {}
        self.posted: list[dict[str, Any]] = []
        self.requests: list[tuple[str, str]] = []
        self.lock = threading.RLock()
        self.workdir = Path(tempfile.mkdtemp(prefix="wb-kube-standin-"))
        #: cluster name -> scheduler process; (cluster, group) -> worker processes.
        self.schedulers: dict[str, subprocess.Popen[bytes]] = {}
        self.workers: dict[tuple[str, str], list[tuple[str, subprocess.Popen[bytes]]]] = {}
        self._adapt_checked: dict[str, float] = {}
        #: Worker processes told to stop, kept until they have exited (then reaped).
        self._retiring: list[subprocess.Popen[bytes]] = []
        self._stop = threading.Event()
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._threads = [threading.Thread(target=self.server.serve_forever, daemon=True)]
        if operator:
            self._threads.append(threading.Thread(target=self._operate, daemon=True))
        for thread in self._threads:
            thread.start()

    # -- the API server -------------------------------------------------------------------
    def _handler(self) -> type[http.server.BaseHTTPRequestHandler]:
        api = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def reply(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def not_found(self) -> None:
                self.reply(
                    404,
                    {
                        "kind": "Status",
                        "status": "Failure",
                        "reason": "NotFound",
                        "message": "not found",
                        "code": 404,
                    },
                )

            def body(self) -> Any:
                length = int(self.headers.get("Content-Length") or 0)
                return json.loads(self.rfile.read(length) or b"{}")

            def do_GET(self) -> None:
                path, _, query = self.path.partition("?")
                path = path.rstrip("/")
                api.requests.append(("GET", path))
                if path == "/version":
                    self.reply(200, {"major": "1", "minor": "33", "gitVersion": "v1.33.0"})
                    return
                if path in DISCOVERY:
                    self.reply(200, DISCOVERY[path])
                    return
                params = parse_qs(query)
                labels = params.get("labelSelector", [""])[0]
                fields = params.get("fieldSelector", [""])[0]
                with api.lock:
                    if path in api.objects:
                        self.reply(200, api.objects[path])
                        return
                    if path.rsplit("/", 1)[-1] in COLLECTIONS:
                        items = [
                            o
                            for key, o in api.objects.items()
                            if key.rpartition("/")[0] == path and _selected(o, labels, fields)
                        ]
                        self.reply(200, {"kind": "List", "apiVersion": "v1", "items": items})
                        return
                self.not_found()

            def do_POST(self) -> None:
                path = self.path.partition("?")[0].rstrip("/")
                body = self.body()
                api.requests.append(("POST", path))
                api.posted.append(copy.deepcopy(body))
                body["metadata"].setdefault("uid", uuid.uuid4().hex)
                key = f"{path}/{body['metadata']['name']}"
                with api.lock:
                    if key in api.objects:
                        self.reply(409, {"kind": "Status", "reason": "AlreadyExists", "code": 409})
                        return
                    api.objects[key] = body
                self.reply(201, body)

            def do_PATCH(self) -> None:
                path = self.path.partition("?")[0].rstrip("/")
                patch = self.body()
                api.requests.append(("PATCH", path))
                with api.lock:
                    obj = api.objects.get(path)
                    if obj is None:
                        self.not_found()
                        return
                    _merge(obj, patch)
                    self.reply(200, obj)

            def do_DELETE(self) -> None:
                path = self.path.partition("?")[0].rstrip("/")
                api.requests.append(("DELETE", path))
                with api.lock:
                    gone = api.objects.pop(path, None)
                if gone is None:
                    self.not_found()
                else:
                    self.reply(200, {"kind": "Status", "status": "Success"})

        return Handler

    # -- helpers for tests ---------------------------------------------------------------------
    def path(self, collection: str, name: str = "") -> str:
        base = "/api/v1" if collection in ("pods", "services") else DASK_API
        tail = f"/{name}" if name else ""
        return f"{base}/namespaces/{self.namespace}/{collection}{tail}"

    def kubeconfig(self, path: Path) -> Path:
        """A kubeconfig pointing at this API server (context namespace: ``namespace``)."""
        path.write_text(
            yaml.safe_dump(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "clusters": [{"name": "c", "cluster": {"server": self.url}}],
                    "users": [{"name": "u", "user": {"token": "stand-in-token"}}],
                    "contexts": [
                        {
                            "name": "ctx",
                            "context": {"cluster": "c", "user": "u", "namespace": self.namespace},
                        }
                    ],
                    "current-context": "ctx",
                }
            )
        )
        return path

    def clusters(self) -> list[str]:
        with self.lock:
            prefix = self.path("daskclusters") + "/"
            return [k.removeprefix(prefix) for k in self.objects if k.startswith(prefix)]

    def processes(self, cluster: str) -> list[int]:
        """Pids of the live scheduler and worker processes of ``cluster``."""
        with self.lock:
            procs = [self.schedulers[cluster]] if cluster in self.schedulers else []
            for (name, _), group in self.workers.items():
                if name == cluster:
                    procs += [p for _, p in group]
        return [p.pid for p in procs if p.poll() is None]

    def scheduler_pid(self, cluster: str) -> int:
        return self.schedulers[cluster].pid

    def close(self) -> None:
        self._stop.set()
        self.server.shutdown()
        self.server.server_close()
        with self.lock:
            for name in list(self.schedulers):
                self._stop_cluster(name)
            for p in self._retiring:
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
        with contextlib.suppress(OSError):
            for f in self.workdir.iterdir():
                f.unlink()
            self.workdir.rmdir()

    # -- the operator ----------------------------------------------------------------------------
    def _operate(self) -> None:
        while not self._stop.wait(0.2):
            try:
                with self.lock:
                    self._reconcile()
            except Exception as exc:  # keep operating; the tests see the effect
                print(f"kube stand-in operator: {type(exc).__name__}: {exc}", file=sys.stderr)

    def _reconcile(self) -> None:
        self._retiring = [p for p in self._retiring if p.poll() is None]
        clusters = {k: o for k, o in self.objects.items() if "/daskclusters/" in k}
        names = {o["metadata"]["name"] for o in clusters.values()}
        for name in list(self.schedulers):
            if name not in names:
                self._stop_cluster(name)
        for obj in clusters.values():
            name = obj["metadata"]["name"]
            if name not in self.schedulers:
                self._start_cluster(obj)
            proc = self.schedulers[name]
            if proc.poll() is not None and obj.get("status", {}).get("phase") != "Error":
                obj["status"] = {"phase": "Error"}
                pod = self.objects.get(self.path("pods", f"{name}-scheduler"))
                if pod is not None:
                    pod["status"] = {"phase": "Failed", "conditions": []}
                continue
            if proc.poll() is None and obj.get("status", {}).get("phase") == "Created":
                self._scheduler_started(obj)
            if proc.poll() is None and obj.get("status", {}).get("phase") == "Running":
                self._autoscale(name)
        for key, group in list(self.objects.items()):
            if "/daskworkergroups/" in key:
                self._scale_group(group)

    def _labels(self, cluster: str, component: str, **more: str) -> dict[str, str]:
        return {"dask.org/cluster-name": cluster, "dask.org/component": component, **more}

    def _start_cluster(self, obj: dict[str, Any]) -> None:
        name = obj["metadata"]["name"]
        file = self.workdir / f"{name}.json"
        log = open(self.workdir / f"{name}-scheduler.log", "wb")  # noqa: SIM115
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "distributed.cli.dask_scheduler",
                "--host",
                "127.0.0.1",
                "--port",
                "0",
                "--dashboard-address",
                "127.0.0.1:0",
                "--scheduler-file",
                str(file),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        log.close()
        self.schedulers[name] = proc
        obj["status"] = {"phase": "Created"}

    def _scheduler_started(self, obj: dict[str, Any]) -> None:
        """Once the scheduler wrote its file: its pod, service and default worker group."""
        name = obj["metadata"]["name"]
        try:
            info = json.loads((self.workdir / f"{name}.json").read_text())
        except (OSError, ValueError):
            return
        if not info.get("address"):
            return
        port = int(info["address"].rsplit(":", 1)[1])
        dashboard = int(info.get("services", {}).get("dashboard", 0))
        self.objects[self.path("pods", f"{name}-scheduler")] = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": f"{name}-scheduler",
                "namespace": self.namespace,
                "labels": self._labels(name, "scheduler"),
            },
            "spec": copy.deepcopy(obj["spec"]["scheduler"]["spec"]),
            "status": {
                "phase": "Running",
                "conditions": [
                    {"type": "Ready", "status": "True"},
                    {"type": "ContainersReady", "status": "True"},
                ],
            },
        }
        self.objects[self.path("services", f"{name}-scheduler")] = {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {
                "name": f"{name}-scheduler",
                "namespace": self.namespace,
                "labels": self._labels(name, "scheduler"),
            },
            "spec": {
                "type": "LoadBalancer",
                "selector": self._labels(name, "scheduler"),
                "ports": [
                    {"name": "tcp-comm", "port": port, "protocol": "TCP"},
                    {"name": "http-dashboard", "port": dashboard, "protocol": "TCP"},
                ],
            },
            "status": {"loadBalancer": {"ingress": [{"ip": "127.0.0.1"}]}},
        }
        group = f"{name}-default"
        self.objects[self.path("daskworkergroups", group)] = {
            "apiVersion": "kubernetes.dask.org/v1",
            "kind": "DaskWorkerGroup",
            "metadata": {
                "name": group,
                "namespace": self.namespace,
                "labels": self._labels(name, "workergroup"),
            },
            "spec": {"cluster": name, "worker": copy.deepcopy(obj["spec"]["worker"])},
        }
        obj["status"] = {"phase": "Running"}

    def _address(self, cluster: str) -> str | None:
        service = self.objects.get(self.path("services", f"{cluster}-scheduler"))
        if service is None:
            return None
        return f"tcp://127.0.0.1:{service['spec']['ports'][0]['port']}"

    def _scale_group(self, group: dict[str, Any]) -> None:
        cluster = group["spec"]["cluster"]
        address = self._address(cluster)
        proc = self.schedulers.get(cluster)
        if address is None or proc is None or proc.poll() is not None:
            return
        name = group["metadata"]["name"]
        running = [(n, p) for n, p in self.workers.get((cluster, name), []) if p.poll() is None]
        want = int(group["spec"]["worker"].get("replicas") or 0)
        while len(running) < want:
            worker = f"{name}-worker-{uuid.uuid4().hex[:8]}"
            log = open(self.workdir / f"{worker}.log", "wb")  # noqa: SIM115
            p = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "distributed.cli.dask_worker",
                    address,
                    "--name",
                    worker,
                    "--nthreads",
                    "1",
                    "--memory-limit",
                    "512MiB",
                    "--no-dashboard",
                    "--host",
                    "127.0.0.1",
                    "--death-timeout",
                    "30",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
            log.close()
            running.append((worker, p))
            self.objects[self.path("pods", worker)] = {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {
                    "name": worker,
                    "namespace": self.namespace,
                    "labels": self._labels(
                        cluster, "worker", **{"dask.org/workergroup-name": name}
                    ),
                },
                "status": {"phase": "Running"},
            }
        while len(running) > want:
            worker, p = running.pop()
            p.terminate()
            self._retiring.append(p)
            self.objects.pop(self.path("pods", worker), None)
        self.workers[(cluster, name)] = running

    def _rpc(self, cluster: str, op: str, **kwargs: Any) -> Any:
        from workbench.clusters.comm import scheduler_call

        address = self._address(cluster)
        return None if address is None else scheduler_call(address, op, timeout=5, **kwargs)

    def _autoscale(self, cluster: str) -> None:
        autoscaler = self.objects.get(self.path("daskautoscalers", cluster))
        if autoscaler is None or time.monotonic() - self._adapt_checked.get(cluster, 0) < 1:
            return
        self._adapt_checked[cluster] = time.monotonic()
        spec = autoscaler.get("spec", {})
        with contextlib.suppress(OSError, TimeoutError):
            target = int(self._rpc(cluster, "adaptive_target") or 0)
            low = int(spec.get("minimum") or 0)
            high = spec.get("maximum")
            target = max(low, target if high is None else min(int(high), target))
            group = self.objects.get(self.path("daskworkergroups", f"{cluster}-default"))
            if group is not None:
                group["spec"]["worker"]["replicas"] = target

    def _stop_cluster(self, name: str) -> None:
        for (cluster, group), procs in list(self.workers.items()):
            if cluster == name:
                for _, p in procs:
                    p.terminate()
                for _, p in procs:
                    try:
                        p.wait(10)
                    except subprocess.TimeoutExpired:
                        p.kill()
                        p.wait()
                del self.workers[(cluster, group)]
        proc = self.schedulers.pop(name, None)
        if proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for key, obj in list(self.objects.items()):
            labels = obj.get("metadata", {}).get("labels", {})
            if labels.get("dask.org/cluster-name") == name or (
                "/daskautoscalers/" in key and obj.get("spec", {}).get("cluster") == name
            ):
                del self.objects[key]


@pytest.fixture
def kube_standin() -> Iterator[KubeStandIn]:
    """The Kubernetes STAND-IN (API server and operator) for one test."""
    api = KubeStandIn()
    try:
        yield api
    finally:
        api.close()


@pytest.fixture
def kube_api_only() -> Iterator[KubeStandIn]:
    """The stand-in's API server alone: no operator acts on what is created."""
    api = KubeStandIn(operator=False)
    try:
        yield api
    finally:
        api.close()
