"""``/workbench/api/clusters``: running clusters from the on-disk registry, and their control.

The list comes from :class:`~workbench.clusters.running.ClusterRegistry`, so it
shows clusters started anywhere by this user: in notebooks, terminals, or from the
sidebar. Launching starts the cluster in a detached process (it survives a restart
of the Jupyter server); scale, adapt and stop are requests to the cluster's owner
over the scheduler's workbench handlers.
"""

from __future__ import annotations

import asyncio
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictFloat, StrictInt, model_validator
from tornado import web

from ..clusters.connect import connect_code
from ..clusters.detached import launch_detached
from ..clusters.running import ClusterRecord, ClusterRegistry, scheduler_call
from ..errors import WorkbenchError
from .base import WorkbenchHandler


class LaunchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    profile: str = Field(min_length=1)
    options: dict[str, Any] = Field(default_factory=dict)
    timeout: StrictInt | StrictFloat = Field(120, gt=0, le=3600)


class ScaleRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    n: StrictInt = Field(ge=0, le=100_000)


class AdaptRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    minimum: StrictInt = Field(0, ge=0)
    maximum: StrictInt | None = Field(None, ge=0)

    @model_validator(mode="after")
    def _order(self) -> AdaptRequest:
        if self.maximum is not None and self.maximum < self.minimum:
            raise ValueError(f"maximum ({self.maximum}) is below minimum ({self.minimum})")
        return self


def cluster_summary(
    registry: ClusterRegistry, record: ClusterRecord, timeout: float = 2.0
) -> dict[str, Any]:
    """The record with live facts: status, workers, threads, memory, GPUs."""
    status = registry.status(record)
    info = registry.info(record, timeout=timeout) if status == "running" else {}
    data = record.to_dict()
    data.pop("worker_pids", None)
    return {
        **data,
        "status": status,
        "workers": info.get("workers"),
        "threads": info.get("threads"),
        "memory": info.get("memory"),
        "n_gpus": len(record.gpus),
    }


def _controllable(registry: ClusterRegistry, cluster_id: str) -> ClusterRecord:
    record = registry.get(cluster_id)
    status = registry.status(record)
    if status == "stale":
        raise WorkbenchError(
            f"cluster {record.id} is stale: the process that owned it (pid {record.owner_pid}) "
            "died. Stop it to clean up what it left behind."
        )
    if status == "unreachable":
        raise WorkbenchError(
            f"cluster {record.id}: its scheduler at {record.scheduler_address} does not answer"
        )
    return record


def _request(record: ClusterRecord, op: str, **kwargs: Any) -> None:
    try:
        reply = scheduler_call(record.scheduler_address, op, timeout=30, **kwargs)
    except (OSError, asyncio.TimeoutError) as exc:
        raise WorkbenchError(
            f"cluster {record.id} did not answer at {record.scheduler_address}: {exc}"
        ) from exc
    except Exception as exc:  # the scheduler answered with an error
        raise WorkbenchError(
            f"cluster {record.id} refused {op.removeprefix('workbench_')}: {exc}. It may have "
            "been started without workbench (only workbench clusters accept scale/adapt)."
        ) from exc
    if reply not in ("ok", "closing"):
        raise WorkbenchError(f"cluster {record.id}: unexpected reply to {op}: {reply!r}")


def scale_cluster(cluster_id: str, n: int) -> dict[str, Any]:
    registry = ClusterRegistry()
    record = _controllable(registry, cluster_id)
    _request(record, "workbench_scale", n=n)
    return {"id": record.id, "requested_workers": n}


def adapt_cluster(cluster_id: str, minimum: int, maximum: int | None) -> dict[str, Any]:
    registry = ClusterRegistry()
    record = _controllable(registry, cluster_id)
    _request(record, "workbench_adapt", minimum=minimum, maximum=maximum)
    return {"id": record.id, "adapt": {"minimum": minimum, "maximum": maximum}}


def launch_cluster(req: LaunchRequest) -> dict[str, Any]:
    record = launch_detached(req.profile, req.options, timeout=float(req.timeout))
    return cluster_summary(ClusterRegistry(), record, timeout=5)


def stop_cluster(cluster_id: str) -> dict[str, Any]:
    from . import metrics
    from .dashboards import stop_dashboard

    record = ClusterRegistry().stop(cluster_id)
    stop_dashboard(record.id)  # it would exit by itself a moment later
    metrics.forget(record.scheduler_address)
    return {"id": record.id, "stopped": True}


class ClustersHandler(WorkbenchHandler):
    @web.authenticated
    async def get(self) -> None:
        registry = ClusterRegistry()
        records = await self.run(registry.list)
        summaries = await asyncio.gather(*(self.run(cluster_summary, registry, r) for r in records))
        self.reply({"clusters": list(summaries)})

    @web.authenticated
    async def post(self) -> None:
        req = self.body(LaunchRequest)
        self.reply(await self.run(launch_cluster, req), status=201)


class ClusterHandler(WorkbenchHandler):
    @web.authenticated
    async def get(self, cluster_id: str) -> None:
        registry = ClusterRegistry()
        record = await self.run(registry.get, cluster_id)
        self.reply(await self.run(cluster_summary, registry, record))

    @web.authenticated
    async def delete(self, cluster_id: str) -> None:
        self.reply(await self.run(stop_cluster, cluster_id))


class ScaleHandler(WorkbenchHandler):
    @web.authenticated
    async def post(self, cluster_id: str) -> None:
        req = self.body(ScaleRequest)
        self.reply(await self.run(scale_cluster, cluster_id, req.n))


class AdaptHandler(WorkbenchHandler):
    @web.authenticated
    async def post(self, cluster_id: str) -> None:
        req = self.body(AdaptRequest)
        self.reply(await self.run(adapt_cluster, cluster_id, req.minimum, req.maximum))


class ConnectHandler(WorkbenchHandler):
    @web.authenticated
    async def get(self, cluster_id: str) -> None:
        record = await self.run(ClusterRegistry().get, cluster_id)
        self.reply({"id": record.id, "code": connect_code(record)})
