"""The Dask client a training call runs on, and whether its workers have GPUs."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from .errors import TrainingError

if TYPE_CHECKING:
    from distributed import Client

Device = Literal["auto", "cpu", "cuda"]


def get_client(cluster: Any) -> Client:
    """A ``distributed.Client`` from a ClusterHandle, a Client, or the default client."""
    from distributed import Client

    if cluster is None:
        from distributed import default_client

        try:
            found: Client = default_client()
            return found
        except ValueError:
            raise TrainingError(
                "no cluster given and no default Dask client: pass the handle from "
                "workbench.launch(...) (or a distributed.Client) as the first argument"
            ) from None
    if isinstance(cluster, Client):
        return cluster
    client = getattr(cluster, "client", None)
    if isinstance(client, Client):
        return client
    raise TrainingError(
        f"expected a ClusterHandle from workbench.launch(...) or a distributed.Client, "
        f"got {type(cluster).__name__}"
    )


def worker_has_cuda() -> bool:
    """Runs on a worker: does this worker have a CUDA device it may use?"""
    import os

    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None and visible.strip() in ("", "-1"):
        return False
    try:
        import torch

        return bool(torch.cuda.is_available())
    except ImportError:
        pass
    from ..gpus import detect_gpus

    return detect_gpus().count > 0


def cluster_has_gpus(cluster: Any, client: Client) -> bool:
    """True when the cluster's workers run on GPUs.

    A workbench handle knows (``handle.gpus``); for a plain Client every worker is asked.
    """
    gpus = getattr(cluster, "gpus", None)
    if isinstance(gpus, list):
        return bool(gpus)
    answers = client.run(worker_has_cuda)
    return bool(answers) and all(answers.values())


def resolve_device(device: str, cluster: Any, client: Client) -> Literal["cpu", "cuda"]:
    if device not in ("auto", "cpu", "cuda"):
        raise TrainingError(f"device must be 'auto', 'cpu' or 'cuda', got {device!r}")
    if device == "auto":
        return "cuda" if cluster_has_gpus(cluster, client) else "cpu"
    if device == "cuda" and not cluster_has_gpus(cluster, client):
        raise TrainingError(
            "device='cuda' but the cluster's workers have no GPU; launch a GPU profile "
            "(workbench.launch('local') on a GPU machine) or use device='auto'"
        )
    return "cuda" if device == "cuda" else "cpu"


def worker_addresses(client: Client) -> list[str]:
    workers = sorted(client.scheduler_info(n_workers=-1)["workers"])
    if not workers:
        raise TrainingError(
            "the cluster has no workers; scale it up (cluster.scale(2)) or wait for workers"
        )
    return workers
