"""``/workbench/api/health``: why a cluster's dashboard can or cannot be shown.

A blank dashboard pane has a handful of causes, each checked here from the Jupyter
server's side and reported with what to do:

- the scheduler's port is closed (the cluster process exited, or a firewall);
- the scheduler does not answer Dask's protocol;
- the dashboard URL is not reachable from the server (dashboard disabled, bokeh
  missing, bound to another interface);
- the dashboard is on a loopback address the browser cannot reach, and there is no
  proxy (jupyter-server-proxy missing or not enabled);
- the dashboard link carries a proxy prefix for another server (a JupyterHub user
  prefix that does not match this server's base URL);
- the proxied dashboard URL does not answer through this server.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urljoin, urlparse

from .. import __version__, config
from ..checks import Check
from ..clusters.comm import port_open
from ..clusters.control import ClusterControl, backend_class
from ..clusters.record import ClusterRecord
from .probes import ProbeHandler, ProxyInfo, dashboard_urls, fetch
from .upstreams import dask_upstream, fetch_upstream


def cluster_health(
    record: ClusterRecord,
    *,
    control: ClusterControl,
    base_url: str,
    proxy: ProxyInfo,
    server_url: str,
    auth_headers: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Every check on the path from browser to dashboard, in order."""
    checks: list[Check] = []
    status = control.status(record)
    address = record.scheduler_address
    if status == "stale":
        checks.append(
            Check(
                "owner process",
                "fail",
                f"the process that owned the cluster (pid {record.owner_pid}) has exited",
                f"stop the cluster to clean up: workbench clusters stop {record.id}",
            )
        )
    if port_open(address):
        checks.append(Check("scheduler port", "ok", f"{address} accepts connections"))
        try:
            # the backend's own way in (the gateway hands out its clusters' credentials)
            facts = backend_class(record).remote_info(record, timeout=3)
            n = facts["workers"]
            checks.append(Check("scheduler", "ok", f"answers Dask's protocol; {n} worker(s)"))
        except Exception as exc:
            checks.append(
                Check(
                    "scheduler",
                    "fail",
                    f"{address} is open but does not answer Dask's protocol: {exc}",
                    "another program may have taken the port, or the scheduler needs TLS "
                    "settings this server does not have",
                )
            )
    else:
        checks.append(
            Check(
                "scheduler port",
                "fail",
                f"nothing accepts connections at {address}",
                "the cluster process has exited or a firewall blocks the port; see the "
                f"cluster's log{f' ({record.log_file})' if record.log_file else ''}",
            )
        )

    urls = dashboard_urls(record, base_url, proxy)
    link = record.dashboard_link
    if not link:
        checks.append(
            Check(
                "dashboard link",
                "fail",
                "the cluster reports no dashboard",
                "the dashboard is off (dashboard_address: null) or bokeh is not installed in "
                "the cluster's environment (pip install bokeh)",
            )
        )
        return _result(record, checks, urls, proxy)

    parsed = urlparse(link)
    relative = not parsed.scheme
    if relative or "/proxy/" in parsed.path:
        prefix = parsed.path.split("proxy/")[0] if "proxy/" in parsed.path else ""
        if not parsed.path.startswith(base_url):
            checks.append(
                Check(
                    "proxy prefix",
                    "fail",
                    f"the dashboard link {link} uses the prefix {prefix or parsed.path!r}, but "
                    f"this Jupyter server runs under {base_url!r}",
                    "set Dask's distributed.dashboard.link to "
                    "'{JUPYTERHUB_SERVICE_PREFIX}proxy/{port}/status' in the environment that "
                    "starts the cluster, so the link follows the server's prefix",
                )
            )
        else:
            checks.append(Check("proxy prefix", "ok", f"the link is under {base_url}"))
        if not proxy.enabled:
            checks.append(Check("proxy", "fail", "the link needs a proxy", proxy.reason))
        target = urljoin(server_url, parsed.path)
        code, err = fetch(target, auth_headers, origin=server_url)
        checks.append(_http_check("dashboard through the proxy", target, code, err))
        return _result(record, checks, urls, proxy)

    upstream = dask_upstream(record)
    code, _, err = fetch_upstream(upstream, "status")
    shown = f"{link} (mutual TLS, the cluster's certificate)" if upstream.ssl else link
    checks.append(_http_check("dashboard from the server", shown, code, err))
    if urls["proxied"]:
        target = urljoin(server_url, urls["proxied"])
        code, err = fetch(target, auth_headers, origin=server_url)
        checks.append(_http_check("dashboard through workbench's route", target, code, err))
    return _result(record, checks, urls, proxy)


def _http_check(name: str, url: str, code: int, err: str) -> Check:
    if 200 <= code < 400:
        return Check(name, "ok", f"{url} answers (HTTP {code})")
    if code == 0:
        return Check(
            name,
            "fail",
            f"{url} cannot be reached from the Jupyter server: {err}",
            "the dashboard is not running, listens on another interface or port, or a "
            "firewall blocks it",
        )
    return Check(
        name,
        "fail",
        f"{url} answers HTTP {code} {err}".rstrip(),
        "check the dashboard's path; the cluster's log says more",
    )


def _result(
    record: ClusterRecord, checks: list[Check], urls: dict[str, Any], proxy: ProxyInfo
) -> dict[str, Any]:
    return {
        "id": record.id,
        "ok": not any(c.status == "fail" for c in checks),
        "checks": [c.to_dict() for c in checks],
        "dashboard": urls,
        "proxy": {"installed": proxy.installed, "enabled": proxy.enabled, "reason": proxy.reason},
    }


class HealthHandler(ProbeHandler):
    auth_resource = "workbench:health"

    async def get(self) -> None:
        from ..doctor import run_checks
        from .dashboards import panel_missing

        proxy = self._proxy()
        checks = await self.run(run_checks)
        records = await self.run(ClusterControl().list)
        self.reply(
            {
                "version": __version__,
                "base_url": self._base_url,
                "state_dir": str(config.state_dir()),
                "clusters": len(records),
                "proxy": {
                    "installed": proxy.installed,
                    "enabled": proxy.enabled,
                    "reason": proxy.reason,
                },
                "checks": [c.to_dict() for c in checks],
                "dashboards": {
                    "available": panel_missing() is None,
                    "reason": panel_missing() or "workbench dashboards can be served",
                },
            }
        )


class ClusterHealthHandler(ProbeHandler):
    auth_resource = "workbench:health"

    async def get(self, cluster_id: str) -> None:
        control = ClusterControl()
        record = await self.run(control.get, cluster_id)
        result = await self.run(
            cluster_health,
            record,
            control=control,
            base_url=self._base_url,
            proxy=self._proxy(),
            server_url=self._server_url(),
            auth_headers=self._auth_headers(),
        )
        from .dashboards import dashboard_checks

        extra = await self.run(dashboard_checks, record.id)
        result["checks"] += [c.to_dict() for c in extra]
        result["ok"] = not any(c["status"] == "fail" for c in result["checks"])
        self.reply(result)
