"""``/workbench/api/datasets``: the data catalog, and the code that loads a dataset.

The catalog comes from :func:`workbench.data.catalog.load_catalog`, which never raises
for bad content: a malformed team catalog is listed under ``problems`` (with file,
line, dataset and key), and the datasets of the other files are still served.

Storage options are shown as the catalog writes them: secrets there are references
(``env:NAME``, ``keyring:SERVICE/USER``, ``file:PATH``) and are never resolved here.
A catalog entry with a literal secret is already refused by the catalog; any value
under a secret-looking key that is not a reference is hidden all the same.
"""

from __future__ import annotations

from typing import Any

from ..credentials import find_literal_secrets
from ..redact import redact_text, redact_uri, redact_value
from .base import WorkbenchHandler

HIDDEN = "<hidden: not a credential reference>"


def _redact(data: Any) -> Any:
    """``data`` with every literal value under a secret-looking key replaced."""
    if not isinstance(data, dict):
        return data
    out: Any = _copy(data)
    for path in find_literal_secrets(data):
        target = out
        for part in path[:-1]:
            target = target[part]
        target[path[-1]] = HIDDEN
    return out


def _copy(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value


def load_code(name: str, description: str = "", uri: str = "", fmt: str = "") -> str:
    """The notebook cell that loads catalog dataset ``name`` as a dask DataFrame."""
    about = ", ".join(x for x in (fmt if fmt != "auto" else "", uri) if x)
    uri = redact_uri(uri)  # a SAS signature or presigned URL is never written to a notebook
    lines = ["import workbench.data", ""]
    comment = f"# dataset {name!r} from the workbench catalog"
    if about:
        comment += f" ({about})"
    lines.append(comment.replace("\n", " "))
    if description:
        lines.append(f"# {description.strip().splitlines()[0]}")
    lines += [f"df = workbench.data.load({name!r})", "df"]
    return "\n".join(lines)


def dataset_summary(dataset: Any) -> dict[str, Any]:
    data = dataset.to_dict()
    data["storage_options"] = redact_value(_redact(data.get("storage_options") or {}))
    data["read_options"] = redact_value(_redact(data.get("read_options") or {}))
    uri = redact_uri(str(dataset.uri))
    if "uri" in data:
        data["uri"] = uri
    data["code"] = load_code(dataset.name, dataset.description, uri, data["format"])
    return dict(redact_value(data))


def datasets_listing() -> dict[str, Any]:
    from ..data.catalog import load_catalog

    catalog = load_catalog()
    return {
        "datasets": [
            dataset_summary(d) for d in sorted(catalog.datasets.values(), key=lambda d: d.name)
        ],
        "problems": [redact_text(str(p)) for p in catalog.problems],
        "files": [f.__dict__ for f in catalog.files],
    }


def dataset_detail(name: str) -> dict[str, Any]:
    from ..data.catalog import load_catalog

    # 404 (UnknownDatasetError) with "did you mean", or 400 with the entry's problems.
    return dataset_summary(load_catalog().get(name))


class DatasetsHandler(WorkbenchHandler):
    auth_resource = "workbench:datasets"

    async def get(self) -> None:
        self.reply(await self.run(datasets_listing))


class DatasetHandler(WorkbenchHandler):
    auth_resource = "workbench:datasets"

    async def get(self, name: str) -> None:
        self.reply(await self.run(dataset_detail, name))
