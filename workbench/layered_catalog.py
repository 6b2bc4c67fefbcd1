"""Layered YAML catalogs: the reader behind cluster profiles and the dataset catalog.

A catalog is a set of YAML files, lowest precedence first (built-in < team < user <
files given explicitly, see :func:`workbench.config.layered_sources`), each holding one
mapping of named entries under a top-level key (``profiles:``, ``datasets:``). A later
file's entry replaces an earlier one of the same name. Reading never raises for bad content:
every problem is collected with the file, line, entry and key it concerns.

What is shared here: the file and problem types, the YAML line map (which line each key
path is on), the checks every catalog file gets (valid YAML, a mapping, known top-level keys,
a mapping of entries: :func:`read_entries`; each entry a mapping, literal credentials:
:class:`FileReader`), pydantic errors as one line per option
(:func:`validation_errors`) and the layering itself (:func:`load_layered`). What an entry
means stays with its catalog (:mod:`workbench.clusters.profiles`, :mod:`workbench.data.catalog`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, Literal, Protocol, TypeVar

import yaml
from pydantic import ValidationError

from .credentials import secret_name
from .redact import redact_text

Scope = Literal["built-in", "team", "user", "file"]
#: A key path in a YAML document: ``("profiles", "gpu-2", "options", "gpus")``.
YamlPath = tuple[str | int, ...]
LineMap = dict[YamlPath, int]


@dataclass(frozen=True)
class Problem:
    """One problem in a catalog file; ``entry`` is the profile or dataset it concerns."""

    #: What an entry is called in messages ("profile", "dataset").
    kind: ClassVar[str] = "entry"

    file: str
    line: int | None
    entry: str | None
    key: str | None
    message: str

    def __str__(self) -> str:
        parts = [f"{self.file}:{self.line}" if self.line else self.file]
        if self.entry is not None:
            parts.append(f"{self.kind} {self.entry!r}")
        if self.key:
            parts.append(f"key {self.key!r}")
        return ": ".join([*parts, self.message])


@dataclass
class SourceFile:
    """One file of a layered catalog, and whether it exists."""

    path: str
    scope: Scope
    exists: bool


class Named(Protocol):
    @property
    def name(self) -> str: ...


E = TypeVar("E", bound=Named)
P = TypeVar("P", bound=Problem)


@dataclass
class Layers(Generic[E, P]):
    """What :func:`load_layered` read: entries by name (the last file's wins), problems in
    file order, and the files."""

    entries: dict[str, E]
    problems: list[P]
    files: list[SourceFile]


def dotted(path: YamlPath) -> str:
    return ".".join(str(p) for p in path)


def line_map(node: yaml.Node, path: YamlPath = ()) -> LineMap:
    """The line (1-based) of every key path in a composed YAML document."""
    lines: LineMap = {path: node.start_mark.line + 1}
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = key_node.value
            lines.update(line_map(value_node, (*path, key)))
            lines[(*path, key)] = key_node.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            lines.update(line_map(item, (*path, i)))
    return lines


def line_of(lines: LineMap, path: YamlPath) -> int | None:
    """The line of ``path``, or of its nearest ancestor that has one."""
    while path:
        if path in lines:
            return lines[path]
        path = path[:-1]
    return lines.get(())


ProblemSink = Callable[[int | None, str | None, str | None, str], None]


def read_entries(
    text: str, section: str, what: str, problem: ProblemSink
) -> tuple[dict[Any, Any], LineMap]:
    """The mapping under ``section`` in one file's text, with its line map.

    Problems of the file as a whole (invalid YAML, not a mapping, unknown top-level keys, the
    section not a mapping of ``what`` names) go to ``problem(line, entry, key, message)``;
    the entries found are returned (none when the file cannot be read).
    """
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        detail = getattr(exc, "problem", None) or str(exc)
        problem(mark.line + 1 if mark is not None else None, None, None, f"invalid YAML: {detail}")
        return {}, {}
    if node is None or data is None:
        return {}, {}
    lines = line_map(node)
    if not isinstance(data, dict):
        problem(
            1, None, None, f"expected a mapping with a {section!r} key, got {type(data).__name__}"
        )
        return {}, lines
    for key in data:
        if key not in (section, "version"):
            problem(
                line_of(lines, (key,)),
                None,
                str(key),
                f"unknown top-level key (expected {section!r})",
            )
    entries = data.get(section, {})
    if entries is None:
        return {}, lines
    if not isinstance(entries, dict):
        problem(line_of(lines, (section,)), None, section, f"expected a mapping of {what} names")
        return {}, lines
    return entries, lines


class FileReader(Generic[P]):
    """One catalog file being read: its problems (``problem_type`` built from the file,
    line, entry, key and message) and, through :meth:`entries`, each entry that is a mapping.
    """

    def __init__(
        self, text: str, file: str, section: str, what: str, required: str, problem_type: type[P]
    ) -> None:
        self.file = file
        self.section = section
        self.what = what
        self.required = required
        self.problem_type = problem_type
        self.problems: list[P] = []
        self._entries, self.lines = read_entries(text, section, what, self.problem)

    def problem(self, line: int | None, entry: str | None, key: str | None, message: str) -> None:
        self.problems.append(self.problem_type(self.file, line, entry, key, message))

    def entries(self) -> Iterator[tuple[str, YamlPath, dict[Any, Any]]]:
        """``(name, key path, body)`` of each entry in file order; an entry that is not a
        mapping is a problem (reported when the iteration reaches it) and is passed over."""
        for name, body in self._entries.items():
            base: YamlPath = (self.section, name)
            if not isinstance(body, dict):
                self.problem(
                    line_of(self.lines, base),
                    str(name),
                    None,
                    f"a {self.what} must be a mapping with {self.required!r}",
                )
                continue
            yield str(name), base, body

    def literal_credential(self, entry: str, path: YamlPath, key: str, files: str) -> None:
        """The problem of a literal credential at ``path`` (the entry's key ``key``) in
        ``files`` ("profiles", "catalogs")."""
        self.problem(
            line_of(self.lines, path),
            entry,
            key,
            f"looks like a literal credential; {files} may only reference credentials "
            "(env:NAME, keyring:SERVICE/USER or file:PATH)",
        )


def load_layered(
    sources: Iterable[tuple[str, Any, str | None, bool]],
    parse: Callable[[str, str, Scope], tuple[list[E], list[P]]],
    missing: Callable[[str, str], P],
) -> Layers[E, P]:
    """Read every file of ``sources`` (``(label, scope, text or None, required)``, lowest
    precedence first) with ``parse(text, label, scope) -> (entries, problems)``.

    A required file that is missing is reported as ``missing(label, scope)``.
    """
    layers: Layers[E, P] = Layers({}, [], [])
    for label, scope, text, required in sources:
        layers.files.append(SourceFile(label, scope, text is not None))
        if text is None:
            if required:
                layers.problems.append(missing(label, scope))
            continue
        found, problems = parse(text, label, scope)
        layers.problems.extend(problems)
        for entry in found:
            layers.entries[entry.name] = entry
    return layers


# -- pydantic validation errors, one line per option -------------------------------------------

_TYPE_TAG = re.compile(r"[\[\]()]|^(int|str|float|bool|list|dict|none|function-.*)$")


def _field_loc(loc: tuple[Any, ...]) -> tuple[Any, ...]:
    """The option path of a pydantic error location, without union-member tags."""
    out: list[Any] = []
    for item in loc:
        if isinstance(item, str) and _TYPE_TAG.search(item):
            break
        out.append(item)
    return tuple(out)


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
        isinstance(p, str) and secret_name(p) for p in err.get("loc", ())
    )


def validation_errors(exc: ValidationError) -> list[tuple[tuple[Any, ...], str]]:
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
