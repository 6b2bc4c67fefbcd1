"""What every workbench handler shares: auth, JSON bodies, errors, a thread pool."""

from __future__ import annotations

import asyncio
import json
import time
import traceback
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from http.client import responses
from pathlib import Path
from typing import Any, ClassVar, TypeVar, cast

from jupyter_server.auth.decorator import authorized
from jupyter_server.auth.utils import HTTP_METHOD_TO_AUTH_ACTION
from jupyter_server.base.handlers import APIHandler
from pydantic import BaseModel, ValidationError
from tornado import web

from .. import config
from ..clusters.detached import LaunchError
from ..credentials import secret_name
from ..errors import (
    CatalogError,
    ClusterNotFoundError,
    CredentialError,
    MissingDependencyError,
    OverrideForbiddenError,
    ProfileError,
    ResourceError,
    UnknownDatasetError,
    UnknownProfileError,
    WorkbenchError,
)
from ..private import open_private_log
from ..redact import redact_text, redact_value
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
    secret = any(isinstance(p, str) and secret_name(p) for p in err["loc"])
    secret = secret or "literal credential" in str(err["msg"])
    if err.get("type") not in ("missing", "extra_forbidden") and not secret:
        shown = redact_text(repr(redact_value(err.get("input"))))
        text += f" (got {shown[:60]}{'...' if len(shown) > 60 else ''})"
    return redact_text(text)


def server_error_log() -> Path:
    """Where the REST routes write the traceback of an unexpected failure (private, in the
    user's state directory; the Jupyter server's own log gets it as well)."""
    return config.state_dir() / "server-errors.log"


def record_unexpected(step: str, request: str, exc: BaseException) -> Path | None:
    """Append ``exc``'s traceback (secrets redacted) to :func:`server_error_log`; its path,
    or None where it could not be written."""
    path = server_error_log()
    stamp = time.strftime("%Y-%m-%d %H:%M:%S")
    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    entry = f"--- {stamp} {request}: {step} failed\n{redact_text(text)}\n"
    try:
        with open_private_log(path) as log:
            log.write(entry.encode(errors="replace"))
    except OSError:
        return None
    return path


def status_for(exc: BaseException) -> int:
    """The HTTP status a workbench error maps to."""
    if isinstance(
        exc, UnknownProfileError | ClusterNotFoundError | UnknownDatasetError | NotFoundError
    ):
        return 404
    if isinstance(exc, OverrideForbiddenError):
        return 403
    if isinstance(exc, ConflictError):
        return int(getattr(exc, "http_status", 409))
    bad_input = RequestError | ProfileError | ResourceError | CredentialError
    if isinstance(exc, bad_input | CatalogError | TemplateError):
        return 400
    if isinstance(exc, LaunchError | MissingDependencyError):
        return 500
    if isinstance(exc, WorkbenchError):
        return 409  # a state problem: unreachable, stale, refused
    return 500


#: The action each HTTP method needs by default (jupyter_server's own mapping).
AUTH_METHODS = ("get", "head", "post", "put", "patch", "delete")
#: Marks a method wrapped by :class:`WorkbenchHandler`: the action it is authorized for.
AUTH_MARK = "__workbench_auth_action__"


def guarded(method: Callable[..., Any], action: str) -> Callable[..., Any]:
    """``method`` authenticated (``@web.authenticated``), then authorized for ``action`` on
    the handler's ``auth_resource`` (``@authorized``: the server's Authorizer decides)."""
    wrapped: Any = web.authenticated(authorized(action)(method))
    setattr(wrapped, AUTH_MARK, action)
    return cast(Callable[..., Any], wrapped)


class WorkbenchHandler(APIHandler):
    """Base class of every workbench REST handler: authentication and authorization by
    construction.

    Every HTTP method a subclass defines (``get``, ``post``, ...) is wrapped, when the class
    is created, in ``@web.authenticated`` and jupyter_server's ``@authorized`` with the
    class's ``auth_resource`` and the method's action: ``read`` for GET, ``write`` for
    changes, or what ``auth_actions`` says (``execute`` for a method that launches
    processes). A restricted Authorizer (read-only collaborators on a shared server) is
    thus asked for every request. A subclass must declare its own ``auth_resource``;
    tests/test_security.py walks every registered handler and fails on one without.
    """

    #: The resource the Authorizer is asked about (``workbench:<what>``); declared by each
    #: concrete handler.
    auth_resource = "workbench"
    #: Method name -> action, where it is not jupyter_server's default for the method.
    auth_actions: ClassVar[dict[str, str]] = {}
    #: What the request is doing now, in words ("checking profile 'slurm'"): an unexpected
    #: failure is reported as a failure of this step, with where its traceback is.
    step = ""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for name in AUTH_METHODS:
            method = cls.__dict__.get(name)
            if method is None or hasattr(method, AUTH_MARK):
                continue
            action = cls.auth_actions.get(name) or HTTP_METHOD_TO_AUTH_ACTION[name.upper()]
            setattr(cls, name, guarded(method, action))

    def at(self, step: str) -> None:
        """Say which step the request is at (reported if it fails unexpectedly)."""
        self.step = step

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
            reply["message"] = redact_text(str(exc).split("\n  - ")[0])
            reply["problems"] = [redact_text(str(p)) for p in getattr(exc, "problems", [])]
            reply["error"] = type(exc).__name__
            if isinstance(exc, LaunchError):
                reply["log"] = str(exc.log)
        else:
            reply.update(self._unexpected(exc))
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(reply))

    def _unexpected(self, exc: BaseException) -> dict[str, Any]:
        """The reply to a failure nobody foresaw: the step it happened in, what was raised,
        and where the traceback is; never the exception's class alone."""
        request = f"{self.request.method} {self.request.path}"
        step = self.step or f"answering {request}"
        log = record_unexpected(step, request, exc)
        where = f"{log} and the Jupyter server's log" if log else "the Jupyter server's log"
        what = str(exc).strip() or "(no message)"
        message = (
            f"{step} failed unexpectedly: {type(exc).__name__}: {what}. This is a bug in "
            f"workbench or its environment; the traceback is in {where}."
        )
        return {
            "message": redact_text(message),
            "error": type(exc).__name__,
            "step": step,
            "log": str(log) if log else None,
        }

    def _handle_request_exception(self, e: BaseException) -> None:
        if isinstance(e, WorkbenchError) and not self._finished:
            self.log.info(
                "workbench: %s %s: %s", self.request.method, self.request.path, redact_text(str(e))
            )
            self.send_error(status_for(e), exc_info=(type(e), e, e.__traceback__))
            return
        super()._handle_request_exception(e)
