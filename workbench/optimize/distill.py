"""Knowledge distillation: train a smaller student to match a trained teacher.

The student learns from the teacher's softened outputs (KL divergence at temperature ``T``,
scaled by ``T**2``) mixed with the true labels (``alpha`` weighs the two). For regression
the soft target is the teacher's prediction (mean squared error). Without a ``student``
one is made from the teacher by structured pruning to ``width`` of every prunable layer
(a narrower network that starts from the teacher's strongest neurons).

:func:`fine_tune` trains a model further after structured pruning, from the labels and,
given the unpruned model as ``teacher``, its soft outputs too (the same loss).

Distillation runs in this process (the notebook kernel) on the data given: after
training on the cluster, the model and an evaluation sample fit here.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..training.errors import OptimizationError
from ..training.progress import CallbackLike, DisplayLike, Reporter
from ._common import as_labels, as_module, as_tensor, count_parameters, metric_fn, predict
from .prune import prune_structured

logger = logging.getLogger(__name__)


def distill(
    teacher: Any,
    X: Any,
    y: Any = None,
    *,
    student: nn.Module | None = None,
    width: float = 0.5,
    task: str = "classification",
    epochs: int = 10,
    batch_size: int = 128,
    lr: float = 1e-3,
    temperature: float = 4.0,
    alpha: float = 0.7,
    X_valid: Any = None,
    y_valid: Any = None,
    seed: int = 0,
    callbacks: list[CallbackLike] | CallbackLike | None = None,
    progress: DisplayLike = "auto",
) -> nn.Module:
    """Train ``student`` (default: the teacher pruned to ``width``) to imitate ``teacher``.

    ``X`` (tensor, array or DataFrame) are training inputs; ``y`` optional true labels
    (class indices for classification). Progress reports ``distill-loss`` and, with
    ``X_valid``/``y_valid``, ``valid-accuracy`` (classification) or ``valid-rmse``.
    """
    settings = _Settings(task, epochs, batch_size, lr, temperature, alpha, seed)
    report = _Report(X_valid, y_valid, callbacks, progress, "distill", "Distillation")
    teacher_module = as_module(teacher)
    inputs, labels = _inputs(X, y)
    if y is None and alpha < 1.0:
        logger.info("no labels given: distilling from the teacher alone (alpha=1)")
        settings = dataclasses.replace(settings, alpha=1.0)
    if student is None:
        if not 0.0 < width < 1.0:
            raise OptimizationError(f"width must be between 0 and 1, got {width}")
        student = prune_structured(teacher_module, amount=1.0 - width)
    else:
        student = as_module(student)
    if count_parameters(student) >= count_parameters(teacher_module):
        logger.warning(
            "the student has %d parameters, the teacher %d: it is not smaller",
            count_parameters(student),
            count_parameters(teacher_module),
        )
    teacher_module = copy.deepcopy(teacher_module).eval()
    soft = predict(teacher_module, inputs)
    return _train(
        student,
        inputs,
        labels,
        soft,
        settings,
        report,
        info={
            "teacher_parameters": count_parameters(teacher_module),
            "student_parameters": count_parameters(student),
        },
    )


def fine_tune(
    model: Any,
    X: Any,
    y: Any = None,
    *,
    teacher: Any = None,
    task: str = "classification",
    epochs: int = 5,
    batch_size: int = 128,
    lr: float = 1e-3,
    temperature: float = 4.0,
    alpha: float = 0.5,
    X_valid: Any = None,
    y_valid: Any = None,
    seed: int = 0,
    inplace: bool = False,
    callbacks: list[CallbackLike] | CallbackLike | None = None,
    progress: DisplayLike = "auto",
) -> nn.Module:
    """Train ``model`` a few more epochs, typically after :func:`prune_structured`, to win
    back the accuracy that removing neurons cost.

    With ``teacher`` (the model before pruning) the loss mixes the teacher's softened
    outputs (weight ``alpha``, temperature ``T``) with the labels ``y``, as in
    :func:`distill`: recovery is faster and closer to the original. Without a teacher it
    is plain training on ``y`` (cross entropy, or mean squared error for regression).
    Returns a fine-tuned copy (``inplace=True``: ``model`` itself).
    """
    settings = _Settings(task, epochs, batch_size, lr, temperature, alpha, seed)
    report = _Report(X_valid, y_valid, callbacks, progress, "fine-tune", "Fine-tuning")
    module = as_module(model)
    inputs, labels = _inputs(X, y)
    soft = None
    if teacher is not None:
        teacher_module = copy.deepcopy(as_module(teacher)).eval()
        soft = predict(teacher_module, inputs)
        if labels is None:
            settings = dataclasses.replace(settings, alpha=1.0)
    elif labels is None:
        raise OptimizationError("fine_tune needs labels y, or a teacher to learn from")
    else:
        settings = dataclasses.replace(settings, alpha=0.0)
    target = module if inplace else copy.deepcopy(module)
    return _train(
        target,
        inputs,
        labels,
        soft,
        settings,
        report,
        info={"parameters": count_parameters(target), "teacher": teacher is not None},
    )


@dataclass(frozen=True)
class _Settings:
    """How :func:`distill` and :func:`fine_tune` train (checked when made)."""

    task: str
    epochs: int
    batch_size: int
    lr: float
    temperature: float
    alpha: float
    seed: int

    def __post_init__(self) -> None:
        if self.task not in ("classification", "regression"):
            raise OptimizationError(
                f"task must be 'classification' or 'regression', got {self.task!r}"
            )
        if not 0.0 <= self.alpha <= 1.0:
            raise OptimizationError(f"alpha must be between 0 and 1, got {self.alpha}")
        if self.temperature <= 0:
            raise OptimizationError(f"temperature must be positive, got {self.temperature}")
        if self.epochs < 1 or self.batch_size < 1:
            raise OptimizationError("epochs and batch_size must be at least 1")


@dataclass(frozen=True)
class _Report:
    """What a training reports each epoch: the validation metric (when ``X_valid`` and
    ``y_valid`` are given), to ``callbacks`` and ``progress``, as ``job``."""

    X_valid: Any
    y_valid: Any
    callbacks: list[CallbackLike] | CallbackLike | None
    progress: DisplayLike
    job: str
    title: str


def _inputs(X: Any, y: Any) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The training inputs and (when ``y`` is given) labels, of the same length."""
    inputs = as_tensor(X)
    labels = as_labels(y) if y is not None else None
    if labels is not None and len(labels) != len(inputs):
        raise OptimizationError(f"X has {len(inputs)} rows but y has {len(labels)}")
    return inputs, labels


def _train(
    student: nn.Module,
    inputs: torch.Tensor,
    labels: torch.Tensor | None,
    soft: torch.Tensor | None,
    settings: _Settings,
    report: _Report,
    *,
    info: dict[str, Any],
) -> nn.Module:
    """Train ``student`` on soft targets (weight ``alpha``) and labels (``1 - alpha``)."""
    task, epochs, batch_size = settings.task, settings.epochs, settings.batch_size
    temperature, alpha, seed = settings.temperature, settings.alpha, settings.seed
    X_valid, y_valid, job, title = report.X_valid, report.y_valid, report.job, report.title
    torch.manual_seed(seed)
    device = next(student.parameters()).device
    optimizer = torch.optim.Adam(student.parameters(), lr=settings.lr)
    valid = None
    if X_valid is not None and y_valid is not None:
        valid = (as_tensor(X_valid), as_labels(y_valid))
    metric_name, score = metric_fn("accuracy" if task == "classification" else "rmse")
    reporter = Reporter(
        job, epochs, callbacks=report.callbacks, progress=report.progress, title=title
    )
    reporter.start(**info)
    gen = torch.Generator().manual_seed(seed)
    status = "finished"
    try:
        for epoch in range(epochs):
            student.train()
            order = torch.randperm(len(inputs), generator=gen)
            total, seen = 0.0, 0
            for start in range(0, len(inputs), batch_size):
                idx = order[start : start + batch_size]
                xb = inputs[idx].to(device)
                out = student(xb)
                loss = out.new_zeros(())
                if soft is not None and alpha > 0:
                    tb = soft[idx].to(device)
                    if task == "classification":
                        loss = loss + F.kl_div(
                            F.log_softmax(out / temperature, dim=-1),
                            F.softmax(tb / temperature, dim=-1),
                            reduction="batchmean",
                        ) * (alpha * temperature**2)
                    else:
                        loss = loss + alpha * F.mse_loss(out, tb)
                if labels is not None and alpha < 1.0:
                    yb = labels[idx].to(device)
                    if task == "classification":
                        loss = loss + (1 - alpha) * F.cross_entropy(out, yb.long())
                    else:
                        loss = loss + (1 - alpha) * F.mse_loss(
                            out.reshape(-1), yb.float().reshape(-1)
                        )
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                total += float(loss.detach()) * len(idx)
                seen += len(idx)
            metrics = {f"{job}-loss": total / max(seen, 1)}
            if valid is not None:
                metrics[f"valid-{metric_name}"] = score(predict(student, valid[0]), valid[1])
            if reporter.step(epoch + 1, metrics):
                status = "stopped"
                break
    except KeyboardInterrupt:
        status = "interrupted"
        logger.warning("%s interrupted after %d epoch(s)", title.lower(), reporter.step_count)
    except BaseException:
        reporter.end("failed")
        raise
    reporter.end(status)  # type: ignore[arg-type]
    student.eval()
    return student
