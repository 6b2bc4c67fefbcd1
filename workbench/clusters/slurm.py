"""The ``slurm`` backend: Dask workers in SLURM batch jobs, through dask-jobqueue.

A profile says what one job looks like (partition, account, walltime, cores, memory,
GPUs, directives, a prologue that loads modules or activates an environment; the options
and their validation are in :mod:`workbench.clusters.slurm_options`); the
scheduler runs in the launching process, each job runs ``processes`` Dask workers. With
``gpus_per_job: N`` a job asks for ``--gres=gpu:N`` and starts ``dask cuda worker``
(dask-cuda), which runs one worker per GPU SLURM gives the job; the job's ``memory`` and
``cores`` are split evenly between those workers. With a walltime, workers retire
gracefully (``--lifetime`` with a stagger) a margin before SLURM would kill the job.

Before anything is submitted, :meth:`SLURMBackend.check` asks the live cluster
(``sinfo``, ``sbatch --test-only``) whether the job can run: the partition exists and
is up, its nodes have the CPUs, memory and GPUs, and the walltime fits its limit.

dask-jobqueue is imported only when a cluster starts, so profiles validate everywhere.
"""

from __future__ import annotations

import contextlib
import getpass
import logging
import os
import re
import secrets
import shlex
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from dask.utils import format_bytes, parse_bytes

from .. import config
from ..errors import BackendError, ResourceError
from ..imports import import_module
from ..private import PRIVATE_UMASK, private_dir, scrubbed_env
from . import slurm_commands as sc
from .backend import Backend, BackendOptions, WaitState, private_dask_scratch
from .comm import free_dashboard_address
from .dashboard_tls import WORKER_HTTP_ENV, dashboard_tls
from .slurm_options import SLURMOptions, lifetime

if TYPE_CHECKING:
    from distributed.deploy.cluster import Cluster

    from .record import ClusterRecord

logger = logging.getLogger(__name__)

SLURM_HINT = "pip install 'workbench[slurm]'"
#: First lines of every job: what the workers write is the user's alone (spilled data,
#: worker files; the job's own logs are private through sbatch's umask already).
PRIVATE_PROLOGUE = (
    "umask 077",
    *(f"export {name}='{value}'" for name, value in WORKER_HTTP_ENV.items()),
)
#: Without a profile's local_directory: the workers spill into a directory of the user's
#: alone on the node, never into a shared /tmp/dask-scratch-space; a squatted one fails.
PRIVATE_SCRATCH = (
    'WB_SCRATCH="${TMPDIR:-/tmp}/workbench-$(id -u)"',
    'mkdir -p -m 700 "$WB_SCRATCH" && [ -O "$WB_SCRATCH" ] && [ ! -L "$WB_SCRATCH" ] || '
    '{ echo "workbench: $WB_SCRATCH is not yours alone; not spilling there" >&2; exit 1; }',
    'export DASK_TEMPORARY_DIRECTORY="$WB_SCRATCH"',
)
#: Every worker's own HTTP server: on the node's loopback, without the Bokeh pages.
WORKER_HTTP_ARGS = ("--no-dashboard", "--dashboard-address", "127.0.0.1:0")
#: Random bytes of the suffix every job name ends in (hex: twice as many characters).
JOB_SUFFIX_BYTES = 3


def import_jobqueue() -> None:
    """Import ``dask_jobqueue.slurm`` without its import-time SIGINT handler
    (``dask_jobqueue.runner`` sets one: off the main thread that raises, on it it replaces
    the program's own); the ``from dask_jobqueue.slurm import ...`` after it finds it
    imported."""
    import_module("dask_jobqueue.slurm")


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-")[:40] or "cluster"


class SLURMBackend(Backend):
    name = "slurm"
    Options = SLURMOptions
    options: SLURMOptions
    requires: ClassVar[dict[str, str]] = {"dask_jobqueue": SLURM_HINT}
    #: dask_jobqueue.runner sets a SIGINT handler at import
    imports_at_server_start = ("dask_jobqueue",)
    has_jobs = True
    #: squeue is asked at most this often while waiting for workers (be kind to slurmctld).
    wait_poll_interval = 2.0

    def __init__(self, options: BackendOptions, profile: str = "") -> None:
        super().__init__(options, profile)
        o = self.options
        # Always ends in a unique suffix: cancelling by name (the watchdog, close, abort)
        # must never reach another cluster's or another user's jobs.
        prefix = o.job_name or f"wb-{_slug(profile or 'slurm')}"
        self.job_name = f"{prefix}-{secrets.token_hex(JOB_SUFFIX_BYTES)}"
        self._cluster: Cluster | None = None
        self._checked = False
        #: What ``sbatch --test-only`` said about the job script (set by check()).
        self.test_only_message = ""

    # -- what a job looks like ------------------------------------------------------------
    @property
    def processes(self) -> int | None:
        """Dask workers per job: one per GPU, else the profile's (None: jobqueue's default)."""
        return self.options.gpus_per_job or self.options.processes

    @property
    def log_directory(self) -> str:
        return self.options.log_directory or str(config.state_dir() / "slurm-logs")

    @property
    def gres(self) -> str | None:
        o = self.options
        if not o.gpus_per_job:
            return None
        kind = f"{o.gpu_type}:" if o.gpu_type else ""
        return f"gpu:{kind}{o.gpus_per_job}"

    def job_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for dask-jobqueue's SLURMJob/SLURMCluster (the job part)."""
        o = self.options
        directives = []
        if self.gres:
            directives.append(f"--gres={self.gres}")
        if o.qos:
            directives.append(f"--qos={o.qos}")
        directives += o.job_extra_directives
        skip = list(o.job_directives_skip)
        if o.walltime is None:
            skip.append("#SBATCH -t ")  # jobqueue would put its own default walltime
        prologue = [*PRIVATE_PROLOGUE, *(() if o.local_directory else PRIVATE_SCRATCH)]
        prologue += o.job_script_prologue
        # The worker's own HTTP server (/health, /metrics; Bokeh pages with --dashboard)
        # listens on every interface of the compute node by default, unauthenticated:
        # loopback only, no Bokeh pages. The profile's worker_extra_args come after, so
        # a profile that wants the worker dashboards back can say so.
        args = [*WORKER_HTTP_ARGS, *o.worker_extra_args]
        life = lifetime(o.walltime, o.lifetime_margin)
        if o.gpus_per_job:
            worker_command = "dask_cuda.cli"  # python -m dask_cuda.cli == dask cuda worker
            if o.device_memory_limit is not None:
                args += ["--device-memory-limit", str(o.device_memory_limit)]
            if o.rmm_pool_size is not None:
                args += ["--rmm-pool-size", str(o.rmm_pool_size)]
            if o.rmm_async:
                args.append("--rmm-async")
            if o.enable_cudf_spill:
                args.append("--enable-cudf-spill")
            if life:
                # dask cuda worker has no --lifetime option (it would swallow it silently as
                # preload arguments): the same setting reaches its workers through Dask's config.
                prologue += [
                    f"export DASK_DISTRIBUTED__WORKER__LIFETIME__DURATION={life[0]}s",
                    f"export DASK_DISTRIBUTED__WORKER__LIFETIME__STAGGER={life[1]}s",
                ]
        else:
            worker_command = "distributed.cli.dask_worker"
            if life:
                args += ["--lifetime", f"{life[0]}s", "--lifetime-stagger", f"{life[1]}s"]
        kw: dict[str, Any] = {
            "queue": o.partition,
            "account": o.account,
            "walltime": o.walltime,
            "cores": o.cores,
            "memory": o.memory,
            "processes": self.processes,
            "interface": o.interface,
            "job_name": self.job_name,
            "job_extra_directives": directives,
            "job_directives_skip": skip,
            "job_script_prologue": prologue,
            "worker_command": worker_command,
            "worker_extra_args": args,
            "python": o.python,
            "local_directory": o.local_directory,
            "log_directory": self.log_directory,
            "death_timeout": o.death_timeout,
        }
        return {k: v for k, v in kw.items() if v is not None}

    def cluster_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for dask_jobqueue.SLURMCluster."""
        scheduler: dict[str, Any] = {"dashboard_address": self.options.dashboard_address}
        if self.options.scheduler_host:
            scheduler["host"] = self.options.scheduler_host
        return {**self.job_kwargs(), "scheduler_options": scheduler}

    def job_script(self, cluster: Cluster | None = None) -> str:
        """The batch script each job runs. Without a cluster, the scheduler address is a
        placeholder: this is the preview shown before anything is started or submitted."""
        cluster = cluster or self._cluster
        if cluster is not None and hasattr(cluster, "job_script"):
            return str(cluster.job_script())
        self.require()
        import_jobqueue()
        from dask_jobqueue.slurm import SLURMJob

        job = SLURMJob("tcp://<scheduler-address>:8786", name="<worker-name>", **self.job_kwargs())
        return str(job.job_script())

    # -- validation against the live cluster ----------------------------------------------
    def check(self) -> None:
        """Ask the live SLURM whether these jobs can run; ResourceError saying why not."""
        if self._checked:
            return
        self.require()
        missing = sc.missing_commands()
        if missing:
            raise BackendError(
                f"profile {self.profile!r} submits SLURM jobs, but {', '.join(missing)} "
                "is not on PATH. Run it on a login node of your cluster, or start a local "
                "SLURM with scripts/slurm-up and export the SLURM_CONF it prints."
            )
        o = self.options
        what = f"profile {self.profile!r}"
        partitions = sc.partitions()
        if o.partition is None:
            default = next((p for p in partitions.values() if p.default), None)
            if default is None:
                raise ResourceError(
                    f"{what} names no partition and this cluster has no default one. "
                    f"Set partition: to one of {', '.join(sorted(partitions)) or '(none)'}."
                )
            part = default
        elif o.partition not in partitions:
            import difflib

            close = difflib.get_close_matches(o.partition, list(partitions), n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise ResourceError(
                f"{what} asks for partition {o.partition!r}, which this SLURM cluster does "
                f"not have.{hint} Partitions: {', '.join(sorted(partitions)) or '(none)'} "
                "(see `sinfo -s`)."
            )
        else:
            part = partitions[o.partition]
        if part.available.lower() not in ("up",):
            raise ResourceError(
                f"{what}: partition {part.name!r} is {part.available}, so jobs would not "
                "start. Pick another partition (see `sinfo -s`)."
            )
        wall = sc.parse_time(o.walltime) if o.walltime else None
        if wall is not None and part.max_time is not None and wall > part.max_time:
            raise ResourceError(
                f"{what} asks for walltime {o.walltime}, above the limit of partition "
                f"{part.name!r} ({sc.format_time(part.max_time)}): the jobs would wait forever "
                "(PartitionTimeLimit). Lower walltime or pick another partition."
            )
        nodes = sc.nodes(part.name)
        if o.gpus_per_job:
            have = max((n.gpu_count(o.gpu_type) for n in nodes), default=0)
            if have < o.gpus_per_job:
                kind = f" of type {o.gpu_type!r}" if o.gpu_type else ""
                offered = sorted(
                    {f"gpu:{t + ':' if t else ''}{c}" for n in nodes for t, c in n.gpus.items()}
                )
                raise ResourceError(
                    f"{what} asks for {o.gpus_per_job} GPU(s){kind} per job (--gres={self.gres}),"
                    f" but the nodes of partition {part.name!r} have at most {have} "
                    f"(GRES: {', '.join(offered) or 'no GPUs'}). Lower gpus_per_job or "
                    "pick a GPU partition."
                )
        max_cpus = max((n.cpus for n in nodes), default=0)
        if nodes and o.cores > max_cpus:
            raise ResourceError(
                f"{what} asks for {o.cores} cores per job, but the nodes of partition "
                f"{part.name!r} have at most {max_cpus}."
            )
        max_mem = max((n.memory_mb for n in nodes), default=0) * 2**20
        if nodes and parse_bytes(o.memory) > max_mem:
            raise ResourceError(
                f"{what} asks for {o.memory} of memory per job, but the nodes of partition "
                f"{part.name!r} have at most {format_bytes(max_mem)}."
            )
        # SLURM's own verdict on the exact script (account, QOS, directives, limits).
        try:
            verdict = sc.test_submit(self.job_script())
            verdict = verdict.removeprefix("sbatch: ").strip()
            self.test_only_message = re.sub(r"^Job \d+ to start", "SLURM: would start", verdict)
        except BackendError as exc:
            raise ResourceError(f"SLURM would reject the jobs of {what}: {exc}") from None
        self._checked = True

    # -- running ----------------------------------------------------------------------------
    def create_cluster(self) -> Cluster:
        self.check()
        import_jobqueue()
        from dask_jobqueue.slurm import SLURMCluster, SLURMJob

        class Job(SLURMJob):
            """Keeps sbatch's error message so waiting can report it."""

            submit_error: str | None = None

            async def _submit_job(self, script_filename: str) -> Any:
                # sbatch exports its environment to the job: not Jupyter's tokens. It also
                # passes its umask on (SLURM_UMASK): the job's log files are the user's alone.
                cmd = [*shlex.split(self.submit_command), script_filename]
                try:
                    return await self._call(cmd, env=scrubbed_env(), umask=PRIVATE_UMASK)
                except RuntimeError as exc:
                    self.submit_error = str(exc)
                    raise

        kwargs = self.cluster_kwargs()
        if not self.options.log_directory:
            private_dir(Path(self.log_directory))  # job logs: the user's alone
        scheduler = kwargs["scheduler_options"]
        scheduler["dashboard_address"] = free_dashboard_address(scheduler["dashboard_address"])
        security = self.make_security()
        if security is not None:
            kwargs.update(security=security, protocol="tls://")
        try:
            # the scheduler's scratch space; its dashboard over mutual TLS
            with private_dask_scratch(), dashboard_tls(self.tls_paths):
                cluster = SLURMCluster(job_cls=Job, **kwargs)  # type: ignore[arg-type]
        except BaseException:
            self.forget_security()
            raise
        self._cluster = cluster
        if self.options.jobs:
            cluster.scale(jobs=self.options.jobs)
        return cluster

    def scale(self, cluster: Cluster, n: int | None = None, jobs: int | None = None) -> None:
        self.forget_ended_jobs(cluster)
        if jobs is not None:
            cluster.scale(jobs=jobs)  # type: ignore[call-arg]
        else:
            cluster.scale(n or 0)

    def close_cluster(self, cluster: Cluster, timeout: float = 30) -> None:
        """Close the cluster (dask-jobqueue scancels its jobs), then make sure: scancel
        whatever still carries this cluster's job name (e.g. submitted while closing)."""
        try:
            cluster.close(timeout=timeout)
        finally:
            try:
                sc.cancel(name=self.job_name, user=getpass.getuser())
            except BackendError as exc:
                logger.warning(
                    "could not make sure the jobs of %s are cancelled (%s); check with "
                    "`squeue -n %s` and cancel them with `scancel -n %s`",
                    self.job_name,
                    exc,
                    self.job_name,
                    self.job_name,
                )

    def abort(self, cluster: Cluster) -> None:
        """scancel every job of this cluster, running or pending, by its unique name: one
        command, whatever the number of jobs (the graceful close then finds them gone)."""
        sc.cancel(name=self.job_name, user=getpass.getuser())

    def forget_ended_jobs(self, cluster: Cluster) -> list[str]:
        """Drop jobs SLURM has ended (cancelled, timed out, failed) whose workers are gone,
        so that scaling submits new jobs in their place. Returns their ids."""
        jobs, states, names = self._states(cluster)
        ended = {
            name: str(job.job_id)
            for name, job in jobs.items()
            if getattr(job, "job_id", None)
            and (states.get(str(job.job_id)) is None or states[str(job.job_id)].ended)
            and not self._connected(str(name), names)
        }
        if ended:

            async def forget() -> None:
                # Out of the plan too: replacements get new names, so the delayed clean-up
                # distributed schedules for a lost worker cannot cancel a replacement job.
                for name in ended:
                    cluster.workers.pop(name, None)  # type: ignore[attr-defined]
                    cluster.worker_spec.pop(name, None)  # type: ignore[attr-defined]

            cluster.sync(forget)
        return list(ended.values())

    def _jobs(self, cluster: Cluster) -> dict[str, Any]:
        """Spec name -> dask-jobqueue Job object of every job the cluster holds."""
        return dict(getattr(cluster, "workers", {}) or {})

    def job_ids(self, cluster: Cluster | None = None) -> list[str]:
        cluster = cluster or self._cluster
        if cluster is None:
            return []
        return [str(j.job_id) for j in self._jobs(cluster).values() if getattr(j, "job_id", None)]

    @property
    def gpus(self) -> list[str]:
        """One identifier per GPU the jobs were given ('<job id>:gpu<k>')."""
        g = self.options.gpus_per_job
        return [f"{job}:gpu{k}" for job in self.job_ids() for k in range(g)]

    def record_extra(self, cluster: Cluster) -> dict[str, Any]:
        return {
            "job_name": self.job_name,
            "job_ids": self.job_ids(cluster),
            "slurm_conf": os.environ.get("SLURM_CONF"),
            "log_directory": self.log_directory,
            **({"security": dict(self.tls_paths)} if self.tls_paths else {}),
        }

    @classmethod
    def cleanup_orphans(cls, record: ClusterRecord) -> None:
        """scancel every job of a cluster whose owner died: by id, and by its unique name
        (which also catches jobs submitted after the record was last written)."""
        extra = record.extra or {}
        env = {"SLURM_CONF": extra["slurm_conf"]} if extra.get("slurm_conf") else None
        sc.cancel(
            extra.get("job_ids") or [],
            name=extra.get("job_name"),
            user=record.user or getpass.getuser(),
            env=env,
        )

    # -- waiting for workers --------------------------------------------------------------
    def _log_tail(self, job_id: str, lines: int = 12) -> str:
        out = []
        for suffix in ("err", "out"):
            path = Path(self.log_directory) / f"{self.job_name}-{job_id}.{suffix}"
            with contextlib.suppress(OSError):
                text = path.read_text(errors="replace").strip().splitlines()[-lines:]
                if text:
                    out.append(f"--- {path} (last lines)\n" + "\n".join(text))
        return "\n".join(out) or f"(no log in {self.log_directory})"

    def _states(self, cluster: Cluster) -> tuple[dict[str, Any], dict[str, sc.JobState], set[str]]:
        jobs = self._jobs(cluster)
        states = sc.job_states(str(j.job_id) for j in jobs.values() if getattr(j, "job_id", None))
        info = getattr(cluster, "scheduler_info", {}) or {}
        names = {str(w.get("name")) for w in info.get("workers", {}).values()}
        return jobs, states, names

    @staticmethod
    def _connected(name: str, names: set[str]) -> bool:
        return name in names or any(n.startswith(f"{name}-") for n in names)

    def wait_state(self, cluster: Cluster) -> WaitState:
        jobs, states, names = self._states(cluster)
        parts: dict[str, int] = {}
        for name, job in jobs.items():
            job_id = getattr(job, "job_id", None)
            if not job_id:
                error = getattr(job, "submit_error", None)
                if error:
                    return WaitState(
                        "sbatch failed", f"SLURM rejected a job of cluster {self.job_name}: {error}"
                    )
                parts["submitting"] = parts.get("submitting", 0) + 1
                continue
            state = states.get(str(job_id))
            connected = self._connected(str(name), names)
            if (state is None or state.ended) and not connected:
                how = state.state if state else "left the queue"
                log = self._log_tail(str(job_id))
                if "Registered to:" in log:
                    why = (
                        f"SLURM job {job_id} ended ({how}) after its worker had run (cancelled, "
                        "out of walltime or preempted). Call scale() to submit a job in its "
                        "place, or adapt() to replace lost jobs automatically."
                    )
                else:
                    why = (
                        f"SLURM job {job_id} ended ({how}) before its Dask worker connected to "
                        "the scheduler. Common causes: the prologue or python failed on the "
                        "node, or workers cannot reach the scheduler (set interface or "
                        "scheduler_host)."
                    )
                return WaitState(f"job {job_id} {how}", f"{why}\n{log}")
            if state is None:
                continue
            if state.state == "PENDING":
                words = sc.PENDING_REASONS.get(state.reason)
                key = f"PENDING ({state.reason}{': ' + words if words else ''})"
            elif state.state == "RUNNING" and not connected:
                key = "RUNNING, worker starting"
            else:
                key = state.state
            parts[key] = parts.get(key, 0) + 1
        if not jobs:
            return WaitState("no jobs submitted yet")
        summary = ", ".join(f"{n} {key}" for key, n in parts.items())
        return WaitState(f"SLURM jobs: {summary}")

    def cancel_pending(self, cluster: Cluster) -> list[str]:
        """Cancel the jobs that have not started: they are taken out of the cluster's plan."""
        jobs, states, _ = self._states(cluster)
        pending = [
            name
            for name, job in jobs.items()
            if getattr(job, "job_id", None)
            and states.get(str(job.job_id), sc.JobState("", "PENDING", "")).state == "PENDING"
        ]
        spec = getattr(cluster, "worker_spec", {})
        for name in pending:
            spec.pop(name, None)
        if pending:
            cluster.sync(cluster._correct_state)  # type: ignore[attr-defined]
        return [f"job {jobs[name].job_id}" for name in pending]

    def describe(self) -> dict[str, Any]:
        o = self.options
        per_job = f"{o.cores} cores, {o.memory}"
        if o.gpus_per_job:
            per_job += f", {o.gpus_per_job} GPU(s) (--gres={self.gres}), one dask-cuda worker each"
        details = [
            ("Partition", o.partition or "(default)"),
            ("Per job", per_job),
            ("Walltime", o.walltime or "(partition default)"),
            ("Job name", self.job_name),
        ]
        if self._cluster is not None:
            with contextlib.suppress(Exception):
                details.append(("Jobs", self.wait_state(self._cluster).summary))
        return {
            "kind": "SLURMCluster",
            "gpu_names": [f"{o.gpus_per_job} x {o.gpu_type or 'GPU'} per job"]
            if o.gpus_per_job
            else [],
            "details": details,
        }
