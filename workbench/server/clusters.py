"""``/workbench/api/clusters``: running clusters from the record store, and their control.

The list comes from :class:`~workbench.clusters.record_store.RecordStore`, so it shows
clusters started anywhere by this user: in notebooks, terminals, or from the sidebar.
Launching starts the cluster in a detached process (it survives a restart of the Jupyter
server). Scale, adapt, stop, connect code and the live facts go through
:class:`~workbench.clusters.control.ClusterControl`, the same path as the CLI's, which
dispatches them to the cluster's backend: its owner process for ``local`` and ``slurm``,
the gateway for ``gateway``, the Kubernetes API for ``kubernetes``.
"""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, StrictFloat, StrictInt, model_validator

from ..clusters.control import ClusterControl, Probed
from ..clusters.detached import POLL_S, check_launch, launch_detached, start_detached
from ..clusters.profiles import check_sidebar_overrides
from ..clusters.record import ClusterRecord
from .base import ConflictError, WorkbenchHandler


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
    record: ClusterRecord, timeout: float = 2.0, accounting: bool = False
) -> dict[str, Any]:
    """The record with live facts: status, workers, threads, memory, GPUs, problem; whether
    new notebooks connect to it; with ``accounting``, the cost so far and the GPU idle time
    of a running cluster (its GPU figures once its metrics are collected: the first list
    starts the collection, the next shows them)."""
    from ..autoconnect import read_mark

    (probed,) = ClusterControl().probe([record], timeout=timeout, owner_info=accounting)
    return _with_extras(probed, read_mark(), accounting)


def cluster_summaries(timeout: float = 2.0, accounting: bool = False) -> list[dict[str, Any]]:
    """:func:`cluster_summary` of every cluster, probed at once
    (:meth:`ClusterControl.probe`): the list takes about one timeout however many
    schedulers or owners are slow or dead."""
    from ..autoconnect import read_mark

    mark = read_mark()
    return [
        _with_extras(p, mark, accounting)
        for p in ClusterControl().probe(timeout=timeout, owner_info=accounting)
    ]


def _with_extras(probed: Probed, mark: dict[str, Any] | None, accounting: bool) -> dict[str, Any]:
    from ..accounting import cluster_accounting, cost_from_owner
    from .metrics import watched

    summary, record = probed.summary, probed.record
    summary["autoconnect"] = mark is not None and mark["cluster"] == record.id
    if accounting and summary["status"] == "running":
        store = watched(record.scheduler_address) if record.gpus else None
        cost = cost_from_owner(record, probed.owner) if probed.owner_asked else None
        summary["accounting"] = cluster_accounting(record, store, cost)
    return summary


def scale_cluster(cluster_id: str, n: int) -> dict[str, Any]:
    record = ClusterControl().scale(cluster_id, n)
    return {"id": record.id, "requested_workers": n}


def adapt_cluster(cluster_id: str, minimum: int, maximum: int | None) -> dict[str, Any]:
    record = ClusterControl().adapt(cluster_id, minimum, maximum)
    return {"id": record.id, "adapt": {"minimum": minimum, "maximum": maximum}}


def launch_warnings(profile: str, overrides: dict[str, Any]) -> list[str]:
    """What launching ``profile`` risks on this machine when it is shared (security: none,
    a dashboard on the network): shown by the sidebar, and in the launch's reply."""
    from ..clusters.profiles import get_profile
    from ..host_sharing import shared_host_warnings

    prof = get_profile(profile)
    return shared_host_warnings(prof.resolve(**overrides), prof.name)


def launch_cluster(req: LaunchRequest) -> dict[str, Any]:
    record = launch_detached(req.profile, req.options, timeout=float(req.timeout))
    return cluster_summary(record, timeout=5)


#: Launches this server runs at once; more are refused (429) until one is done.
MAX_CONCURRENT_LAUNCHES = 4
_launching = 0


class TooManyLaunchesError(ConflictError):
    """MAX_CONCURRENT_LAUNCHES launches are already in progress: 429."""

    http_status = 429


def stop_cluster(cluster_id: str) -> dict[str, Any]:
    from ..autoconnect import clear_mark
    from . import metrics
    from .dashboards import stop_dashboard

    control = ClusterControl()
    # This server's own connections to the cluster go first: a metrics collector whose
    # scheduler vanishes under it tries to reconnect, and is then cancelled mid-try
    # (distributed logs that as an ERROR with two tracebacks).
    metrics.forget(control.get(cluster_id).scheduler_address)
    record = control.stop(cluster_id)
    stop_dashboard(record.id)  # it would exit by itself a moment later
    clear_mark(record.id)  # new notebooks would fail to connect to it
    return {"id": record.id, "stopped": True}


def connect_cell(cluster_id: str) -> dict[str, Any]:
    control = ClusterControl()
    record = control.get(cluster_id)
    return {"id": record.id, "code": control.connect_code(record)}


class ClustersHandler(WorkbenchHandler):
    auth_resource = "workbench:clusters"
    auth_actions: ClassVar[dict[str, str]] = {"post": "execute"}

    async def get(self) -> None:
        self.at("listing clusters")
        self.reply({"clusters": await self.run(cluster_summaries, accounting=True)})

    async def post(self) -> None:
        """Launch: the cluster process is started in the thread pool, then watched from the
        event loop, so that a launch does not hold a thread for its whole wait."""
        global _launching
        req = self.body(LaunchRequest)
        if _launching >= MAX_CONCURRENT_LAUNCHES:
            raise TooManyLaunchesError(
                f"{_launching} launches are in progress (at most {MAX_CONCURRENT_LAUNCHES} "
                "at once); try again when one is done"
            )
        _launching += 1
        what = f"profile {req.profile!r}"
        try:
            self.at(f"checking which options {what} lets the sidebar change")
            await self.run(check_sidebar_overrides, req.profile, req.options)
            self.at(f"checking {what} before launching it")
            await self.run(check_launch, req.profile, req.options)
            risks = await self.run(launch_warnings, req.profile, req.options)
            for risk in risks:
                self.log.warning("workbench: %s", risk)
            self.at(f"starting the cluster process of {what}")
            pending = await self.run(
                start_detached, req.profile, req.options, float(req.timeout), checked=True
            )
            self.at(f"waiting for the cluster of {what} (its log: {pending.log})")
            while (record := await self.run(pending.poll)) is None:
                await asyncio.sleep(POLL_S)
        finally:
            _launching -= 1
        self.at(f"reading the state of the new cluster {record.id}")
        summary = await self.run(cluster_summary, record, timeout=5)
        self.reply({**summary, "warnings": risks}, status=201)


class ClusterHandler(WorkbenchHandler):
    auth_resource = "workbench:clusters"

    async def get(self, cluster_id: str) -> None:
        self.at(f"reading the state of cluster {cluster_id}")
        record = await self.run(ClusterControl().get, cluster_id)
        self.reply(await self.run(cluster_summary, record, accounting=True))

    async def delete(self, cluster_id: str) -> None:
        self.at(f"stopping cluster {cluster_id}")
        self.reply(await self.run(stop_cluster, cluster_id))


class ScaleHandler(WorkbenchHandler):
    auth_resource = "workbench:clusters"

    async def post(self, cluster_id: str) -> None:
        req = self.body(ScaleRequest)
        self.at(f"scaling cluster {cluster_id} to {req.n} workers")
        self.reply(await self.run(scale_cluster, cluster_id, req.n))


class AdaptHandler(WorkbenchHandler):
    auth_resource = "workbench:clusters"

    async def post(self, cluster_id: str) -> None:
        req = self.body(AdaptRequest)
        self.at(f"making cluster {cluster_id} adaptive")
        self.reply(await self.run(adapt_cluster, cluster_id, req.minimum, req.maximum))


class ConnectHandler(WorkbenchHandler):
    auth_resource = "workbench:clusters"

    async def get(self, cluster_id: str) -> None:
        self.at(f"writing the connect cell of cluster {cluster_id}")
        self.reply(await self.run(connect_cell, cluster_id))
