"""The ``workbench`` command line."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import click
import yaml

from . import __version__, config
from .errors import WorkbenchError


def _parse_overrides(pairs: tuple[str, ...]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{pair!r}: expected KEY=VALUE", param_hint="-o/--option")
        out[key.strip()] = yaml.safe_load(value) if value else None
    return out


def _table(rows: list[list[str]], headers: list[str]) -> str:
    widths = [max(len(str(c)) for c in col) for col in zip(headers, *rows, strict=False)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))]
    lines += ["  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join(line.rstrip() for line in lines)


def _age(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m"
    return f"{seconds // 3600}h"


class _Group(click.Group):
    """Turns WorkbenchError into a clean one-line message and exit status 1."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except WorkbenchError as exc:
            click.secho(f"error: {exc}", fg="red", err=True)
            ctx.exit(1)


@click.group(cls=_Group)
@click.version_option(__version__, prog_name="workbench")
def main() -> None:
    """workbench: GPU Dask clusters, data and dashboards from JupyterLab."""


# -- profiles ----------------------------------------------------------------------------
@main.group(cls=_Group)
def profiles() -> None:
    """List, show and validate cluster profiles."""


@profiles.command("list")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def profiles_list(as_json: bool) -> None:
    """Every profile, where it comes from, and problems in profile files."""
    from .clusters.profiles import load_catalog

    catalog = load_catalog()
    if as_json:
        click.echo(
            json.dumps(
                {
                    "profiles": [p.to_dict() for p in catalog.profiles.values()],
                    "problems": [str(p) for p in catalog.problems],
                    "files": [f.__dict__ for f in catalog.files],
                },
                indent=1,
            )
        )
        return
    rows = [
        [p.name, p.backend, p.scope, p.description[:60]]
        for p in sorted(catalog.profiles.values(), key=lambda p: p.name)
    ]
    click.echo(_table(rows, ["NAME", "BACKEND", "FROM", "DESCRIPTION"]))
    click.echo("\nprofile files (later ones override earlier):")
    for f in catalog.files:
        click.echo(f"  {f.scope:9} {f.path}{'' if f.exists else '  (missing)'}")
    if catalog.problems:
        click.secho(f"\n{len(catalog.problems)} problem(s):", fg="red", err=True)
        for problem in catalog.problems:
            click.secho(f"  {problem}", fg="red", err=True)


@profiles.command("show")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True)
def profiles_show(name: str, as_json: bool) -> None:
    """A profile with every option resolved to its effective value."""
    from .clusters.profiles import get_profile

    profile = get_profile(name)
    options = profile.resolve().model_dump()
    data = {**profile.to_dict(), "effective_options": options}
    if as_json:
        click.echo(json.dumps(data, indent=1, default=str))
        return
    click.echo(f"{profile.name}  (backend {profile.backend}, from {profile.source})")
    if profile.description:
        click.echo(f"  {profile.description}")
    if profile.extends:
        click.echo(f"  extends: {profile.extends}")
    click.echo(yaml.safe_dump({"options": options}, sort_keys=False).rstrip())


@profiles.command("validate")
@click.argument("files", nargs=-1, type=click.Path(path_type=Path))
def profiles_validate(files: tuple[Path, ...]) -> None:
    """Check profile FILES (default: every configured profile file). Exit 1 on problems."""
    from .clusters.profiles import load_catalog, validate_file

    if files:
        problems = [p for f in files for p in validate_file(f)]
        checked = [str(f) for f in files]
    else:
        catalog = load_catalog()
        problems = catalog.problems
        checked = [f.path for f in catalog.files if f.exists]
    for problem in problems:
        click.secho(str(problem), fg="red", err=True)
    if problems:
        raise click.exceptions.Exit(1)
    click.echo(f"ok: {', '.join(checked)}")


# -- launch -------------------------------------------------------------------------------
@main.command()
@click.argument("profile", default="local")
@click.option(
    "-o",
    "--option",
    "options",
    multiple=True,
    metavar="KEY=VALUE",
    help="Override a profile option (value parsed as YAML). Repeatable.",
)
@click.option(
    "--detach", is_flag=True, help="Run the cluster in a background process and return its id."
)
@click.option("--timeout", default=120.0, show_default=True, help="Seconds to wait for workers.")
def launch(profile: str, options: tuple[str, ...], detach: bool, timeout: float) -> None:
    """Start a cluster from PROFILE (default: local) and keep it running until Ctrl-C."""
    overrides = _parse_overrides(options)
    if detach:
        _launch_detached(profile, overrides, timeout)
        return
    from .clusters import launch as do_launch

    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    handle = do_launch(
        profile,
        wait=True,
        timeout=timeout,
        detached=bool(os.environ.get("WORKBENCH_DETACHED_LOG")),
        **overrides,
    )
    try:
        click.echo(
            f"cluster {handle.id} ({handle.backend}, "
            f"{len(handle.gpus) or 'no'} GPU(s), {handle.n_workers()} workers)"
        )
        click.echo(f"  scheduler: {handle.scheduler_address}")
        click.echo(f"  dashboard: {handle.dashboard_link}")
        click.echo("Press Ctrl-C to stop.", err=True)
        sys.stdout.flush()
        while not stop.wait(0.5) and handle.status != "closed":
            pass
    finally:
        handle.close()
    click.echo(f"cluster {handle.id} stopped")


def _launch_detached(profile: str, overrides: dict[str, Any], timeout: float) -> None:
    from .clusters.running import ClusterRegistry

    logs = config.state_dir() / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    log = logs / f"launch-{int(time.time() * 1000)}-{os.getpid()}.log"
    args = [sys.executable, "-m", "workbench", "launch", profile, "--timeout", str(timeout)]
    for key, value in overrides.items():
        args += ["-o", f"{key}={json.dumps(value)}"]
    env = {**os.environ, "WORKBENCH_DETACHED_LOG": str(log), "PYTHONUNBUFFERED": "1"}
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            args,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
        )
    registry = ClusterRegistry()
    deadline = time.monotonic() + timeout + 30
    while time.monotonic() < deadline:
        mine = [r for r in registry.list() if r.owner_pid == proc.pid]
        if mine and "Press Ctrl-C" in log.read_text(errors="replace"):
            r = mine[0]
            click.echo(f"{r.id}\t{r.scheduler_address}\t{r.dashboard_link or ''}")
            click.echo(
                f"cluster {r.id} runs in process {proc.pid}; log: {log}; "
                f"stop it with: workbench clusters stop {r.id}",
                err=True,
            )
            return
        if proc.poll() is not None:
            tail = log.read_text(errors="replace").strip().splitlines()[-15:]
            raise WorkbenchError(
                "the cluster process exited before the cluster was ready:\n" + "\n".join(tail)
            )
        time.sleep(0.2)
    proc.terminate()
    raise WorkbenchError(f"the cluster was not ready within {timeout + 30:.0f}s; log: {log}")


# -- clusters -----------------------------------------------------------------------------
@main.group(cls=_Group)
def clusters() -> None:
    """Clusters started by workbench in any kernel or terminal of this user."""


@clusters.command("list")
@click.option("--json", "as_json", is_flag=True)
def clusters_list(as_json: bool) -> None:
    """Running clusters with their status (stale: the process that owned it died)."""
    from .clusters.running import ClusterRegistry

    registry = ClusterRegistry()
    out = []
    for r in registry.list():
        status = registry.status(r)
        info = registry.info(r, timeout=2) if status == "running" else {}
        out.append({**r.to_dict(), "status": status, **info})
    if as_json:
        click.echo(json.dumps(out, indent=1))
        return
    if not out:
        click.echo("no clusters")
        return
    rows = [
        [
            c["id"],
            c["profile"],
            c["backend"],
            c["status"],
            str(c.get("workers", "-")),
            str(len(c["gpus"])),
            _age(time.time() - c["created"]),
            c["scheduler_address"],
            c["dashboard_link"] or "",
        ]
        for c in out
    ]
    click.echo(
        _table(
            rows,
            [
                "ID",
                "PROFILE",
                "BACKEND",
                "STATUS",
                "WORKERS",
                "GPUS",
                "AGE",
                "SCHEDULER",
                "DASHBOARD",
            ],
        )
    )
    if any(c["status"] == "stale" for c in out):
        click.echo(
            "\nstale clusters lost their owner process; remove them with "
            "'workbench clusters cleanup'",
            err=True,
        )


@clusters.command("stop")
@click.argument("ids", nargs=-1)
@click.option("--all", "stop_all", is_flag=True, help="Stop every cluster of this user.")
@click.option("--timeout", default=30.0, show_default=True)
def clusters_stop(ids: tuple[str, ...], stop_all: bool, timeout: float) -> None:
    """Stop clusters by id (a unique prefix is enough)."""
    from .clusters.running import ClusterRegistry

    registry = ClusterRegistry()
    if stop_all:
        ids = tuple(r.id for r in registry.list())
    if not ids:
        raise click.UsageError("name a cluster id, or pass --all")
    for cid in ids:
        record = registry.stop(cid, timeout=timeout)
        click.echo(f"stopped {record.id} ({record.profile})")


@clusters.command("scale")
@click.argument("cluster_id")
@click.argument("n", type=click.IntRange(min=0))
def clusters_scale(cluster_id: str, n: int) -> None:
    """Ask cluster CLUSTER_ID for N workers."""
    from .clusters.running import ClusterRegistry, scheduler_call

    record = ClusterRegistry().get(cluster_id)
    try:
        scheduler_call(record.scheduler_address, "workbench_scale", n=n)
    except OSError as exc:
        raise WorkbenchError(
            f"cluster {record.id} is not reachable at {record.scheduler_address}: {exc}"
        ) from exc
    click.echo(f"scaled {record.id} to {n} workers")


@clusters.command("cleanup")
def clusters_cleanup() -> None:
    """Forget clusters whose owner died, and stop what they left running."""
    from .clusters.running import ClusterRegistry

    cleaned = ClusterRegistry().cleanup()
    for r in cleaned:
        click.echo(f"removed stale cluster {r.id} ({r.profile}, owner pid {r.owner_pid})")
    if not cleaned:
        click.echo("nothing to clean up")


# -- dashboard ----------------------------------------------------------------------------
@main.command()
@click.option("--cluster", "cluster_id", help="Id of a running cluster (see 'clusters list').")
@click.option("--scheduler", help="Address of any Dask scheduler, e.g. tcp://10.0.0.5:8786.")
@click.option("--port", default=8050, show_default=True, help="Dashboard port (0: any free).")
@click.option("--address", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--prometheus-port",
    type=int,
    default=None,
    help="Also serve /metrics on this port (it is always at /metrics of the dashboard too).",
)
@click.option(
    "--interval",
    default=1.0,
    show_default=True,
    type=click.FloatRange(min=0.1),
    help="Seconds between samples (host and, if this installs the plugin, workers).",
)
@click.option(
    "--allow-websocket-origin",
    "origins",
    multiple=True,
    metavar="HOST:PORT",
    help="Extra origin allowed to open the dashboard (behind a proxy or SSH tunnel).",
)
def dashboard(
    cluster_id: str | None,
    scheduler: str | None,
    port: int,
    address: str,
    prometheus_port: int | None,
    interval: float,
    origins: tuple[str, ...],
) -> None:
    """Serve live GPU / storage / network / cluster / energy dashboards until Ctrl-C.

    Without --cluster or --scheduler it shows this machine only.
    """
    if cluster_id and scheduler:
        raise click.UsageError("give --cluster or --scheduler, not both")
    scheduler_address = scheduler
    if cluster_id:
        from .clusters.running import ClusterRegistry

        registry = ClusterRegistry()
        record = registry.get(cluster_id)
        if registry.status(record) == "stale":
            raise WorkbenchError(
                f"cluster {record.id} has no owner any more (its process {record.owner_pid} "
                "died); remove it with 'workbench clusters cleanup'"
            )
        scheduler_address = record.scheduler_address
    from .dashboards import DashboardServer
    from .dashboards.server import reserve_port
    from .metrics.prometheus import serve_prometheus
    from .metrics.store import get_store

    reserve_port(address, port)  # fail on a busy port before connecting to anything
    if prometheus_port is not None:
        reserve_port(address, prometheus_port)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    store = get_store(scheduler_address, interval=interval)
    servers: list[Any] = []
    try:
        server = DashboardServer(store, port, address, websocket_origins=list(origins))
        servers.append(server)
        what = f"cluster at {scheduler_address}" if scheduler_address else "this machine"
        click.echo(f"dashboard of {what}: {server.url}")
        click.echo(f"prometheus metrics: {server.metrics_url}")
        if prometheus_port is not None:
            prom = serve_prometheus(store, prometheus_port, address)
            servers.append(prom)
            click.echo(f"prometheus metrics: {prom.url}")
        if not scheduler_address:
            from .clusters.running import ClusterRegistry

            running = [r.id for r in ClusterRegistry().list()]
            if running:
                click.echo(
                    f"showing this machine only; pass --cluster ID for a cluster "
                    f"(running: {', '.join(running)})",
                    err=True,
                )
        click.echo("Press Ctrl-C to stop.", err=True)
        sys.stdout.flush()
        while not stop.wait(0.5):
            pass
    finally:
        for srv in reversed(servers):
            with contextlib.suppress(Exception):
                srv.close()
        store.close()


# -- doctor -------------------------------------------------------------------------------
@main.command()
@click.option("--json", "as_json", is_flag=True)
def doctor(as_json: bool) -> None:
    """What this machine offers workbench: GPUs, NVML, CUDA, Dask and optional packages."""
    from .doctor import run_checks

    checks = run_checks()
    if as_json:
        click.echo(json.dumps([c.to_dict() for c in checks], indent=1))
        return
    marks = {"ok": ("ok", "green"), "warn": ("--", "yellow"), "fail": ("!!", "red")}
    for c in checks:
        mark, color = marks[c.status]
        click.echo(click.style(f"[{mark}] ", fg=color) + f"{c.name}: {c.summary}")
        if c.advice:
            click.echo(f"       {c.advice}")
    if any(c.status == "fail" for c in checks):
        raise click.exceptions.Exit(1)


if __name__ == "__main__":
    main()
