"""Profiles: layering, validation and the precise errors bad files get."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from workbench.clusters.local_options import LocalOptions
from workbench.clusters.profiles import get_profile, list_profiles, load_catalog, validate_file
from workbench.errors import ProfileError, UnknownProfileError


def dedent(text: str) -> str:
    return textwrap.dedent(text).lstrip()


def test_builtin_profiles_load_without_problems() -> None:
    catalog = load_catalog()
    assert catalog.problems == []
    assert {"local", "local-cpu"} <= set(catalog.profiles)
    local = catalog.get("local")
    assert local.backend == "local" and local.scope == "built-in"
    assert catalog.get("local-cpu").resolve().gpus == "none"


def test_user_file_overrides_builtin_and_adds_profiles(user_profiles) -> None:
    path = user_profiles(
        dedent("""
        profiles:
          local:
            backend: local
            description: mine
            options: {n_workers: 3}
          small:
            backend: local
            options: {n_workers: 1, threads_per_worker: 1, memory_limit: 1GiB}
    """)
    )
    local = get_profile("local")
    assert local.description == "mine" and local.source == str(path) and local.scope == "user"
    assert local.resolve().n_workers == 3
    small = get_profile("small").resolve()
    assert isinstance(small, LocalOptions)
    assert (small.n_workers, small.threads_per_worker, small.memory_limit) == (1, 1, "1GiB")
    listed = list_profiles()
    names = [p.name for p in listed]
    assert names == sorted(names) and {"local", "local-cpu", "small"} <= set(names)
    # Besides the user's ones, only built-ins (each backend may ship some).
    assert {p.name for p in listed if p.scope != "built-in"} == {"local", "small"}


def test_team_profiles_from_env_layer_between_builtin_and_user(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, user_profiles
) -> None:
    team = tmp_path / "team"
    team.mkdir()
    (team / "a.yaml").write_text(
        "profiles:\n  shared:\n    backend: local\n    options: {n_workers: 4}\n"
    )
    (team / "b.yml").write_text("profiles:\n  other:\n    backend: local\n")
    monkeypatch.setenv("WORKBENCH_TEAM_PROFILES", str(team))
    assert get_profile("shared").scope == "team"
    assert get_profile("shared").resolve().n_workers == 4
    assert get_profile("other").source == str(team / "b.yml")
    user_profiles("profiles:\n  shared:\n    backend: local\n    options: {n_workers: 2}\n")
    assert get_profile("shared").scope == "user"
    assert get_profile("shared").resolve().n_workers == 2


def test_team_profiles_from_config_file(tmp_path: Path, workbench_home: Path) -> None:
    team = tmp_path / "team.yaml"
    team.write_text("profiles:\n  teamprof:\n    backend: local\n")
    (workbench_home / "config" / "config.yaml").write_text(f"team_profiles: {team}\n")
    assert get_profile("teamprof").scope == "team"


def test_missing_team_file_is_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    missing = tmp_path / "nope.yaml"
    monkeypatch.setenv("WORKBENCH_TEAM_PROFILES", str(missing))
    catalog = load_catalog()
    assert [str(p) for p in catalog.problems] == [f"{missing}: team profile file not found"]
    # Profiles from readable files still work.
    assert catalog.get("local").backend == "local"


def test_malformed_yaml_names_file_and_line(user_profiles) -> None:
    path = user_profiles("profiles:\n  gpu:\n    backend: local\n    options: {n_workers: 2\n")
    catalog = load_catalog()
    (problem,) = catalog.problems
    assert problem.file == str(path) and problem.line == 5
    assert "invalid YAML" in problem.message
    with pytest.raises(UnknownProfileError) as exc:
        get_profile("gpu")
    assert "could not be read" in str(exc.value) and str(path) in str(exc.value)
    assert validate_file(path)[0].message.startswith("invalid YAML")


def test_unknown_option_names_file_line_profile_and_key(user_profiles) -> None:
    path = user_profiles(
        dedent("""
        profiles:
          gpu:
            backend: local
            options:
              gpus: 1
              n_wrkers: 2
    """)
    )
    with pytest.raises(ProfileError) as exc:
        get_profile("gpu")
    message = str(exc.value)
    assert f"{path}:6: profile 'gpu': key 'options.n_wrkers': unknown option" in message


def test_wrong_type_shows_the_bad_value(user_profiles) -> None:
    user_profiles("profiles:\n  p:\n    backend: local\n    options:\n      n_workers: two\n")
    (problem,) = load_catalog().problems
    assert problem.line == 5 and problem.key == "options.n_workers"
    assert "'two'" in problem.message


@pytest.mark.parametrize(
    ("value", "fragment"),
    [("12 giggles", "not a memory size"), (-1, "must not be negative")],
)
def test_memory_sizes_are_checked(user_profiles, value: object, fragment: str) -> None:
    user_profiles(
        f"profiles:\n  p:\n    backend: local\n    options:\n      memory_limit: {value!r}\n"
    )
    (problem,) = load_catalog().problems
    assert problem.key == "options.memory_limit" and fragment in problem.message


def test_unknown_backend_is_an_error_with_suggestion(user_profiles) -> None:
    path = user_profiles("profiles:\n  p:\n    backend: locl\n")
    (problem,) = load_catalog().problems
    assert problem.file == str(path) and problem.line == 3 and problem.key == "backend"
    assert "unknown backend 'locl'" in problem.message and "Did you mean 'local'" in problem.message
    with pytest.raises(ProfileError, match="unknown backend 'locl'"):
        get_profile("p")


def test_unknown_profile_key_and_top_level_key(user_profiles) -> None:
    user_profiles("profile:\n  x: 1\nprofiles:\n  p:\n    backend: local\n    option: {}\n")
    problems = [str(p) for p in load_catalog().problems]
    assert any("key 'profile': unknown top-level key" in p for p in problems)
    assert any(
        "profile 'p': key 'option': unknown key (did you mean 'options'?)" in p for p in problems
    )


def test_profile_must_be_a_mapping_and_options_a_mapping(user_profiles) -> None:
    user_profiles("profiles:\n  a: just-a-string\n  b:\n    backend: local\n    options: [1]\n")
    problems = {p.profile: p.message for p in load_catalog().problems}
    assert "must be a mapping" in problems["a"]
    assert problems["b"] == "expected a mapping"


def test_missing_backend(user_profiles) -> None:
    user_profiles("profiles:\n  p:\n    options: {}\n")
    (problem,) = load_catalog().problems
    assert problem.key == "backend" and "missing required key" in problem.message


def test_literal_credentials_are_rejected_references_accepted(user_profiles) -> None:
    path = user_profiles(
        dedent("""
        profiles:
          leaky:
            backend: local
            options:
              storage:
                password: hunter2
          fine:
            backend: local
            options:
              storage:
                password: env:DB_PASSWORD
    """)
    )
    problems = load_catalog().problems
    leaky = [p for p in problems if p.profile == "leaky"]
    assert leaky and leaky[0].line == 6 and leaky[0].key == "options.storage.password"
    assert "literal credential" in leaky[0].message
    assert "hunter2" not in str(leaky[0])  # the secret itself is never echoed
    # 'fine' only fails on the unknown option 'storage', not on the reference.
    fine = [p for p in problems if p.profile == "fine"]
    assert [p.key for p in fine] == ["options.storage"]
    assert str(path) in str(fine[0])


def test_extends_inherits_backend_and_merges_options(user_profiles) -> None:
    user_profiles(
        dedent("""
        profiles:
          base:
            backend: local
            options: {n_workers: 2, threads_per_worker: 2}
          child:
            extends: base
            options: {threads_per_worker: 1}
    """)
    )
    child = get_profile("child")
    assert child.backend == "local" and child.extends == "base"
    options = child.resolve()
    assert (options.n_workers, options.threads_per_worker) == (2, 1)


def test_extends_cycles_and_unknown_parents_are_reported(user_profiles) -> None:
    user_profiles(
        dedent("""
        profiles:
          a: {extends: b, backend: local}
          b: {extends: a, backend: local}
          c: {extends: nothere}
    """)
    )
    problems = {p.profile: p.message for p in load_catalog().problems}
    assert "circular 'extends'" in problems["a"] or "circular 'extends'" in problems["b"]
    assert problems["c"] == "extends unknown profile 'nothere'"


def test_unknown_profile_suggests_a_name() -> None:
    with pytest.raises(UnknownProfileError) as exc:
        get_profile("lcoal")
    assert "Did you mean 'local'?" in str(exc.value)
    assert "Known profiles: local, local-cpu" in str(exc.value)


def test_overrides_are_validated() -> None:
    profile = get_profile("local")
    assert profile.resolve(n_workers=2).n_workers == 2
    with pytest.raises(ProfileError) as exc:
        profile.resolve(n_workers=-1)
    assert "override key 'n_workers'" in str(exc.value)
    with pytest.raises(ProfileError, match="unknown option"):
        profile.resolve(bogus=1)
    with pytest.raises(ProfileError, match="literal credential"):
        profile.resolve(api_token="abc123")


def test_validate_file_checks_one_file(tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text("profiles:\n  g:\n    backend: local\n    options: {gpus: none}\n")
    assert validate_file(good) == []
    bad = tmp_path / "bad.yaml"
    bad.write_text("profiles:\n  g:\n    backend: local\n    options: {gpus: -1}\n")
    (problem,) = validate_file(bad)
    assert problem.file == str(bad) and problem.key == "options.gpus"
    assert validate_file(tmp_path / "missing.yaml")[0].message == "file not found"


# -- what the sidebar (REST) may change ------------------------------------------------------
def test_sidebar_may_change_sizes_but_never_profile_file_settings(user_profiles) -> None:
    from workbench.errors import OverrideForbiddenError

    local = get_profile("local-cpu")
    assert local.sidebar_options() == LocalOptions.SIDEBAR_OPTIONS
    assert {"n_workers", "memory_limit", "threads_per_worker", "gpus"} <= local.sidebar_options()
    local.check_sidebar_overrides({"n_workers": 2, "memory_limit": "2GiB"})
    local.check_sidebar_overrides({"bogus": 1})  # left to validation: "unknown option"
    for key in ("security", "dashboard_address", "max_workers", "pre_import", "protocol"):
        with pytest.raises(OverrideForbiddenError, match=f"change {key}: '{key}' can only be set"):
            local.check_sidebar_overrides({key: "x", "n_workers": 1})
    slurm = get_profile("slurm")
    for key in ("job_script_prologue", "python", "scheduler_host", "worker_extra_args"):
        with pytest.raises(OverrideForbiddenError, match="can only be set in a profile file"):
            slurm.check_sidebar_overrides({key: "x"})
    slurm.check_sidebar_overrides({"walltime": "00:30:00", "cores": 2, "jobs": 3})


def test_a_profile_names_what_the_sidebar_may_change(user_profiles) -> None:
    from workbench.errors import OverrideForbiddenError

    user_profiles(
        textwrap.dedent(
            """\
            profiles:
              fixed:
                backend: local
                options: {n_workers: 2}
                overridable: [threads_per_worker]
              child:
                extends: fixed
              wider:
                extends: slurm
                overridable: [account, walltime, python]
              typo:
                backend: local
                overridable: [n_wrkers]
            """
        )
    )
    fixed = get_profile("fixed")
    assert fixed.sidebar_options() == {"threads_per_worker"}
    fixed.check_sidebar_overrides({"threads_per_worker": 2})
    with pytest.raises(OverrideForbiddenError) as err:
        fixed.check_sidebar_overrides({"n_workers": 4})
    assert "'n_workers' is not in the profile's overridable options (threads_per_worker)" in str(
        err.value
    )
    assert "profiles.yaml" in str(err.value)  # where to add it
    assert get_profile("child").sidebar_options() == {"threads_per_worker"}  # inherited
    catalog = load_catalog()
    problems = {p.profile: str(p) for p in catalog.problems}
    assert "'python' can only be set in a profile file" in problems["wider"]
    assert "profiles.yaml:10: profile 'wider': key 'overridable'" in problems["wider"]
    assert (
        "'n_wrkers' is not an option of backend 'local' (did you mean 'n_workers'?)"
        in (problems["typo"])
    )
