"""The ``workbench`` command line."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
import yaml

from . import __version__
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
        from .redact import RedactingStream

        # Nothing the CLI prints shows a secret: URIs with credentials and the values of
        # secret-looking names are redacted on the way out.
        streams = sys.stdout, sys.stderr
        if not isinstance(sys.stdout, RedactingStream):
            sys.stdout = RedactingStream(sys.stdout)
            sys.stderr = RedactingStream(sys.stderr)
        try:
            return super().invoke(ctx)
        except WorkbenchError as exc:
            click.secho(f"error: {exc}", fg="red", err=True)
            ctx.exit(1)
        finally:
            sys.stdout, sys.stderr = streams


@click.group(cls=_Group)
@click.version_option(__version__, prog_name="workbench")
def main() -> None:
    """workbench: GPU Dask clusters, data and dashboards from JupyterLab."""


def _echo_catalog(key: str, entries: Any, catalog: Any) -> None:
    """``--json`` of a layered YAML catalog (profiles, datasets): entries, problems, files."""
    body = {
        key: [e.to_dict() for e in entries],
        "problems": [str(p) for p in catalog.problems],
        "files": [f.__dict__ for f in catalog.files],
    }
    click.echo(json.dumps(body, indent=1))


def _validate_catalog(
    files: tuple[Path, ...],
    load_catalog: Callable[[], Any],
    validate_file: Callable[[Path], list[Any]],
    none: str = "",
) -> None:
    """``validate`` of a layered YAML catalog: the given FILES, else every configured file;
    problems to stderr and exit 1, else ``ok:`` and what was checked."""
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
    click.echo(f"ok: {', '.join(checked) or none}")


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
        _echo_catalog("profiles", catalog.profiles.values(), catalog)
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

    _validate_catalog(files, load_catalog, validate_file)


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
@click.option(
    "--dry-run",
    is_flag=True,
    help="Start nothing: print the batch job script PROFILE would submit, then check it "
    "against the live cluster (SLURM: sinfo, sbatch --test-only).",
)
@click.option("--no-check", is_flag=True, help="With --dry-run: only print the script.")
def launch(
    profile: str,
    options: tuple[str, ...],
    detach: bool,
    timeout: float,
    dry_run: bool,
    no_check: bool,
) -> None:
    """Start a cluster from PROFILE (default: local) and keep it running until Ctrl-C."""
    overrides = _parse_overrides(options)
    if dry_run:
        _dry_run(profile, overrides, check=not no_check)
        return
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
        link = handle.dashboard_link
        mtls = bool(link and link.startswith("https://") and handle.record.extra.get("security"))
        click.echo(
            f"  dashboard: {link}"
            + (" (mutual TLS: open it from JupyterLab's Workbench sidebar)" if mtls else "")
        )
        click.echo("Press Ctrl-C to stop.", err=True)
        sys.stdout.flush()
        while not stop.wait(0.5) and handle.status != "closed":
            pass
    finally:
        handle.close()
    click.echo(f"cluster {handle.id} stopped")


def _dry_run(profile: str, overrides: dict[str, Any], check: bool) -> None:
    from .clusters.detached import check_verdict, prepare_launch

    backend = prepare_launch(profile, overrides)
    name = backend.profile
    script = backend.job_script()
    if script is None:
        kind = backend.describe().get("kind") or backend.name
        click.echo(
            f"profile {name!r} (backend {backend.name}) submits no batch jobs: "
            f"it starts a {kind} in the launching process."
        )
    else:
        click.echo(script.rstrip("\n"))
    if check:
        backend.check()
        verdict = check_verdict(backend)
        shown = f" ({verdict})" if verdict else ""
        click.secho(
            f"ok: profile {name!r} passed the checks against the live cluster{shown}",
            err=True,
        )


def _launch_detached(profile: str, overrides: dict[str, Any], timeout: float) -> None:
    from .clusters.detached import launch_detached

    r = launch_detached(profile, overrides, timeout)
    click.echo(f"{r.id}\t{r.scheduler_address}\t{r.dashboard_link or ''}")
    click.echo(
        f"cluster {r.id} runs in process {r.owner_pid}; log: {r.log_file}; "
        f"stop it with: workbench clusters stop {r.id}",
        err=True,
    )


# -- clusters -----------------------------------------------------------------------------
@main.group(cls=_Group)
def clusters() -> None:
    """Clusters started by workbench in any kernel or terminal of this user."""


@clusters.command("list")
@click.option("--json", "as_json", is_flag=True)
def clusters_list(as_json: bool) -> None:
    """Running clusters with their status (stale: the process that owned it died)."""
    from .clusters.control import ClusterControl

    control = ClusterControl()
    out = control.summaries()
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
            "-" if c["workers"] is None else str(c["workers"]),
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
    for c in out:
        if c["problem"]:
            click.echo(f"\n{c['id']}: {c['problem']}", err=True)
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
    """Stop clusters by their full id (no prefix: stopping is not undone)."""
    from .clusters.control import ClusterControl

    control = ClusterControl()
    if stop_all:
        ids = tuple(r.id for r in control.list())
    if not ids:
        raise click.UsageError("name a cluster id, or pass --all")
    for cid in ids:
        record = control.stop(cid, timeout=timeout)
        click.echo(f"stopped {record.id} ({record.profile})")


@clusters.command("scale")
@click.argument("cluster_id")
@click.argument("n", type=click.IntRange(min=0))
@click.option("--jobs", "in_jobs", is_flag=True, help="N counts batch jobs, not workers.")
def clusters_scale(cluster_id: str, n: int, in_jobs: bool) -> None:
    """Ask cluster CLUSTER_ID (its full id) for N workers (or N batch jobs with --jobs)."""
    from .clusters.control import ClusterControl

    control = ClusterControl()
    record = control.scale(cluster_id, jobs=n) if in_jobs else control.scale(cluster_id, n)
    click.echo(f"scaled {record.id} to {n} {'jobs' if in_jobs else 'workers'}")


@clusters.command("adapt")
@click.argument("cluster_id")
@click.option("--minimum", default=0, show_default=True, type=click.IntRange(min=0))
@click.option("--maximum", default=None, type=click.IntRange(min=0), help="Default: no limit.")
def clusters_adapt(cluster_id: str, minimum: int, maximum: int | None) -> None:
    """Let cluster CLUSTER_ID (its full id) scale itself between --minimum and --maximum workers."""
    from .clusters.control import ClusterControl

    if maximum is not None and maximum < minimum:
        raise click.BadParameter(f"{maximum} is below --minimum {minimum}", param_hint="--maximum")
    record = ClusterControl().adapt(cluster_id, minimum, maximum)
    click.echo(f"{record.id} adapts between {minimum} and {maximum or 'any number of'} workers")


@clusters.command("connect")
@click.argument("cluster_id")
def clusters_connect(cluster_id: str) -> None:
    """Print Python code that connects a Client to CLUSTER_ID (no secrets in it)."""
    from .clusters.control import ClusterControl

    click.echo(ClusterControl().connect_code(cluster_id))


@clusters.command("cleanup")
def clusters_cleanup() -> None:
    """Forget clusters whose owner died, and stop what they left running."""
    from .clusters.control import ClusterControl

    cleaned = ClusterControl().cleanup()
    for r in cleaned:
        click.echo(f"removed stale cluster {r.id} ({r.profile}, owner pid {r.owner_pid})")
    if not cleaned:
        click.echo("nothing to clean up")


# -- data ---------------------------------------------------------------------------------
@main.group(cls=_Group)
def data() -> None:
    """Datasets in the catalog (team catalogs and your catalog.yaml)."""


@data.command("list")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def data_list(as_json: bool) -> None:
    """Every dataset, where it is defined, and problems in catalog files."""
    from .data.catalog import load_catalog

    catalog = load_catalog()
    if as_json:
        _echo_catalog("datasets", catalog.datasets.values(), catalog)
        return
    rows = [
        [d.name, d.spec.format, d.uri, d.scope, d.description[:50]]
        for d in sorted(catalog.datasets.values(), key=lambda d: d.name)
    ]
    if rows:
        click.echo(_table(rows, ["NAME", "FORMAT", "URI", "FROM", "DESCRIPTION"]))
    else:
        click.echo("no datasets")
    click.echo("\ncatalog files (later ones override earlier):")
    for f in catalog.files:
        click.echo(f"  {f.scope:5} {f.path}{'' if f.exists else '  (missing)'}")
    if catalog.problems:
        click.secho(f"\n{len(catalog.problems)} problem(s):", fg="red", err=True)
        for problem in catalog.problems:
            click.secho(f"  {problem}", fg="red", err=True)


@data.command("show")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True)
@click.option(
    "--inspect",
    is_flag=True,
    help="Also list the files, sizes, versions and schema (reads the storage).",
)
def data_show(name: str, as_json: bool, inspect: bool) -> None:
    """A dataset's entry (credentials shown as the references the catalog holds)."""
    from .data.catalog import get_dataset

    dataset = get_dataset(name)
    info: dict[str, Any] = dataset.to_dict()
    if inspect:
        from .data.loader import load

        _, manifest = load(dataset, backend="pandas", return_manifest=True)
        info["manifest"] = manifest.to_dict()
    if as_json:
        click.echo(json.dumps(info, indent=1, default=str))
        return
    where = f"{dataset.source}:{dataset.line}" if dataset.line else dataset.source
    click.echo(f"{dataset.name}  ({dataset.spec.format}, from {where})")
    if dataset.description:
        click.echo(f"  {dataset.description}")
    spec = {k: v for k, v in dataset.spec.model_dump().items() if v not in (None, {}, [], "")}
    click.echo(yaml.safe_dump(spec, sort_keys=False).rstrip())
    if inspect:
        m = info["manifest"]
        click.echo(f"\n{m['total_bytes']:,} bytes in {len(m['files'])} file(s)")
        rows = [
            [
                f["uri"],
                f"{f['size']:,}" if f["size"] is not None else "?",
                f["etag"] or f["version"] or f["mtime"] or "",
                "" if f["rows"] is None else str(f["rows"]),
            ]
            for f in m["files"]
        ]
        click.echo(_table(rows, ["FILE", "BYTES", "ETAG/VERSION/MTIME", "ROWS"]))
        click.echo("schema:")
        for col, dtype in m["schema"].items():
            click.echo(f"  {col}: {dtype}")


@data.command("validate")
@click.argument("files", nargs=-1, type=click.Path(path_type=Path))
def data_validate(files: tuple[Path, ...]) -> None:
    """Check catalog FILES (default: every configured catalog). Exit 1 on problems."""
    from .data.catalog import load_catalog, validate_file

    _validate_catalog(files, load_catalog, validate_file, none="no catalog files")


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
@click.option(
    "--token",
    "token_ref",
    default=None,
    metavar="REF",
    help="Reference to the token that guards the pages and /metrics (env:NAME, "
    "keyring:SERVICE/USER, file:PATH); required for an address other than loopback.",
)
@click.option(
    "--exit-with-cluster",
    is_flag=True,
    hidden=True,
    help="With --cluster: exit once the cluster is gone (JupyterLab starts it so).",
)
@click.option(
    "--unix-socket",
    default=None,
    hidden=True,
    help="Serve on this Unix socket instead of a port (JupyterLab starts it so, in a "
    "directory of the user's alone, and shows it through its own route).",
)
def dashboard(
    cluster_id: str | None,
    scheduler: str | None,
    port: int,
    address: str,
    prometheus_port: int | None,
    interval: float,
    origins: tuple[str, ...],
    token_ref: str | None,
    exit_with_cluster: bool,
    unix_socket: str | None,
) -> None:
    """Serve live GPU / storage / network / cluster / energy dashboards until Ctrl-C.

    Without --cluster or --scheduler it shows this machine only.
    """
    if cluster_id and scheduler:
        raise click.UsageError("give --cluster or --scheduler, not both")
    scheduler_address = scheduler
    cost = None
    if cluster_id:
        from .accounting import CachedCost
        from .clusters.control import ClusterControl

        record = ClusterControl().running(cluster_id)
        scheduler_address = record.scheduler_address
        cost = CachedCost(record)  # the status line's running cost, from the owner
    from .credentials import resolve as resolve_credential
    from .dashboards import DashboardServer
    from .dashboards.server import is_loopback, reserve_port
    from .metrics.prometheus import serve_prometheus
    from .metrics.store import get_store

    token = resolve_credential(token_ref) if token_ref else None
    if prometheus_port is not None and not is_loopback(address):
        raise click.UsageError(
            "--prometheus-port serves /metrics without a token: on an address other than "
            "loopback use the dashboard's own /metrics (guarded by --token)"
        )
    if unix_socket is None:
        reserve_port(address, port)  # fail on a busy port before connecting to anything
    if prometheus_port is not None:
        reserve_port(address, prometheus_port)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    store = get_store(scheduler_address, interval=interval)
    servers: list[Any] = []
    try:
        server = DashboardServer(
            store,
            port,
            address,
            websocket_origins=list(origins),
            cost=cost,
            token=token,
            unix_socket=unix_socket,
        )
        servers.append(server)
        what = f"cluster at {scheduler_address}" if scheduler_address else "this machine"
        click.echo(f"dashboard of {what}: {server.url}")
        click.echo(f"prometheus metrics: {server.metrics_url}")
        if prometheus_port is not None:
            prom = serve_prometheus(store, prometheus_port, address)
            servers.append(prom)
            click.echo(f"prometheus metrics: {prom.url}")
        if not scheduler_address:
            from .clusters.record_store import RecordStore

            running = [r.id for r in RecordStore().list()]
            if running:
                click.echo(
                    f"showing this machine only; pass --cluster ID for a cluster "
                    f"(running: {', '.join(running)})",
                    err=True,
                )
        click.echo("Press Ctrl-C to stop.", err=True)
        sys.stdout.flush()
        checked = time.monotonic()
        while not stop.wait(0.5):
            if exit_with_cluster and cluster_id and time.monotonic() - checked > 2:
                checked = time.monotonic()
                if _cluster_gone(cluster_id):
                    click.echo(f"cluster {cluster_id} is gone; stopping", err=True)
                    break
    finally:
        for srv in reversed(servers):
            with contextlib.suppress(Exception):
                srv.close()
        store.close()


def _cluster_gone(cluster_id: str) -> bool:
    """Whether the cluster left the record store or lost its owner process."""
    from .clusters.control import ClusterControl
    from .errors import ClusterNotFoundError

    control = ClusterControl()
    try:
        return control.status(control.get(cluster_id)) == "stale"
    except ClusterNotFoundError:
        return True


# -- doctor -------------------------------------------------------------------------------
@main.command()
@click.option("--json", "as_json", is_flag=True)
def doctor(as_json: bool) -> None:
    """What this machine offers workbench: GPUs, NVML, CUDA, Dask and optional packages."""
    from .doctor import run_checks

    checks = run_checks()
    if as_json:
        click.echo(json.dumps([c.to_dict() for c in checks], indent=1))
        if any(c.status == "fail" for c in checks):
            raise click.exceptions.Exit(1)
        return
    marks = {"ok": ("ok", "green"), "warn": ("--", "yellow"), "fail": ("!!", "red")}
    for c in checks:
        mark, color = marks[c.status]
        click.echo(click.style(f"[{mark}] ", fg=color) + f"{c.name}: {c.summary}")
        if c.advice:
            click.echo(f"       {c.advice}")
    if any(c.status == "fail" for c in checks):
        raise click.exceptions.Exit(1)


# -- templates ----------------------------------------------------------------------------
@main.group(cls=_Group)
def templates() -> None:
    """Notebook templates shared by the team."""


@templates.command("list")
@click.option("--json", "as_json", is_flag=True)
def templates_list(as_json: bool) -> None:
    """Every template with its parameters."""
    from .templates import list_templates, team_dirs

    found = list_templates()
    if as_json:
        click.echo(json.dumps([t.to_dict() for t in found.values()], indent=1, default=str))
        return
    for t in found.values():
        click.echo(f"{t.name}  [{t.scope}]  {t.title}")
        if t.description:
            click.echo(f"    {t.description}")
        for p in t.parameters.values():
            help_text = f"  # {p.help}" if p.help else ""
            click.echo(f"    -p {p.name}={p.default!r}{help_text}")
    dirs = ", ".join(str(d) for d in team_dirs()) or "none (set WORKBENCH_TEMPLATES)"
    click.echo(f"\nteam template directories: {dirs}", err=True)


@main.command("new")
@click.argument("template")
@click.argument("path", type=click.Path(path_type=Path))
@click.option(
    "-p",
    "--parameter",
    "params",
    multiple=True,
    metavar="KEY=VALUE",
    help="Set a template parameter (value parsed as YAML). Repeatable.",
)
@click.option("--force", is_flag=True, help="Overwrite PATH if it exists.")
def new(template: str, path: Path, params: tuple[str, ...], force: bool) -> None:
    """Create the notebook PATH from TEMPLATE (see `workbench templates list`)."""
    from .templates import new_notebook

    values = _parse_overrides(params)
    dest = new_notebook(template, path, values, overwrite=force)
    click.echo(f"created {dest} from template {template!r}")


# -- bench --------------------------------------------------------------------------------
@main.command()
@click.option(
    "--storage",
    "storage_dir",
    type=click.Path(path_type=Path, file_okay=False),
    help="Directory whose disk to measure (default: the temp directory).",
)
@click.option("--uri", help="Object-store prefix with existing data to read, e.g. s3://bucket/p/.")
@click.option(
    "--storage-option",
    "storage_options",
    multiple=True,
    metavar="KEY=VALUE",
    help="fsspec option for --uri; secrets as env:NAME references. Repeatable.",
)
@click.option("--cluster", "cluster_id", help="Measure the network of this running cluster.")
@click.option("--no-network", is_flag=True, help="Skip the worker-to-worker test.")
@click.option("--size-mb", default=256, show_default=True, type=click.IntRange(min=8))
@click.option("--json", "as_json", is_flag=True)
def bench(
    storage_dir: Path | None,
    uri: str | None,
    storage_options: tuple[str, ...],
    cluster_id: str | None,
    no_network: bool,
    size_mb: int,
    as_json: bool,
) -> None:
    """Measure storage, network and GPU throughput against their physical limits."""
    from . import bench as b

    results = [b.storage_read(storage_dir, size_mb)]
    if uri:
        results.append(b.object_store_read(uri, _parse_overrides(storage_options), size_mb))
    if not no_network:
        results.append(_bench_network(cluster_id, size_mb))
    results.extend(b.gpu_measurements())
    worst = b.bottleneck(results)
    if as_json:
        click.echo(
            json.dumps(
                {
                    "results": [m.to_dict() for m in results],
                    "bottleneck": worst.name if worst else None,
                },
                indent=1,
            )
        )
        return
    for m in results:
        click.echo(str(m))
        if m.detail:
            click.echo(f"    {m.detail}")
    if worst is not None:
        click.echo(
            f"\nbottleneck: {worst.name} reaches {100 * (worst.fraction or 0):.0f}% of "
            f"its limit ({worst.limit_source})"
        )
    else:
        click.echo("\nbottleneck: unknown (no measurement has a reported physical limit)")


def _bench_network(cluster_id: str | None, size_mb: int) -> Any:
    from distributed import Client

    from . import bench as b
    from .clusters import launch as do_launch
    from .clusters.control import ClusterControl

    if cluster_id:
        record = ClusterControl().running(cluster_id)
        from .clusters.tls import security_of

        with Client(record.scheduler_address, security=security_of(record), timeout=10) as client:
            return b.worker_network(client, size_mb)
    with do_launch(
        "local-cpu", n_workers=2, threads_per_worker=1, dashboard_address=":0", wait=2
    ) as handle:
        return b.worker_network(handle.client, size_mb)


if __name__ == "__main__":
    main()
