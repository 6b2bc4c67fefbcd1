"""One check's verdict, in plain words: what ``workbench doctor`` prints and what the
health routes of the Jupyter server answer (``/workbench/api/health`` and a cluster's)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

Status = Literal["ok", "warn", "fail"]


@dataclass
class Check:
    """``name`` is ``status`` because of ``summary``; ``advice`` says what to do about it."""

    name: str
    status: Status
    summary: str
    advice: str = ""
    details: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
