"""The set-up path a newcomer takes (`make lab`, `make test`): the Python check, pip's sources
handed to uv, the committed locks and the CPU torch. The scripts are run as `make` runs them."""

from __future__ import annotations

import importlib.metadata as md
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = ROOT / "scripts"
REQ = ROOT / "requirements"
PIN = re.compile(r"^([A-Za-z0-9_.\-]+)==([^ ;\\]+)(?: ; ([^\\]+?))? *\\?$")


def run(
    cmd: list[str], env: dict[str, str] | None = None, **kw: object
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        cmd, capture_output=True, text=True, timeout=120, env={**os.environ, **(env or {})}, **kw
    )  # type: ignore[call-overload]


def pins(lock: Path) -> dict[tuple[str, str], str]:
    """(name, marker) -> version for every pin of a lock."""
    found: dict[tuple[str, str], str] = {}
    for line in lock.read_text().splitlines():
        m = PIN.match(line)
        if m:
            found[(m[1].lower(), m[3] or "")] = m[2]
    return found


# -- the Python that makes the venv ---------------------------------------------------------


def old_python() -> str | None:
    """A real Python 3.9 (pyenv's, or Debian's python3.9), not a shim that refuses to run."""
    for candidate in [
        *sorted(Path("~/.pyenv/versions").expanduser().glob("3.9.*/bin/python3")),
        "/usr/bin/python3.9",
    ]:
        probe = run([str(candidate), "-c", "import sys; print(sys.version_info[:2])"])
        if probe.returncode == 0 and probe.stdout.strip() == "(3, 9)":
            return str(candidate)
    return None


def test_install_names_a_python_older_than_310(tmp_path: Path) -> None:
    py = old_python()
    if py is None:
        pytest.skip("no Python older than 3.10 on this machine to try")
    venv = tmp_path / "venv"
    result = run([str(SCRIPTS / "install-env"), "lab"], env={"PYTHON": py, "VENV": str(venv)})
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert re.search(r"needs Python 3\.10 or newer; .* is Python 3\.9\.\d+", lines[0])
    assert not venv.exists()


def test_install_names_the_venv_package_when_ensurepip_is_missing(tmp_path: Path) -> None:
    # Debian's python3 without python3-venv: the stdlib's ensurepip is absent. A module of that
    # name that fails to import, ahead of the stdlib on the path, is the same to the check.
    fake = tmp_path / "site" / "ensurepip"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ImportError('ensurepip is not installed')\n")
    venv = tmp_path / "venv"
    result = run(
        [str(SCRIPTS / "install-env"), "lab"],
        env={"PYTHON": sys.executable, "VENV": str(venv), "PYTHONPATH": str(fake.parent)},
    )
    assert result.returncode == 1
    minor = f"{sys.version_info.major}.{sys.version_info.minor}"
    assert result.stderr.strip() == (
        f"{sys.executable} (Python {'.'.join(map(str, sys.version_info[:3]))}) cannot create "
        f"virtual environments: install the Debian package python3-venv "
        f"(sudo apt-get install python{minor}-venv)"
    )
    assert not venv.exists()


def test_install_names_a_missing_interpreter(tmp_path: Path) -> None:
    result = run(
        [str(SCRIPTS / "install-env"), "lab"],
        env={"PYTHON": "python3.99-nowhere", "VENV": str(tmp_path / "venv")},
    )
    assert result.returncode == 1
    assert "'python3.99-nowhere' was not found" in result.stderr


def test_install_rejects_an_unknown_mode() -> None:
    result = run([str(SCRIPTS / "install-env"), "everything"])
    assert result.returncode == 2
    assert "MODE is lab or test, not 'everything'" in result.stderr


# -- pip's configuration handed to uv -------------------------------------------------------


def pip_sources(tmp_path: Path, config: str | None, **env: str) -> list[str]:
    conf = tmp_path / "pip.conf"
    conf.write_text(config or "")
    clean = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    result = subprocess.run(
        [sys.executable, str(SCRIPTS / "pip-sources")],
        env={**clean, "PIP_CONFIG_FILE": str(conf), **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.split()


def test_pip_sources_translates_wheel_folders_and_indexes(tmp_path: Path) -> None:
    config = (
        "[global]\nfind-links = /srv/wheels /srv/more\n"
        "index-url = https://mirror.example/simple\n"
        "extra-index-url = file:///opt/pypi/simple\n"
    )
    assert pip_sources(tmp_path, config) == [
        "--find-links=/srv/wheels",
        "--find-links=/srv/more",
        "--index-url=https://mirror.example/simple",
        "--extra-index-url=file:///opt/pypi/simple",
        "--index-strategy=unsafe-best-match",
    ]


def test_pip_sources_environment_wins_over_files(tmp_path: Path) -> None:
    config = "[global]\nfind-links = /srv/wheels\n"
    assert pip_sources(tmp_path, config, PIP_FIND_LINKS="/env/wheels") == [
        "--find-links=/env/wheels"
    ]


def test_pip_sources_without_configuration_says_nothing(tmp_path: Path) -> None:
    assert pip_sources(tmp_path, None) == []


# -- the committed locks --------------------------------------------------------------------


def test_build_requirements_are_locked() -> None:
    build = tomllib.loads((ROOT / "pyproject.toml").read_text())["build-system"]["requires"]
    listed = [
        line.strip()
        for line in (REQ / "build.in").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert listed == [*build, "editables"]


def test_locks_pin_every_package_with_hashes_and_no_cuda_torch() -> None:
    for name in ("test.txt", "lab.txt"):
        text = (REQ / name).read_text()
        entries = re.split(r"\n(?=[A-Za-z0-9])", text.split("\n", 2)[2])
        assert len(entries) > 100
        for entry in entries:
            assert PIN.match(entry.splitlines()[0]), entry.splitlines()[0]
            assert "--hash=sha256:" in entry, entry.splitlines()[0]
        names = {n for n, _ in pins(REQ / name)}
        assert "torch" not in names
        assert not {n for n in names if n.startswith("nvidia-cu") or n == "triton"}


def test_lab_lock_is_the_test_lock_restricted() -> None:
    """Every version the lab lock pins is pinned by the test lock: tests run what users get."""
    test: dict[str, set[str]] = {}
    for (name, _), version in pins(REQ / "test.txt").items():
        test.setdefault(name, set()).add(version)
    for (name, marker), version in pins(REQ / "lab.txt").items():
        assert version in test.get(name, set()), (name, marker, version)


def test_installed_torch_is_the_pinned_cpu_build() -> None:
    want = (REQ / "torch.txt").read_text().split("torch==")[1].split()[0]
    dist = md.distribution("torch")
    assert dist.version.split("+")[0] == want
    assert not [r for r in dist.requires or [] if r.startswith(("nvidia-", "triton"))]


@pytest.mark.slow
def test_lock_check_fails_when_pyproject_changes(tmp_path: Path) -> None:
    """scripts/lock --check on a copy of the project whose pyproject.toml gained a dependency."""
    uv = Path(sys.executable).with_name("uv")
    copy = tmp_path / "project"
    (copy / "scripts").mkdir(parents=True)
    shutil.copy(SCRIPTS / "lock", copy / "scripts" / "lock")
    shutil.copytree(REQ, copy / "requirements")
    text = (ROOT / "pyproject.toml").read_text()
    assert '  "pyyaml>=6",\n' in text
    (copy / "pyproject.toml").write_text(
        text.replace('  "pyyaml>=6",\n', '  "pyyaml>=6",\n  "humanize>=4",\n')
    )
    result = run([str(copy / "scripts" / "lock"), "--check"], env={"UV": str(uv)})
    assert result.returncode == 1, result.stdout + result.stderr
    assert "requirements/test.txt disagrees with pyproject.toml" in result.stderr
    assert "+humanize==" in result.stderr

    # and the unchanged project agrees
    (copy / "pyproject.toml").write_text(text)
    result = run([str(copy / "scripts" / "lock"), "--check"], env={"UV": str(uv)})
    assert result.returncode == 0, result.stdout + result.stderr
    assert "locks agree with pyproject.toml" in result.stdout
