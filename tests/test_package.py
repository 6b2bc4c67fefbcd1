"""What a user installs: the wheel and sdist that `python -m build` makes.

The wheel goes into a clean virtual environment with no node.js on PATH; JupyterLab must list
the prebuilt extension as enabled, the Jupyter server must list workbench.server, the
notebook templates must ship, and the CLI must run. The sdist must build the same wheel.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent

ANSI = re.compile(r"\x1b\[[0-9;]*m")

pytestmark = pytest.mark.slow


def run(cmd: list[str | Path], *, env: dict[str, str] | None = None, cwd: Path = ROOT) -> str:
    result = subprocess.run(
        [str(c) for c in cmd], capture_output=True, text=True, timeout=600, env=env, cwd=cwd
    )
    assert result.returncode == 0, f"{cmd}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return ANSI.sub("", result.stdout + result.stderr)


def contents(wheel: Path) -> dict[str, str]:
    """Every file of a wheel and the sha256 of its bytes."""
    with zipfile.ZipFile(wheel) as zf:
        return {
            i.filename: hashlib.sha256(zf.read(i)).hexdigest()
            for i in zf.infolist()
            if not i.is_dir()
        }


@pytest.fixture(scope="module")
def dists(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """`python -m build` (sdist, then the wheel built from it) and a wheel built from the tree.

    Without build isolation: the build tools are the locked ones in this environment.
    """
    assert (ROOT / "workbench/labextension/package.json").exists(), "build the extension first"
    out = tmp_path_factory.mktemp("dist")
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}"}
    run([sys.executable, "-m", "build", "--no-isolation", "--outdir", out / "from-sdist"], env=env)
    run(
        [sys.executable, "-m", "build", "--no-isolation", "--wheel", "--outdir", out / "tree"],
        env=env,
    )
    (sdist,) = (out / "from-sdist").glob("workbench-*.tar.gz")
    (wheel,) = (out / "from-sdist").glob("workbench-*.whl")
    (tree_wheel,) = (out / "tree").glob("workbench-*.whl")
    return {"sdist": sdist, "wheel": wheel, "tree_wheel": tree_wheel}


def test_sdist_builds_the_same_wheel(dists: dict[str, Path]) -> None:
    from_sdist, from_tree = contents(dists["wheel"]), contents(dists["tree_wheel"])
    assert sorted(from_sdist) == sorted(from_tree)
    assert from_sdist == from_tree


def test_wheel_holds_extension_server_config_and_templates(dists: dict[str, Path]) -> None:
    names = set(contents(dists["wheel"]))
    data = next(n.split("/")[0] for n in names if ".data/" in n)
    ext = f"{data}/data/share/jupyter/labextensions/workbench-lab"
    assert f"{ext}/package.json" in names
    assert f"{ext}/install.json" in names
    assert any(n.startswith(f"{ext}/static/remoteEntry.") for n in names)
    assert f"{data}/data/etc/jupyter/jupyter_server_config.d/workbench.json" in names
    for template in (ROOT / "templates" / "notebooks").glob("*.ipynb"):
        assert f"workbench/_templates/notebooks/{template.name}" in names
    assert "workbench/_templates/profiles/example-profiles.yaml" in names
    # nothing of the development tree
    assert not [n for n in names if n.startswith(("tests/", "extension/", "node_modules"))]


def test_wheel_in_a_clean_venv_without_node(dists: dict[str, Path], tmp_path: Path) -> None:
    uv = BIN / "uv"
    venv = tmp_path / "venv"
    run([uv, "venv", "--quiet", "--python", sys.executable, venv])
    py = venv / "bin" / "python"
    # The wheel with JupyterLab, pinned as the lock pins them (uv's cache makes this quick).
    constraints = tmp_path / "constraints.txt"
    constraints.write_text(
        "\n".join(
            line.rstrip(" \\")
            for line in (ROOT / "requirements" / "test.txt").read_text().splitlines()
            if line[:1].isalnum()
        )
    )
    sources = run([sys.executable, ROOT / "scripts" / "pip-sources"]).split()
    run(
        [
            uv,
            "pip",
            "install",
            "--quiet",
            "--python",
            py,
            "-c",
            constraints,
            *sources,
            f"{dists['wheel']}[lab]",
        ]
    )

    # Only the venv on PATH: no node, no jlpm, nothing from the development tree.
    env = {
        "PATH": str(venv / "bin"),
        "HOME": str(tmp_path),
        "JUPYTER_PLATFORM_DIRS": "1",
        "LANG": "C.UTF-8",
    }
    assert shutil.which("node", path=env["PATH"]) is None
    labext = run([venv / "bin" / "jupyter", "labextension", "list"], env=env, cwd=tmp_path)
    line = next(ln for ln in labext.splitlines() if "workbench-lab" in ln)
    assert "enabled" in line and "OK" in line and "(python, workbench)" in line, labext
    server = run([venv / "bin" / "jupyter", "server", "extension", "list"], env=env, cwd=tmp_path)
    lines = [ln.strip() for ln in server.splitlines()]
    assert "workbench.server enabled" in lines, server
    assert "workbench.server  OK" in lines, server  # it imports and loads
    help_text = run([venv / "bin" / "workbench", "--help"], env=env, cwd=tmp_path)
    assert "launch" in help_text and "profiles" in help_text
    listed = run([venv / "bin" / "workbench", "templates", "list"], env=env, cwd=tmp_path)
    for template in (ROOT / "templates" / "notebooks").glob("*.ipynb"):
        assert template.stem in listed, listed
    # the package imported is the installed one, not this checkout
    where = run([py, "-c", "import workbench; print(workbench.__file__)"], env=env, cwd=tmp_path)
    assert str(venv) in where and str(ROOT) not in where
