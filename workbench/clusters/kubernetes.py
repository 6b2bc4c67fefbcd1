"""The ``kubernetes`` backend: a ``DaskCluster`` resource for the dask-kubernetes operator.

The profile describes the scheduler pod, the default worker group and any further worker
groups (a GPU pool beside a CPU pool, say)::

    profiles:
      kube-gpu:
        backend: kubernetes
        options:
          namespace: dask
          n_workers: 2
          worker:
            gpus: 1                  # nvidia.com/gpu limit, NoSchedule taint tolerated
            cores: 8
            memory: 48GiB
            node_selector: {cloud.google.com/gke-accelerator: nvidia-l4}
          scheduler: {cores: 1, memory: 4GiB}
          price_per_worker_hour: 1.2

:meth:`KubernetesBackend.cluster_spec` builds the ``DaskCluster`` with the operator's own
helpers (``make_cluster_spec``, ``make_worker_spec``, ``make_scheduler_spec``) and adds
what they cannot express: GPU limits, node selectors, tolerations, and for clusters with
GPU workers a scheduler kept off GPU nodes and a RAPIDS image by default. ``create_cluster``
passes exactly that resource to ``KubeCluster(custom_cluster_spec=...)``.

Before creating anything it asks the Kubernetes API server for its version with a
timeout (``connect_timeout``), in the event loop KubeCluster then uses, so that a missing
kubeconfig or an unreachable API server is a clear error rather than a hang; the operator
must then act on the resource within ``resource_timeout`` seconds. The options and their
validation are in :mod:`workbench.clusters.kubernetes_options`.
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import os
import re
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import (
    AuthenticationError,
    BackendError,
    ProfileError,
    ServiceUnreachableError,
    WorkbenchError,
)
from .backend import Backend, BackendOptions
from .kubernetes_options import (
    DASK_IMAGE,
    GPU_RESOURCE,
    GPU_WORKER_COMMAND,
    NAME_RE,
    WORKER_COMMAND,
    KubernetesOptions,
    WorkerOptions,
)
from .record import ClusterRecord

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from distributed.deploy.cluster import Cluster

CLOUD_HINT = "pip install 'workbench[cloud]'"
#: GPU node pools are tainted so that only pods asking for GPUs land there.
GPU_TOLERATION = {"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"}
#: Label NVIDIA GPU feature discovery puts on GPU nodes.
GPU_NODE_LABEL = "nvidia.com/gpu.present"
#: The ``dask`` command line (``dask-scheduler``/``dask-worker`` left distributed in 2026).
SCHEDULER_COMMAND = ["dask", "scheduler"]
#: The least idleTimeout the operator is given (workers may take minutes to be scheduled).
OPERATOR_IDLE_MIN_S = 300


class KubernetesBackend(Backend):
    name = "kubernetes"
    Options = KubernetesOptions
    options: KubernetesOptions
    requires = {"dask_kubernetes": CLOUD_HINT, "kr8s": CLOUD_HINT}
    gpus_from_workers = True  # the workers' GPUs are seen by asking them

    def __init__(self, options: BackendOptions, profile: str = "") -> None:
        super().__init__(options, profile)
        self._cluster_name: str | None = None
        self._loop_runner: Any = None
        self._api: Any = None

    # -- the DaskCluster resource ----------------------------------------------------------
    @property
    def has_gpus(self) -> bool:
        o = self.options
        return bool(o.worker.gpus or any(g.gpus for g in o.worker_groups.values()))

    @property
    def image(self) -> str:
        o = self.options
        return o.image or (o.gpu_image if self.has_gpus else DASK_IMAGE)

    @property
    def cluster_name(self) -> str:
        if self._cluster_name is None:
            user = re.sub(r"[^a-z0-9-]+", "-", getpass.getuser().lower()).strip("-") or "user"
            name = self.options.name.format(user=user, uuid=uuid.uuid4().hex[:10])
            if not NAME_RE.match(name):
                raise ProfileError(
                    f"profile {self.profile!r}: cluster name {name!r} is not valid for "
                    "Kubernetes: at most 53 lower-case letters, digits and '-', starting and "
                    "ending with a letter or digit"
                )
            self._cluster_name = name
        return self._cluster_name

    def worker_spec(self, worker: WorkerOptions, n_workers: int) -> dict[str, Any]:
        """A DaskWorkerGroup's ``worker`` spec: the operator's helper plus GPUs and placement."""
        from dask_kubernetes.operator import make_worker_spec

        command = worker.worker_command or (GPU_WORKER_COMMAND if worker.gpus else WORKER_COMMAND)
        spec: dict[str, Any] = make_worker_spec(
            image=worker.image or self.image,
            n_workers=n_workers,
            resources=worker.resources(worker.gpus),
            env={**self.options.env, **worker.env},
            worker_command=command,
        )
        pod = spec["spec"]
        if worker.node_selector:
            pod["nodeSelector"] = dict(worker.node_selector)
        tolerations = [t.to_k8s() for t in worker.tolerations]
        if worker.gpus and not any(t.get("key") == GPU_RESOURCE for t in tolerations):
            tolerations.append(dict(GPU_TOLERATION))
        if tolerations:
            pod["tolerations"] = tolerations
        return spec

    def scheduler_spec(self) -> dict[str, Any]:
        """The scheduler: the operator's helper, the ``dask`` CLI, kept off GPU nodes."""
        from dask_kubernetes.operator import make_scheduler_spec

        o = self.options
        spec: dict[str, Any] = make_scheduler_spec(
            cluster_name=self.cluster_name,
            env=o.env,
            resources=o.scheduler.resources(),
            image=self.image,
            scheduler_service_type=o.scheduler_service_type,
        )
        pod = spec["spec"]
        container = pod["containers"][0]
        container["args"] = [*SCHEDULER_COMMAND, *container["args"][1:]]
        if o.scheduler.node_selector:
            pod["nodeSelector"] = dict(o.scheduler.node_selector)
        if o.scheduler.tolerations:
            pod["tolerations"] = [t.to_k8s() for t in o.scheduler.tolerations]
        if self.has_gpus:
            # No GPU limit and no GPU toleration keep it off tainted GPU nodes; where GPU
            # nodes are not tainted, prefer nodes without GPUs.
            pod["affinity"] = {
                "nodeAffinity": {
                    "preferredDuringSchedulingIgnoredDuringExecution": [
                        {
                            "weight": 100,
                            "preference": {
                                "matchExpressions": [
                                    {"key": GPU_NODE_LABEL, "operator": "DoesNotExist"}
                                ]
                            },
                        }
                    ]
                }
            }
        return spec

    def cluster_spec(self) -> dict[str, Any]:
        """The ``DaskCluster`` resource ``create_cluster`` hands to ``KubeCluster``."""
        from dask_kubernetes.operator import make_cluster_spec

        o = self.options
        spec: dict[str, Any] = make_cluster_spec(
            name=self.cluster_name,
            image=self.image,
            n_workers=o.n_workers,
            env=o.env,
            scheduler_service_type=o.scheduler_service_type,
            # A backstop for when neither the handle nor its watchdog is left (a host that
            # went away): the operator deletes the idle DaskCluster itself. It counts from
            # the scheduler's start, workers or not, so it gets at least OPERATOR_IDLE_MIN_S;
            # the handle enforces idle_timeout itself, from the first worker on.
            idle_timeout=max(int(o.idle_timeout), OPERATOR_IDLE_MIN_S) if o.idle_timeout else 0,
        )
        spec["spec"]["worker"] = self.worker_spec(o.worker, o.n_workers)
        spec["spec"]["scheduler"] = self.scheduler_spec()
        return spec

    def worker_group_specs(self) -> dict[str, dict[str, Any]]:
        """The ``worker`` spec of each extra group, added with ``add_worker_group``."""
        return {
            name: self.worker_spec(group, group.n_workers)
            for name, group in self.options.worker_groups.items()
        }

    # -- talking to Kubernetes ---------------------------------------------------------------
    def _where(self) -> str:
        o = self.options
        path = o.kubeconfig or os.environ.get("KUBECONFIG") or "~/.kube/config"
        server = _kubeconfig_server(path, o.context)
        parts = [f"kubeconfig {path}"]
        if o.context:
            parts.append(f"context {o.context}")
        return f"the Kubernetes API server{f' at {server}' if server else ''} ({', '.join(parts)})"

    def check(self) -> None:
        self.require()
        self.cluster_name  # noqa: B018  (validates the name before anything is created)

    def connect(self) -> Any:
        """Start the event loop KubeCluster will use and check the API server answers in it."""
        from distributed.utils import LoopRunner, sync

        o = self.options
        if self._loop_runner is None:
            self._loop_runner = LoopRunner(asynchronous=False)
            self._loop_runner.start()

        async def probe() -> Any:
            from kr8s.asyncio import Api

            # As kr8s.asyncio.api() does, but with the HTTP timeout set before the first
            # request (awaiting the Api loads credentials and asks for the server version).
            # It registers itself for this thread and loop, where KubeCluster finds it.
            api = Api(
                kubeconfig=o.kubeconfig,
                context=o.context,
                namespace=o.namespace,
                bypass_factory=True,
            )
            api.timeout = o.connect_timeout
            return await api

        async def bounded() -> Any:
            # httpx's own timeouts close their connections; this one is only a backstop.
            return await asyncio.wait_for(probe(), 2 * o.connect_timeout + 5)

        try:
            # Later kr8s calls without arguments in this loop (KubeCluster's) reuse this api.
            self._api = sync(self._loop_runner.loop, bounded)
        except BaseException as exc:
            self._stop_loop()
            raise self._translate(exc) from exc
        return self._api

    def _translate(self, exc: BaseException) -> BaseException:
        import httpx
        import kr8s

        where = self._where()
        if isinstance(exc, WorkbenchError):
            return exc
        timeouts = (
            asyncio.TimeoutError,
            TimeoutError,
            httpx.TimeoutException,
            kr8s.APITimeoutError,
        )
        if isinstance(exc, timeouts):
            return ServiceUnreachableError(
                f"{where} did not answer within {self.options.connect_timeout:g}s. Check that "
                "the cluster is up and reachable from here (VPN, proxy), or raise "
                "connect_timeout."
            )
        if isinstance(exc, httpx.HTTPError | OSError) and not isinstance(exc, FileNotFoundError):
            return ServiceUnreachableError(f"cannot reach {where}: {exc}")
        if isinstance(exc, kr8s.ServerError):
            status = getattr(getattr(exc, "response", None), "status_code", None)
            if status in (401, 403):
                return AuthenticationError(
                    f"{where} rejected the credentials (HTTP {status}): {exc}. Refresh them "
                    "(e.g. your cloud CLI's get-credentials) or pick another context."
                )
            return BackendError(f"{where} answered with an error: {exc}")
        if isinstance(exc, ValueError | FileNotFoundError | KeyError):
            path = self.options.kubeconfig or os.environ.get("KUBECONFIG") or "~/.kube/config"
            return BackendError(
                f"no usable Kubernetes configuration in {path} and no in-cluster service "
                f"account ({exc}). Set options.kubeconfig (or $KUBECONFIG) to a kubeconfig "
                "file, or run inside a pod with a service account."
            )
        return exc

    def _stop_loop(self) -> None:
        runner, self._loop_runner, self._api = self._loop_runner, None, None
        if runner is not None:
            with contextlib.suppress(Exception):
                runner.stop()

    def create_cluster(self) -> Cluster:
        self.check()
        from dask_kubernetes.operator import KubeCluster

        self.connect()
        o = self.options
        spec = self.cluster_spec()
        try:
            cluster = KubeCluster(
                custom_cluster_spec=spec,
                namespace=o.namespace,
                loop=self._loop_runner.loop,
                resource_timeout=o.resource_timeout,
                port_forward_cluster_ip=o.port_forward_cluster_ip,
                shutdown_on_close=o.shutdown_on_close,
                quiet=True,
            )
        except BaseException as exc:
            self._stop_loop()
            if isinstance(exc, TimeoutError | asyncio.TimeoutError):
                raise ServiceUnreachableError(
                    f"the dask-kubernetes operator did not act on DaskCluster "
                    f"{spec['metadata']['name']} within {o.resource_timeout}s ({exc}). Check "
                    "that the operator "
                    "is installed and running (kubectl get pods -A -l "
                    "app.kubernetes.io/name=dask-kubernetes-operator)."
                ) from exc
            raise self._translate(exc) from exc
        try:
            for name, group in self.worker_group_specs().items():
                cluster.add_worker_group(name, custom_spec=group)
        except BaseException:
            self.close_cluster(cluster, timeout=60)
            raise
        return cluster  # type: ignore[no-any-return]

    def close_cluster(self, cluster: Cluster, timeout: float = 30) -> None:
        try:
            cluster.close(timeout=timeout)
        finally:
            self._stop_loop()

    def record_extra(self, cluster: Cluster) -> dict[str, Any]:
        o = self.options
        return {
            "cluster_name": getattr(cluster, "name", self._cluster_name),
            "namespace": getattr(cluster, "namespace", o.namespace),
            "kubeconfig": o.kubeconfig,
            "context": o.context,
            "connect_timeout": o.connect_timeout,
            "image": self.image,
        }

    def describe(self) -> dict[str, Any]:
        o = self.options
        gpus = [f"{o.worker.gpus} x {GPU_RESOURCE} per worker"] if o.worker.gpus else []
        gpus += [
            f"{g.gpus} x {GPU_RESOURCE} per worker in group {n}"
            for n, g in o.worker_groups.items()
            if g.gpus
        ]
        return {"kind": f"KubeCluster ({self.image})", "gpu_names": gpus}

    def abort(self, cluster: Cluster) -> None:
        """Delete the DaskCluster now (the operator removes its pods); close() follows."""
        if not self.options.shutdown_on_close or self._loop_runner is None:
            return
        from distributed.utils import sync

        name = str(getattr(cluster, "name", None) or self.cluster_name)
        namespace = cluster_namespace(cluster)

        async def delete() -> None:
            await _delete_cluster(name, namespace)

        sync(self._loop_runner.loop, delete, callback_timeout=self.options.connect_timeout)

    # -- other processes: the Kubernetes API, by the DaskCluster's name ---------------------
    @classmethod
    def _on_api(
        cls, record: ClusterRecord, work: Callable[[str, str | None], Awaitable[Any]]
    ) -> Any:
        """Run ``work(name, namespace)`` against the API server the record names."""
        from distributed.utils import sync

        options = KubernetesOptions.model_validate(
            {
                "kubeconfig": record.extra.get("kubeconfig"),
                "context": record.extra.get("context"),
                "namespace": record.extra.get("namespace"),
                "connect_timeout": float(record.extra.get("connect_timeout") or 10.0),
            }
        )
        backend = cls(options, profile=record.profile)
        backend.connect()
        name, namespace = str(record.extra["cluster_name"]), record.extra.get("namespace")

        async def bounded() -> Any:
            return await asyncio.wait_for(work(name, namespace), 2 * options.connect_timeout)

        try:
            return sync(backend._loop_runner.loop, bounded)
        except BaseException as exc:
            raise backend._translate(exc) from exc
        finally:
            backend._stop_loop()

    @classmethod
    def remote_close(cls, record: ClusterRecord, timeout: float = 30.0) -> bool:
        """Delete the DaskCluster resource (the operator removes its pods)."""
        if not record.extra.get("cluster_name"):
            return super().remote_close(record, timeout)
        cls._on_api(record, _delete_cluster)
        return True

    @classmethod
    def remote_scale(
        cls,
        record: ClusterRecord,
        n: int | None = None,
        jobs: int | None = None,
        timeout: float = 30.0,
    ) -> None:
        """Set the default worker group's replicas (ending adaptive scaling), as
        ``KubeCluster.scale`` does."""
        if not record.extra.get("cluster_name"):
            return super().remote_scale(record, n=n, jobs=jobs, timeout=timeout)

        async def scale(name: str, namespace: str | None) -> None:
            import kr8s
            from dask_kubernetes.operator._objects import DaskAutoscaler, DaskWorkerGroup

            with contextlib.suppress(kr8s.NotFoundError):
                autoscaler = await DaskAutoscaler.get(name, namespace=namespace)
                await autoscaler.delete()
            group = await DaskWorkerGroup.get(f"{name}-default", namespace=namespace)
            await group.patch({"spec": {"worker": {"replicas": int(n or 0)}}})

        cls._on_api(record, scale)
        return None

    @classmethod
    def remote_adapt(
        cls,
        record: ClusterRecord,
        minimum: int = 0,
        maximum: int | None = None,
        timeout: float = 30.0,
    ) -> None:
        """Create (or change) the cluster's DaskAutoscaler, as ``KubeCluster.adapt`` does."""
        if not record.extra.get("cluster_name"):
            return super().remote_adapt(record, minimum, maximum, timeout=timeout)

        async def adapt(name: str, namespace: str | None) -> None:
            import kr8s
            from dask_kubernetes.operator._objects import DaskAutoscaler

            autoscaler = await DaskAutoscaler(
                {
                    "apiVersion": "kubernetes.dask.org/v1",
                    "kind": "DaskAutoscaler",
                    "metadata": {
                        "name": name,
                        "dask.org/cluster-name": name,
                        "dask.org/component": "autoscaler",
                    },
                    "spec": {"cluster": name, "minimum": minimum, "maximum": maximum},
                },
                namespace,
            )
            try:
                await autoscaler.patch({"spec": {"minimum": minimum, "maximum": maximum}})
            except kr8s.NotFoundError:
                await autoscaler.create()

        cls._on_api(record, adapt)
        return None

    @classmethod
    def cleanup_orphans(cls, record: ClusterRecord) -> None:
        """The owner died without closing: delete its DaskCluster (if it still exists)."""
        if record.extra.get("cluster_name"):
            cls._on_api(record, _delete_cluster)

    @classmethod
    def connect_code(cls, record: ClusterRecord) -> str:
        extra = record.extra
        if not extra.get("cluster_name"):
            return super().connect_code(record)
        args = [repr(extra["cluster_name"])]
        if extra.get("namespace"):
            args.append(f"namespace={extra['namespace']!r}")
        lines = []
        if extra.get("kubeconfig"):
            lines += [
                "import os",
                "",
                "# The kubeconfig of the profile that started the cluster:",
                f"os.environ['KUBECONFIG'] = {extra['kubeconfig']!r}",
            ]
        lines += [
            "from dask_kubernetes.operator import KubeCluster",
            "from distributed import Client",
            "",
            f"cluster = KubeCluster.from_name({', '.join(args)})",
            "client = Client(cluster)",
            "client",
            "",
        ]
        return "\n".join(lines)


def cluster_namespace(cluster: Any) -> str | None:
    value = getattr(cluster, "namespace", None)
    return str(value) if value else None


async def _delete_cluster(name: str, namespace: str | None) -> None:
    """Delete DaskCluster ``name``; one that is gone already is not an error."""
    import kr8s
    from dask_kubernetes.operator._objects import DaskCluster

    with contextlib.suppress(kr8s.NotFoundError):
        cluster = await DaskCluster.get(name, namespace=namespace)
        await cluster.delete()


def _kubeconfig_server(path: str, context: str | None) -> str | None:
    """The API server URL a kubeconfig's (current) context points at, for messages."""
    import yaml

    try:
        config = yaml.safe_load(Path(path.split(os.pathsep)[0]).expanduser().read_text())
        name = context or config.get("current-context")
        ctx = next(c["context"] for c in config.get("contexts", []) if c["name"] == name)
        cluster = next(c["cluster"] for c in config["clusters"] if c["name"] == ctx["cluster"])
        return str(cluster["server"])
    except Exception:
        return None
