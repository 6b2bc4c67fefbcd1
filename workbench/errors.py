"""Exceptions raised by workbench.

Every error is something the user can act on: its message names what was wrong
(the file, the key, the value) and, where there is one, what to do about it.
"""

from __future__ import annotations


class WorkbenchError(Exception):
    """Base class of every error workbench raises on purpose."""


class ProfileError(WorkbenchError, ValueError):
    """A profile file or profile is malformed or invalid.

    ``problems`` holds one line per problem, each naming file, line, profile and key.
    """

    def __init__(self, message: str, problems: list[str] | None = None) -> None:
        self.problems = problems or []
        if self.problems:
            message = message + "\n" + "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(message)


class UnknownProfileError(ProfileError, LookupError):
    """No profile has the requested name."""


class BackendError(WorkbenchError):
    """A backend cannot be found, imported or started."""


class UnknownBackendError(BackendError, LookupError):
    """No backend is registered under that name."""


class MissingDependencyError(BackendError, ImportError):
    """A backend needs an optional dependency that is not installed."""


class ResourceError(WorkbenchError):
    """The profile asks for resources this machine or cluster does not have."""


class ClusterNotFoundError(WorkbenchError, LookupError):
    """No running cluster in the registry matches the given id."""


class CredentialError(WorkbenchError):
    """A credential reference cannot be resolved."""


class MetricsError(WorkbenchError):
    """Metrics or dashboards cannot be collected or served (unreachable scheduler, port in use)."""
