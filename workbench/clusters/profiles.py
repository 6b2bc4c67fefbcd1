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

Every problem is reported with the file, line, profile and key it concerns.
Credentials are references (``env:NAME``, ``keyring:SERVICE/USER``, ``file:PATH``);
a literal secret in a profile is an error.
"""

from __future__ import annotations

import copy
import difflib
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import ValidationError

from .. import config
from ..credentials import SECRET_KEY, find_literal_secrets
from ..errors import BackendError, ProfileError, UnknownProfileError
from ..redact import redact_text
from .backend import BackendOptions
from .backend_registry import get_backend_class

Scope = Literal["built-in", "team", "user", "file"]
PROFILE_KEYS = {"backend", "description", "extends", "options"}
Path_ = tuple[str | int, ...]


@dataclass(frozen=True)
class ProfileProblem:
    file: str
    line: int | None
    profile: str | None
    key: str | None
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        parts = [where]
        if self.profile is not None:
            parts.append(f"profile {self.profile!r}")
        if self.key:
            parts.append(f"key {self.key!r}")
        return ": ".join([*parts, self.message])


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

    def resolve(self, **overrides: Any) -> BackendOptions:
        """The backend's validated options, with ``overrides`` applied on top."""
        cls = get_backend_class(self.backend)
        for path in find_literal_secrets(overrides):
            raise ProfileError(
                f"override {_dotted(path)!r} for profile {self.name!r} looks like a literal "
                "credential; pass a reference instead (env:NAME, keyring:SERVICE/USER, file:PATH)"
            )
        merged = _deep_merge(self.options, overrides)
        try:
            return cls.Options.model_validate(merged)
        except ValidationError as exc:
            problems = [
                f"{'override' if loc and loc[0] in overrides else self.source} "
                f"key {_dotted(loc)!r}: {message}"
                for loc, message in _errors(exc)
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
        }


@dataclass
class ProfileFile:
    path: str
    scope: Scope
    exists: bool


@dataclass
class ProfileCatalog:
    """Every profile that the configured files define, and every problem found in them."""

    profiles: dict[str, Profile]
    problems: list[ProfileProblem]
    files: list[ProfileFile]

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


def _dotted(path: Path_) -> str:
    return ".".join(str(p) for p in path)


_TYPE_TAG = re.compile(r"[\[\]()]|^(int|str|float|bool|list|dict|none|function-.*)$")


def _field_loc(loc: tuple[Any, ...]) -> tuple[Any, ...]:
    """The option path of a pydantic error location, without union-member tags."""
    out: list[Any] = []
    for item in loc:
        if isinstance(item, str) and _TYPE_TAG.search(item):
            break
        out.append(item)
    return tuple(out)


def _errors(exc: ValidationError) -> list[tuple[tuple[Any, ...], str]]:
    """One (path, message) per option: the alternatives of a union are merged into one line."""
    grouped: dict[tuple[Any, ...], list[str]] = {}
    for err in exc.errors():
        msgs = grouped.setdefault(_field_loc(tuple(err["loc"])), [])
        msg = _message(err)
        if msg not in msgs:
            msgs.append(msg)
    return [
        (loc, msgs[0] if len(msgs) == 1 else "; or ".join(msgs)) for loc, msgs in grouped.items()
    ]


def _message(err: Any) -> str:
    msg = str(err["msg"]).removeprefix("Value error, ")
    if err.get("type") == "extra_forbidden":
        return "unknown option"
    shown_input = "input" in err and err.get("type") != "missing" and err.get("loc")
    if shown_input and not _secret_loc(err):
        shown = redact_text(repr(err["input"]))
        return f"{redact_text(msg)} (got {shown[:80]}{'...' if len(shown) > 80 else ''})"
    return redact_text(msg)


def _secret_loc(err: Any) -> bool:
    """Whether the error concerns a secret-looking key (its input is never shown) or a
    value the literal-credential check refused."""
    return "literal credential" in str(err.get("msg", "")) or any(
        isinstance(p, str) and SECRET_KEY.search(p) for p in err.get("loc", ())
    )


def _deep_merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _line_map(node: yaml.Node, path: Path_ = ()) -> dict[Path_, int]:
    lines: dict[Path_, int] = {path: node.start_mark.line + 1}
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = key_node.value
            lines.update(_line_map(value_node, (*path, key)))
            lines[(*path, key)] = key_node.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            lines.update(_line_map(item, (*path, i)))
    return lines


def _line(lines: dict[Path_, int], path: Path_) -> int | None:
    while path:
        if path in lines:
            return lines[path]
        path = path[:-1]
    return lines.get(())


@dataclass
class _Raw:
    name: str
    data: dict[str, Any]
    file: str
    scope: Scope
    lines: dict[Path_, int]


def _parse_file(text: str, file: str, scope: Scope, problems: list[ProfileProblem]) -> list[_Raw]:
    def problem(line: int | None, profile: str | None, key: str | None, message: str) -> None:
        problems.append(ProfileProblem(file, line, profile, key, message))

    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        detail = getattr(exc, "problem", None) or str(exc)
        line = mark.line + 1 if mark is not None else None
        problem(line, None, None, f"invalid YAML: {detail}")
        return []
    if node is None or data is None:
        return []
    lines = _line_map(node)
    if not isinstance(data, dict):
        problem(
            1, None, None, f"expected a mapping with a 'profiles' key, got {type(data).__name__}"
        )
        return []
    for key in data:
        if key not in ("profiles", "version"):
            problem(
                _line(lines, (key,)), None, str(key), "unknown top-level key (expected 'profiles')"
            )
    profiles = data.get("profiles", {})
    if profiles is None:
        return []
    if not isinstance(profiles, dict):
        problem(
            _line(lines, ("profiles",)), None, "profiles", "expected a mapping of profile names"
        )
        return []
    raws: list[_Raw] = []
    for name, body in profiles.items():
        name_s = str(name)
        base: Path_ = ("profiles", name)
        if not isinstance(body, dict):
            problem(_line(lines, base), name_s, None, "a profile must be a mapping with 'backend'")
            continue
        ok = True
        for key in body:
            if key not in PROFILE_KEYS:
                close = difflib.get_close_matches(str(key), PROFILE_KEYS, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                problem(
                    _line(lines, (*base, key)),
                    name_s,
                    str(key),
                    f"unknown key{hint}; allowed: {', '.join(sorted(PROFILE_KEYS))}",
                )
                ok = False
        for key in ("backend", "description", "extends"):
            if key in body and not isinstance(body[key], str):
                problem(_line(lines, (*base, key)), name_s, key, "expected a string")
                ok = False
        options = body.get("options", {})
        if options is None:
            body = {**body, "options": {}}
        elif not isinstance(options, dict):
            problem(_line(lines, (*base, "options")), name_s, "options", "expected a mapping")
            ok = False
        else:
            for path in find_literal_secrets(options):
                problem(
                    _line(lines, (*base, "options", *path)),
                    name_s,
                    "options." + _dotted(path),
                    "looks like a literal credential; profiles may only reference credentials "
                    "(env:NAME, keyring:SERVICE/USER or file:PATH)",
                )
                ok = False
        if ok:
            raws.append(_Raw(name_s, body, file, scope, lines))
    return raws


def load_catalog(extra_files: list[Path] | None = None) -> ProfileCatalog:
    """Read, merge and validate every profile file. Never raises for bad content."""
    problems: list[ProfileProblem] = []
    files: list[ProfileFile] = []
    merged: dict[str, _Raw] = {}
    builtin = resources.files("workbench.clusters").joinpath("builtin_profiles.yaml")
    sources = [
        ("built-in", "built-in", builtin.read_text(), True),
        *config.layered_sources(
            config.team_profile_files(), config.user_profiles_file(), extra_files
        ),
    ]
    for label, scope, text, required in sources:
        files.append(ProfileFile(label, scope, text is not None))
        if text is None:
            if required:
                problems.append(
                    ProfileProblem(label, None, None, None, f"{scope} profile file not found")
                )
            continue
        for raw in _parse_file(text, label, scope, problems):
            merged[raw.name] = raw

    profiles: dict[str, Profile] = {}

    def build(name: str, stack: tuple[str, ...]) -> Profile | None:
        if name in profiles:
            return profiles[name]
        raw = merged[name]
        base_line = _line(raw.lines, ("profiles", name))
        body = raw.data
        backend = body.get("backend")
        options: dict[str, Any] = body.get("options") or {}
        parent = body.get("extends")
        if parent is not None:
            if parent in stack:
                cycle = " -> ".join([*stack, parent])
                problems.append(
                    ProfileProblem(
                        raw.file,
                        _line(raw.lines, ("profiles", name, "extends")),
                        name,
                        "extends",
                        f"circular 'extends': {cycle}",
                    )
                )
                return None
            if parent not in merged:
                problems.append(
                    ProfileProblem(
                        raw.file,
                        _line(raw.lines, ("profiles", name, "extends")),
                        name,
                        "extends",
                        f"extends unknown profile {parent!r}",
                    )
                )
                return None
            base = build(parent, (*stack, parent))
            if base is None:
                return None
            backend = backend or base.backend
            options = _deep_merge(base.options, options)
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
                    _line(raw.lines, ("profiles", name, "backend")),
                    name,
                    "backend",
                    str(exc),
                )
            )
            continue
        try:
            cls.Options.model_validate(profile.options)
        except ValidationError as exc:
            for loc, message in _errors(exc):
                problems.append(
                    ProfileProblem(
                        raw.file,
                        _line(raw.lines, ("profiles", name, "options", *loc)),
                        name,
                        "options." + _dotted(loc),
                        message,
                    )
                )
    return ProfileCatalog(profiles=profiles, problems=problems, files=files)


def validate_file(path: Path) -> list[ProfileProblem]:
    """Problems in one profile file on its own (as if it were the only user file)."""
    problems: list[ProfileProblem] = []
    if not path.is_file():
        return [ProfileProblem(str(path), None, None, None, "file not found")]
    _parse_file(path.read_text(), str(path), "file", problems)
    if problems:
        return problems
    catalog = load_catalog(extra_files=[path])
    return [p for p in catalog.problems if p.file == str(path)]


def list_profiles() -> list[Profile]:
    return sorted(load_catalog().profiles.values(), key=lambda p: p.name)


def get_profile(name: str) -> Profile:
    return load_catalog().get(name)
