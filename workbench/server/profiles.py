"""``/workbench/api/profiles``: the profile catalog, one profile with its form schema, and
the preview of a launch (job script and live checks, nothing started)."""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, StrictBool

from ..clusters.backend_registry import get_backend_class
from ..clusters.detached import preview_launch
from ..clusters.profiles import Profile, ProfileCatalog, check_sidebar_overrides, load_catalog
from ..errors import WorkbenchError
from ..redact import redact_text, redact_value
from .base import WorkbenchHandler


def profile_summary(profile: Profile, catalog: ProfileCatalog) -> dict[str, Any]:
    """The profile as shown: option values that look like secrets are hidden."""
    problems = [redact_text(str(p)) for p in catalog.problems_for(profile.name)]
    data = {**profile.to_dict(), "line": profile.line, "valid": not problems, "problems": problems}
    data["options"] = redact_value(data["options"])
    return data


def profiles_listing() -> dict[str, Any]:
    catalog = load_catalog()
    return {
        "profiles": [
            profile_summary(p, catalog)
            for p in sorted(catalog.profiles.values(), key=lambda p: p.name)
        ],
        "problems": [redact_text(str(p)) for p in catalog.problems],
        "files": [f.__dict__ for f in catalog.files],
    }


def profile_detail(name: str) -> dict[str, Any]:
    """The profile, its effective options and the JSON schema of its backend's options."""
    catalog = load_catalog()
    profile = catalog.get(name)  # 404/400 with the reason when unknown or invalid
    options_cls = get_backend_class(profile.backend).Options
    try:
        effective = profile.resolve().model_dump(mode="json")
    except WorkbenchError:
        effective = None
    return {
        **profile_summary(profile, catalog),
        # what the sidebar may change: the form shows the others read-only
        "sidebar_options": sorted(profile.sidebar_options()),
        "effective_options": redact_value(effective),
        "schema": options_cls.model_json_schema(mode="validation"),
    }


class ProfilesHandler(WorkbenchHandler):
    auth_resource = "workbench:profiles"

    async def get(self) -> None:
        self.reply(await self.run(profiles_listing))


class ProfileHandler(WorkbenchHandler):
    auth_resource = "workbench:profiles"

    async def get(self, name: str) -> None:
        self.reply(await self.run(profile_detail, name))


class PreviewRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    options: dict[str, Any] = Field(default_factory=dict)
    check: StrictBool = True


class ProfilePreviewHandler(WorkbenchHandler):
    """``POST profiles/<name>/preview``: what a launch with these options would do: the
    options resolved and validated, the batch script of each job (SLURM), and the verdict
    of the checks against the live system (``sbatch --test-only``). Nothing is started;
    a problem is the same error a launch would answer."""

    auth_resource = "workbench:profiles"
    #: the check runs the backend's commands (sbatch --test-only) for the user
    auth_actions: ClassVar[dict[str, str]] = {"post": "execute"}

    async def post(self, name: str) -> None:
        req = self.body(PreviewRequest)
        self.at(f"checking which options profile {name!r} lets the sidebar change")
        await self.run(check_sidebar_overrides, name, req.options)
        self.at(f"checking profile {name!r} and writing its job script")
        self.reply(await self.run(preview_launch, name, req.options, req.check))
