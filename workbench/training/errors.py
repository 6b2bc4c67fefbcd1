"""Errors of workbench.training and workbench.optimize.

Each names what was wrong (the column, the metric, the model) and what to do about it.
"""

from __future__ import annotations

from ..errors import WorkbenchError


class TrainingError(WorkbenchError):
    """Training could not run or did not finish."""


class InvalidDataError(TrainingError, ValueError):
    """The training data cannot be used: a column is missing, the data is empty, ..."""


class UnknownNameError(TrainingError, ValueError):
    """An unknown metric, loss, optimizer or objective name."""

    def __init__(self, kind: str, name: object, known: list[str]) -> None:
        self.kind = kind
        self.name = name
        self.known = known
        super().__init__(f"unknown {kind} {name!r}; known {kind}s: {', '.join(sorted(known))}")


class NotTrainedError(TrainingError, RuntimeError):
    """A model was used before it was trained."""


class OptimizationError(WorkbenchError):
    """A model optimization (quantization, pruning, export) cannot be applied."""
