"""Where workbench keeps its files, and its small settings file.

Everything can be moved with environment variables, which is how tests, CI and
shared installations keep users apart:

``WORKBENCH_CONFIG_DIR``
    user configuration (``profiles.yaml``, ``config.yaml``); default ``~/.config/workbench``.
``WORKBENCH_STATE_DIR``
    per-user state: the registry of running clusters and their logs;
    default ``~/.local/state/workbench``.
``WORKBENCH_TEAM_PROFILES``
    one or more team profile files or directories of ``*.yaml``, separated by ``os.pathsep``.
    Overrides ``team_profiles`` in ``config.yaml``.
``WORKBENCH_CATALOG``
    team dataset catalogs (files or directories of ``*.yaml``, separated by ``os.pathsep``).
    Overrides ``catalog`` in ``config.yaml``. The user's own is ``catalog.yaml``.
``WORKBENCH_DATA_CACHE``
    local cache of remote files read with ``cache=True``; default ``~/.cache/workbench/data``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import platformdirs
import yaml

from .errors import ProfileError


def config_dir() -> Path:
    env = os.environ.get("WORKBENCH_CONFIG_DIR")
    return Path(env).expanduser() if env else platformdirs.user_config_path("workbench")


def state_dir() -> Path:
    env = os.environ.get("WORKBENCH_STATE_DIR")
    return Path(env).expanduser() if env else platformdirs.user_state_path("workbench")


def user_profiles_file() -> Path:
    return config_dir() / "profiles.yaml"


def settings_file() -> Path:
    return config_dir() / "config.yaml"


def settings() -> dict[str, Any]:
    """The user's ``config.yaml`` as a dict (empty when the file does not exist)."""
    path = settings_file()
    if not path.exists():
        return {}
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ProfileError(f"{path}: invalid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ProfileError(
            f"{path}: expected a mapping at the top level, got {type(data).__name__}"
        )
    return data


def _expand(entries: list[str]) -> list[Path]:
    files: list[Path] = []
    for entry in entries:
        if not entry:
            continue
        path = Path(entry).expanduser()
        if path.is_dir():
            files.extend(sorted([*path.glob("*.yaml"), *path.glob("*.yml")]))
        else:
            files.append(path)
    return files


def team_profile_files() -> list[Path]:
    """Team profile files, from ``WORKBENCH_TEAM_PROFILES`` or ``team_profiles`` in config.yaml.

    A missing team file is returned anyway, so that loading reports it instead of
    silently ignoring a typo in a shared path.
    """
    env = os.environ.get("WORKBENCH_TEAM_PROFILES")
    if env is not None:
        return _expand(env.split(os.pathsep))
    value = settings().get("team_profiles")
    if value is None:
        return []
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ProfileError(
            f"{settings_file()}: key 'team_profiles': expected a path or a list of paths"
        )
    return _expand(value)


def _text(path: Path) -> str | None:
    return path.read_text() if path.is_file() else None


def layered_sources(
    team: list[Path], user: Path, extra: list[Path] | None = None
) -> list[tuple[str, Any, str | None, bool]]:
    """The files of a layered YAML catalog (profiles, datasets), lowest precedence first:
    ``(label, scope, text or None when missing, required)`` for the team files, the user's
    own file (optional) and explicitly given files."""
    out: list[tuple[str, Any, str | None, bool]] = [
        (str(path), "team", _text(path), True) for path in team
    ]
    out.append((str(user), "user", _text(user), False))
    out += [(str(path), "file", _text(path), True) for path in extra or []]
    return out


# -- dataset catalog and data cache (workbench.data) ----------------------------------------
def user_catalog_file() -> Path:
    """The user's own dataset catalog, ``catalog.yaml`` in the config directory."""
    return config_dir() / "catalog.yaml"


def team_catalog_files() -> list[Path]:
    """Team dataset catalogs, from ``WORKBENCH_CATALOG`` or ``catalog`` in config.yaml.

    Like team profiles: files or directories of ``*.yaml`` separated by ``os.pathsep``; a
    missing file is returned anyway so that loading reports it.
    """
    env = os.environ.get("WORKBENCH_CATALOG")
    if env is not None:
        return _expand(env.split(os.pathsep))
    value = settings().get("catalog")
    if value is None:
        return []
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ProfileError(f"{settings_file()}: key 'catalog': expected a path or a list of paths")
    return _expand(value)


def data_cache_dir() -> Path:
    """Where remote files are cached for ``load(..., cache=True)``.

    ``WORKBENCH_DATA_CACHE`` overrides the default, ``~/.cache/workbench/data``.
    """
    env = os.environ.get("WORKBENCH_DATA_CACHE")
    return Path(env).expanduser() if env else platformdirs.user_cache_path("workbench") / "data"
