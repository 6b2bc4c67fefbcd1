"""The JupyterLab extension as installed: labextension, server extension, jest fixtures."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

from workbench.clusters.local_options import LocalOptions

ROOT = Path(__file__).resolve().parent.parent
JUPYTER = str(Path(sys.executable).parent / "jupyter")


def _plain(out: subprocess.CompletedProcess[str]) -> str:
    return re.sub(r"\x1b\[[0-9;]*m", "", out.stdout + out.stderr)


def test_labextension_is_installed_and_enabled() -> None:
    out = subprocess.run(
        [JUPYTER, "labextension", "list"], capture_output=True, text=True, timeout=120
    )
    assert re.search(r"workbench-lab v\S+ enabled OK \(python, workbench\)", _plain(out)), _plain(
        out
    )
    out = subprocess.run(
        [JUPYTER, "server", "extension", "list"], capture_output=True, text=True, timeout=120
    )
    text = _plain(out)
    assert re.search(r"workbench\.server\s+enabled", text), text
    assert re.search(r"workbench\.server\s+OK", text), text


def test_jest_schema_fixture_is_the_backend_schema() -> None:
    """extension/test/form.spec.ts tests the form on this file: it must not drift."""
    fixture = ROOT / "extension" / "test" / "fixtures" / "local-options.schema.json"
    assert json.loads(fixture.read_text()) == LocalOptions.model_json_schema(mode="validation"), (
        f"regenerate {fixture} from LocalOptions.model_json_schema(mode='validation')"
    )
