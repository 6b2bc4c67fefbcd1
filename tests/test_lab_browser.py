"""A real JupyterLab in headless Debian chromium: the Workbench sidebar end to end.

JupyterLab runs as a subprocess with token auth and private config/state dirs;
Playwright drives /usr/bin/chromium (scripts/setup/40-browser.sh installs it).
Screenshots go to artifacts/.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import pytest

import workbench
from workbench.clusters.running import ClusterRegistry

from ._lab_fixtures import SMALL_CLUSTER, JupyterProcess

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "artifacts"
CHROMIUM = "/usr/bin/chromium"
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

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.usefixtures("stop_clusters_after"),
    pytest.mark.skipif(shutil.which(CHROMIUM) is None, reason="run scripts/setup/40-browser.sh"),
]

NOTEBOOK = {
    "cells": [
        {
            "cell_type": "code",
            "execution_count": None,
            "id": "connect",
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


def test_sidebar_launch_scale_connect_dashboard_stop(lab_process: Any) -> None:
    from playwright.sync_api import expect, sync_playwright

    lab: JupyterProcess = lab_process("lab")
    reply = lab.request(
        "PUT", "api/contents/connect.ipynb", {"type": "notebook", "content": NOTEBOOK}
    )
    assert reply.status in (200, 201), reply.data
    ARTIFACTS.mkdir(exist_ok=True)
    console: list[str] = []

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1440, "height": 900})
            page.set_default_timeout(60_000)
            page.on("console", lambda m: console.append(f"{m.type}: {m.text}"))
            page.goto(f"{lab.url}lab/workspaces/wbtest/tree/connect.ipynb?reset&token={lab.token}")
            tab = page.locator(
                '.jp-SideBar.jp-mod-left .lm-TabBar-tab[data-id="workbench-sidebar"]'
            )
            tab.wait_for(timeout=120_000)
            # the notebook is open (and is the notebook the connect cell goes to)
            page.locator(".jp-NotebookPanel .jp-Cell").first.wait_for(timeout=120_000)
            tab.click()

            sidebar = page.locator("#workbench-sidebar")
            select = sidebar.locator("#workbench-profile-select")
            expect(select).to_be_visible()
            expect(select.locator("option[value=local-cpu]")).to_have_count(1)
            select.select_option("local-cpu")
            n_workers = sidebar.locator("input[name=n_workers]")
            expect(n_workers).to_have_value("")  # local-cpu leaves it to the default
            # the form comes from the options schema: bad input is caught before sending
            n_workers.fill("-2")
            expect(sidebar.locator(".jp-workbench-form .jp-workbench-error")).to_contain_text(
                "N Workers: must be at least 0"
            )
            expect(sidebar.locator("[data-workbench-action=launch]")).to_be_disabled()
            n_workers.fill("1")
            sidebar.locator("[data-workbench-action=launch]").click()

            card = sidebar.locator(".jp-workbench-cluster")
            expect(card).to_have_count(1, timeout=150_000)
            expect(card.locator(".jp-workbench-workers")).to_have_text("1 worker", timeout=60_000)
            (record,) = ClusterRegistry().list()
            assert record.profile == "local-cpu" and record.detached
            expect(card).to_have_attribute("data-cluster-id", record.id)
            expect(card.locator(".jp-workbench-cluster-state")).to_have_text("running")
            expect(card.locator(".jp-workbench-gpus")).to_have_text("CPU")

            card.locator("input[name=workers]").fill("2")
            card.locator("[data-workbench-action=scale]").click()
            expect(card.locator(".jp-workbench-workers")).to_have_text("2 workers", timeout=90_000)

            card.locator("[data-workbench-action=connect]").click()
            cell = page.locator(".jp-NotebookPanel .jp-Cell").first
            expect(cell.locator(".cm-content")).to_contain_text(
                f"Client('{record.scheduler_address}')", timeout=30_000
            )
            cell.locator(".cm-content").click()
            page.keyboard.press("Shift+Enter")
            output = cell.locator(".jp-OutputArea-output")
            expect(output.first).to_contain_text("Client", timeout=120_000)
            assert "Traceback" not in output.all_inner_texts()[0]
            page.screenshot(path=str(ARTIFACTS / "lab-workbench-connect.png"))

            card.locator("[data-workbench-action=dashboard]").click()
            dash = page.locator(f"#workbench-dashboard-{record.id}")
            expect(dash).to_be_visible(timeout=60_000)
            src = dash.locator("iframe").get_attribute("src") or ""
            assert re.fullmatch(r"/proxy/\d+/status", src), src
            frame = dash.locator("iframe").element_handle().content_frame()
            assert frame is not None
            frame.locator("canvas").first.wait_for(timeout=60_000)
            assert "Dask" in frame.title()
            page.wait_for_timeout(1500)  # let bokeh draw before the picture
            page.screenshot(path=str(ARTIFACTS / "lab-workbench.png"))

            # The same in the dark theme (the sidebar uses only JupyterLab's CSS variables).
            page.locator('.lm-MenuBar-item:has-text("Settings")').click()
            page.locator('.lm-Menu-item:has-text("Theme")').first.hover()
            page.get_by_role("menuitem", name="JupyterLab Dark", exact=True).click()
            expect(page.locator("body")).to_have_attribute(
                "data-jp-theme-name", "JupyterLab Dark", timeout=30_000
            )
            page.wait_for_timeout(1000)
            page.screenshot(path=str(ARTIFACTS / "lab-workbench-dark.png"))

            card.locator("[data-workbench-action=stop]").click()
            page.locator(".jp-Dialog button.jp-mod-warn").click()
            expect(sidebar.locator(".jp-workbench-cluster")).to_have_count(0, timeout=60_000)
            expect(sidebar.locator(".jp-workbench-empty")).to_be_visible()
            expect(dash).to_have_count(0)  # the stopped cluster's dashboard tab closed
            assert ClusterRegistry().list() == []
            page.screenshot(path=str(ARTIFACTS / "lab-workbench-stopped.png"))

            # A cluster started elsewhere (here, as in a notebook kernel) shows up by polling.
            handle = workbench.launch(
                "local-cpu", wait=True, processes=False, protocol="tcp", **SMALL_CLUSTER
            )
            try:
                other = sidebar.locator(f'.jp-workbench-cluster[data-cluster-id="{handle.id}"]')
                expect(other).to_be_visible(timeout=30_000)
                expect(other.locator(".jp-workbench-workers")).to_have_text("1 worker")
            finally:
                handle.close()
            expect(sidebar.locator(".jp-workbench-cluster")).to_have_count(0, timeout=30_000)
        except Exception:
            (ARTIFACTS / "lab-browser-console.log").write_text("\n".join(console))
            page.screenshot(path=str(ARTIFACTS / "lab-workbench-failure.png"))
            raise
        finally:
            browser.close()
    assert not [line for line in console if "workbench" in line.lower() and "error" in line]
