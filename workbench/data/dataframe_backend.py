"""cuDF or pandas: which dask ``dataframe.backend`` a load uses.

``auto`` follows the cluster the frame will be computed on: cuDF when its workers have
GPUs and can import ``dask_cudf``, pandas otherwise. The cluster is the one passed as
``client=`` (a workbench ClusterHandle or a ``distributed.Client``), else the default
distributed client, else this machine. Both backends run the same dask reader
(``dask.dataframe.read_*`` under ``dask.config.set({"dataframe.backend": ...})``).
"""

from __future__ import annotations

import importlib.util
import logging
from dataclasses import dataclass
from typing import Any

from ..errors import DataError, StorageDependencyError

logger = logging.getLogger(__name__)

BACKENDS = ("auto", "pandas", "cudf")
GPU_HINT = "pip install 'workbench[gpu]' (cuDF and dask-cudf for CUDA 13; [gpu-cu12] for CUDA 12)"


@dataclass(frozen=True)
class Choice:
    backend: str  # "pandas" or "cudf"
    reason: str


def _cudf_importable() -> bool:
    return importlib.util.find_spec("dask_cudf") is not None


def probe_worker() -> dict[str, Any]:
    """Run on a worker: does it see a GPU, and can it import dask_cudf?"""
    from workbench.gpus import detect_gpus

    return {"gpus": detect_gpus().count, "cudf": _cudf_importable()}


def _client_of(client: Any) -> Any:
    """A distributed Client from a ClusterHandle, a Client, or the default client."""
    if client is None:
        try:
            from distributed import default_client

            return default_client()
        except (ImportError, ValueError):
            return None
    from ..clusters.handle import ClusterHandle

    if isinstance(client, ClusterHandle):
        return client.client
    return client


def choose(requested: str = "auto", client: Any = None) -> Choice:
    """The backend to load with, and why (the reason goes into the lineage manifest)."""
    if requested not in BACKENDS:
        raise DataError(f"backend must be one of {', '.join(BACKENDS)}, got {requested!r}")
    if requested == "cudf":
        if not _cudf_importable():
            raise StorageDependencyError(
                f"backend='cudf' needs dask-cudf, which is not installed here. Install: {GPU_HINT}"
            )
        return Choice("cudf", "requested backend='cudf'")
    if requested == "pandas":
        return Choice("pandas", "requested backend='pandas'")

    from ..clusters.handle import ClusterHandle

    if isinstance(client, ClusterHandle):
        if not client.gpus:
            return Choice("pandas", f"cluster {client.id} has CPU workers")
        return _gpu_choice(f"cluster {client.id} has {len(client.gpus)} GPU(s)", _cudf_importable())
    dclient = _client_of(client)
    if dclient is None:
        from ..gpus import detect_gpus

        inventory = detect_gpus()
        if not inventory.count:
            return Choice("pandas", "no cluster and no GPU on this machine")
        return _gpu_choice(
            f"no cluster; this machine has {inventory.count} GPU(s)", _cudf_importable()
        )
    try:
        probes = _probe(dclient)
    except Exception as exc:
        logger.warning("could not ask the workers whether they have GPUs (%s); using pandas", exc)
        return Choice("pandas", f"could not probe the workers for GPUs: {exc}")
    if not probes:
        return Choice("pandas", "the cluster has no workers yet")
    with_gpu = [a for a, p in probes.items() if p.get("gpus")]
    if not with_gpu:
        return Choice("pandas", f"none of the {len(probes)} worker(s) has a GPU")
    if len(with_gpu) < len(probes):
        return Choice(
            "pandas",
            f"only {len(with_gpu)} of {len(probes)} workers have a GPU; cuDF needs all of them",
        )
    return _gpu_choice(
        f"all {len(probes)} worker(s) have a GPU", all(p.get("cudf") for p in probes.values())
    )


_probes: dict[tuple[int, tuple[str, ...]], dict[str, dict[str, Any]]] = {}


def _probe(dclient: Any) -> dict[str, dict[str, Any]]:
    """``probe_worker`` on every worker, asked once per client and set of workers."""
    workers = tuple(sorted(dclient.scheduler_info().get("workers", {})))
    key = (id(dclient), workers)
    if key not in _probes or not workers:
        if len(_probes) > 64:
            _probes.clear()
        _probes[key] = dclient.run(probe_worker)
    return _probes[key]


def _gpu_choice(why: str, cudf_ok: bool) -> Choice:
    if cudf_ok:
        return Choice("cudf", why)
    reason = f"{why}, but dask_cudf cannot be imported there ({GPU_HINT}); loading with pandas"
    logger.warning(reason)
    return Choice("pandas", reason)
