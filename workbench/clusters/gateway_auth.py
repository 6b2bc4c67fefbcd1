"""dask-gateway authenticators that dask-gateway itself lacks (imports dask_gateway).

Imported only by the gateway backend and by the connect code it writes, so that
``workbench.clusters.gateway`` itself imports without dask-gateway installed.
"""

from __future__ import annotations

from typing import Any

from dask_gateway.auth import GatewayAuth

from ..errors import AuthenticationError


class TokenAuth(GatewayAuth):  # type: ignore[misc]
    """Sends ``Authorization: <scheme> <token>`` (a bearer token by default).

    For gateways behind an authenticating proxy or with a custom token Authenticator.
    """

    def __init__(self, token: str, scheme: str = "Bearer") -> None:
        self.token = token
        self.scheme = scheme

    def pre_request(self, resp: Any) -> tuple[dict[str, str], None]:
        return {"Authorization": f"{self.scheme} {self.token}"}, None

    def __repr__(self) -> str:  # never show the token
        return f"TokenAuth(scheme={self.scheme!r}, token=<hidden>)"


class NoAuth(GatewayAuth):  # type: ignore[misc]
    """Sends no credentials; a gateway that asks for some gets a clear error instead."""

    def pre_request(self, resp: Any) -> tuple[dict[str, str], None]:
        wants = resp.headers.get("WWW-Authenticate", "credentials")
        raise AuthenticationError(
            f"the dask-gateway at {resp.url.origin()} asks for authentication "
            f"(WWW-Authenticate: {wants}), but the profile says auth: none. Set auth to "
            "basic, token, jupyterhub or kerberos with a credential reference."
        )
