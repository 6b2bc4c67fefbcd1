"""PyTorch training over a dask DataFrame on the cluster's workers, with DDP.

How it runs:

1. The features and label are validated and persisted on the workers (no copy through the
   notebook).
2. Each rank is a Dask worker (one per worker process, up to ``n_workers``). The frame's
   partitions are divided among the ranks, preferring the worker that already holds each
   partition, and handed to one task pinned to each rank's worker.
3. With more than one rank the tasks form a ``torch.distributed`` process group (``gloo`` on
   CPU workers, ``nccl`` on GPU workers); the rendezvous address is the first worker's host
   and a free port there. The model is wrapped in ``DistributedDataParallel`` and uneven
   shards are handled with DDP's ``Join``. With one rank the same code trains without a
   process group (the single-worker path).
4. After each epoch the ranks all-reduce the loss and metric sums; rank 0 reports them to the
   notebook (live progress and MLflow) and checks whether the user asked to stop; the ranks
   all-reduce that flag so they stop together. Rank 0's weights come back and are loaded into
   the model object that was passed in.

The device is chosen on each worker: its GPU when the cluster has GPUs (dask-cuda pins one
per worker), else CPU.
"""

from __future__ import annotations

import contextlib
import copy
import html
import io
import logging
import math
import os
import socket
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._cluster import get_client, resolve_device, worker_addresses
from ._data import Tabular, prepare
from ._live import LiveJob, publish, stop_requested
from .errors import InvalidDataError, NotTrainedError, TrainingError, UnknownNameError
from .progress import CallbackLike, DisplayLike, Reporter
from .tracking import DEFAULT_EXPERIMENT, Tracker, lineage_dict, make_tracker

if TYPE_CHECKING:
    import torch
    from distributed import Client

logger = logging.getLogger(__name__)

CLASSIFICATION_LOSSES = {"cross_entropy"}
LOSSES = ["cross_entropy", "bce", "mse", "l1", "huber"]
METRICS = ["accuracy", "rmse", "mae", "loss"]
OPTIMIZERS = ["adam", "adamw", "sgd"]


def check_names(loss: Any, metrics: list[str], optimizer: Any) -> None:
    if isinstance(loss, str) and loss not in LOSSES:
        raise UnknownNameError("loss", loss, LOSSES)
    if not isinstance(loss, str) and not callable(loss):
        raise TrainingError(f"loss must be one of {LOSSES} or a torch loss module, got {loss!r}")
    for m in metrics:
        if m not in METRICS:
            raise UnknownNameError("metric", m, METRICS)
        if m == "accuracy" and isinstance(loss, str) and loss not in ("cross_entropy", "bce"):
            raise TrainingError(
                f"metric 'accuracy' needs a classification loss (cross_entropy or bce), "
                f"not {loss!r}"
            )
    if isinstance(optimizer, str) and optimizer not in OPTIMIZERS:
        raise UnknownNameError("optimizer", optimizer, OPTIMIZERS)


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


def _free_port() -> tuple[str, int]:
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


def assign_partitions(
    keys: list[str], who_has: dict[str, list[str]], ranks: list[str]
) -> dict[str, list[str]]:
    """Partitions per rank worker: balanced counts, preferring the worker holding each one."""
    n = len(ranks)
    cap = -(-len(keys) // n)
    out: dict[str, list[str]] = {w: [] for w in ranks}
    leftover = []
    for key in keys:
        holder = next((w for w in who_has.get(key, []) if w in out and len(out[w]) < cap), None)
        if holder is None:
            leftover.append(key)
        else:
            out[holder].append(key)
    for key in leftover:
        target = min(ranks, key=lambda w: len(out[w]))
        out[target].append(key)
    return out


class TorchTrainer:
    """Train a ``torch.nn.Module`` on a dask DataFrame across the cluster's workers.

    ``loss``: ``"cross_entropy"`` (integer class labels), ``"bce"``, ``"mse"``, ``"l1"``,
    ``"huber"`` or a loss module. ``optimizer``: ``"adam"``, ``"adamw"``, ``"sgd"`` or a
    callable ``params -> torch.optim.Optimizer``. ``metrics``: ``accuracy``, ``rmse``,
    ``mae``, reported on the validation set each epoch. ``n_workers`` limits the number of
    DDP ranks (default: every worker; ``1`` is the single-worker path).

    After :meth:`fit` the trained weights are in ``model`` (the module you passed in, updated
    in place), with ``history``, ``ranks`` (rows and steps per rank), ``run_id``.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        *,
        loss: Any = "cross_entropy",
        optimizer: Any = "adam",
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        epochs: int = 5,
        batch_size: int = 128,
        metrics: list[str] | None = None,
        n_workers: int | None = None,
        device: str = "auto",
        seed: int = 0,
        timeout: float = 300.0,
        tracking: bool | Tracker | str | None = True,
        experiment: str = DEFAULT_EXPERIMENT,
        run_name: str | None = None,
    ) -> None:
        import torch

        if not isinstance(model, torch.nn.Module):
            raise TrainingError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        if epochs < 1 or batch_size < 1:
            raise TrainingError(
                f"epochs and batch_size must be at least 1, got {epochs} and {batch_size}"
            )
        if n_workers is not None and n_workers < 1:
            raise TrainingError(f"n_workers must be at least 1, got {n_workers}")
        if metrics is None:
            metrics = ["accuracy"] if loss in ("cross_entropy", "bce") else ["rmse"]
        check_names(loss, metrics, optimizer)
        self.model = model
        self.loss = loss
        self.optimizer = optimizer
        self.lr = lr
        self.weight_decay = weight_decay
        self.epochs = epochs
        self.batch_size = batch_size
        self.metrics = list(metrics)
        self.n_workers = n_workers
        self.device = device
        self.seed = seed
        self.timeout = timeout
        self.tracking = tracking
        self.experiment = experiment
        self.run_name = run_name
        self.history: dict[str, list[float]] = {}
        self.ranks: list[dict[str, Any]] = []
        self.features: list[str] = []
        self.label: str | None = None
        self.run_id: str | None = None
        self.tracking_uri: str | None = None
        self.status: str | None = None
        #: why logging to MLflow failed after training (the model is kept), else None
        self.tracking_error: str | None = None
        self.world_size = 0
        self.trained_device: str | None = None
        self._trained = False

    @property
    def is_trained(self) -> bool:
        return self._trained

    def _check_model_fits(self, client: Client, data: Tabular) -> None:
        """One forward pass on two rows, on the client, before any worker time is spent."""
        import numpy as np
        import torch

        sample = client.compute(data.X.head(2, npartitions=-1, compute=False), sync=True)
        if len(sample) == 0:
            return
        x = torch.tensor(sample.to_numpy(dtype=np.float32, na_value=np.nan))
        model = copy.deepcopy(self.model).cpu().eval()
        try:
            with torch.no_grad():
                out = model(x)
        except Exception as exc:
            raise InvalidDataError(
                f"the model cannot take the data: {len(data.features)} feature columns "
                f"({', '.join(data.features[:8])}{'...' if len(data.features) > 8 else ''}) "
                f"gave: {exc}"
            ) from exc
        if self.loss == "cross_entropy":
            if out.dim() != 2:
                raise InvalidDataError(
                    f"cross_entropy needs model outputs of shape (batch, n_classes), got "
                    f"{tuple(out.shape)}"
                )
            n_classes = int(out.shape[1])
            y_min, y_max = (int(v) for v in client.compute([data.y.min(), data.y.max()], sync=True))
            if y_min < 0 or y_max >= n_classes:
                raise InvalidDataError(
                    f"labels run from {y_min} to {y_max} but the model has {n_classes} outputs; "
                    f"cross_entropy needs labels 0..{n_classes - 1}"
                )

    def _plan_ranks(self, client: Client, data: Tabular) -> list[str]:
        workers = worker_addresses(client)
        pids = client.run(os.getpid, workers=workers)
        seen: dict[tuple[str, int], str] = {}
        for w in workers:  # one rank per worker process: threads of one process share torch
            host = w.split("://", 1)[-1].rsplit(":", 1)[0]
            seen.setdefault((host, pids[w]), w)
        distinct = list(seen.values())
        if len(distinct) < len(workers):
            logger.info(
                "%d workers share %d processes; using one rank per process",
                len(workers),
                len(distinct),
            )
        n = min(self.n_workers or len(distinct), len(distinct), data.X.npartitions)
        if self.n_workers and self.n_workers > len(distinct):
            raise TrainingError(
                f"n_workers={self.n_workers} but the cluster has {len(distinct)} worker "
                "processes; scale the cluster up or lower n_workers"
            )
        return distinct[:n]

    def fit(
        self,
        cluster: Any,
        df: Any,
        label: str,
        *,
        features: list[str] | None = None,
        valid: Any = None,
        lineage: Any = None,
        callbacks: list[CallbackLike] | CallbackLike | None = None,
        progress: DisplayLike = "auto",
    ) -> TorchTrainer:
        """Train on ``df`` (dask or pandas DataFrame, numeric feature columns) for ``label``."""
        client = get_client(cluster)
        with client.as_current():  # every dask call below uses this client, default or not
            return self._fit(
                client, cluster, df, label, features, valid, lineage, callbacks, progress
            )

    def _fit(
        self,
        client: Client,
        cluster: Any,
        df: Any,
        label: str,
        features: list[str] | None,
        valid: Any,
        lineage: Any,
        callbacks: list[CallbackLike] | CallbackLike | None,
        progress: DisplayLike,
    ) -> TorchTrainer:
        import torch
        from distributed import futures_of, wait

        lineage_data = lineage_dict(lineage, df)
        device = resolve_device(self.device, cluster, client)
        data = prepare(client, df, label, features, allow_categorical=False)
        vdata = (
            prepare(
                client, valid, label, data.features, what="validation data", allow_categorical=False
            )
            if valid is not None
            else None
        )
        self._check_model_fits(client, data)
        if vdata is None and self.metrics != ["loss"]:
            logger.info("no validation data: only the training loss is reported")
        ranks = self._plan_ranks(client, data)
        world = len(ranks)

        frame = data.X.assign(**{label: data.y})
        frame = client.persist(frame)
        parts = futures_of(frame)
        wait(parts)
        order = {f.key: i for i, f in enumerate(parts)}
        who_has = {k: list(v) for k, v in client.who_has(parts).items()}
        plan = assign_partitions([f.key for f in parts], who_has, ranks)
        by_key = {f.key: f for f in parts}
        vparts: list[Any] = []
        if vdata is not None:
            vframe = client.persist(vdata.X.assign(**{label: vdata.y}))
            vparts = futures_of(vframe)
            wait(vparts)

        tracker = make_tracker(
            self.tracking, run_name=self.run_name, default_experiment=self.experiment
        )
        reporter = Reporter(
            "torch",
            self.epochs,
            callbacks=callbacks,
            progress=progress,
            title=f"PyTorch {'DDP x' + str(world) if world > 1 else 'single worker'} ({device})",
        )
        n_params = sum(p.numel() for p in self.model.parameters())
        params = {
            "model": type(self.model).__name__,
            "parameters": n_params,
            "loss": self.loss if isinstance(self.loss, str) else type(self.loss).__name__,
            "optimizer": self.optimizer if isinstance(self.optimizer, str) else "custom",
            "lr": self.lr,
            "weight_decay": self.weight_decay,
            "epochs": self.epochs,
            "batch_size": self.batch_size,
            "metrics": self.metrics,
            "world_size": world,
            "backend": ("nccl" if device == "cuda" else "gloo") if world > 1 else "none",
            "device": device,
            "seed": self.seed,
            "label": label,
            "features": data.features,
            "n_rows": data.n_rows,
        }
        if tracker is not None:
            reporter.consumers.append(tracker)
            tracker.start(
                params=params, tags={"workbench.job": "torch", "workbench.device": device}
            )
            if lineage_data is not None:
                tracker.log_lineage(lineage_data)
        futures: list[Any] = []
        try:
            reporter.start(world_size=world, device=device, n_rows=data.n_rows)
            with LiveJob(client, reporter) as job:
                spec = RankSpec(
                    model=copy.deepcopy(self.model).cpu(),
                    features=data.features,
                    label=label,
                    loss=self.loss,
                    optimizer=self.optimizer,
                    lr=self.lr,
                    weight_decay=self.weight_decay,
                    epochs=self.epochs,
                    batch_size=self.batch_size,
                    metrics=self.metrics,
                    device=device,
                    seed=self.seed,
                    timeout=self.timeout,
                    topic=job.topic,
                    stop_name=job.stop_name,
                    world_size=world,
                )
                if world > 1:
                    host, port = client.submit(
                        _free_port, workers=[ranks[0]], pure=False, allow_other_workers=False
                    ).result()
                    spec.master_addr, spec.master_port = host, port
                for rank, worker in enumerate(ranks):
                    mine = sorted(plan[worker], key=order.__getitem__)
                    vmine = vparts[rank::world]
                    futures.append(
                        client.submit(
                            run_rank,
                            spec,
                            rank,
                            [by_key[k] for k in mine],
                            vmine,
                            workers=[worker],
                            allow_other_workers=False,
                            pure=False,
                            key=f"workbench-torch-rank-{rank}-{job.topic[-12:]}",
                        )
                    )

                def collect() -> list[dict[str, Any]]:
                    pending = list(futures)
                    while pending and not any(f.status == "error" for f in futures):
                        pending = list(wait(pending, return_when="FIRST_COMPLETED").not_done)
                    if any(f.status == "error" for f in futures):
                        # ranks that stop because of it finish within moments; ranks blocked
                        # in a collective only at the timeout: do not wait for those
                        with contextlib.suppress(TimeoutError):
                            wait(futures, timeout=5)
                        errors = [f.exception() for f in futures if f.status == "error"]
                        # the rank that failed, not the ones that stopped because of it
                        real = [e for e in errors if not isinstance(e, PeerFailedError)]
                        raise (real or errors)[0]
                    results: list[dict[str, Any]] = client.gather(futures)
                    return results

                outcome = job.run(
                    collect,
                    final_step=lambda results: int(results[0]["epochs"]),
                )
        except BaseException:
            for f in futures:
                f.cancel()
            reporter.end("failed")
            if tracker is not None:
                tracker.finish("FAILED")
            raise
        if outcome.result is None:
            for f in futures:
                f.cancel()
            reporter.end("failed")
            if tracker is not None:
                tracker.finish("FAILED")
            assert outcome.error is not None
            err = outcome.error
            if isinstance(err, TrainingError):
                raise err
            raise TrainingError(f"PyTorch training failed on the cluster: {err}") from err
        results = sorted(outcome.result, key=lambda r: r["rank"])
        state = torch.load(io.BytesIO(results[0]["state"]), weights_only=True)
        self.model.load_state_dict(state)
        self.ranks = [{k: v for k, v in r.items() if k != "state"} for r in results]
        self.history = {k: list(v) for k, v in reporter.history.metrics.items()}
        self.features = data.features
        self.label = label
        self.world_size = world
        self.trained_device = device
        self.status = outcome.status
        self._trained = True
        reporter.end(outcome.status, epochs=results[0]["epochs"])
        if tracker is not None:

            def log() -> None:
                tracker.log_metrics({"epochs": results[0]["epochs"]})
                tracker.log_dict({"ranks": self.ranks}, "ranks.json")
                tracker.log_model(self._save_mlflow_model)

            self.tracking_error = tracker.complete(
                log, "FAILED" if outcome.error else _STATUS.get(outcome.status, "FINISHED")
            )
            self.run_id = tracker.run_id
            self.tracking_uri = tracker.uri
        if outcome.error is not None:
            raise outcome.error
        return self

    def _save_mlflow_model(self, path: Path) -> None:
        import mlflow.pytorch
        import numpy as np

        from ._xgboost import _requirements

        model = copy.deepcopy(self.model).cpu().eval()
        example = np.zeros((2, len(self.features)), dtype=np.float32)
        try:
            mlflow.pytorch.save_model(
                model, str(path), input_example=example, pip_requirements=_requirements("torch")
            )
        except Exception as exc:  # models torch.export cannot trace: pickle them instead
            logger.info("saving as an exported program failed (%s); pickling the model", exc)
            import shutil

            shutil.rmtree(path, ignore_errors=True)
            mlflow.pytorch.save_model(
                model,
                str(path),
                serialization_format="pickle",
                pip_requirements=_requirements("torch"),
            )

    def predict(self, X: Any) -> torch.Tensor:
        """Model outputs for features given as a tensor, array or (pandas/dask) DataFrame."""
        import numpy as np
        import torch

        if not self._trained:
            raise NotTrainedError(
                "this TorchTrainer has not been trained yet: call .fit(cluster, df, label) or "
                "use workbench.training.train_torch(...)"
            )
        if hasattr(X, "compute") and hasattr(X, "columns"):
            X = X[self.features].compute()
        if hasattr(X, "columns"):
            X = X[self.features].to_numpy(dtype=np.float32)
        x = torch.tensor(np.asarray(X, dtype=np.float32))
        self.model.eval()
        with torch.no_grad():
            return self.model(x.to(next(self.model.parameters()).device))  # type: ignore[no-any-return]

    def __repr__(self) -> str:
        if not self._trained:
            return f"<TorchTrainer {type(self.model).__name__} (not trained)>"
        last = {k: round(v[-1], 5) for k, v in self.history.items() if v}
        return (
            f"<TorchTrainer {type(self.model).__name__} world_size={self.world_size} "
            f"device={self.trained_device} status={self.status} {last} run={self.run_id}>"
        )

    def _repr_html_(self) -> str:
        return f"<pre>{html.escape(repr(self))}</pre>"


_STATUS = {"finished": "FINISHED", "stopped": "FINISHED", "interrupted": "KILLED"}


def train_torch(
    cluster: Any,
    model: torch.nn.Module,
    df: Any,
    label: str,
    *,
    features: list[str] | None = None,
    valid: Any = None,
    loss: Any = "cross_entropy",
    optimizer: Any = "adam",
    lr: float = 1e-3,
    weight_decay: float = 0.0,
    epochs: int = 5,
    batch_size: int = 128,
    metrics: list[str] | None = None,
    n_workers: int | None = None,
    device: str = "auto",
    seed: int = 0,
    timeout: float = 300.0,
    lineage: Any = None,
    callbacks: list[CallbackLike] | CallbackLike | None = None,
    progress: DisplayLike = "auto",
    tracking: bool | Tracker | str | None = True,
    experiment: str = DEFAULT_EXPERIMENT,
    run_name: str | None = None,
) -> TorchTrainer:
    """Train ``model`` on the cluster (DDP across workers); returns the fitted
    :class:`TorchTrainer` (``.model`` is ``model``, trained in place).

    ::

        net = torch.nn.Sequential(torch.nn.Linear(64, 128), torch.nn.ReLU(),
                                  torch.nn.Linear(128, 10))
        fit = train_torch(cluster, net, df, label="digit", valid=df_valid,
                          loss="cross_entropy", epochs=10, lr=1e-3)
        fit.history["valid-accuracy"]
    """
    return TorchTrainer(
        model,
        loss=loss,
        optimizer=optimizer,
        lr=lr,
        weight_decay=weight_decay,
        epochs=epochs,
        batch_size=batch_size,
        metrics=metrics,
        n_workers=n_workers,
        device=device,
        seed=seed,
        timeout=timeout,
        tracking=tracking,
        experiment=experiment,
        run_name=run_name,
    ).fit(
        cluster,
        df,
        label,
        features=features,
        valid=valid,
        lineage=lineage,
        callbacks=callbacks,
        progress=progress,
    )
