"""What every workbench handler shares: auth, JSON bodies, errors, a thread pool."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from http.client import responses
from typing import Any, TypeVar

from jupyter_server.base.handlers import APIHandler
from pydantic import BaseModel, ValidationError
from tornado import web

from ..clusters.detached import LaunchError
from ..credentials import SECRET_KEY
from ..errors import (
    CatalogError,
    ClusterNotFoundError,
    CredentialError,
    MissingDependencyError,
    ProfileError,
    ResourceError,
    UnknownDatasetError,
    UnknownProfileError,
    WorkbenchError,
)
from ..templates import TemplateError

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)

#: Blocking work (launching, stopping, talking to schedulers) runs here, never on the
#: server's event loop.
EXECUTOR = ThreadPoolExecutor(max_workers=8, thread_name_prefix="workbench-api")


class RequestError(WorkbenchError, ValueError):
    """The request itself is malformed (bad JSON, wrong types)."""

    def __init__(self, message: str, problems: list[str] | None = None) -> None:
        self.problems = problems or []
        super().__init__(message)


class NotFoundError(WorkbenchError, LookupError):
    """The thing a route names (a template, a dataset) does not exist: 404."""


class ConflictError(WorkbenchError):
    """The request cannot be done in the current state (a file already exists): 409."""


def _problem(err: Any) -> str:
    """One validation problem; the offending value is shown unless it may be a secret."""
    where = ".".join(str(p) for p in err["loc"]) or "body"
    text = f"{where}: {str(err['msg']).removeprefix('Value error, ')}"
    secret = any(isinstance(p, str) and SECRET_KEY.search(p) for p in err["loc"])
    if err.get("type") not in ("missing", "extra_forbidden") and not secret:
        shown = repr(err.get("input"))
        text += f" (got {shown[:60]}{'...' if len(shown) > 60 else ''})"
    return text


def status_for(exc: BaseException) -> int:
    """The HTTP status a workbench error maps to."""
    if isinstance(
        exc, UnknownProfileError | ClusterNotFoundError | UnknownDatasetError | NotFoundError
    ):
        return 404
    if isinstance(exc, ConflictError):
        return 409
    bad_input = RequestError | ProfileError | ResourceError | CredentialError
    if isinstance(exc, bad_input | CatalogError | TemplateError):
        return 400
    if isinstance(exc, LaunchError | MissingDependencyError):
        return 500
    if isinstance(exc, WorkbenchError):
        return 409  # a state problem: unreachable, stale, refused
    return 500


class WorkbenchHandler(APIHandler):
    """Base class of every workbench REST handler.

    Subclasses decorate each HTTP method with ``@web.authenticated``; the route test
    enumerates every route under ``/workbench/api/`` and fails on one that answers a
    request without credentials.
    """

    auth_resource = "workbench"

    async def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run blocking ``fn`` in the workbench thread pool."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(EXECUTOR, partial(fn, *args, **kwargs))

    def body(self, model: type[M]) -> M:
        """The JSON request body validated against ``model`` (400 with every problem)."""
        raw = self.request.body or b"{}"
        try:
            data = json.loads(raw)
        except ValueError as exc:
            raise RequestError(f"the request body is not valid JSON: {exc}") from None
        if not isinstance(data, dict):
            raise RequestError(f"the request body must be a JSON object, got {type(data).__name__}")
        try:
            return model.model_validate(data)
        except ValidationError as exc:
            problems = [_problem(err) for err in exc.errors()]
            raise RequestError("invalid request: " + "; ".join(problems), problems) from None

    def reply(self, data: Any, status: int = 200) -> None:
        self.set_status(status)
        self.finish(json.dumps(data, default=str))

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(exc, web.HTTPError) or exc is None:
            super().write_error(status_code, **kwargs)
            return
        reply: dict[str, Any] = {"reason": responses.get(status_code, "Error")}
        if isinstance(exc, WorkbenchError):
            # Workbench errors say what was wrong and what to do; show them as they are.
            reply["message"] = str(exc).split("\n  - ")[0]
            reply["problems"] = list(getattr(exc, "problems", []))
            reply["error"] = type(exc).__name__
        else:
            reply["message"] = f"unexpected server error: {type(exc).__name__}: {exc}"
            reply["error"] = type(exc).__name__
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(reply))

    def _handle_request_exception(self, e: BaseException) -> None:
        if isinstance(e, WorkbenchError) and not self._finished:
            self.log.info("workbench: %s %s: %s", self.request.method, self.request.path, e)
            self.send_error(status_for(e), exc_info=(type(e), e, e.__traceback__))
            return
        super()._handle_request_exception(e)
