"""``/workbench/api/templates``: the notebook template gallery, and new notebooks from it.

Listing and creating use :mod:`workbench.templates`, the same code as
``workbench templates list`` and ``workbench new``. New notebooks are written under
the Jupyter server's root directory only: a path that is absolute, climbs out with
``..``, is hidden, or leads out through a symbolic link is refused (400); an
existing file is kept unless ``overwrite`` is true (409).
"""

from __future__ import annotations

import difflib
from pathlib import Path, PurePosixPath
from typing import Any

from jupyter_core.utils import ensure_async
from pydantic import BaseModel, ConfigDict, Field, StrictBool

from ..templates import new_notebook, notebook_from, scan_templates
from .base import ConflictError, NotFoundError, RequestError, WorkbenchHandler


class CreateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    path: str = Field(min_length=1, max_length=1024)
    parameters: dict[str, Any] = Field(default_factory=dict)
    overwrite: StrictBool = False


def templates_listing() -> dict[str, Any]:
    templates, problems = scan_templates()
    return {
        "templates": [_summary(t.to_dict()) for _, t in sorted(templates.items())],
        "problems": problems,
    }


def _summary(data: dict[str, Any]) -> dict[str, Any]:
    data["source"] = data.pop("path")  # where the template file is, not where notebooks go
    return data


def _known(name: str) -> None:
    """404 unless ``name`` is a template of the gallery.

    (``workbench new`` also takes a notebook file's path as the template; over HTTP only
    the gallery's names are templates.)
    """
    templates, _ = scan_templates()
    if name in templates:
        return
    close = difflib.get_close_matches(name, list(templates), n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    raise NotFoundError(
        f"unknown template {name!r}.{hint} Available: {', '.join(sorted(templates)) or 'none'}"
    )


def resolve_in_root(root: str | Path, path: str) -> tuple[Path, str]:
    """(absolute destination, path relative to ``root``) of a notebook path from a client.

    The path is relative to the server root, with ``/`` separators; ``.ipynb`` is added
    when missing. RequestError when it would land outside ``root``.
    """
    text = path.strip().replace("\\", "/")
    pure = PurePosixPath(text)
    if not text or pure.is_absolute() or text.startswith("~"):
        raise RequestError(
            f"path {path!r} must be relative to the Jupyter server's root directory "
            "(like 'analysis/trips.ipynb')"
        )
    parts = [p for p in pure.parts if p not in ("", ".")]
    if not parts:
        raise RequestError(f"path {path!r} names no file")
    if ".." in parts:
        raise RequestError(f"path {path!r} must not contain '..': it must stay in the server root")
    if any(p.startswith(".") for p in parts):
        raise RequestError(f"path {path!r} names a hidden file or directory")
    if not parts[-1].endswith(".ipynb"):
        parts[-1] += ".ipynb"
    base = Path(root).resolve()
    dest = base.joinpath(*parts)
    # A symbolic link inside the root may point out of it: check where it really leads.
    if not dest.parent.resolve().is_relative_to(base) or (
        dest.is_symlink() and not dest.resolve().is_relative_to(base)
    ):
        raise RequestError(f"path {path!r} leads out of the server root through a link")
    return dest, "/".join(parts)


def create_notebook(root: str | Path, name: str, req: CreateRequest) -> dict[str, Any]:
    _known(name)
    dest, relative = resolve_in_root(root, req.path)
    if dest.exists() and not req.overwrite:
        raise ConflictError(
            f"{relative} already exists; choose another path or set overwrite to replace it"
        )
    if dest.exists() and not dest.is_file():
        raise RequestError(f"{relative} exists and is not a file")
    created = new_notebook(name, dest, req.parameters, overwrite=req.overwrite)
    return {"template": name, "path": relative, "name": created.name}


class TemplatesHandler(WorkbenchHandler):
    auth_resource = "workbench:templates"

    async def get(self) -> None:
        self.reply(await self.run(templates_listing))


class TemplateHandler(WorkbenchHandler):
    auth_resource = "workbench:templates"

    async def get(self, name: str) -> None:
        await self.run(_known, name)
        templates, _ = await self.run(scan_templates)
        self.reply(_summary(templates[name].to_dict()))

    async def post(self, name: str) -> None:
        """Create the notebook through the server's ContentsManager (where the server
        writes notebooks: its checkpoints, hooks and storage, not around them)."""
        req = self.body(CreateRequest)
        cm = self.contents_manager
        root = str(self.settings.get("server_root_dir") or getattr(cm, "root_dir", "."))
        await self.run(_known, name)
        _, relative = resolve_in_root(root, req.path)  # the same path rules as before
        exists = await ensure_async(cm.exists(relative))
        if exists and not req.overwrite:
            raise ConflictError(
                f"{relative} already exists; choose another path or set overwrite to replace it"
            )
        if exists and not await ensure_async(cm.file_exists(relative)):
            raise RequestError(f"{relative} exists and is not a file")
        nb = await self.run(notebook_from, name, req.parameters)
        parts = relative.split("/")[:-1]
        for i in range(1, len(parts) + 1):  # missing folders, made the same way
            folder = "/".join(parts[:i])
            if not await ensure_async(cm.dir_exists(folder)):
                await ensure_async(cm.save({"type": "directory"}, folder))
        model = {"type": "notebook", "format": "json", "content": nb}
        saved = await ensure_async(cm.save(model, relative))
        self.reply({"template": name, "path": relative, "name": saved["name"]}, status=201)
