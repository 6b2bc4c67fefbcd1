"""The rank side of PyTorch training: the code that runs as one task on each rank's Dask
worker (:func:`run_rank`), with what it needs to build the loss, the optimizer and the
tensors from its partitions.

Nothing here runs in the notebook: :mod:`._torch_driver` plans the ranks, ships a
:class:`RankSpec` and the partitions to each of them, and collects what :func:`run_rank`
returns. Each rank:

1. turns its partitions into tensors (cuDF partitions stay on the GPU through DLPack);
2. with more than one rank, joins a ``torch.distributed`` process group (``gloo`` on CPU
   workers, ``nccl`` on GPU workers) at the address rank 0 found (:func:`free_port`), wraps
   the model in ``DistributedDataParallel`` and handles uneven shards with DDP's ``Join``;
3. after each epoch all-reduces the loss and metric sums and a failure flag, so that every
   rank stops together when one fails; rank 0 publishes the metrics to the notebook and
   checks whether the user asked to stop (the ranks all-reduce that flag too);
4. returns its counts, and rank 0 its weights.
"""

from __future__ import annotations

import contextlib
import io
import math
import os
import socket
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from ._live import publish, stop_requested
from .errors import InvalidDataError, TrainingError

if TYPE_CHECKING:
    import torch

CLASSIFICATION_LOSSES = {"cross_entropy"}
LOSSES = ["cross_entropy", "bce", "mse", "l1", "huber"]
METRICS = ["accuracy", "rmse", "mae", "loss"]
OPTIMIZERS = ["adam", "adamw", "sgd"]


def make_loss(loss: Any) -> torch.nn.Module:
    import torch

    if not isinstance(loss, str):
        module = loss() if isinstance(loss, type) else loss
        if not isinstance(module, torch.nn.Module):
            raise TrainingError(f"loss must be a torch loss module, got {type(module).__name__}")
        return module
    classes: dict[str, type[torch.nn.Module]] = {
        "cross_entropy": torch.nn.CrossEntropyLoss,
        "bce": torch.nn.BCEWithLogitsLoss,
        "mse": torch.nn.MSELoss,
        "l1": torch.nn.L1Loss,
        "huber": torch.nn.HuberLoss,
    }
    return classes[loss]()


def make_optimizer(
    optimizer: Any, params: Any, lr: float, weight_decay: float
) -> torch.optim.Optimizer:
    import torch

    if callable(optimizer) and not isinstance(optimizer, str):
        return optimizer(params)  # type: ignore[no-any-return]
    if optimizer == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    if optimizer == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    return torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=weight_decay)


FRACTIONAL_LABELS = (
    "cross_entropy needs integer class labels (0..n_classes-1); the label column has "
    "fractional values: use loss='mse' for regression"
)


def label_tensor(values: Any, loss: Any) -> torch.Tensor:
    """Labels as the loss wants them: class indices (int64) for cross-entropy, floats else.

    ``values``: a NumPy array (pandas partitions) or a tensor already on the GPU (cuDF
    partitions, through DLPack), which stays where it is.
    """
    import numpy as np
    import torch

    if isinstance(values, torch.Tensor):
        if loss == "cross_entropy":
            if values.is_floating_point() and not bool(torch.all(values == values.round())):
                raise InvalidDataError(FRACTIONAL_LABELS)
            return values.to(torch.int64)
        return values.to(torch.float32)
    if loss == "cross_entropy":
        arr = np.asarray(values)
        if arr.dtype.kind == "f" and not np.all(np.mod(arr, 1) == 0):
            raise InvalidDataError(FRACTIONAL_LABELS)
        return torch.tensor(arr.astype(np.int64))
    return torch.tensor(np.asarray(values, dtype=np.float32))


def match_output(out: torch.Tensor, y: torch.Tensor, loss: Any) -> torch.Tensor:
    """Float targets of shape (n,) against a model output of shape (n, 1)."""
    if loss != "cross_entropy" and out.dim() == 2 and out.shape[1] == 1 and y.dim() == 1:
        return y.unsqueeze(1)
    return y


@dataclass
class RankSpec:
    """What every rank needs; pickled to the workers with the model."""

    model: Any
    features: list[str]
    label: str
    loss: Any
    optimizer: Any
    lr: float
    weight_decay: float
    epochs: int
    batch_size: int
    metrics: list[str]
    device: str
    seed: int
    timeout: float
    topic: str
    stop_name: str
    world_size: int
    master_addr: str = ""
    master_port: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


def free_port() -> tuple[str, int]:
    """On the rank-0 worker: its host as the other workers reach it, and a free port."""
    from distributed import get_worker

    host = get_worker().address.split("://", 1)[-1].rsplit(":", 1)[0].strip("[]")
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.bind((host, 0))
        return host, int(s.getsockname()[1])


def _frame(parts: list[Any]) -> Any:
    """One frame of a rank's partitions, concatenated by their own library: ``cudf.concat``
    for cuDF partitions (on the GPU), ``pandas.concat`` for pandas ones (dask's dispatch)."""
    from dask.dataframe.dispatch import concat

    parts = [p for p in parts if len(p)]
    if len(parts) <= 1:
        return parts[0] if parts else None
    return concat(parts, ignore_index=True)


def on_gpu(frame: Any) -> bool:
    """A cuDF frame (its columns live in GPU memory), rather than pandas."""
    return type(frame).__module__.split(".")[0] in ("cudf", "dask_cudf")


def _tensors(parts: list[Any], spec: RankSpec) -> tuple[torch.Tensor, torch.Tensor]:
    """Features and labels of a rank's partitions as tensors.

    cuDF partitions reach torch without leaving the GPU: ``to_cupy`` gives a CuPy array of
    the columns (missing values as NaN) and ``torch.from_dlpack`` wraps that memory. pandas
    partitions go through NumPy on the host.
    """
    import numpy as np
    import torch

    frame = _frame(parts)
    if frame is None:
        return torch.empty((0, len(spec.features))), torch.empty((0,))
    if on_gpu(frame):
        from torch.utils.dlpack import from_dlpack

        columns = frame[spec.features].to_cupy(dtype=np.float32, na_value=np.nan)
        X = from_dlpack(columns).contiguous()  # cuDF may hand out column-major memory
        y = from_dlpack(frame[spec.label].to_cupy())
        return X, label_tensor(y, spec.loss)
    X = torch.tensor(frame[spec.features].to_numpy(dtype=np.float32, na_value=np.nan))
    return X, label_tensor(frame[spec.label].to_numpy(), spec.loss)


def _metric_sums(
    model: torch.nn.Module,
    X: torch.Tensor,
    y: torch.Tensor,
    spec: RankSpec,
    loss_fn: torch.nn.Module,
    device: torch.device,
) -> list[float]:
    """[n, loss_sum, correct, sq_err, abs_err] over one rank's data."""
    import torch

    sums = [0.0] * 5
    model.eval()
    with torch.no_grad():
        for start in range(0, len(X), max(spec.batch_size, 1024)):
            xb = X[start : start + max(spec.batch_size, 1024)].to(device)
            yb = y[start : start + max(spec.batch_size, 1024)].to(device)
            out = model(xb)
            yt = match_output(out, yb, spec.loss)
            n = len(xb)
            sums[0] += n
            sums[1] += float(loss_fn(out, yt)) * n
            if "accuracy" in spec.metrics:
                if spec.loss == "bce":
                    pred = (out > 0).to(yt.dtype)
                    sums[2] += float((pred == yt).float().mean()) * n
                else:
                    sums[2] += float((out.argmax(dim=1) == yt).sum())
            if "rmse" in spec.metrics or "mae" in spec.metrics:
                diff = out.reshape(yt.shape).float() - yt.float()
                sums[3] += float((diff**2).sum())
                sums[4] += float(diff.abs().sum())
    model.train()
    return sums


def _metrics_from(sums: list[float], prefix: str, metrics: list[str]) -> dict[str, float]:
    n = sums[0] or 1.0
    out = {f"{prefix}-loss": sums[1] / n}
    if "accuracy" in metrics:
        out[f"{prefix}-accuracy"] = sums[2] / n
    if "rmse" in metrics:
        out[f"{prefix}-rmse"] = math.sqrt(sums[3] / n)
    if "mae" in metrics:
        out[f"{prefix}-mae"] = sums[4] / n
    return out


class PeerFailedError(TrainingError):
    """Another rank of the same training failed (its own error is reported instead)."""


def run_rank(
    spec: RankSpec,
    rank: int,
    parts: list[Any],
    valid_parts: list[Any],
) -> dict[str, Any]:
    """One rank of a training run, executed as a task on its Dask worker.

    Failures while preparing the data or validating are reported through a flag in the next
    all-reduce, so every rank stops there together. A failure inside a training step
    (forward, backward, optimizer) leaves the other ranks waiting in a collective: they fail
    when the process group's ``timeout`` expires, and their workers are busy until then.
    """
    import torch
    import torch.distributed as dist

    world = spec.world_size
    if spec.device == "cuda":
        torch.cuda.set_device(0)  # dask-cuda gives every worker one visible GPU
        device = torch.device("cuda", 0)
    else:
        device = torch.device("cpu")
    if world > 1 and dist.is_initialized():
        raise TrainingError(
            "another distributed training is running in this worker process; wait for it "
            "to finish (or give each worker one thread)"
        )
    torch.manual_seed(spec.seed)
    error: BaseException | None = None
    X = y = Xv = yv = torch.empty(0)
    model: torch.nn.Module = spec.model
    loss_fn: torch.nn.Module = torch.nn.Identity()
    try:
        X, y = _tensors(parts, spec)
        Xv, yv = _tensors(valid_parts, spec)
        model = spec.model.to(device)
        loss_fn = make_loss(spec.loss).to(device)
    except Exception as exc:  # still join the group, so that the others learn of it now
        error = exc
    if world > 1:
        dist.init_process_group(
            "nccl" if spec.device == "cuda" else "gloo",
            init_method=f"tcp://{spec.master_addr}:{spec.master_port}",
            rank=rank,
            world_size=world,
            timeout=timedelta(seconds=spec.timeout),
        )
    stop_state: dict[str, float] = {}
    steps = 0
    epochs_done = 0
    net: Any = None
    optimizer: Any = None
    join: Any = None
    try:
        failed = _agree(float(error is not None), device, world)
        net = model
        if not failed and world > 1:
            from torch.nn.parallel import DistributedDataParallel

            net = DistributedDataParallel(model, device_ids=[0] if spec.device == "cuda" else None)
        optimizer = (
            None
            if failed
            else make_optimizer(spec.optimizer, net.parameters(), spec.lr, spec.weight_decay)
        )
        gen = torch.Generator().manual_seed(spec.seed * 1000003 + rank)
        net.train()
        for epoch in range(0 if failed else spec.epochs):
            assert optimizer is not None
            order = torch.randperm(len(X), generator=gen)
            loss_sum = [0.0, 0.0]
            join = contextlib.nullcontext()
            if world > 1:
                from torch.distributed.algorithms.join import Join

                join = Join([net])
            with join:
                for start in range(0, len(X), spec.batch_size):
                    idx = order[start : start + spec.batch_size]
                    xb, yb = X[idx].to(device), y[idx].to(device)
                    optimizer.zero_grad(set_to_none=True)
                    out = net(xb)
                    loss = loss_fn(out, match_output(out, yb, spec.loss))
                    loss.backward()
                    optimizer.step()
                    steps += 1
                    loss_sum[0] += float(loss.detach()) * len(idx)
                    loss_sum[1] += len(idx)
            valid_sums = [0.0] * 5
            if error is None:
                try:
                    valid_sums = _metric_sums(model, Xv, yv, spec, loss_fn, device)
                except Exception as exc:
                    error = exc
            epochs_done = epoch + 1
            sums = torch.tensor(
                [*loss_sum, *valid_sums, float(error is not None)], dtype=torch.float64
            )
            if world > 1:
                sums = _all_reduce(sums, device)
            if float(sums[7]) > 0:
                failed = True
                break
            metrics = {"train-loss": float(sums[0]) / max(float(sums[1]), 1.0)}
            if sums[2] > 0:
                metrics.update(_metrics_from(sums[2:7].tolist(), "valid", spec.metrics))
            stop = 0.0
            if rank == 0:
                publish(spec.topic, {"step": epochs_done, "metrics": metrics})
                stop = float(stop_requested(spec.stop_name, stop_state, interval=0.0))
            if world > 1:
                stop = float(
                    _all_reduce(torch.tensor([stop], dtype=torch.float64), device, "max")[0]
                )
            if stop:
                break
        if error is not None:
            raise error
        if failed:
            raise PeerFailedError("another rank of this training failed")
        state = None
        if rank == 0:
            buffer = io.BytesIO()
            torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, buffer)
            state = buffer.getvalue()
        checksum = float(sum(float(p.detach().double().sum()) for p in model.parameters()))
        from distributed import get_worker

        try:
            worker = get_worker().address
        except ValueError:
            worker = ""
        return {
            "rank": rank,
            "worker": worker,
            "pid": os.getpid(),
            "rows": len(X),
            "valid_rows": len(Xv),
            "steps": steps,
            "epochs": epochs_done,
            "state": state,
            "checksum": checksum,
            "device": str(device),
            "data_device": str(X.device),  # where the rows were before training (cuDF: GPU)
        }
    finally:
        if world > 1 and dist.is_initialized():
            dist.destroy_process_group()


def _agree(flag: float, device: torch.device, world: int) -> bool:
    """True on every rank when any rank passes a non-zero flag."""
    import torch

    if world == 1:
        return bool(flag)
    return bool(_all_reduce(torch.tensor([flag], dtype=torch.float64), device, "max")[0] > 0)


def _all_reduce(t: torch.Tensor, device: torch.device, op: str = "sum") -> torch.Tensor:
    import torch.distributed as dist

    moved = t.to(device) if device.type == "cuda" else t
    if device.type == "cuda":
        moved = moved.float()
    dist.all_reduce(moved, op=dist.ReduceOp.MAX if op == "max" else dist.ReduceOp.SUM)
    return moved.cpu().double()
