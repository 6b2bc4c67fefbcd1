"""SLURM profiles and the job scripts they turn into (dask-jobqueue's real script
generation; no SLURM needed): the options and their validation
(workbench/clusters/slurm_options.py), the job scripts and checks of the backend
(workbench/clusters/slurm.py) and the SLURM command parsing (slurm_commands.py). The tests
against a running SLURM are in test_slurm.py."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from typing import Any

import pytest
from dask.utils import parse_bytes
from pydantic import ValidationError

from workbench.clusters.backend_registry import get_backend_class
from workbench.clusters.profiles import get_profile
from workbench.clusters.slurm import SLURMBackend
from workbench.clusters.slurm_commands import format_time, parse_gres, parse_time
from workbench.clusters.slurm_options import SLURMOptions, lifetime
from workbench.errors import BackendError, ProfileError


def backend(profile: str = "slurm", **overrides: object) -> SLURMBackend:
    prof = get_profile(profile)
    b = get_backend_class(prof.backend)(prof.resolve(**overrides), profile=prof.name)
    assert isinstance(b, SLURMBackend)
    return b


def test_slurm_backend_is_registered_and_imports_without_dask_jobqueue(subprocess_env) -> None:
    code = textwrap.dedent(
        """
        import sys
        sys.modules["dask_jobqueue"] = None  # as if it were not installed
        from workbench.clusters.profiles import get_profile
        from workbench.clusters.backend_registry import get_backend_class
        from workbench.errors import MissingDependencyError
        prof = get_profile("slurm-gpu")
        options = prof.resolve(partition="gpu")
        cls = get_backend_class("slurm")
        try:
            cls(options, profile=prof.name).job_script()
        except MissingDependencyError as exc:
            print("hint:", exc)
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code], env=subprocess_env, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    assert "pip install 'workbench[slurm]'" in out.stdout


@pytest.mark.parametrize(
    ("overrides", "key", "words"),
    [
        ({"walltime": "1 hour"}, "walltime", "not a SLURM time"),
        ({"walltime": "00:00:00"}, "walltime", "more than 0"),
        ({"memory": "lots"}, "memory", "memory size"),
        ({"cores": 0}, "cores", "greater than or equal to 1"),
        ({"gpus_per_job": 2, "cores": 3}, "cores must be a multiple of 2", ""),
        ({"gpus_per_job": 2, "cores": 4, "processes": 4}, "one worker per GPU", ""),
        ({"gpu_type": "a100"}, "set gpus_per_job too", ""),
        ({"processes": 4, "cores": 2}, "need at least as many cores", ""),
        ({"memory": "100MiB", "processes": 2, "cores": 2}, "too little for a Dask worker", ""),
        ({"job_extra_directives": ["exclusive"]}, "job_extra_directives", "starts with '-'"),
        ({"job_extra_directives": ["--a\n--b"]}, "job_extra_directives", "without newlines"),
        ({"lifetime_margin": "soon"}, "lifetime_margin", "not a duration"),
        ({"walltime": "00:10:00", "lifetime_margin": "20 minutes"}, "not shorter than", ""),
        ({"job_name": "my job"}, "job_name", "letters, digits"),
        ({"partition_name": "x"}, "partition_name", "unknown option"),
        (
            {"job_script_prologue": ["export AWS_SECRET_ACCESS_KEY=abc123"]},
            "AWS_SECRET_ACCESS_KEY",
            "literal credential",
        ),
        ({"worker_extra_args": ["--api-key=abc123"]}, "'api-key' looks like", "credential"),
        ({"worker_extra_args": ["--api-key", "abc123"]}, "'api-key' looks like", "credential"),
    ],
)
def test_bad_options_are_named_with_what_to_do(
    overrides: dict[str, object], key: str, words: str
) -> None:
    with pytest.raises(ProfileError) as info:
        get_profile("slurm").resolve(**overrides)
    assert key in str(info.value)
    assert words in str(info.value)


def test_credentials_read_on_the_node_are_accepted() -> None:
    b = backend(
        job_script_prologue=[
            "export HF_TOKEN=$(cat ~/.secrets/hf)",
            'export WANDB_API_KEY="$WANDB_API_KEY"',
            "export TOKEN_FILE=~/.secrets/token",
            "module load cuda/12.4",
        ]
    )
    assert "export HF_TOKEN=$(cat ~/.secrets/hf)" in b.job_script()


def test_sbatch_prefix_in_directives_is_accepted() -> None:
    b = backend(job_extra_directives=["#SBATCH --exclusive", "--constraint=bigmem"])
    assert b.options.job_extra_directives == ["--exclusive", "--constraint=bigmem"]
    script = b.job_script()
    assert "#SBATCH --exclusive\n" in script
    assert "#SBATCH --constraint=bigmem\n" in script


def test_cpu_job_script() -> None:
    b = backend(
        partition="debug",
        account="proj42",
        qos="short",
        cores=4,
        processes=2,
        memory="8GiB",
        walltime="01:00:00",
        interface="ib0",
        job_script_prologue=["module load python", "conda activate rapids"],
        python="/opt/env/bin/python",
        job_name="wb-unit",
    )
    script = b.job_script()
    lines = script.splitlines()
    # The profile's job name is a prefix: every cluster adds its unique suffix.
    assert re.fullmatch(r"wb-unit-[0-9a-f]{6}", b.job_name)
    for directive in (
        f"#SBATCH -J {b.job_name}",
        "#SBATCH -p debug",
        "#SBATCH -A proj42",
        "#SBATCH --qos=short",
        "#SBATCH --cpus-per-task=4",
        "#SBATCH --mem=8G",
        "#SBATCH -t 01:00:00",
    ):
        assert directive in lines, (directive, script)
    assert "--gres" not in script
    # The prologue runs before the worker command, in order.
    command = lines[-1]
    assert lines.index("module load python") < lines.index("conda activate rapids")
    assert lines.index("conda activate rapids") < len(lines) - 1
    assert command.startswith("/opt/env/bin/python -m distributed.cli.dask_worker ")
    # Two worker processes of two threads, the job's memory split between them.
    assert "--nworkers 2" in command and "--nthreads 2" in command
    assert "--memory-limit 4.00GiB" in command
    assert "--interface ib0" in command
    # Workers retire before the walltime (1 h: 54 min +/- 3 min).
    assert "--lifetime 3240s --lifetime-stagger 180s" in command
    assert "#SBATCH -e " in script and f"{b.job_name}-%J.err" in script


def test_gpu_job_script_runs_dask_cuda_one_worker_per_gpu_with_split_memory() -> None:
    b = backend(
        "slurm-gpu",
        gpus_per_job=2,
        gpu_type="a100",
        cores=8,
        memory="64GiB",
        walltime="02:00:00",
        device_memory_limit="30GB",
        rmm_pool_size="20GB",
        job_name="wb-gpu",
    )
    assert b.processes == 2
    script = b.job_script()
    lines = script.splitlines()
    assert "#SBATCH --gres=gpu:a100:2" in lines
    assert "#SBATCH --cpus-per-task=8" in lines
    assert "#SBATCH --mem=64G" in lines
    command = lines[-1]
    # `python -m dask_cuda.cli` is `dask cuda worker`: one worker per GPU SLURM assigns.
    assert " -m dask_cuda.cli tcp://" in command
    assert "--nworkers" not in command and "--nanny" not in command
    threads = int(command.split("--nthreads ")[1].split()[0])
    per_worker = parse_bytes(command.split("--memory-limit ")[1].split()[0])
    assert threads == 4  # 8 cores / 2 GPUs
    # dask-cuda applies --memory-limit to each of its workers: the two together use the job's.
    assert per_worker == parse_bytes("32GiB")
    assert 2 * per_worker <= parse_bytes("64GiB")
    assert "--device-memory-limit 30GB" in command and "--rmm-pool-size 20GB" in command
    # dask cuda worker has no --lifetime option: the lifetime goes through Dask's config.
    assert "--lifetime" not in command
    assert "export DASK_DISTRIBUTED__WORKER__LIFETIME__DURATION=6480s" in lines
    assert "export DASK_DISTRIBUTED__WORKER__LIFETIME__STAGGER=360s" in lines
    assert b.describe()["gpu_names"] == ["2 x a100 per job"]


def test_no_walltime_and_no_lifetime() -> None:
    script = backend(walltime=None).job_script()
    assert "#SBATCH -t" not in script and "--lifetime" not in script
    script = backend(walltime="00:30:00", lifetime_margin=None).job_script()
    assert "#SBATCH -t 00:30:00" in script and "--lifetime" not in script
    script = backend(walltime="00:30:00", lifetime_margin="5 minutes").job_script()
    assert "--lifetime 1500s --lifetime-stagger 150s" in script


@pytest.mark.parametrize(
    "walltime", ["1", "00:02:00", "00:10:00", "01:00:00", "12:00:00", "2-00:00:00", "30-00"]
)
def test_workers_always_retire_before_the_walltime(walltime: str) -> None:
    total = parse_time(walltime)
    assert total is not None
    life = lifetime(walltime, "auto")
    assert life is not None
    duration, stagger = life
    assert stagger > 0
    assert duration + stagger < total  # the latest a worker leaves is before SLURM kills it
    assert duration - stagger > 0
    assert total - (duration + stagger) >= min(30, total / 8)


def test_slurm_times_and_gres() -> None:
    assert parse_time("90") == 90 * 60
    assert parse_time("10:30") == 10 * 60 + 30
    assert parse_time("01:02:03") == 3723
    assert parse_time("2-00") == 2 * 86400
    assert parse_time("1-02:03") == 86400 + 2 * 3600 + 3 * 60
    assert parse_time("1-00:00:01") == 86401
    assert parse_time("UNLIMITED") is None and parse_time("infinite") is None
    for bad in ("1h", "1:2:3:4", "-5", "", "1-"):
        with pytest.raises(ValueError, match="not a SLURM time"):
            parse_time(bad)
    assert format_time(86401) == "1-00:00:01" and format_time(3723) == "01:02:03"
    assert parse_gres("gpu:2") == {"": 2}
    assert parse_gres("gpu:a100:4(S:0-1),gpu:v100:2") == {"a100": 4, "v100": 2}
    assert parse_gres("(null)") == {}


def test_without_slurm_commands_check_says_what_to_do(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(BackendError, match=r"not on PATH.*scripts/slurm-up"):
        backend().check()


@pytest.mark.parametrize(
    "key",
    [
        "partition",
        "account",
        "qos",
        "gpu_type",
        "python",
        "interface",
        "local_directory",
        "log_directory",
        "scheduler_host",
        "walltime",
    ],
)
@pytest.mark.parametrize("bad", ["x\nsrun rm -rf ~", "x\r", "x\x00y", "x\x1b[2J"])
def test_fields_that_are_not_shell_reject_control_characters(key: str, bad: str) -> None:
    options: dict[str, Any] = {key: bad}
    if key == "gpu_type":
        options.update(gpus_per_job=1, cores=1)
    with pytest.raises(ValidationError, match="newlines or other control characters"):
        SLURMOptions(**options)
    with pytest.raises(ValidationError, match="newlines or other control characters"):
        SLURMOptions(worker_extra_args=["--resources", bad])


def test_every_job_name_ends_in_a_unique_suffix() -> None:
    names = {SLURMBackend(SLURMOptions(job_name="fixed"), "p").job_name for _ in range(20)}
    assert len(names) == 20 and all(re.fullmatch(r"fixed-[0-9a-f]{6}", n) for n in names)
    default = SLURMBackend(SLURMOptions(), "my profile").job_name
    assert re.fullmatch(r"wb-my-profile-[0-9a-f]{6}", default)
