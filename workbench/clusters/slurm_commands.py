"""SLURM's command-line tools (sinfo, squeue, scancel, sbatch), called and parsed.

Everything here talks to the real controller through the commands users have on a
login node, with ``SLURM_CONF`` from the environment (or the ``env`` passed in), and
raises :class:`~workbench.errors.BackendError` with SLURM's own message when a command
fails. Nothing here imports dask-jobqueue.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from ..errors import BackendError

COMMANDS = ("sbatch", "squeue", "scancel", "sinfo")
#: Where SLURM looks for its configuration when SLURM_CONF is unset (Debian, configless).
DEFAULT_CONFS = (
    "/etc/slurm/slurm.conf",
    "/etc/slurm-llnl/slurm.conf",
    "/run/slurm/conf/slurm.conf",
)

#: Job states after which a job holds no resources any more.
ENDED_STATES = frozenset(
    {
        "BOOT_FAIL",
        "CANCELLED",
        "COMPLETED",
        "DEADLINE",
        "FAILED",
        "NODE_FAIL",
        "OUT_OF_MEMORY",
        "PREEMPTED",
        "REVOKED",
        "SPECIAL_EXIT",
        "TIMEOUT",
    }
)

#: Plain words for the PENDING reasons users meet most often (squeue's %r).
PENDING_REASONS = {
    "Resources": "waiting for free CPUs, memory or GPUs",
    "Priority": "jobs with higher priority are ahead in the queue",
    "Dependency": "waiting for another job to finish",
    "BeginTime": "its start time has not been reached",
    "PartitionTimeLimit": "the walltime is above the partition's limit: it will never start",
    "PartitionNodeLimit": "more nodes than the partition allows: it will never start",
    "PartitionDown": "the partition is down",
    "PartitionInactive": "the partition is inactive",
    "ReqNodeNotAvail": "a requested node is unavailable (down, drained or reserved)",
    "QOSMaxJobsPerUserLimit": "you already run as many jobs as your QOS allows",
    "QOSMaxGRESPerUser": "you already use as many GPUs as your QOS allows",
    "AssocGrpGRES": "your account's GPU limit is reached",
    "AssocMaxJobsLimit": "your account's job limit is reached",
    "JobHeldUser": "held by the user (scontrol release)",
    "JobHeldAdmin": "held by an administrator",
    "None": "just submitted, not yet considered by the scheduler",
}


@dataclass(frozen=True)
class Partition:
    name: str
    available: str  # up, down, drain, inact
    max_time: int | None  # seconds; None: no limit
    default: bool = False


@dataclass(frozen=True)
class Node:
    name: str
    cpus: int
    memory_mb: int
    state: str
    #: GPUs per type; the key "" counts GPUs of any type ("gpu:2" -> {"": 2}).
    gpus: dict[str, int] = field(default_factory=dict)

    def gpu_count(self, gpu_type: str | None = None) -> int:
        if gpu_type is None:
            return sum(self.gpus.values())
        return self.gpus.get(gpu_type, 0)


@dataclass(frozen=True)
class JobState:
    job_id: str
    state: str
    reason: str
    nodes: str = ""

    @property
    def ended(self) -> bool:
        return self.state in ENDED_STATES

    def describe(self) -> str:
        if self.state == "PENDING":
            words = PENDING_REASONS.get(self.reason)
            why = f"{self.reason}: {words}" if words else self.reason
            return f"job {self.job_id} PENDING ({why})"
        where = f" on {self.nodes}" if self.nodes and self.state == "RUNNING" else ""
        return f"job {self.job_id} {self.state}{where}"


def missing_commands() -> list[str]:
    return [c for c in COMMANDS if shutil.which(c) is None]


def run(
    args: list[str],
    *,
    env: Mapping[str, str] | None = None,
    timeout: float = 30,
    input: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run a SLURM command; BackendError with its stderr if it fails."""
    environ = {**os.environ, **(env or {})}
    conf = environ.get("SLURM_CONF")
    if conf and not os.path.isfile(conf):
        # SLURM's commands would retry for a minute before saying so.
        raise BackendError(
            f"SLURM_CONF is {conf}, which does not exist: export the SLURM_CONF of your "
            "cluster (scripts/slurm-up prints it for the local one)."
        )
    no_file = not conf and not any(os.path.isfile(p) for p in DEFAULT_CONFS)
    if no_file:
        # Only a configless cluster (DNS SRV record) can answer now, and it answers fast;
        # otherwise SLURM would retry for a minute looking for slurm.conf.
        timeout = min(timeout, 5)
    try:
        proc = subprocess.run(
            args,
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=environ,
            check=False,
        )
    except FileNotFoundError:
        raise BackendError(
            f"{args[0]!r} was not found: SLURM's commands are not on PATH. Run this on a "
            "login node of your cluster, or start a local SLURM with scripts/slurm-up."
        ) from None
    except subprocess.TimeoutExpired:
        if no_file:
            raise BackendError(
                f"SLURM has no configuration here: SLURM_CONF is unset and "
                f"{DEFAULT_CONFS[0]} does not exist. Export SLURM_CONF (scripts/slurm-up "
                "prints it for the local SLURM)."
            ) from None
        raise BackendError(
            f"{' '.join(args)} did not answer within {timeout:.0f}s: is slurmctld reachable?"
        ) from None
    if proc.returncode != 0:
        message = (proc.stderr or proc.stdout).strip() or f"exit status {proc.returncode}"
        hint = ""
        if "Unable to contact slurm controller" in message or "Could not establish" in message:
            conf = environ.get("SLURM_CONF", "/etc/slurm/slurm.conf (default)")
            hint = f" Is slurmctld running, and is SLURM_CONF right (now {conf})?"
        raise BackendError(f"{' '.join(args)} failed: {message}.{hint}")
    return proc


# -- times ----------------------------------------------------------------------------------
_TIME = re.compile(r"^(?:(?P<d>\d+)-)?(?P<rest>\d+(?::\d+){0,2})$")


def parse_time(text: str) -> int | None:
    """Seconds in a SLURM time ("MM", "MM:SS", "HH:MM:SS", "D-HH[:MM[:SS]]"); None: no limit.

    Raises ValueError for anything else.
    """
    value = text.strip()
    if value.lower() in ("infinite", "unlimited"):
        return None
    match = _TIME.match(value)
    if not match:
        raise ValueError(
            f"{text!r} is not a SLURM time: use minutes, MM:SS, HH:MM:SS, D-HH, D-HH:MM "
            "or D-HH:MM:SS (e.g. '02:00:00' or '1-12:00:00')"
        )
    parts = [int(p) for p in match["rest"].split(":")]
    if match["d"] is not None:
        days = int(match["d"])
        hours, minutes, seconds = [*parts, 0, 0][:3]
        return ((days * 24 + hours) * 60 + minutes) * 60 + seconds
    if len(parts) == 1:
        return parts[0] * 60
    if len(parts) == 2:
        return parts[0] * 60 + parts[1]
    return (parts[0] * 60 + parts[1]) * 60 + parts[2]


def format_time(seconds: int | None) -> str:
    if seconds is None:
        return "unlimited"
    days, rest = divmod(int(seconds), 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    hms = f"{hours:02d}:{minutes:02d}:{secs:02d}"
    return f"{days}-{hms}" if days else hms


# -- what the cluster offers ------------------------------------------------------------------
def partitions(env: Mapping[str, str] | None = None) -> dict[str, Partition]:
    """Every partition the controller knows (hidden ones included)."""
    out = run(["sinfo", "--all", "-h", "-o", "%P|%a|%l"], env=env).stdout
    found: dict[str, Partition] = {}
    for line in out.splitlines():
        name, _, rest = line.strip().partition("|")
        if not name or not rest:
            continue
        available, _, limit = rest.partition("|")
        default = name.endswith("*")
        name = name.rstrip("*")
        try:
            max_time = parse_time(limit)
        except ValueError:
            max_time = None
        found[name] = Partition(name, available.strip(), max_time, default)
    return found


_GRES = re.compile(r"gpu(?::(?P<type>[^:(,]+))?:(?P<count>\d+)")


def parse_gres(gres: str) -> dict[str, int]:
    """GPUs per type in a node's GRES ("gpu:a100:4(S:0-1),gpu:v100:2" -> {"a100": 4, ...})."""
    gpus: dict[str, int] = {}
    for match in _GRES.finditer(gres):
        kind = match["type"] or ""
        if kind.isdigit():  # "gpu:2" has no type
            kind = ""
        gpus[kind] = gpus.get(kind, 0) + int(match["count"])
    return gpus


def nodes(partition: str, env: Mapping[str, str] | None = None) -> list[Node]:
    """The nodes of ``partition`` with their CPUs, memory (MB), GPUs and state."""
    out = run(["sinfo", "-h", "-N", "-p", partition, "-o", "%N|%c|%m|%G|%T"], env=env).stdout
    seen: dict[str, Node] = {}
    for line in out.splitlines():
        fields = line.strip().split("|")
        if len(fields) != 5:
            continue
        name, cpus, memory, gres, state = fields
        try:
            node = Node(name, int(cpus), int(memory.rstrip("+")), state, parse_gres(gres))
        except ValueError:
            continue
        seen.setdefault(name, node)
    return list(seen.values())


# -- jobs -----------------------------------------------------------------------------------
def job_states(job_ids: Iterable[str], env: Mapping[str, str] | None = None) -> dict[str, JobState]:
    """State of each job SLURM still remembers; jobs it forgot are missing from the result."""
    ids = [str(j) for j in job_ids if j]
    if not ids:
        return {}
    proc = run(
        ["squeue", "-h", "-t", "all", "-j", ",".join(ids), "-o", "%i|%T|%r|%N"],
        env=env,
        timeout=30,
    )
    states: dict[str, JobState] = {}
    for line in proc.stdout.splitlines():
        fields = line.strip().split("|")
        if len(fields) == 4:
            states[fields[0]] = JobState(*fields)
    return states


def jobs_named(
    name: str, user: str | None = None, env: Mapping[str, str] | None = None
) -> list[str]:
    """Ids of the not-yet-ended jobs called ``name`` (of ``user``)."""
    args = ["squeue", "-h", "-n", name, "-o", "%i"]
    if user:
        args += ["-u", user]
    return run(args, env=env).stdout.split()


def cancel(
    job_ids: Iterable[str] = (),
    *,
    name: str | None = None,
    user: str | None = None,
    env: Mapping[str, str] | None = None,
) -> None:
    """scancel the given jobs and/or every job called ``name`` (of ``user``)."""
    ids = [str(j) for j in job_ids if j]
    if ids:
        try:
            run(["scancel", *ids], env=env)
        except BackendError as exc:
            # Jobs that already ended are not an error; anything else is.
            if "Invalid job id" not in str(exc):
                raise
    if name:
        args = ["scancel", "--name", name]
        if user:
            args += ["--user", user]
        run(args, env=env)


def test_submit(script: str, env: Mapping[str, str] | None = None) -> str:
    """Ask SLURM whether it would accept ``script`` (sbatch --test-only): submits nothing.

    Returns sbatch's estimate of when the job would start; raises BackendError with
    SLURM's reasons when it would be rejected.
    """
    try:
        done = run(["sbatch", "--test-only"], env=env, input=script)
    except BackendError as exc:
        text = str(exc).removeprefix("sbatch --test-only failed: ")
        lines = [ln.removeprefix("sbatch: error: ").strip() for ln in text.splitlines()]
        raise BackendError("; ".join(ln for ln in lines if ln)) from None
    return (done.stderr + done.stdout).strip()
