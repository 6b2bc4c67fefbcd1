"""Options of the ``slurm`` backend: what one job looks like, validated before anything runs.

:class:`SLURMOptions` is the pydantic model a ``slurm`` profile is checked against (and the
Lab form is drawn from): partition, account, walltime, cores, memory, GPUs, directives and
prologue lines (never a literal credential), worker lifetime. :func:`lifetime` turns a
walltime and a margin into the workers' ``--lifetime`` and stagger. The backend that runs
the jobs is :mod:`workbench.clusters.slurm`.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from dask.utils import format_bytes, parse_bytes, parse_timedelta
from pydantic import Field, field_validator, model_validator

from ..credentials import secret_name
from . import slurm_commands as sc
from .backend import BackendOptions, no_control_chars

Memory = str | int


def _memory(value: Memory, what: str) -> int:
    try:
        n = parse_bytes(value)
    except (ValueError, TypeError):
        raise ValueError(f"not a {what} like '16GiB' (got {value!r})") from None
    if n <= 0:
        raise ValueError(f"must be more than 0 (got {value!r})")
    return n


def _directive(line: str) -> str:
    """One sbatch option per line; a leading '#SBATCH' is accepted and dropped."""
    if "\n" in line or "\r" in line:
        raise ValueError(f"one directive per list item, without newlines (got {line!r})")
    text = line.strip().removeprefix("#SBATCH").strip()
    if not text.startswith("-"):
        raise ValueError(f"an sbatch option starts with '-' like '--exclusive' (got {line!r})")
    return text


_ASSIGNMENT = re.compile(r"(?:^|\s)(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)=(\S+)")
_FLAG = re.compile(r"--?([A-Za-z][\w-]*)[= ](?!-)(\S+)")


def _no_literal_secret(line: str) -> str:
    """Job scripts are written to disk and logs: no literal credential may go in one."""
    for pattern in (_ASSIGNMENT, _FLAG):
        for name, value in pattern.findall(line):
            if secret_name(name) and not value.startswith(("$", '"$', "'$")):
                raise ValueError(
                    f"{name!r} looks like a literal credential; it would be written into "
                    "every job script. Jobs inherit the launching environment "
                    "(sbatch --export=ALL): set it there, or read it on the node, e.g. "
                    f"export {name}=$(cat ~/.secrets/{name.lower()})"
                )
    return line


class SLURMOptions(BackendOptions):
    SIDEBAR_OPTIONS = BackendOptions.SIDEBAR_OPTIONS | {
        "partition",
        "qos",
        "walltime",
        "cores",
        "memory",
        "gpus_per_job",
        "gpu_type",
        "processes",
        "jobs",
        "device_memory_limit",
        "rmm_pool_size",
        "rmm_async",
        "enable_cudf_spill",
    }
    PROFILE_ONLY = BackendOptions.PROFILE_ONLY | {
        "job_extra_directives",
        "job_directives_skip",
        "job_script_prologue",
        "python",
        "interface",
        "scheduler_host",
        "dashboard_address",
        "security",
        "local_directory",
        "log_directory",
        "worker_extra_args",
    }

    # What one job asks SLURM for.
    partition: str | None = Field(None, description="Partition (-p); default: the cluster's.")
    account: str | None = Field(None, description="Account to charge (-A).")
    qos: str | None = Field(None, description="Quality of service (--qos).")
    walltime: str | None = Field(
        "01:00:00",
        description="Time limit of each job (-t), e.g. '02:00:00' or '1-00:00:00'; "
        "null: the partition's default.",
    )
    cores: int = Field(1, ge=1, description="CPU cores per job (--cpus-per-task).")
    memory: Memory = Field(
        "4GiB", description="Host memory per job (--mem), split between its workers."
    )
    gpus_per_job: int = Field(
        0, ge=0, description="GPUs per job (--gres=gpu:N); each GPU gets its own dask-cuda worker."
    )
    gpu_type: str | None = Field(None, description="GPU type in the GRES, e.g. 'a100'.")
    processes: int | None = Field(
        None,
        ge=1,
        description="Dask worker processes per CPU job (default: about sqrt(cores)). "
        "GPU jobs run one per GPU.",
    )
    jobs: int = Field(1, ge=0, description="Jobs to submit at launch.")
    job_extra_directives: list[str] = Field(
        default_factory=list, description="More sbatch options, e.g. ['--exclusive']."
    )
    job_directives_skip: list[str] = Field(
        default_factory=list, description="Generated '#SBATCH' lines containing these are dropped."
    )
    job_script_prologue: list[str] = Field(
        default_factory=list,
        description="Shell lines run before the workers start (module load, conda activate).",
    )
    # How the workers run.
    python: str | None = Field(
        None, description="Python on the compute nodes (default: this kernel's interpreter)."
    )
    interface: str | None = Field(
        None, description="Network interface of workers and scheduler, e.g. 'ib0' or 'eth0'."
    )
    scheduler_host: str | None = Field(
        None, description="Address the scheduler listens on, reachable from compute nodes."
    )
    dashboard_address: str | None = Field(
        "127.0.0.1:8787",
        description="Dask dashboard address (this machine only by default; JupyterLab's "
        "proxy reaches it). Another host or ':8787' exposes it on the network.",
    )
    security: Literal["tls", "none"] = Field(
        "tls",
        description="'tls': scheduler and workers talk TLS with credentials made for this "
        "cluster, kept in the private state directory (which the compute nodes must see, "
        "as they see the job logs); 'none': plain TCP (workbench doctor flags it).",
    )
    local_directory: str | None = Field(
        None, description="Fast node-local scratch for spilling, e.g. '$TMPDIR'."
    )
    log_directory: str | None = Field(
        None, description="Where job logs go (default: workbench's state directory)."
    )
    death_timeout: float = Field(
        60, gt=0, description="Seconds a worker waits for a lost scheduler before exiting."
    )
    lifetime_margin: str | None = Field(
        "auto",
        description="Workers retire this long before the walltime ends ('10 minutes'); "
        "'auto': 10% of it, 1 to 15 minutes; null: no lifetime.",
    )
    worker_extra_args: list[str] = Field(
        default_factory=list, description="More arguments for the worker command."
    )
    job_name: str | None = Field(
        None,
        description="Prefix of the SLURM job name; a unique suffix is always added "
        "('<job_name>-<hex>', default 'wb-<profile>-<hex>') so that cancelling a cluster's "
        "jobs by name never touches another cluster's.",
    )
    # dask-cuda, for GPU jobs.
    device_memory_limit: Memory | None = Field(
        None, description="GPU memory at which a worker spills to host (dask-cuda default)."
    )
    rmm_pool_size: Memory | None = Field(None, description="RMM pool per GPU, e.g. '20GB'.")
    rmm_async: bool = Field(False, description="Use the CUDA async allocator.")
    enable_cudf_spill: bool = Field(False, description="cuDF native spilling to host memory.")

    def launch_workers(self) -> int | None:
        # Each job runs one worker per GPU, or `processes` workers (at least one when
        # dask-jobqueue picks the number from the cores).
        return self.jobs * (self.gpus_per_job or self.processes or 1)

    @field_validator(
        "partition",
        "account",
        "qos",
        "walltime",
        "gpu_type",
        "job_directives_skip",
        "python",
        "interface",
        "scheduler_host",
        "dashboard_address",
        "local_directory",
        "log_directory",
        "worker_extra_args",
        "lifetime_margin",
        mode="before",
    )
    @classmethod
    def _one_line(cls, v: Any) -> Any:
        return no_control_chars(v)

    @field_validator("walltime")
    @classmethod
    def _walltime(cls, v: str | None) -> str | None:
        if v is None:
            return v
        seconds = sc.parse_time(v)
        if seconds is not None and seconds <= 0:
            raise ValueError("must be more than 0")
        return v

    @field_validator("memory")
    @classmethod
    def _job_memory(cls, v: Memory) -> Memory:
        _memory(v, "memory size")
        return v

    @field_validator("device_memory_limit", "rmm_pool_size")
    @classmethod
    def _gpu_memory(cls, v: Memory | None) -> Memory | None:
        if v is None or v in ("auto", "default"):
            return v
        if isinstance(v, int | float) and not isinstance(v, bool) and 0 < v <= 1:
            return v  # a fraction of the GPU's memory
        _memory(v, "memory size")
        return v

    @field_validator("job_extra_directives")
    @classmethod
    def _directives(cls, v: list[str]) -> list[str]:
        return [_no_literal_secret(_directive(line)) for line in v]

    @field_validator("job_script_prologue")
    @classmethod
    def _lines(cls, v: list[str]) -> list[str]:
        return [_no_literal_secret(line) for line in v]

    @field_validator("worker_extra_args")
    @classmethod
    def _args(cls, v: list[str]) -> list[str]:
        _no_literal_secret(" ".join(v))  # "--api-key", "abc" may come as two items
        return v

    @field_validator("lifetime_margin")
    @classmethod
    def _margin(cls, v: str | None) -> str | None:
        if v is None or v == "auto":
            return v
        try:
            seconds = parse_timedelta(v)
        except (ValueError, KeyError):
            raise ValueError(f"not a duration like '10 minutes' or 'auto' (got {v!r})") from None
        if not seconds or seconds <= 0:
            raise ValueError("must be more than 0, or null for no lifetime")
        return v

    @field_validator("job_name")
    @classmethod
    def _job_name(cls, v: str | None) -> str | None:
        if v is not None and not re.fullmatch(r"[A-Za-z0-9_.+-]{1,80}", v):
            raise ValueError("use letters, digits and '_.+-' only (at most 80)")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> SLURMOptions:
        g = self.gpus_per_job
        if g:
            if self.processes not in (None, g):
                raise ValueError(
                    f"processes: GPU jobs run one worker per GPU; with gpus_per_job: {g} leave "
                    f"processes unset (or set it to {g}), not {self.processes}"
                )
            if self.cores < g or self.cores % g:
                raise ValueError(
                    f"cores: each of the {g} GPU workers of a job gets cores/gpus_per_job "
                    f"threads, so cores must be a multiple of {g} (got {self.cores})"
                )
        elif self.gpu_type:
            raise ValueError("gpu_type: set gpus_per_job too")
        if self.processes and self.processes > self.cores:
            raise ValueError(
                f"processes: {self.processes} worker processes need at least as many cores "
                f"(got cores: {self.cores})"
            )
        per_worker = parse_bytes(self.memory) / (g or self.processes or 1)
        if per_worker < 2**27:
            raise ValueError(
                f"memory: {format_bytes(int(per_worker))} per worker is too little for a Dask "
                "worker; ask for more memory or fewer workers per job"
            )
        if self.walltime is not None and self.lifetime_margin not in (None, "auto"):
            total = sc.parse_time(self.walltime)
            margin = parse_timedelta(self.lifetime_margin)
            if total is not None and margin is not None and margin >= total:
                raise ValueError(
                    f"lifetime_margin: {self.lifetime_margin} is not shorter than the "
                    f"walltime {self.walltime}"
                )
        return self


def lifetime(walltime: str | None, margin: str | None) -> tuple[int, int] | None:
    """(lifetime, stagger) in seconds for workers of jobs with this walltime, or None.

    Workers retire between walltime - 1.5*margin and walltime - 0.5*margin: staggered so
    they do not all leave at once, and always before SLURM kills the job.
    """
    if walltime is None or margin is None:
        return None
    total = sc.parse_time(walltime)
    if total is None:
        return None
    if margin == "auto":
        gap = max(60.0, min(0.1 * total, 900.0))
        if gap >= total / 2:
            gap = total / 4
    else:
        gap = float(parse_timedelta(margin) or 0)
    life, stagger = int(total - gap), int(gap / 2)
    return (life, stagger) if life > 0 else None
