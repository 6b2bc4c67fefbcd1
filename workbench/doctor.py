"""Environment checks behind ``workbench doctor``, explained in plain words."""

from __future__ import annotations

import contextlib
import ctypes.util
import importlib.metadata
import importlib.util
import os
import platform
import shutil
from pathlib import Path

from . import __version__, config
from .checks import Check


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def check_python() -> Check:
    return Check(
        "workbench",
        "ok",
        f"workbench {__version__}, Python {platform.python_version()} on {platform.system()} "
        f"{platform.machine()}, dask {_version('dask')}, distributed {_version('distributed')}",
    )


def check_gpus() -> list[Check]:
    from .gpus import detect_gpus

    inv = detect_gpus()
    checks: list[Check] = []
    if inv.driver_version is None:
        checks.append(
            Check(
                "NVML",
                "warn",
                inv.reason or "NVML unavailable",
                "Without an NVIDIA driver, clusters use CPU workers. On a GPU machine, "
                "check that the driver is installed and that `nvidia-smi` works.",
            )
        )
    else:
        checks.append(
            Check(
                "NVML",
                "ok",
                f"driver {inv.driver_version}, CUDA driver API "
                f"{inv.cuda_driver_version or 'unknown'}",
            )
        )
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if inv.gpus:
        names = "; ".join(
            f"{g.index}: {g.name} ({g.memory_total / 2**30:.0f} GiB)" for g in inv.gpus
        )
        checks.append(Check("GPUs", "ok", f"{inv.count} visible: {names}", details=inv.to_dict()))
    else:
        advice = (
            "CUDA_VISIBLE_DEVICES is set and hides the GPUs."
            if visible is not None and inv.driver_version
            else "The local backend will start CPU workers."
        )
        checks.append(Check("GPUs", "warn", f"none visible ({inv.reason})", advice))
    libcuda = ctypes.util.find_library("cuda")
    if inv.gpus or libcuda:
        checks.append(
            Check(
                "CUDA driver library",
                "ok" if libcuda else "fail",
                libcuda or "libcuda.so not found",
                ""
                if libcuda
                else "The NVIDIA driver's libcuda is missing from the "
                "library path: set LD_LIBRARY_PATH or reinstall the driver.",
            )
        )
    cuda_pkgs = {
        name: _version(name)
        for name in (
            "dask-cuda",
            "cudf-cu13",
            "cudf-cu12",
            "cupy-cuda13x",
            "cupy-cuda12x",
            "rmm-cu13",
            "rmm-cu12",
        )
    }
    have = {k: v for k, v in cuda_pkgs.items() if v}
    if inv.gpus and not have.get("dask-cuda"):
        checks.append(
            Check(
                "dask-cuda",
                "fail",
                "GPUs are visible but dask-cuda is not installed",
                "Install GPU support: pip install 'workbench[gpu]' (CUDA 13 drivers) "
                "or 'workbench[gpu-cu12]' (CUDA 12).",
            )
        )
    else:
        summary = ", ".join(f"{k} {v}" for k, v in have.items()) or "not installed (CPU only)"
        checks.append(Check("GPU packages", "ok" if have or not inv.gpus else "warn", summary))
    return checks


def check_profiles() -> Check:
    from .clusters.profiles import load_catalog

    try:
        catalog = load_catalog()
    except Exception as exc:
        return Check("profiles", "fail", f"profiles could not be loaded: {exc}")
    if catalog.problems:
        return Check(
            "profiles",
            "fail",
            f"{len(catalog.problems)} problem(s) in profile files",
            "\n       ".join(str(p) for p in catalog.problems),
        )
    files = ", ".join(f.path for f in catalog.files if f.exists)
    return Check("profiles", "ok", f"{len(catalog.profiles)} profiles from {files}")


def check_security() -> Check:
    """Profiles that opt out of TLS (``security: none``) or expose the Dask dashboard on
    the network: allowed, and flagged."""
    from .clusters.profiles import load_catalog

    try:
        catalog = load_catalog()
    except Exception as exc:
        return Check("security", "fail", f"profiles could not be loaded: {exc}")
    plain, exposed = [], []
    for profile in catalog.profiles.values():
        options = profile.options
        if options.get("security") == "none":
            plain.append(profile.name)
        address = options.get("dashboard_address")
        if isinstance(address, str) and address.rpartition(":")[0] not in (
            "127.0.0.1",
            "localhost",
            "[::1]",
        ):
            exposed.append(f"{profile.name} ({address})")
    if not plain and not exposed:
        return Check("security", "ok", "every profile uses TLS and a loopback dashboard")
    from .host_sharing import shared_host_reason

    shared = shared_host_reason()
    problems = []
    if plain:
        problems.append(f"security: none (no TLS, no authentication) in {', '.join(sorted(plain))}")
    if exposed:
        problems.append(f"dashboard on the network in {', '.join(sorted(exposed))}")
    if shared:
        problems.append(f"and this machine is shared ({shared}): launches warn")
    return Check(
        "security",
        "warn",
        "; ".join(problems),
        "anyone who can reach such a scheduler can run code as you: remove security: none "
        "unless the network is yours alone (see docs/security.md)",
    )


def check_backends() -> Check:
    from .clusters.backend_registry import available_backends

    optional = {
        "slurm": "dask_jobqueue",
        "gateway": "dask_gateway",
        "kubernetes": "dask_kubernetes",
    }
    extra = [
        f"{name} ({'installed' if importlib.util.find_spec(mod) else 'not installed'})"
        for name, mod in optional.items()
    ]
    return Check(
        "backends",
        "ok",
        f"registered: {', '.join(available_backends())}; libraries: {', '.join(extra)}",
    )


def check_slurm() -> Check:
    """SLURM's commands and controller, for the slurm backend."""
    if shutil.which("sbatch") is None and not os.environ.get("SLURM_CONF"):
        return Check("SLURM", "ok", "not installed (only needed for the slurm backend)")
    from .clusters import slurm_commands as sc
    from .errors import WorkbenchError

    conf = os.environ.get("SLURM_CONF", "/etc/slurm/slurm.conf (default)")
    missing = sc.missing_commands()
    if missing:
        return Check(
            "SLURM",
            "warn",
            f"SLURM_CONF is set but {', '.join(missing)} is not on PATH",
            "Install SLURM's client commands (Debian: slurm-client).",
        )
    if not os.environ.get("SLURM_CONF") and not any(os.path.isfile(p) for p in sc.DEFAULT_CONFS):
        return Check(
            "SLURM",
            "warn",
            "SLURM's commands are installed, but SLURM_CONF is unset and there is no "
            f"{sc.DEFAULT_CONFS[0]}",
            "Export SLURM_CONF for the slurm backend (`sudo scripts/slurm-up` prints it for "
            "a local SLURM).",
        )
    try:
        partitions = sc.partitions()
        gres = sorted({g for p in partitions for n in sc.nodes(p) for g in _gres_names(n.gpus)})
    except WorkbenchError as exc:
        return Check(
            "SLURM",
            "fail",
            f"the controller does not answer (SLURM_CONF {conf}): {exc}",
            "Check SLURM_CONF, or start a local SLURM with `sudo scripts/slurm-up`.",
        )
    parts = ", ".join(
        f"{p.name}{'*' if p.default else ''} ({p.available}, max {sc.format_time(p.max_time)})"
        for p in partitions.values()
    )
    return Check(
        "SLURM",
        "ok",
        f"controller answers (SLURM_CONF {conf}); partitions: {parts or 'none'}; "
        f"GPUs in GRES: {', '.join(gres) or 'none'}",
    )


def _gres_names(gpus: dict[str, int]) -> list[str]:
    return [f"gpu:{kind + ':' if kind else ''}{count}" for kind, count in gpus.items()]


def check_state() -> Check:
    from .clusters.control import ClusterControl

    root = config.state_dir()
    try:
        root.mkdir(parents=True, exist_ok=True)
        probe = root / ".doctor-probe"
        probe.write_text("ok")
        probe.unlink()
    except OSError as exc:
        return Check(
            "state directory",
            "fail",
            f"{root} is not writable: {exc}",
            "Set WORKBENCH_STATE_DIR to a writable directory.",
        )
    control = ClusterControl()
    records = control.list()
    stale = [r.id for r in records if control.status(r) == "stale"]
    if stale:
        return Check(
            "state directory",
            "warn",
            f"{root}: {len(stale)} stale cluster record(s)",
            "Run 'workbench clusters cleanup'.",
        )
    return Check("state directory", "ok", f"{root} ({len(records)} cluster(s) registered)")


def check_network_fabric() -> list[Check]:
    """UCX for GPU-to-GPU transfers and InfiniBand devices."""
    checks = []
    ucx = (
        _version("distributed-ucxx")
        or _version("distributed-ucxx-cu13")
        or _version("distributed-ucxx-cu12")
    )
    checks.append(
        Check(
            "UCX",
            "ok" if ucx else "warn",
            f"distributed-ucxx {ucx}" if ucx else "not installed: workers use TCP",
            ""
            if ucx
            else "For NVLink/InfiniBand transfers between GPU workers install "
            "distributed-ucxx-cu13 and use protocol: ucx in the profile.",
        )
    )
    ib = Path("/sys/class/infiniband")
    devices = sorted(p.name for p in ib.iterdir()) if ib.is_dir() else []
    if devices:
        ports = []
        for dev in devices:
            for port in sorted((ib / dev / "ports").glob("*")):
                state = (port / "state").read_text().strip() if (port / "state").exists() else "?"
                rate = (port / "rate").read_text().strip() if (port / "rate").exists() else "?"
                ports.append(f"{dev}/{port.name}: {state}, {rate}")
        active = any("ACTIVE" in p for p in ports)
        checks.append(
            Check(
                "InfiniBand",
                "ok" if active else "warn",
                "; ".join(ports),
                "" if active else "No port is ACTIVE: check the cable and subnet manager.",
            )
        )
    else:
        checks.append(Check("InfiniBand", "ok", "no InfiniBand devices (not needed on one node)"))
    return checks


def check_object_store_credentials() -> list[Check]:
    """Whether the standard credential sources of each object store resolve (values never shown)."""
    import configparser

    checks = []
    aws_files = [
        Path(os.environ.get("AWS_SHARED_CREDENTIALS_FILE", "~/.aws/credentials")).expanduser(),
        Path(os.environ.get("AWS_CONFIG_FILE", "~/.aws/config")).expanduser(),
    ]
    if os.environ.get("AWS_ACCESS_KEY_ID") and os.environ.get("AWS_SECRET_ACCESS_KEY"):
        checks.append(Check("S3 credentials", "ok", "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY set"))
    else:
        profile = os.environ.get("AWS_PROFILE", "default")
        found = None
        for f in aws_files:
            if f.is_file():
                cp = configparser.ConfigParser()
                with contextlib.suppress(configparser.Error):
                    cp.read(f)
                    for section in (profile, f"profile {profile}"):
                        if (
                            cp.has_option(section, "aws_access_key_id")
                            or cp.has_option(section, "credential_process")
                            or cp.has_option(section, "sso_session")
                        ):
                            found = f"{f} [{section}]"
        checks.append(
            Check(
                "S3 credentials",
                "ok" if found else "warn",
                f"profile in {found}" if found else "none found (env or ~/.aws)",
                ""
                if found
                else "Public buckets work anonymously (anon: true); for "
                "private ones set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or AWS_PROFILE.",
            )
        )
    az = [
        v
        for v in (
            "AZURE_STORAGE_CONNECTION_STRING",
            "AZURE_STORAGE_ACCOUNT_NAME",
            "AZURE_CLIENT_ID",
        )
        if os.environ.get(v)
    ]
    checks.append(
        Check(
            "Azure credentials",
            "ok" if az else "warn",
            f"{', '.join(az)} set" if az else "none found in the environment",
            ""
            if az
            else "Set AZURE_STORAGE_CONNECTION_STRING, or account name + "
            "key/SAS/service principal, for az:// and abfs:// data.",
        )
    )
    gcs = os.environ.get("GOOGLE_APPLICATION_CREDENTIALS")
    adc = Path("~/.config/gcloud/application_default_credentials.json").expanduser()
    if gcs and not Path(gcs).is_file():
        checks.append(
            Check(
                "GCS credentials",
                "fail",
                f"GOOGLE_APPLICATION_CREDENTIALS={gcs} does not exist",
                "Fix the path or unset the variable.",
            )
        )
    else:
        source = gcs or (str(adc) if adc.is_file() else None)
        checks.append(
            Check(
                "GCS credentials",
                "ok" if source else "warn",
                f"from {source}" if source else "none found",
                ""
                if source
                else "Run `gcloud auth application-default login` or set "
                "GOOGLE_APPLICATION_CREDENTIALS for gs:// data.",
            )
        )
    return checks


def run_checks() -> list[Check]:
    return [
        check_python(),
        *check_gpus(),
        *check_network_fabric(),
        check_backends(),
        check_slurm(),
        *check_object_store_credentials(),
        check_profiles(),
        check_security(),
        check_state(),
    ]
