"""Named cluster profiles: YAML files layered built-in < team < user, validated.

A profile file looks like::

    profiles:
      gpu-2:
        backend: local            # which backend starts it
        description: Two GPUs on this machine
        extends: local            # optional: start from another profile's options
        options:                  # checked against the backend's Options model
          gpus: 2
          rmm_pool_size: 20GB
        overridable: [gpus]       # optional: what the JupyterLab sidebar (REST) may change

The sidebar and the REST API may change only a profile's ``overridable`` options (by
default the backend's ``SIDEBAR_OPTIONS``: sizes, worker counts, walltime); security,
bind addresses, ``max_workers``, what runs and where to connect are set in profile files
only (the backend's ``PROFILE_ONLY``). Notebooks and the CLI, which run as the user
anyway, may override any option.

Every problem is reported with the file, line, profile and key it concerns.
Credentials are references (``env:NAME``, ``keyring:SERVICE/USER``, ``file:PATH``);
a literal secret in a profile is an error.
"""

from __future__ import annotations

import copy
import difflib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from .. import config
from ..credentials import find_literal_secrets
from ..errors import BackendError, OverrideForbiddenError, ProfileError, UnknownProfileError
from ..layered_catalog import (
    FileReader,
    LineMap,
    Problem,
    Scope,
    SourceFile,
    dotted,
    line_of,
    load_layered,
    validation_errors,
)
from .backend import BackendOptions
from .backend_registry import get_backend_class

PROFILE_KEYS = {"backend", "description", "extends", "options", "overridable"}


@dataclass(frozen=True)
class ProfileProblem(Problem):
    """A problem in a profile file; ``profile`` names the profile it concerns."""

    kind = "profile"

    @property
    def profile(self) -> str | None:
        return self.entry


@dataclass
class Profile:
    name: str
    backend: str
    description: str = ""
    options: dict[str, Any] = field(default_factory=dict)
    source: str = "built-in"
    scope: Scope = "built-in"
    line: int | None = None
    extends: str | None = None
    #: The options a launch from the sidebar or REST may change; None: the backend's
    #: default (``SIDEBAR_OPTIONS``).
    overridable: list[str] | None = None

    def sidebar_options(self) -> frozenset[str]:
        """The options the sidebar (REST) may change for this profile."""
        cls = get_backend_class(self.backend).Options
        if self.overridable is None:
            return cls.SIDEBAR_OPTIONS
        return frozenset(self.overridable) - cls.PROFILE_ONLY

    def check_sidebar_overrides(self, overrides: dict[str, Any]) -> None:
        """Refuse (OverrideForbiddenError, 403) a sidebar or REST launch that changes an
        option this profile keeps to its file. Unknown keys are left to validation."""
        cls = get_backend_class(self.backend).Options
        allowed = self.sidebar_options()
        refused = sorted(k for k in overrides if k in cls.model_fields and k not in allowed)
        if not refused:
            return
        only_file = [k for k in refused if k in cls.PROFILE_ONLY]
        others = [k for k in refused if k not in cls.PROFILE_ONLY]
        why = []
        if only_file:
            why.append(
                f"{', '.join(repr(k) for k in only_file)} can only be set in a profile file "
                "(security, bind addresses, limits, what runs and where it connects are not "
                "changed by a request)"
            )
        if others:
            why.append(
                f"{', '.join(repr(k) for k in others)} is not in the profile's overridable "
                f"options ({', '.join(sorted(allowed)) or 'none'}); add it to "
                f"'overridable:' in {self.source}"
            )
        raise OverrideForbiddenError(
            f"profile {self.name!r} does not let the sidebar or REST change "
            f"{', '.join(refused)}: " + "; ".join(why) + ". Launch it without them, or "
            "from a notebook or terminal (workbench.launch, workbench launch), which "
            "run as you."
        )

    def resolve(self, **overrides: Any) -> BackendOptions:
        """The backend's validated options, with ``overrides`` applied on top."""
        cls = get_backend_class(self.backend)
        for path in find_literal_secrets(overrides):
            raise ProfileError(
                f"override {dotted(path)!r} for profile {self.name!r} looks like a literal "
                "credential; pass a reference instead (env:NAME, keyring:SERVICE/USER, file:PATH)"
            )
        merged = _deep_merge(self.options, overrides)
        try:
            return cls.Options.model_validate(merged)
        except ValidationError as exc:
            problems = [
                f"{'override' if loc and loc[0] in overrides else self.source} "
                + (f"key {dotted(loc)!r}: " if loc else "options: ")
                + message
                for loc, message in validation_errors(exc)
            ]
            raise ProfileError(f"profile {self.name!r} has invalid options", problems) from None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "backend": self.backend,
            "description": self.description,
            "extends": self.extends,
            "options": self.options,
            "source": self.source,
            "scope": self.scope,
            "overridable": self.overridable,
        }


@dataclass
class ProfileCatalog:
    """Every profile that the configured files define, and every problem found in them."""

    profiles: dict[str, Profile]
    problems: list[ProfileProblem]
    files: list[SourceFile]

    def problems_for(self, name: str) -> list[ProfileProblem]:
        chain = {name}
        profile = self.profiles.get(name)
        while profile is not None and profile.extends and profile.extends not in chain:
            chain.add(profile.extends)
            profile = self.profiles.get(profile.extends)
        return [p for p in self.problems if p.profile in chain]

    def get(self, name: str) -> Profile:
        """The named profile, or a ProfileError/UnknownProfileError that says why not."""
        own = self.problems_for(name)
        if own:
            raise ProfileError(f"profile {name!r} is invalid", [str(p) for p in own])
        if name in self.profiles:
            return self.profiles[name]
        close = difflib.get_close_matches(name, list(self.profiles), n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        unreadable = [str(p) for p in self.problems if p.profile is None]
        message = (
            f"unknown profile {name!r}.{hint} Known profiles: {', '.join(sorted(self.profiles))}. "
            f"Add it to {config.user_profiles_file()}"
        )
        raise UnknownProfileError(
            message + (" (these profile files could not be read:)" if unreadable else ""),
            unreadable,
        )


def _deep_merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


@dataclass
class _Raw:
    name: str
    data: dict[str, Any]
    file: str
    scope: Scope
    lines: LineMap


def _parse_file(text: str, file: str, scope: Scope) -> tuple[list[_Raw], list[ProfileProblem]]:
    """The profiles of one file's text that are well-formed, and every problem in it."""
    reader = FileReader(text, file, "profiles", "profile", "backend", ProfileProblem)
    problem, lines = reader.problem, reader.lines
    raws: list[_Raw] = []
    for name_s, base, body in reader.entries():
        ok = True
        for key in body:
            if key not in PROFILE_KEYS:
                close = difflib.get_close_matches(str(key), PROFILE_KEYS, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                problem(
                    line_of(lines, (*base, key)),
                    name_s,
                    str(key),
                    f"unknown key{hint}; allowed: {', '.join(sorted(PROFILE_KEYS))}",
                )
                ok = False
        for key in ("backend", "description", "extends"):
            if key in body and not isinstance(body[key], str):
                problem(line_of(lines, (*base, key)), name_s, key, "expected a string")
                ok = False
        names = body.get("overridable", [])
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            problem(
                line_of(lines, (*base, "overridable")),
                name_s,
                "overridable",
                "expected a list of option names",
            )
            ok = False
        options = body.get("options", {})
        if options is None:
            body = {**body, "options": {}}
        elif not isinstance(options, dict):
            problem(line_of(lines, (*base, "options")), name_s, "options", "expected a mapping")
            ok = False
        else:
            for path in find_literal_secrets(options):
                reader.literal_credential(
                    name_s, (*base, "options", *path), "options." + dotted(path), "profiles"
                )
                ok = False
        if ok:
            raws.append(_Raw(name_s, body, file, scope, lines))
    return raws, reader.problems


def load_catalog(extra_files: list[Path] | None = None) -> ProfileCatalog:
    """Read, merge and validate every profile file. Never raises for bad content."""
    builtin = resources.files("workbench.clusters").joinpath("builtin_profiles.yaml")
    sources = [
        ("built-in", "built-in", builtin.read_text(), True),
        *config.layered_sources(
            config.team_profile_files(), config.user_profiles_file(), extra_files
        ),
    ]
    layers = load_layered(
        sources,
        _parse_file,
        lambda label, scope: ProfileProblem(
            label, None, None, None, f"{scope} profile file not found"
        ),
    )
    merged, problems = layers.entries, layers.problems

    profiles: dict[str, Profile] = {}

    def build(name: str, stack: tuple[str, ...]) -> Profile | None:
        if name in profiles:
            return profiles[name]
        raw = merged[name]
        base_line = line_of(raw.lines, ("profiles", name))
        body = raw.data
        backend = body.get("backend")
        overridable: list[str] | None = body.get("overridable")
        options: dict[str, Any] = body.get("options") or {}
        parent = body.get("extends")
        if parent is not None:
            if parent in stack:
                bad_parent = f"circular 'extends': {' -> '.join([*stack, parent])}"
            elif parent not in merged:
                bad_parent = f"extends unknown profile {parent!r}"
            else:
                bad_parent = None
            if bad_parent is not None:
                problems.append(
                    ProfileProblem(
                        raw.file,
                        line_of(raw.lines, ("profiles", name, "extends")),
                        name,
                        "extends",
                        bad_parent,
                    )
                )
                return None
            base = build(parent, (*stack, parent))
            if base is None:
                return None
            backend = backend or base.backend
            options = _deep_merge(base.options, options)
            if "overridable" not in body:
                overridable = base.overridable
        if not backend:
            problems.append(
                ProfileProblem(
                    raw.file, base_line, name, "backend", "missing required key 'backend'"
                )
            )
            return None
        profile = Profile(
            name=name,
            backend=backend,
            description=body.get("description", "") or "",
            options=options,
            source=raw.file,
            scope=raw.scope,
            line=base_line,
            extends=parent,
            overridable=overridable,
        )
        profiles[name] = profile
        return profile

    for name in merged:
        build(name, (name,))

    for name, profile in list(profiles.items()):
        raw = merged[name]
        try:
            cls = get_backend_class(profile.backend)
        except BackendError as exc:
            problems.append(
                ProfileProblem(
                    raw.file,
                    line_of(raw.lines, ("profiles", name, "backend")),
                    name,
                    "backend",
                    str(exc),
                )
            )
            continue
        for option in profile.overridable or []:
            if option not in cls.Options.model_fields:
                close = difflib.get_close_matches(option, list(cls.Options.model_fields), n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                why = f"{option!r} is not an option of backend {profile.backend!r}{hint}"
            elif option in cls.Options.PROFILE_ONLY:
                why = (
                    f"{option!r} can only be set in a profile file, never from the sidebar "
                    "or REST (security, bind addresses, limits, what runs, where it connects)"
                )
            else:
                continue
            problems.append(
                ProfileProblem(
                    raw.file,
                    line_of(raw.lines, ("profiles", name, "overridable")),
                    name,
                    "overridable",
                    why,
                )
            )
        try:
            cls.Options.model_validate(profile.options)
        except ValidationError as exc:
            for loc, message in validation_errors(exc):
                problems.append(
                    ProfileProblem(
                        raw.file,
                        line_of(raw.lines, ("profiles", name, "options", *loc)),
                        name,
                        "options." + dotted(loc) if loc else "options",
                        message,
                    )
                )
    return ProfileCatalog(profiles=profiles, problems=problems, files=layers.files)


def validate_file(path: Path) -> list[ProfileProblem]:
    """Problems in one profile file on its own (as if it were the only user file)."""
    if not path.is_file():
        return [ProfileProblem(str(path), None, None, None, "file not found")]
    problems = _parse_file(path.read_text(), str(path), "file")[1]
    if problems:
        return problems
    catalog = load_catalog(extra_files=[path])
    return [p for p in catalog.problems if p.file == str(path)]


def list_profiles() -> list[Profile]:
    return sorted(load_catalog().profiles.values(), key=lambda p: p.name)


def get_profile(name: str) -> Profile:
    return load_catalog().get(name)


def check_sidebar_overrides(name: str, overrides: dict[str, Any]) -> None:
    """:meth:`Profile.check_sidebar_overrides` of the profile called ``name``."""
    get_profile(name).check_sidebar_overrides(overrides)
