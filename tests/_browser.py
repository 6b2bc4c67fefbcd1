"""The one headless browser of the browser tests: Debian chromium driven by Playwright.

scripts/setup/40-browser.sh installs /usr/bin/chromium; Playwright never downloads a browser.
"""

from __future__ import annotations

import os
from typing import Any

import pytest

CHROMIUM = "/usr/bin/chromium"
# Headless as root, without the machine's closed network in the way (background connections
# refused by the sandbox), and with /tmp instead of a small /dev/shm.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]


def launch_chromium(playwright: Any) -> Any:
    """A headless chromium browser from a `sync_playwright()` context."""
    if not os.path.exists(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is missing: run 'make system-deps' (scripts/setup/40-browser.sh)")
    return playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)


def empty_notebook(cell_id: str = "first") -> dict[str, Any]:
    """A notebook with one empty code cell and the python3 kernelspec (no kernel dialog),
    as the contents API takes it."""
    return {
        "cells": [
            {
                "cell_type": "code",
                "execution_count": None,
                "id": cell_id,
                "metadata": {},
                "outputs": [],
                "source": "",
            }
        ],
        "metadata": {
            "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"}
        },
        "nbformat": 4,
        "nbformat_minor": 5,
    }
