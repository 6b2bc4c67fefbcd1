"""The driver side of PyTorch training: what runs in the notebook (:class:`TorchTrainer`,
:func:`train_torch`). The code that runs on each rank's worker is in :mod:`._torch_rank`.

How it runs:

1. The features and label are validated and persisted on the workers (no copy through the
   notebook); the model is tried on two rows here first.
2. Each rank is a Dask worker (one per worker process, up to ``n_workers``). The frame's
   partitions are divided among the ranks, preferring the worker that already holds each
   partition (:func:`assign_partitions`), and handed to one :func:`~._torch_rank.run_rank`
   task pinned to each rank's worker, with the rendezvous address rank 0's worker found.
3. The ranks train together (DDP with more than one rank; see :mod:`._torch_rank`); rank 0's
   metrics arrive here each epoch through :class:`~._live.LiveJob` and go to the progress
   display, the callbacks and MLflow (:class:`~._run.TrainingRun`). Rank 0's weights come
   back and are loaded into the model object that was passed in.

The device is chosen on each worker: its GPU when the cluster has GPUs (dask-cuda pins one
per worker), else CPU.
"""

from __future__ import annotations

import contextlib
import copy
import html
import io
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._cluster import resolve_device, worker_addresses
from ._data import Tabular, prepare
from ._live import LiveJob
from ._run import FitCall, Trainer
from ._torch_rank import (
    LOSSES,
    METRICS,
    OPTIMIZERS,
    PeerFailedError,
    RankSpec,
    free_port,
    run_rank,
)
from .errors import InvalidDataError, NotTrainedError, TrainingError, UnknownNameError
from .progress import CallbackLike, DisplayLike
from .tracking import DEFAULT_EXPERIMENT, Tracker, lineage_dict, pip_requirements

if TYPE_CHECKING:
    import torch
    from distributed import Client

logger = logging.getLogger(__name__)


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


def _collect(client: Client, futures: list[Any]) -> list[dict[str, Any]]:
    """Every rank's result; as soon as one rank fails, its error (not "another rank failed")."""
    from distributed import wait

    pending = list(futures)
    while pending and not any(f.status == "error" for f in futures):
        pending = list(wait(pending, return_when="FIRST_COMPLETED").not_done)
    if any(f.status == "error" for f in futures):
        # ranks that stop because of it finish within moments; ranks blocked in a
        # collective only at the timeout: do not wait for those
        with contextlib.suppress(TimeoutError):
            wait(futures, timeout=5)
        errors = [f.exception() for f in futures if f.status == "error"]
        # the rank that failed, not the ones that stopped because of it
        real = [e for e in errors if not isinstance(e, PeerFailedError)]
        raise (real or errors)[0]
    results: list[dict[str, Any]] = client.gather(futures)
    return results


class TorchTrainer(Trainer):
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
        super().__init__(tracking=tracking, experiment=experiment, run_name=run_name)
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
        self.history: dict[str, list[float]] = {}
        self.ranks: list[dict[str, Any]] = []
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

    def _fit(self, call: FitCall) -> TorchTrainer:
        import torch
        from distributed import futures_of, wait

        client, label = call.client, call.label
        lineage_data = lineage_dict(call.lineage, call.df)
        device = resolve_device(self.device, call.cluster, client)
        data = prepare(client, call.df, label, call.features, allow_categorical=False)
        vdata = (
            prepare(
                client,
                call.valid,
                label,
                data.features,
                what="validation data",
                allow_categorical=False,
            )
            if call.valid is not None
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
        title = f"PyTorch {'DDP x' + str(world) if world > 1 else 'single worker'} ({device})"
        with self._training_run(call, "torch", self.epochs, title) as run:
            run.track(params, {"workbench.job": "torch", "workbench.device": device}, lineage_data)
            futures: list[Any] = []
            try:
                run.start(world_size=world, device=device, n_rows=data.n_rows)
                with LiveJob(client, run.reporter) as job:
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
                            free_port, workers=[ranks[0]], pure=False, allow_other_workers=False
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
                    outcome = job.run(
                        lambda: _collect(client, futures),
                        final_step=lambda results: int(results[0]["epochs"]),
                    )
                if outcome.result is None:
                    assert outcome.error is not None
                    err = outcome.error
                    if isinstance(err, TrainingError):
                        raise err
                    raise TrainingError(f"PyTorch training failed on the cluster: {err}") from err
            except BaseException:
                for f in futures:
                    f.cancel()
                raise
            results = sorted(outcome.result, key=lambda r: r["rank"])
            state = torch.load(io.BytesIO(results[0]["state"]), weights_only=True)
            self.model.load_state_dict(state)
            self.ranks = [{k: v for k, v in r.items() if k != "state"} for r in results]
            self.history = {k: list(v) for k, v in run.reporter.history.metrics.items()}
            self.world_size = world
            self.trained_device = device
            self._trained = True

            def log(tracker: Tracker) -> None:
                tracker.log_metrics({"epochs": results[0]["epochs"]})
                tracker.log_dict({"ranks": self.ranks}, "ranks.json")
                tracker.log_model(self._save_mlflow_model)

            self._complete(run, outcome, data.features, label, log, epochs=results[0]["epochs"])
        if outcome.error is not None:
            raise outcome.error
        return self

    def _save_mlflow_model(self, path: Path) -> None:
        import mlflow.pytorch
        import numpy as np

        model = copy.deepcopy(self.model).cpu().eval()
        example = np.zeros((2, len(self.features)), dtype=np.float32)
        try:
            mlflow.pytorch.save_model(
                model, str(path), input_example=example, pip_requirements=pip_requirements("torch")
            )
        except Exception as exc:  # models torch.export cannot trace: pickle them instead
            logger.info("saving as an exported program failed (%s); pickling the model", exc)
            import shutil

            shutil.rmtree(path, ignore_errors=True)
            mlflow.pytorch.save_model(
                model,
                str(path),
                serialization_format="pickle",
                pip_requirements=pip_requirements("torch"),
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
