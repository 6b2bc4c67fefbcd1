"""The ``gateway`` backend: Dask clusters from a dask-gateway server.

A profile names the gateway (``address``, optionally ``proxy_address`` and
``public_address``), how to authenticate (``auth`` with credential *references*,
resolved only when a request is made), and the cluster options to ask for
(``worker_cores``, ``worker_memory``, ``worker_gpus``, ``image`` and any option the
server exposes, under ``cluster_options``)::

    profiles:
      team-gateway:
        backend: gateway
        options:
          address: https://gateway.example.org
          auth: jupyterhub            # token from env:JUPYTERHUB_API_TOKEN
          worker_cores: 4
          worker_memory: 16GiB
          worker_gpus: 1
          price_per_worker_hour: 0.9

Every request to the gateway has a timeout (``request_timeout``), so an unreachable
gateway is an error, never a hang. The scheduler runs on the gateway's side: other
processes stop, scale, adapt and inspect the cluster through the gateway API by its
name, which the cluster's record keeps together with the auth type and references (never
secret values). :func:`gateway_connect_code` writes the code that connects another kernel,
the TLS security object included. The options and their validation are in
:mod:`workbench.clusters.gateway_options`.
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from dask.utils import parse_bytes

from ..credentials import resolve
from ..errors import (
    AuthenticationError,
    BackendError,
    ClusterUnreachableError,
    ProfileError,
    ServiceUnreachableError,
    WorkbenchError,
)
from .backend import Backend, scheduler_facts
from .gateway_options import AUTH_TYPES, GatewayOptions
from .record import ClusterRecord

if TYPE_CHECKING:
    from distributed import Client
    from distributed.deploy.cluster import Cluster

CLOUD_HINT = "pip install 'workbench[cloud]'"
KERBEROS_HINT = "pip install 'dask-gateway[kerberos]'"
#: Keys of the connection facts kept in the cluster's record (references only).
CONNECT_KEYS = (
    "address",
    "proxy_address",
    "public_address",
    "auth",
    "username",
    "password",
    "token",
    "auth_scheme",
    "request_timeout",
)


# -- connecting: shared by the backend (owner process) and control() (any process) ---------
def _describe_auth(spec: dict[str, Any]) -> str:
    """The auth a spec uses, for messages: type and references, never secret values."""
    kind = spec.get("auth") or "dask config gateway.auth"
    parts = [f"auth {kind}"]
    if spec.get("username"):
        parts.append(f"user {spec['username']!r}")
    for key in ("password", "token"):
        if spec.get(key):
            parts.append(f"{key} from {spec[key]}")
    return ", ".join(parts)


def make_auth(spec: dict[str, Any]) -> Any:
    """The dask-gateway auth object for a connection spec, resolving its references now."""
    from dask_gateway.auth import BasicAuth, JupyterHubAuth, KerberosAuth

    from .gateway_auth import NoAuth, TokenAuth

    kind = spec.get("auth")
    if kind is None:
        return None  # dask-gateway reads dask config gateway.auth.type/kwargs
    if kind == "none":
        return NoAuth()
    if kind == "basic":
        password = resolve(spec["password"]) if spec.get("password") else None
        return BasicAuth(username=spec.get("username") or getpass.getuser(), password=password)
    if kind == "token":
        return TokenAuth(resolve(spec["token"]), scheme=spec.get("auth_scheme") or "Bearer")
    if kind == "jupyterhub":
        return JupyterHubAuth(api_token=resolve(spec.get("token") or "env:JUPYTERHUB_API_TOKEN"))
    if kind == "kerberos":
        return KerberosAuth()
    raise BackendError(f"unknown dask-gateway auth {kind!r}; expected one of {AUTH_TYPES}")


def _set_request_timeout(gateway: Any, timeout: float) -> None:
    """Give every HTTP request of a dask-gateway client a total timeout.

    dask-gateway passes its ``_request_kwargs`` to each aiohttp request; without a
    timeout there, a gateway that accepts connections but never answers blocks for
    aiohttp's default of five minutes.
    """
    import aiohttp

    kwargs = getattr(gateway, "_request_kwargs", None)
    if not isinstance(kwargs, dict):
        raise BackendError(
            "this dask-gateway version has no per-request options; workbench cannot bound "
            "its requests with a timeout. Install a dask-gateway release from 2022 or later."
        )
    kwargs["timeout"] = aiohttp.ClientTimeout(total=timeout)


def _noop() -> None:
    return None


def close_gateway(gateway: Any) -> None:
    """Close a dask-gateway ``Gateway`` once and for all.

    With current distributed, a second ``Gateway.close()`` (which ``__del__`` makes)
    raises "Accessing the loop property while the loop is not running"; after the
    first close this instance's ``close`` does nothing.
    """
    try:
        gateway.close()
    finally:
        gateway.close = _noop


def close_gateway_cluster(cluster: Any, shutdown: bool) -> None:
    """Close a ``GatewayCluster`` (stopping it on the gateway if ``shutdown``)."""
    try:
        cluster.close(shutdown=shutdown)
    finally:
        gateway = getattr(cluster, "gateway", None)
        if gateway is not None:
            gateway.close = _noop


@contextlib.contextmanager
def gateway_errors(what: str, spec: dict[str, Any]) -> Iterator[None]:
    """Turn dask-gateway and aiohttp failures into errors that say what to do."""
    import aiohttp
    from dask_gateway import GatewayClusterError, GatewayServerError

    address = spec["address"]
    timeout = float(spec.get("request_timeout") or 10)
    try:
        yield
    except WorkbenchError:
        raise
    except aiohttp.ClientResponseError as exc:
        if exc.status in (401, 403):
            raise AuthenticationError(
                f"the dask-gateway at {address} rejected the credentials (HTTP {exc.status} "
                f"{exc.message}) when asked to {what}; {_describe_auth(spec)}. Check that "
                "the referenced secret is current and that this auth type is the gateway's."
            ) from exc
        raise BackendError(
            f"the dask-gateway at {address} answered HTTP {exc.status} {exc.message} when "
            f"asked to {what}"
        ) from exc
    except (asyncio.TimeoutError, TimeoutError) as exc:
        raise ServiceUnreachableError(
            f"the dask-gateway at {address} did not answer within {timeout:g}s when asked to "
            f"{what}. Check the address and that the gateway is running (raise "
            "request_timeout for a slow gateway)."
        ) from exc
    except (aiohttp.ClientConnectionError, OSError) as exc:
        raise ServiceUnreachableError(
            f"cannot reach the dask-gateway at {address} to {what}: {exc}. Check the address "
            "and that the gateway is running."
        ) from exc
    except (GatewayClusterError, GatewayServerError, ValueError, KeyError) as exc:
        raise BackendError(f"the dask-gateway at {address} could not {what}: {exc}") from exc


@contextlib.contextmanager
def open_gateway(spec: dict[str, Any]) -> Iterator[Any]:
    """A dask-gateway ``Gateway`` client for a connection spec, closed afterwards."""
    from dask_gateway import Gateway

    with gateway_errors("connect", spec):
        gateway = Gateway(
            address=spec["address"],
            proxy_address=spec.get("proxy_address"),
            public_address=spec.get("public_address"),
            auth=make_auth(spec),
        )
    try:
        _set_request_timeout(gateway, float(spec.get("request_timeout") or 10))
        yield gateway
    finally:
        close_gateway(gateway)


def gateway_connect_code(spec: dict[str, Any], cluster_name: str) -> str:
    """Python code that connects to gateway cluster ``cluster_name`` from another kernel.

    The code names the auth type and the credential *references*; the secrets are
    resolved by :func:`workbench.credentials.resolve` where the code runs. The TLS
    credentials of the cluster come from the gateway (``cluster.security``) and are
    passed to the Client: the security object is carried, its key is not written down.
    """
    kind = spec.get("auth")
    imports = ["Gateway"]
    resolve_needed = False
    if kind is None:
        auth = "None  # from dask config gateway.auth"
    elif kind == "none":
        auth = "NoAuth()"
    elif kind == "basic":
        imports.append("BasicAuth")
        args = [f"username={spec.get('username') or getpass.getuser()!r}"]
        if spec.get("password"):
            args.append(f"password=resolve({spec['password']!r})")
            resolve_needed = True
        auth = f"BasicAuth({', '.join(args)})"
    elif kind == "token":
        scheme = spec.get("auth_scheme") or "Bearer"
        auth = f"TokenAuth(resolve({spec['token']!r}), scheme={scheme!r})"
        resolve_needed = True
    elif kind == "jupyterhub":
        imports.append("JupyterHubAuth")
        ref = spec.get("token") or "env:JUPYTERHUB_API_TOKEN"
        auth = f"JupyterHubAuth(api_token=resolve({ref!r}))"
        resolve_needed = True
    else:
        imports.append("KerberosAuth")
        auth = "KerberosAuth()"
    lines = [f"from dask_gateway import {', '.join(imports)}", "from distributed import Client"]
    if kind in ("none", "token"):
        own = "NoAuth" if kind == "none" else "TokenAuth"
        lines.append(f"from workbench.clusters.gateway_auth import {own}")
    if resolve_needed:
        lines.append("from workbench.credentials import resolve")
    lines += ["", "gateway = Gateway(", f"    address={spec['address']!r},"]
    for key in ("proxy_address", "public_address"):
        if spec.get(key) is not None:
            lines.append(f"    {key}={spec[key]!r},")
    lines += [
        f"    auth={auth}," if not auth.startswith("None") else f"    auth={auth}",
        ")",
        f"cluster = gateway.connect({cluster_name!r})",
        "# The cluster's TLS credentials come from the gateway as cluster.security:",
        "client = Client(cluster, security=cluster.security)",
        "client",
        "",
    ]
    return "\n".join(lines)


class GatewayBackend(Backend):
    name = "gateway"
    Options = GatewayOptions
    options: GatewayOptions
    requires = {"dask_gateway": CLOUD_HINT, "aiohttp": CLOUD_HINT}
    gpus_from_workers = True  # the workers' GPUs are seen by asking them

    @property
    def address(self) -> str:
        address = self.options.address
        if address is None and self._have_dask_gateway():
            import dask
            from dask_gateway.utils import format_template

            address = format_template(dask.config.get("gateway.address", None))
        if not address:
            raise ProfileError(
                f"profile {self.profile!r} names no dask-gateway: set options.address "
                "(e.g. https://gateway.example.org) or dask config gateway.address"
            )
        return str(address).rstrip("/")

    @property
    def auth_type(self) -> str | None:
        return self.options.auth

    @staticmethod
    def _have_dask_gateway() -> bool:
        import importlib.util

        return importlib.util.find_spec("dask_gateway") is not None

    def connect_spec(self) -> dict[str, Any]:
        """How to reach and authenticate to the gateway: references only, no secrets."""
        o = self.options
        return {
            "address": self.address,
            "proxy_address": o.proxy_address,
            "public_address": o.public_address,
            "auth": o.auth,
            "username": o.username,
            "password": o.password,
            "token": o.token,
            "auth_scheme": o.auth_scheme,
            "request_timeout": o.request_timeout,
        }

    def check(self) -> None:
        self.require()
        if self.options.auth == "kerberos":
            self.require({"kerberos": KERBEROS_HINT})
        # Resolve every reference now: a CredentialError before any request is made.
        make_auth(self.connect_spec())

    def wanted_options(self) -> dict[str, Any]:
        """The cluster options this profile asks the gateway for, by the gateway's names."""
        o = self.options
        named = {
            "worker_cores": o.worker_cores,
            "worker_memory": o.worker_memory,
            "worker_gpus": o.worker_gpus,
            "image": o.image,
        }
        return {**{k: v for k, v in named.items() if v is not None}, **o.cluster_options}

    def apply_options(self, options: Any) -> None:
        """Set wanted_options() on the gateway's Options; each is checked by the gateway's rules."""
        fields = getattr(options, "_fields", {})
        for key, value in self.wanted_options().items():
            if key not in fields:
                offered = ", ".join(fields) or "none"
                raise BackendError(
                    f"profile {self.profile!r}: the dask-gateway at {self.address} has no "
                    f"cluster option {key!r} (it offers: {offered}). Remove {key} from the "
                    "profile, or put the gateway's own option under cluster_options."
                )
            if key == "worker_memory" and isinstance(value, str):
                value = _memory_value(fields[key], value)
            try:
                options[key] = value
            except (ValueError, TypeError) as exc:
                raise BackendError(
                    f"profile {self.profile!r}: the dask-gateway at {self.address} does not "
                    f"accept cluster option {key}={value!r}: {exc}"
                ) from exc

    def create_cluster(self) -> Cluster:
        from dask_gateway import GatewayCluster

        self.check()
        spec = self.connect_spec()
        with open_gateway(spec) as gateway:
            with gateway_errors("list its cluster options", spec):
                options = gateway.cluster_options(use_local_defaults=False)
            self.apply_options(options)
            with gateway_errors("start a cluster", spec):
                name = gateway.submit(options)
            try:
                self._wait_running(gateway, name, spec)
            except BaseException:
                with contextlib.suppress(Exception):
                    gateway.stop_cluster(name)
                raise
        with gateway_errors(f"connect to cluster {name}", spec):
            cluster = GatewayCluster.from_name(
                name,
                shutdown_on_close=self.options.shutdown_on_close,
                address=spec["address"],
                proxy_address=spec["proxy_address"],
                public_address=spec["public_address"],
                auth=make_auth(spec),
            )
        try:
            _set_request_timeout(cluster.gateway, self.options.request_timeout)
            if self.options.n_workers:
                with gateway_errors(f"scale cluster {name}", spec):
                    cluster.scale(self.options.n_workers)
        except BaseException:
            close_gateway_cluster(cluster, shutdown=True)
            raise
        return cluster  # type: ignore[no-any-return]

    def _wait_running(self, gateway: Any, name: str, spec: dict[str, Any]) -> None:
        deadline = time.monotonic() + self.options.start_timeout
        while True:
            with gateway_errors(f"report on cluster {name}", spec):
                status = gateway.get_cluster(name).status.name
            if status == "RUNNING":
                return
            if status in ("STOPPING", "STOPPED", "FAILED"):
                raise BackendError(
                    f"cluster {name} on the dask-gateway at {self.address} {status.lower()} "
                    "while starting; the gateway's log says why (e.g. an image or resources "
                    "the gateway's backend could not provide)."
                )
            if time.monotonic() > deadline:
                raise BackendError(
                    f"cluster {name} on the dask-gateway at {self.address} was still {status} "
                    f"after {self.options.start_timeout:g}s and was stopped. Raise "
                    "start_timeout if the gateway needs longer to find resources."
                )
            time.sleep(0.25)

    def get_client(self, cluster: Cluster) -> Client:
        get_client: Any = cluster.get_client  # GatewayCluster's: passes cluster.security
        return get_client(set_as_default=True)  # type: ignore[no-any-return]

    def close_cluster(self, cluster: Cluster, timeout: float = 30) -> None:
        spec = self.connect_spec()
        name = getattr(cluster, "name", "?")
        with gateway_errors(f"stop cluster {name}", spec):
            close_gateway_cluster(cluster, shutdown=self.options.shutdown_on_close)

    def record_extra(self, cluster: Cluster) -> dict[str, Any]:
        return {"cluster_name": getattr(cluster, "name", None), **self.connect_spec()}

    def describe(self) -> dict[str, Any]:
        o = self.options
        gpus = o.worker_gpus or o.cluster_options.get("worker_gpus")
        return {
            "kind": f"GatewayCluster at {self.address}",
            "gpu_names": [f"{gpus} per worker (on the gateway)"] if gpus else [],
        }

    def abort(self, cluster: Cluster) -> None:
        """Stop the cluster on the gateway now (the graceful close follows)."""
        if self.options.shutdown_on_close:
            spec = self.connect_spec()
            name = getattr(cluster, "name", None)
            if name:
                with open_gateway(spec) as gateway, gateway_errors(f"stop cluster {name}", spec):
                    gateway.stop_cluster(name)

    # -- other processes: the gateway API, by the cluster's name ------------------------------
    @staticmethod
    def _remote(record: ClusterRecord, timeout: float) -> tuple[dict[str, Any], str] | None:
        """(connection spec, cluster name) from the record, or None if it lacks them."""
        spec = {k: record.extra.get(k) for k in CONNECT_KEYS}
        name = record.extra.get("cluster_name")
        if not spec["address"] or not name:
            return None
        spec["request_timeout"] = min(timeout, float(spec.get("request_timeout") or timeout))
        return spec, str(name)

    @classmethod
    def remote_close(cls, record: ClusterRecord, timeout: float = 30.0) -> bool:
        remote = cls._remote(record, timeout)
        if remote is None:
            return super().remote_close(record, timeout)
        spec, name = remote
        with open_gateway(spec) as gateway, gateway_errors(f"stop cluster {name}", spec):
            gateway.stop_cluster(name)
        return True

    @classmethod
    def remote_scale(
        cls,
        record: ClusterRecord,
        n: int | None = None,
        jobs: int | None = None,
        timeout: float = 30.0,
    ) -> None:
        remote = cls._remote(record, timeout)
        if remote is None:
            return super().remote_scale(record, n=n, jobs=jobs, timeout=timeout)
        spec, name = remote
        with open_gateway(spec) as gateway, gateway_errors(f"scale cluster {name}", spec):
            gateway.scale_cluster(name, int(n or 0))
        return None

    @classmethod
    def remote_adapt(
        cls,
        record: ClusterRecord,
        minimum: int = 0,
        maximum: int | None = None,
        timeout: float = 30.0,
    ) -> None:
        remote = cls._remote(record, timeout)
        if remote is None:
            return super().remote_adapt(record, minimum, maximum, timeout=timeout)
        spec, name = remote
        with open_gateway(spec) as gateway, gateway_errors(f"make cluster {name} adaptive", spec):
            gateway.adapt_cluster(name, minimum=minimum, maximum=maximum)
        return None

    @classmethod
    def remote_info(cls, record: ClusterRecord, timeout: float = 3.0) -> dict[str, Any]:
        """The gateway's view of the cluster, then the scheduler's (through the gateway's
        proxy, with the cluster's TLS credentials as the gateway hands them out)."""
        remote = cls._remote(record, timeout)
        if remote is None:
            return super().remote_info(record, timeout)
        spec, name = remote
        with open_gateway(spec) as gateway, gateway_errors(f"report on cluster {name}", spec):
            report = gateway.get_cluster(name)
        status = report.status.name
        if status != "RUNNING":
            raise ClusterUnreachableError(
                f"cluster {record.id}: the dask-gateway at {spec['address']} reports its "
                f"cluster {name} {status}"
                + (" (its scheduler stopped or was killed)" if status == "FAILED" else "")
            )
        return scheduler_facts(
            report.scheduler_address,
            report.security.get_connection_args("client") if report.security else {},
            timeout,
            f"cluster {record.id}: the scheduler of gateway cluster {name} does not "
            "answer through the gateway's proxy",
        )

    @classmethod
    def cleanup_orphans(cls, record: ClusterRecord) -> None:
        """The owner died without closing: stop its cluster on the gateway."""
        if cls._remote(record, 30.0) is not None:
            cls.remote_close(record)

    @classmethod
    def connect_code(cls, record: ClusterRecord) -> str:
        if cls._remote(record, 30.0) is None:
            return super().connect_code(record)
        spec = {k: record.extra.get(k) for k in CONNECT_KEYS}
        return gateway_connect_code(spec, str(record.extra["cluster_name"]))


def _memory_value(field: Any, value: str) -> Any:
    """'16GiB' in the unit of the gateway's option: GiB for numeric options, else as given."""
    kind = type(field).__name__
    if kind in ("Float", "Integer"):
        gib = parse_bytes(value) / 2**30
        if kind == "Integer":
            if gib != int(gib):
                raise BackendError(
                    f"the gateway's worker_memory option takes whole GiB; {value} is {gib:g} GiB"
                )
            return int(gib)
        return gib
    return value
