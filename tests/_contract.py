"""The environments of the backend contract suite (tests/test_contract.py).

In the manner of fsspec's shared abstract tests (one set of tests, a fixture class per
filesystem) and dask-jobqueue's ``Cluster`` fixture parametrized over schedulers: every
backend gets a :class:`BackendEnv` that knows how to write a small profile named
``contract`` for it and how to tell what a cluster of it still *holds* outside the
owner's process. The contract tests use nothing else, so a new backend is done when a
``BackendEnv`` for it passes them.

- ``local``: worker processes on this machine (the record's worker pids) and the
  scheduler's port;
- ``slurm``: the jobs of the cluster's unique job name in the real single-node SLURM the
  tests start (tests/_slurm_fixtures.py);
- ``gateway``: the cluster on the real dask-gateway-server (tests/_gateway_fixtures.py);
- ``kubernetes``: the DaskCluster and its processes in the Kubernetes STAND-IN
  (tests/_kube_standin.py: a mock API server and operator, since no Kubernetes can run
  here; the scheduler and workers it runs are real Dask processes).
"""

from __future__ import annotations

import contextlib
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import yaml

from workbench.clusters.comm import port_open
from workbench.clusters.record import ClusterRecord, process_alive

PROFILE = "contract"


def wait_until(predicate: Any, timeout: float = 60.0, interval: float = 0.2) -> float:
    """Poll ``predicate`` until it is true; returns the seconds it took."""
    start = time.monotonic()
    while not predicate():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(interval)
    return time.monotonic() - start


@dataclass
class BackendEnv:
    """What the contract tests need to know about one backend."""

    backend: str
    options: dict[str, Any] = field(default_factory=dict)
    #: How its scheduler is secured: "workbench" (TLS with per-cluster credentials that
    #: workbench makes), "gateway" (the gateway's TLS proxy and credentials), or None for
    #: the Kubernetes stand-in, whose fake operator starts plain-TCP schedulers.
    tls: str | None = "workbench"

    def profile_yaml(self) -> str:
        return yaml.safe_dump(
            {"profiles": {PROFILE: {"backend": self.backend, "options": self.options}}}
        )

    def held(self, record: ClusterRecord) -> list[str]:
        """What the cluster still holds outside its owner (empty: all released)."""
        raise NotImplementedError

    def wait_released(self, record: ClusterRecord, timeout: float = 60.0) -> float:
        """Seconds until nothing is held; AssertionError naming what is left after timeout."""
        start = time.monotonic()
        while True:
            left = self.held(record)
            if not left:
                return time.monotonic() - start
            if time.monotonic() - start > timeout:
                raise AssertionError(f"still held after {timeout:.0f}s: {left}")
            time.sleep(0.2)


@dataclass
class LocalEnv(BackendEnv):
    def held(self, record: ClusterRecord) -> list[str]:
        left = [
            f"worker pid {pid}"
            for pid, created in record.worker_pids
            if process_alive(pid, created)
        ]
        if port_open(record.scheduler_address, timeout=0.5):
            left.append(f"scheduler at {record.scheduler_address}")
        return left


@dataclass
class SlurmEnv(BackendEnv):
    slurm: Any = None

    def held(self, record: ClusterRecord) -> list[str]:
        name = record.extra["job_name"]  # the profile's prefix and the cluster's suffix
        assert name.startswith(self.options["job_name"] + "-"), name
        return [f"SLURM job {job}" for job in self.slurm.jobs_named(name)]


@dataclass
class GatewayEnv(BackendEnv):
    server: Any = None
    profile_text: str = ""

    def profile_yaml(self) -> str:
        return self.profile_text

    def held(self, record: ClusterRecord) -> list[str]:
        name = record.extra.get("cluster_name")
        running = self.server.running_clusters()
        return [f"gateway cluster {name}"] if name in running else []


@dataclass
class KubernetesEnv(BackendEnv):
    api: Any = None

    def held(self, record: ClusterRecord) -> list[str]:
        name = record.extra.get("cluster_name")
        left = [f"DaskCluster {name}"] if name in self.api.clusters() else []
        return left + [f"process {pid} of {name}" for pid in self.api.processes(str(name))]


def make_env(backend: str, request: Any, tmp_path: Path) -> BackendEnv:
    """The environment of ``backend``, with the real services its tests talk to."""
    if backend == "local":
        return LocalEnv(
            "local",
            {
                "gpus": "none",
                "n_workers": 1,
                "threads_per_worker": 1,
                "memory_limit": "1GiB",
                "dashboard_address": "127.0.0.1:0",
            },
        )
    if backend == "slurm":
        slurm = request.getfixturevalue("slurm")
        return SlurmEnv(
            "slurm",
            {
                "jobs": 1,
                "cores": 1,
                "memory": "1GiB",
                "walltime": "00:10:00",
                "dashboard_address": "127.0.0.1:0",
                "job_name": f"wb-contract-{uuid.uuid4().hex[:6]}",
            },
            slurm=slurm,
        )
    if backend == "gateway":
        server = request.getfixturevalue("gateway_server")
        request.getfixturevalue("gateway_password")
        return GatewayEnv(
            "gateway",
            tls="gateway",
            server=server,
            profile_text=server.profile(name=PROFILE, n_workers=1),
        )
    if backend == "kubernetes":
        api = request.getfixturevalue("kube_standin")
        return KubernetesEnv(
            "kubernetes",
            {
                "kubeconfig": str(api.kubeconfig(tmp_path / "kubeconfig")),
                "name": "wb-contract-{uuid}",
                "n_workers": 1,
                "scheduler_service_type": "LoadBalancer",
                "resource_timeout": 60,
            },
            api=api,
            tls=None,
        )
    raise ValueError(backend)


def kill_quietly(pid: int) -> None:
    with contextlib.suppress(psutil.Error):
        psutil.Process(pid).kill()
