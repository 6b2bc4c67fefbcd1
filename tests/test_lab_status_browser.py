"""The status bar item and auto-connect in a real JupyterLab (headless Debian chromium).

A notebook connects with the sidebar's connect cell: the status bar names the cluster,
its worker and cost, shows the running tasks while a computation runs, and a click on it
reveals the cluster in the sidebar. The cluster is then marked "Use in new notebooks": a
new notebook's first cell uses `client` without a connect cell, its output says it was
auto-connected, and the status bar says "(auto)". Whatever the number of open notebooks,
the status bar asks the server at most once per STATUS_INTERVAL. Screenshots in artifacts/.
"""

from __future__ import annotations

import itertools
import re
import time
from pathlib import Path
from typing import Any

import pytest

import workbench

from ._browser import empty_notebook, launch_chromium
from ._lab_fixtures import IN_PROCESS_CLUSTER, JupyterProcess

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "artifacts"
#: The extension's STATUS_INTERVAL_MS (src/poller.ts), in seconds.
STATUS_INTERVAL_S = 3.0
PRICE = 2.5

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.usefixtures("stop_clusters_after"),
]


def _run_cell(page: Any, cell: Any, code: str) -> None:
    cell.locator(".cm-content").click()
    page.keyboard.press("Control+a")
    page.keyboard.insert_text(code)
    page.keyboard.press("Shift+Enter")


def test_status_bar_follows_the_kernel_and_auto_connect(lab_process: Any) -> None:
    from playwright.sync_api import expect, sync_playwright

    lab: JupyterProcess = lab_process("lab")
    for name in ("first.ipynb", "second.ipynb"):
        reply = lab.request(
            "PUT", f"api/contents/{name}", {"type": "notebook", "content": empty_notebook()}
        )
        assert reply.status in (200, 201), reply.data
    handle = workbench.launch(
        "local-cpu",
        wait=True,
        protocol="tcp",
        security="none",
        price_per_worker_hour=PRICE,
        **IN_PROCESS_CLUSTER,
    )
    short = handle.id[:6]
    ARTIFACTS.mkdir(exist_ok=True)
    console: list[str] = []
    asked: list[tuple[float, str]] = []
    timings: dict[str, float] = {}
    with sync_playwright() as p:
        browser = launch_chromium(p)
        page = browser.new_page(viewport={"width": 1500, "height": 950})
        page.set_default_timeout(60_000)
        page.on("console", lambda m: console.append(f"{m.type}: {m.text}"))
        page.on(
            "request",
            lambda r: (
                asked.append((time.monotonic(), r.url))
                if "/workbench/api/metrics" in r.url and "kernel=" in r.url
                else None
            ),
        )
        try:
            page.goto(f"{lab.url}lab/workspaces/wbstatus/tree/first.ipynb?reset&token={lab.token}")
            tab = page.locator(
                '.jp-SideBar.jp-mod-left .lm-TabBar-tab[data-id="workbench-sidebar"]'
            )
            tab.wait_for(timeout=120_000)
            cell = page.locator(".jp-NotebookPanel .jp-Cell").first
            cell.wait_for(timeout=120_000)
            tab.click()
            sidebar = page.locator("#workbench-sidebar")
            card = sidebar.locator(f'.jp-workbench-cluster[data-cluster-id="{handle.id}"]')
            expect(card).to_be_visible(timeout=60_000)
            # the card shows what the cluster has cost so far
            expect(card.locator(".jp-workbench-cost")).to_contain_text("cost ", timeout=30_000)
            status = page.locator("#workbench-cluster-status")
            expect(status).to_contain_text("Cluster: none", timeout=60_000)

            # the connect cell: the status bar names the cluster, its worker and cost
            card.locator("[data-workbench-action=connect]").click()
            expect(cell.locator(".cm-content")).to_contain_text(handle.scheduler_address)
            cell.locator(".cm-content").click()
            page.keyboard.press("Shift+Enter")
            expect(cell.locator(".jp-OutputArea-output").first).to_contain_text(
                "Client", timeout=120_000
            )
            started = time.perf_counter()
            expect(status).to_contain_text(f"Cluster {short}", timeout=30_000)
            timings["status bar names the cluster after connecting"] = time.perf_counter() - started
            expect(status).to_contain_text("1 worker")
            expect(status).to_contain_text(re.compile(r"cost \d+\.\d\d"))
            button = status.locator("button")
            expect(button).to_have_attribute(
                "title", re.compile(f"connected to cluster {handle.id}")
            )

            # a computation: the running tasks show in the status bar, then go
            compute = page.locator(".jp-NotebookPanel .jp-Cell").nth(1)
            _run_cell(
                page,
                compute,
                "import time\n"
                "futures = client.map(time.sleep, [0.5] * 30, pure=False)\n"
                "print('done', len(client.gather(futures)))",
            )
            expect(status).to_contain_text(re.compile(r"\d+ tasks?"), timeout=30_000)
            page.screenshot(path=str(ARTIFACTS / "lab-status-bar-computing.png"))
            during = status.inner_text()
            expect(compute.locator(".jp-OutputArea-output")).to_contain_text(
                "done 30", timeout=120_000
            )
            expect(status).not_to_contain_text("task", timeout=30_000)
            assert during != status.inner_text()

            # a click reveals the cluster in the sidebar: selected, its card focused
            page.locator('.jp-SideBar.jp-mod-left .lm-TabBar-tab[data-id="filebrowser"]').click()
            expect(sidebar).to_be_hidden()
            button.click()
            expect(sidebar).to_be_visible()
            expect(card).to_have_class(re.compile("jp-mod-selected"))
            expect(card.locator(".jp-workbench-cluster-select")).to_be_focused()
            page.screenshot(path=str(ARTIFACTS / "lab-status-bar-reveal.png"))

            # auto-connect: mark the cluster, open another notebook: its first cell
            # computes on the cluster without a connect cell
            card.locator("[data-workbench-action=autoconnect]").check()
            expect(card.locator("[data-workbench-action=autoconnect]")).to_be_checked(
                timeout=30_000
            )
            assert lab.request("GET", "workbench/api/autoconnect").data["cluster"] == handle.id
            page.goto(f"{lab.url}lab/workspaces/wbstatus/tree/second.ipynb?token={lab.token}")
            second = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden)").filter(
                has=page.locator(".jp-Cell")
            )
            expect(page.locator(".lm-TabBar-tab.lm-mod-current.jp-mod-current")).to_contain_text(
                "second.ipynb", timeout=120_000
            )
            first_cell = second.locator(".jp-Cell").first
            first_cell.wait_for(timeout=120_000)
            # the status bar says so as soon as the kernel is up, before any cell ran
            expect(status).to_contain_text(f"Cluster {short} (auto)", timeout=60_000)
            started = time.perf_counter()
            _run_cell(page, first_cell, "print('answer', client.submit(lambda: 6 * 7).result())")
            output = first_cell.locator(".jp-OutputArea-output")
            expect(output.first).to_contain_text("answer 42", timeout=120_000)
            timings["first cell of an auto-connected notebook"] = time.perf_counter() - started
            text = " ".join(output.all_inner_texts())
            assert f"workbench auto-connect: `client` is connected to cluster {handle.id}" in text
            assert "Traceback" not in text
            expect(status).to_contain_text(f"Cluster {short} (auto)", timeout=30_000)
            page.screenshot(path=str(ARTIFACTS / "lab-auto-connect.png"))

            # two notebooks open, switched between: the status bar asks at most once per
            # interval, for the active one only
            window_start = time.monotonic()
            for name in ("first.ipynb", "second.ipynb") * 4:
                page.locator(f'.lm-DockPanel-tabBar .lm-TabBar-tab:has-text("{name}")').click()
                page.wait_for_timeout(400)
            page.wait_for_timeout(int(2 * STATUS_INTERVAL_S * 1000))
            window = time.monotonic() - window_start
            in_window = [t for t, _ in asked if t >= window_start]
            assert len(in_window) <= window / STATUS_INTERVAL_S + 1, (len(in_window), window)
            gaps = [b - a for a, b in itertools.pairwise(in_window)]
            assert all(g >= STATUS_INTERVAL_S - 0.3 for g in gaps), gaps
            timings["status requests per minute with two notebooks"] = 60 * len(in_window) / window
        except Exception:
            (ARTIFACTS / "lab-status-console.log").write_text("\n".join(console))
            page.screenshot(path=str(ARTIFACTS / "lab-status-failure.png"))
            raise
        finally:
            browser.close()
            handle.close()
    for what, value in timings.items():
        print(f"{what}: {value:.1f}")
    assert not [line for line in console if "workbench" in line.lower() and "error" in line]
