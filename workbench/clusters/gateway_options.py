"""Options of the ``gateway`` backend: which dask-gateway, how to authenticate, what to ask for.

:class:`GatewayOptions` is the pydantic model a ``gateway`` profile is checked against (and
the Lab form is drawn from). Passwords and tokens are credential *references* (``env:``,
``keyring:``, ``file:``), never the secret itself. The backend that talks to the gateway is
:mod:`workbench.clusters.gateway`.
"""

from __future__ import annotations

from typing import Any, Literal

from dask.utils import parse_bytes
from pydantic import Field, field_validator, model_validator

from ..credentials import is_reference
from .backend import BackendOptions

AuthType = Literal["none", "basic", "token", "jupyterhub", "kerberos"]
AUTH_TYPES: tuple[str, ...] = ("none", "basic", "token", "jupyterhub", "kerberos")
REFERENCE_HELP = "a credential reference (env:NAME, keyring:SERVICE/USER or file:PATH)"


class GatewayOptions(BackendOptions):
    SIDEBAR_OPTIONS = BackendOptions.SIDEBAR_OPTIONS | {
        "worker_cores",
        "worker_memory",
        "worker_gpus",
        "n_workers",
    }
    PROFILE_ONLY = BackendOptions.PROFILE_ONLY | {
        "address",
        "proxy_address",
        "public_address",
        "auth",
        "username",
        "password",
        "token",
        "auth_scheme",
        "image",
        "cluster_options",
    }

    address: str | None = Field(
        None,
        description="URL of the dask-gateway server, e.g. https://gateway.example.org "
        "(default: dask config gateway.address, as set on JupyterHub deployments).",
    )
    proxy_address: str | int | None = Field(
        None,
        description="Scheduler proxy: gateway://host:port, host:port or a port "
        "(default: dask config gateway.proxy-address, else the address's host and port).",
    )
    public_address: str | None = Field(
        None, description="Gateway URL as a browser sees it, for dashboard links."
    )
    auth: AuthType | None = Field(
        None,
        description="none, basic, token, jupyterhub or kerberos (default: dask config "
        "gateway.auth.type, itself basic by default).",
    )
    username: str | None = Field(None, description="basic: user name (default: this user).")
    password: str | None = Field(None, description=f"basic: password, as {REFERENCE_HELP}.")
    token: str | None = Field(
        None,
        description=f"token/jupyterhub: the token, as {REFERENCE_HELP} "
        "(jupyterhub default: env:JUPYTERHUB_API_TOKEN).",
    )
    auth_scheme: str = Field(
        "Bearer", description="token: the scheme in 'Authorization: <scheme> <token>'."
    )
    worker_cores: int | float | None = Field(None, gt=0, description="Cores per worker.")
    worker_memory: str | int | float | None = Field(
        None, description="Memory per worker: '16GiB', or a number in the gateway's unit (GiB)."
    )
    worker_gpus: int | None = Field(None, ge=0, description="GPUs per worker.")
    image: str | None = Field(None, description="Container image for scheduler and workers.")
    cluster_options: dict[str, Any] = Field(
        default_factory=dict,
        description="Any other option the gateway exposes, by the gateway's name for it.",
    )
    n_workers: int | None = Field(None, ge=0, description="Workers to ask for at start.")
    request_timeout: float = Field(
        10.0, gt=0, description="Seconds the gateway has to answer each request."
    )
    start_timeout: float = Field(
        300.0, gt=0, description="Seconds the gateway has to start the cluster's scheduler."
    )
    shutdown_on_close: bool = Field(
        True, description="Stop the cluster on the gateway when the handle closes."
    )

    def launch_workers(self) -> int | None:
        return self.n_workers

    @field_validator("password", "token")
    @classmethod
    def _reference(cls, v: str | None) -> str | None:
        if v is not None and not is_reference(v):
            raise ValueError(f"must be {REFERENCE_HELP}, never the secret itself")
        return v

    @field_validator("address", "public_address")
    @classmethod
    def _url(cls, v: str | None) -> str | None:
        if v is not None and not v.startswith(("http://", "https://")):
            raise ValueError("expected an http:// or https:// URL")
        return v.rstrip("/") if v else v

    @field_validator("worker_memory")
    @classmethod
    def _memory(cls, v: str | int | float | None) -> str | int | float | None:
        if isinstance(v, str):
            try:
                parse_bytes(v)
            except ValueError as exc:
                raise ValueError(f"not a memory size like '16GiB': {exc}") from None
        elif v is not None and v <= 0:
            raise ValueError("must be more than 0")
        return v

    @model_validator(mode="after")
    def _auth_fields(self) -> GatewayOptions:
        if self.auth == "token" and self.token is None:
            raise ValueError("auth: token needs token: env:NAME (or keyring:/file:)")
        if self.password is not None and self.auth not in (None, "basic"):
            raise ValueError(f"password is only used with auth: basic, not {self.auth}")
        if self.token is not None and self.auth not in (None, "token", "jupyterhub"):
            raise ValueError(f"token is only used with auth: token or jupyterhub, not {self.auth}")
        return self
