"""The device-check kit, here: the dry run (its CPU steps and the 64 MiB per-command limit)
and the staging of large wheels in pieces that join back to the same bytes."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import subprocess
import sys
from importlib.machinery import SourceFileLoader
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
MIB = 2**20


def _script(name: str) -> ModuleType:
    loader = SourceFileLoader(name.replace("-", "_"), str(ROOT / "scripts" / name))
    spec = importlib.util.spec_from_loader(loader.name, loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


def _dry_run(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """The dry run with nothing staged (a developer's own .device/ stays out of it)."""
    return subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "device-check"), "--dry-run", "--quick"],
        cwd=ROOT,
        env={**os.environ, "WB_DEVICE_DIR": str(tmp_path / "device"), **env},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


@pytest.mark.slow
def test_dry_run_checks_every_command_against_the_limit_and_says_what_to_run(
    tmp_path: Path,
) -> None:
    proc = _dry_run(tmp_path)
    out = proc.stdout
    assert proc.returncode == 0, out + proc.stderr
    manifest = json.loads((ROOT / "requirements" / "device-wheels.json").read_text())
    tier1 = [w for w in manifest["wheels"] if w["tier"] == 1]
    assert f"tier 1: {len(tier1)} wheels" in out and "(fits in one command)" in out
    assert '`pytest -m "gpu and not slurm"` on the device collects' in out
    assert "GPU tab from a replayed recording: " in out and "FAILED" not in out
    assert (ROOT / "artifacts" / "device-check-dry" / "gpu-tab.png").exists()
    assert "nothing staged in .device/" in out
    assert 'command "scripts/device-check", carry [".device/tier1", ".device/stage-1"]' in out
    assert out.rstrip().endswith("dry run: ok")


@pytest.mark.slow
def test_dry_run_fails_when_a_command_would_carry_more_than_the_limit(tmp_path: Path) -> None:
    proc = _dry_run(tmp_path, DEVICE_CHECK_LIMIT_MIB="30")
    assert proc.returncode == 1
    assert "FAIL: tier 1" in proc.stdout and "does not fit in a command" in proc.stdout
    assert proc.stdout.rstrip().endswith("dry run: FAILED")


def test_the_committed_plan_fits_the_limit_with_this_checkout() -> None:
    wheels = _script("device-wheels")
    budget = wheels.LIMIT - wheels.tree_size() - wheels.MARGIN
    plan = wheels.plan(wheels.load_manifest(), budget)
    assert plan["tier1"]["fits"]
    assert plan["stages"][0]["size"] + plan["tier1"]["size"] <= budget
    assert all(s["size"] <= budget for s in plan["stages"])
    joined: dict[str, int] = {}
    for s in plan["stages"]:
        for piece in s["pieces"]:
            joined[piece["wheel"]] = joined.get(piece["wheel"], 0) + piece["size"]
    assert joined == {w["file"]: w["size"] for w in plan["wheels"]}  # nothing lost or doubled


def test_large_wheels_are_staged_in_pieces_that_join_back(tmp_path: Path) -> None:
    wheels, check = _script("device-wheels"), _script("device-check")
    cache = tmp_path / "cache"
    cache.mkdir()
    sizes = {"small": 3 * MIB // 2, "large": 7 * MIB + 123, "tier1": 2 * MIB}
    entries: list[dict[str, Any]] = []
    for name, size in sizes.items():
        data = os.urandom(size)
        path = cache / f"{name}-1.0-py3-none-any.whl"
        path.write_bytes(data)
        entries.append(
            {
                "name": name,
                "version": "1.0",
                "tier": 1 if name == "tier1" else 2,
                "file": path.name,
                "size": size,
                "sha256": hashlib.sha256(data).hexdigest(),
            }
        )
    manifest = {"wheels": entries}
    plan = wheels.plan(manifest, budget=3 * MIB)
    assert len(plan["stages"]) == 4  # 1 MiB beside tier 1, then 3 MiB a command
    device = tmp_path / ".device"
    wheels.write_stages(plan, manifest, cache, device)
    stages = check.stages_here(device)
    assert sorted(stages) == [1, 2, 3, 4]
    assert all(check.check_stage(info, device) == [] for info in stages.values())
    joined = check.join_wheels(stages, tmp_path / "joined", device)
    for path in joined:
        assert path.read_bytes() == (cache / path.name).read_bytes()
    # a damaged piece is found before anything is joined or installed
    piece = next(p for p in stages[2]["pieces"] if p["file"] != p["wheel"])
    target = device / "stage-2" / piece["file"]
    target.write_bytes(b"x" + target.read_bytes()[1:])
    assert check.check_stage(stages[2], device) == [f"{piece['file']}: sha256 differs"]


@pytest.mark.parametrize(
    ("classname", "name", "expected"),
    [
        ("tests.test_gpus", "test_a[x-1]", "tests/test_gpus.py::test_a[x-1]"),
        ("tests.test_gpus.TestB", "test_c", "tests/test_gpus.py::TestB::test_c"),
        ("", "tests.test_gateway", "tests/test_gateway.py"),  # a module skipped as a whole
    ],
)
def test_tier_two_reruns_what_tier_one_skipped_by_node_id(
    classname: str, name: str, expected: str
) -> None:
    assert _script("device-check").nodeid(classname, name) == expected


def test_the_device_manifest_resolves_what_pyproject_asks_for_now() -> None:
    """requirements/device-wheels.json is a resolution of workbench's requirements and the
    extras it names: a requirement added to pyproject.toml since (a new dashboards
    dependency, say) would be missing on the GPU machine. `scripts/device-wheels lock` again."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib

    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    manifest = json.loads((ROOT / "requirements" / "device-wheels.json").read_text())
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = list(project["dependencies"])
    for extra in manifest["extras"]:
        wanted += project["optional-dependencies"][extra]
    env = {"python_version": manifest["python"], "platform_machine": "x86_64"}
    names = {
        canonicalize_name(r.name)
        for r in map(Requirement, wanted)
        if r.marker is None or r.marker.evaluate({**env, "extra": ""})
    } - {"workbench"}
    resolved = {canonicalize_name(name) for name in manifest["pins"]}
    assert sorted(names - resolved) == [], "run scripts/device-wheels lock and commit it"
    # ... and what the GPU path imports (workbench itself, the dashboards, the gpu extra) is
    # carried to the machine or already there. (Of train and cloud it carries only what the
    # gpu tests use: torch's and XGBoost's, dask-gateway's; MLflow, Optuna, dask-kubernetes
    # stay behind and their tests skip naming them.)
    needed = list(project["dependencies"])
    for extra in ("dashboards", "gpu"):
        needed += project["optional-dependencies"][extra]
    names = {canonicalize_name(Requirement(r).name) for r in needed} - {"workbench"}
    carried = {canonicalize_name(w["name"]) for w in manifest["wheels"]}
    has = {
        canonicalize_name(line.split("==")[0].strip())
        for line in (ROOT / "requirements" / "device-has.txt").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert sorted(names - carried - has) == [], "a requirement neither carried nor on the device"
