"""``/workbench/api/autoconnect`` and the kernel provisioner that does the connecting.

``GET`` answers the mark (``{cluster, since, problem}``), ``PUT {"cluster": id}`` marks
a running cluster for new notebooks, ``DELETE`` turns auto-connect off. The mark lives
in the state directory (:mod:`workbench.autoconnect`), so it survives a restart of the
Jupyter server; stopping the marked cluster through the API clears it.

:class:`AutoConnectProvisioner` is jupyter_client's local provisioner plus one step:
while a mark is set, a Python kernel is started with ``--ext=workbench.autoconnect`` and
the cluster's id in its environment, so it connects before it runs any cell (a
kernel-provisioning hook, as the issue suggests; nothing is sent to the kernel after it
started, so no cell can run before ``client`` exists). The workbench server extension
makes it the server's default provisioner unless another default is configured
(``KernelProvisionerFactory.default_provisioner_name``); kernel specs that name a
provisioner of their own keep it. The kernel writes what happened to
``<state dir>/lab/kernels/<kernel id>.json``, which :func:`kernel_autoconnect` reads for
the status bar.
"""

from __future__ import annotations

import contextlib
import time
from importlib.metadata import EntryPoint
from typing import Any

from jupyter_client.provisioning.local_provisioner import LocalProvisioner
from pydantic import BaseModel, ConfigDict, Field

from .. import autoconnect
from .base import WorkbenchHandler

PROVISIONER_NAME = "workbench-provisioner"
PROVISIONER_GROUP = "jupyter_client.kernel_provisioners"
#: A kernel that has not reported this long after its start did not load the extension
#: (workbench is not installed in the kernel's environment, or it failed to start).
REPORT_GRACE_S = 60.0

#: kernel id -> (cluster id, start time) of kernels started with auto-connect here.
_started: dict[str, tuple[str, float]] = {}


def _is_ipykernel(cmd: list[str], language: str) -> bool:
    return language.lower() == "python" and any("ipykernel" in part for part in cmd)


class AutoConnectProvisioner(LocalProvisioner):
    """The local provisioner; while a cluster is marked, Python kernels connect to it."""

    async def pre_launch(self, **kwargs: Any) -> dict[str, Any]:
        kwargs = await super().pre_launch(**kwargs)
        mark = autoconnect.read_mark()
        language = str(getattr(self.kernel_spec, "language", "") or "")
        if mark is None or not _is_ipykernel(list(kwargs.get("cmd", [])), language):
            _started.pop(self.kernel_id, None)
            return kwargs
        report = autoconnect.report_dir() / f"{self.kernel_id}.json"
        with contextlib.suppress(FileNotFoundError):
            report.unlink()  # a restart: the old kernel's word no longer holds
        kwargs["cmd"] = [*kwargs["cmd"], f"--ext={autoconnect.EXTENSION}"]
        env = dict(kwargs.get("env") or {})
        env[autoconnect.ENV_CLUSTER] = str(mark["cluster"])
        env[autoconnect.ENV_REPORT] = str(report)
        kwargs["env"] = env
        _started[self.kernel_id] = (str(mark["cluster"]), time.time())
        self.log.info(
            "workbench: kernel %s starts with auto-connect to cluster %s",
            self.kernel_id,
            mark["cluster"],
        )
        return kwargs


def install_provisioner(parent: Any, log: Any) -> bool:
    """Make :class:`AutoConnectProvisioner` the default provisioner of this server, unless
    another default is configured. Returns whether it is the default now."""
    from jupyter_client.provisioning.factory import KernelProvisionerFactory

    factory = KernelProvisionerFactory.instance(parent=parent)
    if PROVISIONER_NAME not in factory.provisioners:
        # An editable install made before the entry point was declared: register it here.
        factory.provisioners[PROVISIONER_NAME] = EntryPoint(
            name=PROVISIONER_NAME,
            value=f"{__name__}:{AutoConnectProvisioner.__name__}",
            group=PROVISIONER_GROUP,
        )
    current = factory.default_provisioner_name
    if current not in ("local-provisioner", PROVISIONER_NAME):
        log.warning(
            "workbench: auto-connect is off in this server: its default kernel provisioner "
            "is %r (configured); workbench's would replace it",
            current,
        )
        return False
    factory.default_provisioner_name = PROVISIONER_NAME
    return True


def kernel_autoconnect(kernel_id: str) -> dict[str, Any] | None:
    """What the kernel's auto-connect did: ``{cluster, status, message}``; None when the
    kernel was not started with auto-connect by this server."""
    started = _started.get(kernel_id)
    if started is None:
        return None
    cluster, at = started
    report = autoconnect.read_report(autoconnect.report_dir() / f"{kernel_id}.json")
    if report is not None:
        return {
            "cluster": str(report.get("cluster", cluster)),
            "status": str(report.get("status", "failed")),
            "message": str(report.get("message", "")),
        }
    if time.time() - at > REPORT_GRACE_S:
        return {
            "cluster": cluster,
            "status": "failed",
            "message": (
                f"the kernel did not report within {REPORT_GRACE_S:.0f}s of its start: is "
                "workbench installed in the kernel's environment?"
            ),
        }
    return {"cluster": cluster, "status": "starting", "message": ""}


def forget_kernel(kernel_id: str) -> None:
    """A kernel was shut down: drop what is known about its auto-connect."""
    _started.pop(kernel_id, None)
    with contextlib.suppress(OSError):
        (autoconnect.report_dir() / f"{kernel_id}.json").unlink()


def mark_state() -> dict[str, Any]:
    """The mark, and why its cluster cannot be used now (``problem``), if it cannot."""
    from ..clusters.control import ClusterControl

    mark = autoconnect.read_mark()
    if mark is None:
        return {"cluster": None, "since": None, "problem": None}
    problem = None
    try:
        ClusterControl().running(mark["cluster"])
    except Exception as exc:
        problem = str(exc)
    return {"cluster": mark["cluster"], "since": mark.get("since"), "problem": problem}


def set_autoconnect(cluster_id: str) -> dict[str, Any]:
    from ..clusters.control import ClusterControl

    record = ClusterControl().running(cluster_id)  # 404 unknown, 409 not running
    autoconnect.set_mark(record.id)
    return mark_state()


def clear_autoconnect() -> dict[str, Any]:
    autoconnect.clear_mark()
    return mark_state()


class AutoConnectRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    cluster: str = Field(min_length=1)


class AutoConnectHandler(WorkbenchHandler):
    auth_resource = "workbench:autoconnect"

    async def get(self) -> None:
        self.reply(await self.run(mark_state))

    async def put(self) -> None:
        req = self.body(AutoConnectRequest)
        self.reply(await self.run(set_autoconnect, req.cluster))

    async def delete(self) -> None:
        self.reply(await self.run(clear_autoconnect))
