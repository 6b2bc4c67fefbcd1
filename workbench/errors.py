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


class OverrideForbiddenError(ProfileError):
    """A launch from the sidebar or REST asked to change an option its profile keeps to
    the profile file (security, bind addresses, max_workers, prologue, python, ...)."""


class UnsafeStateError(WorkbenchError, PermissionError):
    """A directory workbench keeps private things in is not the user's alone (owned by
    another user, writable by others, or a symbolic link): nothing is written there."""


class ResourceError(WorkbenchError):
    """The profile asks for resources this machine or cluster does not have."""


class ClusterNotFoundError(WorkbenchError, LookupError):
    """No running cluster in the record store matches the given id."""


class ClusterStateError(WorkbenchError):
    """The cluster exists but cannot serve the request now (its owner died, its scheduler
    does not answer, it runs no batch jobs); the message says which and what to do."""


class ClusterStaleError(ClusterStateError):
    """The process that owned the cluster is gone; stopping it cleans up what it left."""


class ClusterUnreachableError(ClusterStateError):
    """The cluster's owner lives but its scheduler (or the service running it) does not
    answer."""


class CredentialError(WorkbenchError):
    """A credential reference cannot be resolved."""


class ServiceUnreachableError(BackendError, ConnectionError):
    """A service a backend needs (a gateway, an API server) refused, failed or timed out."""


class AuthenticationError(BackendError, PermissionError):
    """A service rejected the credentials a profile references."""


class WorkersTimeoutError(WorkbenchError, TimeoutError):
    """Workers did not connect in time; the message says what they were waiting for."""


# -- data loading (workbench.data) --------------------------------------------------------
class DataError(WorkbenchError):
    """A dataset cannot be found, opened, read or parsed."""


class CatalogError(DataError, ValueError):
    """A dataset catalog file or entry is malformed or invalid.

    ``problems`` holds one line per problem, each naming file, line, dataset and key.
    """

    def __init__(self, message: str, problems: list[str] | None = None) -> None:
        self.problems = problems or []
        if self.problems:
            message = message + "\n" + "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(message)


class UnknownDatasetError(CatalogError, LookupError):
    """No catalog entry has the requested name."""


class DataNotFoundError(DataError, FileNotFoundError):
    """The bucket, container, directory or file does not exist, or holds no data files."""


class StorageAccessError(DataError, PermissionError):
    """The storage service refused the credentials, or they do not allow reading."""


class DataFormatError(DataError, ValueError):
    """The format is unknown, cannot be told from the file names, or a read option is wrong."""


class CorruptDataError(DataError, ValueError):
    """A file exists but is not valid in the format it is read as."""


class StorageDependencyError(DataError, ImportError):
    """A storage protocol or the cuDF backend needs an optional package that is missing."""


class MetricsError(WorkbenchError):
    """Metrics or dashboards cannot be collected or served (unreachable scheduler, port in use)."""


class SharedHostRiskWarning(UserWarning):
    """A profile that opens a cluster to other users of a shared machine (``security:
    none``, a dashboard on the network) is being launched there."""
