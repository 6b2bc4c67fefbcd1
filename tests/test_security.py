"""Secure by default (issue 14), against the real components.

- every workbench REST handler is authorized (jupyter_server's ``@authorized``) with a
  declared resource and the right action, by construction (the base handler), checked
  by walking the live server's router and with a deny-writes Authorizer over real HTTP;

The TLS cases (a client without the cluster's credentials is refused, one with them
works) are in the backend contract suite, tests/test_contract.py.
"""

from __future__ import annotations

from typing import Any

import pytest
from jupyter_server.auth.authorizer import Authorizer
from tornado import web

from workbench.clusters import ClusterControl
from workbench.server import API_PREFIX
from workbench.server.base import AUTH_MARK

from .test_lab_server import METHODS, _workbench_routes

pytestmark = pytest.mark.usefixtures("stop_clusters_after")


class DenyWrites(Authorizer):
    """A read-only collaborator: reads are allowed, every change or launch is refused.
    Remembers what it was asked."""

    asked: list[tuple[str, str]] = []

    def is_authorized(self, handler: Any, user: Any, action: str, resource: str) -> bool:
        DenyWrites.asked.append((action, resource))
        return action == "read"


@pytest.fixture
def jp_server_config() -> Any:
    from traitlets.config import Config

    return Config(
        {
            "ServerApp": {
                "jpserver_extensions": {"workbench.server": True, "jupyter_server_proxy": True},
                "authorizer_class": DenyWrites,
            }
        }
    )


def unauthorized_methods(serverapp: Any) -> list[str]:
    """'METHOD pattern (Handler): why' for each implemented method of a workbench route that
    is not authorized with a declared resource."""
    problems = []
    for pattern, handler in _workbench_routes(serverapp):
        resource = getattr(handler, "auth_resource", None)
        for method in METHODS:
            fn = getattr(handler, method)
            if fn is getattr(web.RequestHandler, method):
                continue
            where = f"{method.upper()} {pattern} ({handler.__name__})"
            if not getattr(fn, AUTH_MARK, None):
                problems.append(f"{where}: not @authorized")
            elif not (isinstance(resource, str) and resource.startswith("workbench:")):
                problems.append(f"{where}: no auth_resource of its own ({resource!r})")
    return problems


def test_every_registered_handler_is_authorized(jp_serverapp: Any) -> None:
    routes = _workbench_routes(jp_serverapp)
    assert len(routes) >= 18
    assert unauthorized_methods(jp_serverapp) == []
    actions = {
        (h.__name__, m): getattr(getattr(h, m), AUTH_MARK)
        for _, h in routes
        for m in METHODS
        if getattr(h, m) is not getattr(web.RequestHandler, m)
    }
    assert actions[("ClustersHandler", "get")] == "read"
    assert actions[("ClustersHandler", "post")] == "execute"  # a launch
    assert actions[("ClusterDashboardHandler", "post")] == "execute"  # starts a process
    assert actions[("ClusterHandler", "delete")] == "write"
    assert actions[("ScaleHandler", "post")] == "write"
    assert actions[("TemplateHandler", "post")] == "write"
    assert actions[("AutoConnectHandler", "put")] == "write"
    assert {a for (_, m), a in actions.items() if m == "get"} == {"read"}


def test_the_walk_catches_a_handler_without_authorization(jp_serverapp: Any) -> None:
    from jupyter_server.base.handlers import APIHandler
    from jupyter_server.utils import url_path_join

    class Open(APIHandler):  # not a WorkbenchHandler: nothing asks the Authorizer
        @web.authenticated
        async def get(self) -> None:
            self.finish("{}")

    path = url_path_join(jp_serverapp.base_url, API_PREFIX, "open-probe")
    jp_serverapp.web_app.add_handlers(".*$", [(path, Open)])
    assert unauthorized_methods(jp_serverapp) == [f"GET {path}$ (Open): not @authorized"]


async def test_a_deny_writes_authorizer_is_asked_for_every_request(
    api: Any, user_profiles: Any
) -> None:
    from ._lab_fixtures import SMALL_CLUSTER

    user_profiles(
        "profiles:\n  tiny:\n    backend: local\n    options: "
        + str(dict(SMALL_CLUSTER)).replace("'", '"')
        + "\n"
    )
    DenyWrites.asked.clear()
    assert (await api("GET", "clusters")).status == 200
    assert (await api("GET", "profiles")).status == 200
    assert ("read", "workbench:clusters") in DenyWrites.asked
    assert ("read", "workbench:profiles") in DenyWrites.asked
    refused = [
        ("POST", "clusters", {"profile": "tiny"}, ("execute", "workbench:clusters")),
        ("DELETE", "clusters/abc", None, ("write", "workbench:clusters")),
        ("POST", "clusters/abc/scale", {"n": 2}, ("write", "workbench:clusters")),
        ("POST", "clusters/abc/adapt", {}, ("write", "workbench:clusters")),
        ("POST", "clusters/abc/dashboard", {}, ("execute", "workbench:dashboards")),
        ("PUT", "autoconnect", {"cluster": "abc"}, ("write", "workbench:autoconnect")),
        ("DELETE", "autoconnect", None, ("write", "workbench:autoconnect")),
        (
            "POST",
            "templates/gpu-etl-from-object-storage",
            {"path": "x.ipynb"},
            ("write", "workbench:templates"),
        ),
    ]
    for method, path, body, asked in refused:
        DenyWrites.asked.clear()
        reply = await api(method, path, body=body)
        assert reply.status == 403, (method, path, reply.data)
        assert DenyWrites.asked == [asked], (method, path)
    assert ClusterControl().list() == []  # the refused launch started nothing
