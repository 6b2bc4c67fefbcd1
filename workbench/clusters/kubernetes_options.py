"""Options of the ``kubernetes`` backend: the scheduler pod, worker groups, images, timeouts.

:class:`KubernetesOptions` (with :class:`PodOptions`, :class:`WorkerOptions`,
:class:`WorkerGroupOptions` and :class:`Toleration`) is the pydantic model a ``kubernetes``
profile is checked against (and the Lab form is drawn from); :func:`quantity` writes a
memory size as a Kubernetes quantity. The backend that builds and runs the ``DaskCluster``
is :mod:`workbench.clusters.kubernetes`.
"""

from __future__ import annotations

import re
from typing import Literal

from dask.utils import parse_bytes
from pydantic import BaseModel, ConfigDict, Field, field_validator

from .backend import BackendOptions

#: Image for clusters without GPUs (the operator's default).
DASK_IMAGE = "ghcr.io/dask/dask:latest"
#: Image for clusters with GPU workers: RAPIDS (cuDF, dask-cuda) on CUDA 12. Pin your own
#: with ``image:`` so that scheduler, workers and notebook run the same versions.
RAPIDS_IMAGE = "nvcr.io/nvidia/rapidsai/base:26.02-cuda12-py3.13"
GPU_RESOURCE = "nvidia.com/gpu"
#: The workers' ``dask`` command lines (``dask-worker`` left distributed in 2026).
WORKER_COMMAND = "dask worker"
GPU_WORKER_COMMAND = "dask cuda worker"
NAME_RE = re.compile(r"^(?=.{1,53}$)[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def quantity(value: str | int | float) -> str:
    """A memory size ('16GiB', 2**30, '1.5GB') as a Kubernetes quantity ('16Gi')."""
    n = int(parse_bytes(value) if isinstance(value, str) else value)
    for suffix, unit in (("Ti", 2**40), ("Gi", 2**30), ("Mi", 2**20), ("Ki", 2**10)):
        if n % unit == 0:
            return f"{n // unit}{suffix}"
    return str(n)


class Toleration(BaseModel):
    model_config = ConfigDict(extra="forbid")

    key: str | None = None
    operator: Literal["Exists", "Equal"] = "Exists"
    value: str | None = None
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = None

    def to_k8s(self) -> dict[str, str]:
        return {k: v for k, v in self.model_dump().items() if v is not None}


class PodOptions(BaseModel):
    """Resources and placement of one kind of pod."""

    model_config = ConfigDict(extra="forbid")

    cores: int | float | None = Field(None, gt=0, description="CPU request and limit.")
    memory: str | int | None = Field(None, description="Memory request and limit, e.g. 16GiB.")
    node_selector: dict[str, str] = Field(default_factory=dict)
    tolerations: list[Toleration] = Field(default_factory=list)

    @field_validator("memory")
    @classmethod
    def _memory(cls, v: str | int | None) -> str | int | None:
        if v is not None:
            try:
                quantity(v)
            except (ValueError, TypeError) as exc:
                raise ValueError(f"not a memory size like '16GiB': {exc}") from None
        return v

    def resources(self, gpus: int = 0) -> dict[str, dict[str, str | int]] | None:
        """The container's ``resources``: requests = limits (guaranteed), GPUs as limits."""
        amounts: dict[str, str | int] = {}
        if self.cores is not None:
            amounts["cpu"] = str(self.cores)
        if self.memory is not None:
            amounts["memory"] = quantity(self.memory)
        if not amounts and not gpus:
            return None
        limits: dict[str, str | int] = {**amounts, **({GPU_RESOURCE: gpus} if gpus else {})}
        return {"limits": limits, **({"requests": dict(amounts)} if amounts else {})}


class WorkerOptions(PodOptions):
    gpus: int = Field(0, ge=0, description="GPUs per worker (nvidia.com/gpu).")
    image: str | None = Field(None, description="Worker image (default: the cluster's).")
    worker_command: str | list[str] | None = Field(
        None, description=f"Default: '{WORKER_COMMAND}', with GPUs '{GPU_WORKER_COMMAND}'."
    )
    env: dict[str, str] = Field(default_factory=dict, description="Worker environment.")


class WorkerGroupOptions(WorkerOptions):
    n_workers: int = Field(1, ge=0, description="Workers in this group.")


class KubernetesOptions(BackendOptions):
    SIDEBAR_OPTIONS = BackendOptions.SIDEBAR_OPTIONS | {"n_workers"}
    PROFILE_ONLY = BackendOptions.PROFILE_ONLY | {
        "namespace",
        "kubeconfig",
        "context",
        "image",
        "gpu_image",
        "worker",
        "worker_groups",
        "scheduler",
        "env",
        "scheduler_service_type",
        "port_forward_cluster_ip",
    }

    name: str = Field(
        "workbench-{user}-{uuid}",
        description="DaskCluster name; {user} and {uuid} are filled in.",
    )
    namespace: str | None = Field(None, description="Default: the kubeconfig context's.")
    kubeconfig: str | None = Field(None, description="Default: $KUBECONFIG or ~/.kube/config.")
    context: str | None = Field(None, description="kubeconfig context (default: current).")
    image: str | None = Field(
        None,
        description=f"Image of scheduler and workers (default: {DASK_IMAGE}, or "
        "gpu_image when any worker has GPUs).",
    )
    gpu_image: str = Field(RAPIDS_IMAGE, description="Default image of clusters with GPUs.")
    n_workers: int = Field(1, ge=0, description="Workers in the default group.")
    worker: WorkerOptions = Field(default_factory=lambda: WorkerOptions.model_validate({}))
    worker_groups: dict[str, WorkerGroupOptions] = Field(
        default_factory=dict, description="More worker groups, by name (e.g. a CPU pool)."
    )
    scheduler: PodOptions = Field(default_factory=lambda: PodOptions.model_validate({}))
    env: dict[str, str] = Field(default_factory=dict, description="Environment of all pods.")
    scheduler_service_type: Literal["ClusterIP", "NodePort", "LoadBalancer"] = "ClusterIP"
    port_forward_cluster_ip: bool | None = Field(
        None, description="Reach a ClusterIP scheduler through a port-forward."
    )
    connect_timeout: float = Field(
        10.0, gt=0, description="Seconds the Kubernetes API server has to answer."
    )
    resource_timeout: int = Field(
        60, gt=0, description="Seconds the operator has to act on the DaskCluster."
    )
    shutdown_on_close: bool = True

    def launch_workers(self) -> int | None:
        return self.n_workers + sum(g.n_workers for g in self.worker_groups.values())

    @field_validator("worker_groups")
    @classmethod
    def _group_names(cls, v: dict[str, WorkerGroupOptions]) -> dict[str, WorkerGroupOptions]:
        for name in v:
            if name == "default" or not NAME_RE.match(name):
                raise ValueError(
                    f"worker group name {name!r} must be lower-case letters, digits and '-', "
                    "and not 'default'"
                )
        return v
