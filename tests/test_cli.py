"""The workbench command line: profiles, doctor and error handling."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from workbench.cli import main
from workbench.gpus import detect_gpus


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_profiles_list_shows_sources_and_files(user_profiles) -> None:
    path = user_profiles("profiles:\n  mine:\n    backend: local\n    description: my profile\n")
    code, out, _ = run("profiles", "list")
    assert code == 0
    assert "mine" in out and "my profile" in out and "local-cpu" in out
    assert f"user      {path}" in out
    code, out, _ = run("profiles", "list", "--json")
    data = json.loads(out)
    scopes = {p["name"]: p["scope"] for p in data["profiles"]}
    assert {"local", "local-cpu", "mine"} <= set(scopes)
    # Besides the user's one, only built-ins (each backend may ship some).
    assert {n for n, scope in scopes.items() if scope != "built-in"} == {"mine"}
    assert data["problems"] == []


def test_profiles_list_reports_problems(user_profiles) -> None:
    user_profiles("profiles:\n  p:\n    backend: local\n    options: {gpus: lots}\n")
    code, _, err = run("profiles", "list")
    assert code == 0 and "1 problem(s)" in err and "key 'options.gpus'" in err


def test_profiles_show_resolves_defaults() -> None:
    code, out, _ = run("profiles", "show", "local-cpu", "--json")
    assert code == 0
    data = json.loads(out)
    assert data["effective_options"]["gpus"] == "none"
    assert data["effective_options"]["enable_cudf_spill"] is True
    code, out, _ = run("profiles", "show", "local")
    assert code == 0 and "backend local, from built-in" in out and "gpus: auto" in out


def test_profiles_show_unknown_profile_is_a_clean_error() -> None:
    code, out, err = run("profiles", "show", "locl")
    assert code == 1 and out == ""
    assert err.startswith("error: unknown profile 'locl'. Did you mean 'local'?")
    assert "Traceback" not in err


def test_profiles_validate_exit_codes(tmp_path: Path, user_profiles) -> None:
    assert run("profiles", "validate")[0] == 0
    bad = tmp_path / "bad.yaml"
    bad.write_text("profiles:\n  x:\n    backend: nope\n")
    code, _, err = run("profiles", "validate", str(bad))
    assert code == 1 and f"{bad}:3: profile 'x': key 'backend': unknown backend 'nope'" in err
    user_profiles("profiles: [\n")
    code, _, err = run("profiles", "validate")
    assert code == 1 and "invalid YAML" in err


def test_launch_errors_are_clean() -> None:
    code, _, err = run("launch", "nope")
    assert code == 1 and "unknown profile 'nope'" in err
    code, _, err = run("launch", "local", "-o", "gpus=99")
    assert code == 1 and "asks for 99 GPUs" in err
    code, _, err = run("launch", "local", "-o", "novalue")
    assert code == 2 and "expected KEY=VALUE" in err
    code, _, err = run("launch", "local", "-o", "bogus=1")
    assert code == 1 and "override key 'bogus': unknown option" in err


def test_doctor_reports_gpus_and_profiles() -> None:
    code, out, _ = run("doctor", "--json")
    checks = {c["name"]: c for c in json.loads(out)}
    assert code == (1 if any(c["status"] == "fail" for c in checks.values()) else 0)
    assert checks["profiles"]["status"] == "ok"
    inventory = detect_gpus()
    if inventory.count:
        assert checks["GPUs"]["status"] == "ok"
    else:
        assert checks["GPUs"]["status"] == "warn"
        assert inventory.reason and inventory.reason in checks["GPUs"]["summary"]
    code, out, _ = run("doctor")
    assert "NVML" in out and "backends: registered: " in out


def test_clusters_commands_with_nothing_running() -> None:
    assert run("clusters", "list")[1].strip() == "no clusters"
    assert run("clusters", "cleanup")[1].strip() == "nothing to clean up"
    code, _, err = run("clusters", "stop", "abc")
    assert code == 1 and "no running cluster with id 'abc'" in err
    code, _, err = run("clusters", "stop")
    assert code == 2 and "name a cluster id" in err
