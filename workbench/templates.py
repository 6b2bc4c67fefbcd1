"""Parameterized notebook templates that teams share.

A template is a notebook whose cell tagged ``parameters`` assigns defaults
(papermill's convention)::

    # Parameters
    bucket = "s3://team-data/trips"   # where the raw files are
    n_workers = 2

``new_notebook`` copies it to a new path and adds a cell tagged
``injected-parameters`` after it with the values given (as papermill does), so the
notebook documents both the defaults and what this copy was made with.

Templates come from the package's own ``templates/notebooks`` and from team
directories: ``WORKBENCH_TEMPLATES`` (paths separated by ``os.pathsep``) or
``templates_dir`` in ``~/.config/workbench/config.yaml``. A team template with the
same name overrides a built-in one.
"""

from __future__ import annotations

import ast
import contextlib
import difflib
import os
import tempfile
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import nbformat

from . import __version__, config
from .credentials import find_literal_secrets
from .errors import WorkbenchError


class TemplateError(WorkbenchError, ValueError):
    """A template is missing or malformed, or the parameters given do not fit it."""


@dataclass
class Parameter:
    name: str
    default: Any
    help: str = ""

    @property
    def type_name(self) -> str:
        return type(self.default).__name__


@dataclass
class Template:
    name: str
    path: Path
    title: str
    description: str
    scope: str  # "built-in" or "team"
    tags: list[str] = field(default_factory=list)
    parameters: dict[str, Parameter] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "path": str(self.path),
            "title": self.title,
            "description": self.description,
            "scope": self.scope,
            "tags": self.tags,
            "parameters": [
                {"name": p.name, "default": p.default, "type": p.type_name, "help": p.help}
                for p in self.parameters.values()
            ],
        }


def builtin_dir() -> Path:
    """The templates shipped with workbench (wheel) or in the source checkout (editable)."""
    packaged = Path(str(resources.files("workbench"))) / "_templates" / "notebooks"
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parent.parent / "templates" / "notebooks"


def team_dirs() -> list[Path]:
    env = os.environ.get("WORKBENCH_TEMPLATES")
    if env is not None:
        entries = [e for e in env.split(os.pathsep) if e]
    else:
        value = config.settings().get("templates_dir") or []
        entries = [value] if isinstance(value, str) else list(value)
    return [Path(e).expanduser() for e in entries]


def _parameters_cell(nb: Any) -> tuple[int, Any] | None:
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code" and "parameters" in cell.get("metadata", {}).get("tags", []):
            return i, cell
    return None


def parse_parameters(source: str, where: str = "template") -> dict[str, Parameter]:
    """Defaults of a parameters cell: ``name = <literal>  # help`` lines."""
    try:
        tree = ast.parse(source)
    except SyntaxError as exc:
        raise TemplateError(f"{where}: the parameters cell is not valid Python: {exc}") from None
    lines = source.splitlines()
    params: dict[str, Parameter] = {}
    for node in tree.body:
        if not (
            isinstance(node, ast.Assign)
            and len(node.targets) == 1
            and isinstance(node.targets[0], ast.Name)
        ):
            continue
        try:
            value = ast.literal_eval(node.value)
        except ValueError:
            raise TemplateError(
                f"{where}: parameter {node.targets[0].id!r} (line {node.lineno}) must be a "
                "literal (string, number, bool, None, list or dict)"
            ) from None
        line = lines[node.end_lineno - 1] if node.end_lineno else ""
        help_text = line.split("#", 1)[1].strip() if "#" in line[node.end_col_offset or 0 :] else ""
        params[node.targets[0].id] = Parameter(node.targets[0].id, value, help_text)
    return params


def load_template(path: Path, scope: str = "team") -> Template:
    try:
        nb = nbformat.read(path, as_version=4)
    except Exception as exc:
        raise TemplateError(f"{path}: not a readable notebook: {exc}") from None
    meta = nb.metadata.get("workbench", {}).get("template", {})
    found = _parameters_cell(nb)
    params = parse_parameters(found[1].source, str(path)) if found else {}
    return Template(
        name=path.stem,
        path=path,
        title=str(meta.get("title") or path.stem.replace("-", " ").capitalize()),
        description=str(meta.get("description", "")),
        scope=scope,
        tags=list(meta.get("tags", [])),
        parameters=params,
    )


def list_templates() -> dict[str, Template]:
    """Every template by name; team directories override built-ins of the same name."""
    out: dict[str, Template] = {}
    sources = [(builtin_dir(), "built-in"), *((d, "team") for d in team_dirs())]
    for directory, scope in sources:
        if not directory.is_dir():
            continue
        for path in sorted(directory.glob("*.ipynb")):
            out[path.stem] = load_template(path, scope)
    return out


def get_template(name: str) -> Template:
    # A malformed template file fails only when it is the one asked for.
    templates, problems = scan_templates()
    if name in templates:
        return templates[name]
    for problem in problems:
        if f"/{name}.ipynb:" in problem.replace(os.sep, "/"):
            raise TemplateError(problem)
    path = Path(name)
    if path.suffix == ".ipynb" and path.is_file():
        return load_template(path, "file")
    close = difflib.get_close_matches(name, list(templates), n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    raise TemplateError(
        f"unknown template {name!r}.{hint} Available: {', '.join(sorted(templates)) or 'none'}"
    )


def _coerce(param: Parameter, value: Any) -> Any:
    default = param.default
    if default is None or value is None or isinstance(default, list | dict):
        return value
    if isinstance(default, bool):
        if isinstance(value, bool):
            return value
    elif isinstance(default, int):
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif isinstance(default, float):
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    elif isinstance(default, str):
        return value if isinstance(value, str) else str(value)
    raise TemplateError(
        f"parameter {param.name!r} expects {param.type_name} (default {default!r}), got {value!r}"
    )


def new_notebook(
    template: str,
    path: str | Path,
    parameters: dict[str, Any] | None = None,
    overwrite: bool = False,
) -> Path:
    """Create ``path`` from ``template`` with ``parameters`` injected. Returns the path."""
    tpl = get_template(template)
    given = dict(parameters or {})
    _check_parameters(tpl, given)
    values = {k: _coerce(tpl.parameters[k], v) for k, v in given.items()}
    dest = Path(path).expanduser()
    if dest.suffix != ".ipynb":
        dest = dest.with_suffix(".ipynb")
    if dest.exists() and not overwrite:
        raise TemplateError(f"{dest} already exists; choose another path or pass overwrite")
    nb = build_notebook(tpl, values)
    dest.parent.mkdir(parents=True, exist_ok=True)
    # mkstemp in the target directory: an unpredictable name, created exclusively (a
    # planted symlink is never followed), then renamed over the destination.
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".tmp")
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)  # an ordinary file of the user's, like any notebook
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            nbformat.write(nb, out)
        os.replace(tmp, dest)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return dest


def _check_parameters(tpl: Template, given: dict[str, Any]) -> None:
    unknown = [k for k in given if k not in tpl.parameters]
    if unknown:
        known = ", ".join(tpl.parameters) or "none"
        raise TemplateError(
            f"template {tpl.name!r} has no parameter {unknown[0]!r}; its parameters: {known}"
        )
    for secret in find_literal_secrets(given):
        raise TemplateError(
            f"parameter {secret[0]!r} looks like a credential; notebooks must not contain secrets. "
            "Pass a reference instead (env:NAME, keyring:SERVICE/USER or file:PATH)"
        )


def notebook_from(template: str, parameters: dict[str, Any] | None = None) -> nbformat.NotebookNode:
    """The notebook ``template`` makes with ``parameters`` (for writers such as Jupyter's
    ContentsManager)."""
    tpl = get_template(template)
    given = dict(parameters or {})
    _check_parameters(tpl, given)
    values = {k: _coerce(tpl.parameters[k], v) for k, v in given.items()}
    return build_notebook(tpl, values)


def build_notebook(tpl: Template, values: dict[str, Any]) -> nbformat.NotebookNode:
    """The template's notebook: outputs cleared, ``values`` injected, provenance noted."""
    nb: nbformat.NotebookNode = nbformat.read(tpl.path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
    found = _parameters_cell(nb)
    if values:
        if found is None:  # pragma: no cover - a template with parameters has the cell
            raise TemplateError(f"template {tpl.name!r} has no cell tagged 'parameters'")
        source = "# Parameters\n" + "".join(f"{k} = {v!r}\n" for k, v in values.items())
        injected = nbformat.v4.new_code_cell(source, metadata={"tags": ["injected-parameters"]})
        nb.cells.insert(found[0] + 1, injected)
    nb.metadata.setdefault("workbench", {})["created_from"] = {
        "template": tpl.name,
        "parameters": values,
        "workbench": __version__,
    }
    nb.metadata["workbench"].pop("template", None)
    nbformat.validate(nb)
    return nb


def scan_templates() -> tuple[dict[str, Template], list[str]]:
    """Like :func:`list_templates`, but a malformed template file is reported, not raised.

    Returns the templates that load and one problem line per file that does not (a
    gallery lists the good ones and shows what is wrong with the others).
    """
    out: dict[str, Template] = {}
    problems: list[str] = []
    sources = [(builtin_dir(), "built-in"), *((d, "team") for d in team_dirs())]
    for directory, scope in sources:
        if not directory.is_dir():
            if scope == "team":
                problems.append(f"{directory}: team template directory not found")
            continue
        for path in sorted(directory.glob("*.ipynb")):
            try:
                out[path.stem] = load_template(path, scope)
            except TemplateError as exc:
                problems.append(str(exc))
    return out, problems
