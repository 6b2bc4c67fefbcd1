"""Dockable dashboard panes in a real JupyterLab (headless Debian chromium, Playwright).

Three panes of a running cluster (a workbench dashboard page and two Dask plots) are
opened from the sidebar, one is dragged beside the notebook by its tab, the page is
reloaded and JupyterLab's layout restorer brings all three back, the dragged one still
beside the notebook. Then the sidebar at 280 px in the dark theme (a screenshot, nothing
cut off), every control's accessible name, and a keyboard-only walk through it that
opens a pane with Enter. Screenshots go to artifacts/.
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
SIDEBAR_WIDTH = 280


def pane_src(route: str) -> re.Pattern[str]:
    """A pane's iframe source: workbench's own route, never /proxy/<port>/."""
    return re.compile(rf"^/workbench/api/clusters/\w+/view/(dask|dashboards)/{route}$")


pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.usefixtures("stop_clusters_after"),
]

NOTEBOOK = empty_notebook("first")

# The accessible name of a control as a screen reader announces it (aria-label,
# aria-labelledby, a button's text, a <label>, its title); empty: nameless.
NAME = """(el) => {
  const text = e => (e ? e.textContent.replace(/\\s+/g, ' ').trim() : '');
  if (el.getAttribute('aria-label')) return el.getAttribute('aria-label').trim();
  const by = el.getAttribute('aria-labelledby');
  if (by) return by.split(' ').map(id => text(document.getElementById(id))).join(' ');
  const tag = el.tagName.toLowerCase();
  if (['button', 'summary', 'a'].includes(tag) && text(el)) return text(el);
  if (el.id) {
    const label = document.querySelector(`label[for="${CSS.escape(el.id)}"]`);
    if (label) return text(label);
  }
  const wrapping = el.closest('label');
  if (wrapping) return text(wrapping);
  return (el.title || '').trim();
}"""

CONTROL_NAMES = f"""(root) => {{
  const name = {NAME};
  const out = [];
  for (const el of root.querySelectorAll('button, input, select, textarea, summary, a[href]')) {{
    if (!el.offsetParent) continue;  // not shown (a collapsed part)
    out.push({{tag: el.tagName.toLowerCase(), name: name(el), html: el.outerHTML.slice(0, 120)}});
  }}
  return out;
}}"""

# Where keyboard focus is: the element's tag, accessible name and place.
FOCUSED = f"""() => {{
  const name = {NAME};
  const el = document.activeElement;
  if (!el) return null;
  return {{tag: el.tagName.toLowerCase(), inside: !!el.closest('#workbench-sidebar'),
          key: name(el), route: el.dataset.paneRoute || null}};
}}"""


def _box(locator: Any) -> dict[str, float]:
    box = locator.bounding_box()
    assert box is not None, f"{locator} is not shown"
    return dict(box)


def _drag(page: Any, *points: tuple[float, float]) -> None:
    """A real mouse drag through ``points``, in small steps as a hand would (Lumino starts
    a drag after a few pixels and shows the drop zone while moving)."""
    page.mouse.move(*points[0])
    page.mouse.down()
    steps = 15
    for (x0, y0), (x1, y1) in itertools.pairwise(points):
        for i in range(1, steps + 1):
            page.mouse.move(x0 + (x1 - x0) * i / steps, y0 + (y1 - y0) * i / steps)
            page.wait_for_timeout(15)
    page.wait_for_timeout(300)
    page.mouse.up()


def _side_by_side(left: dict[str, float], right: dict[str, float]) -> bool:
    """``right`` is to the right of ``left`` and both share the same rows."""
    overlap = min(left["y"] + left["height"], right["y"] + right["height"]) - max(
        left["y"], right["y"]
    )
    return right["x"] >= left["x"] + left["width"] - 2 and overlap > 0.5 * left["height"]


def test_panes_dock_and_come_back_after_reload(lab_process: Any, tmp_path: Path) -> None:
    from playwright.sync_api import expect, sync_playwright

    lab: JupyterProcess = lab_process("lab")
    reply = lab.request("PUT", "api/contents/work.ipynb", {"type": "notebook", "content": NOTEBOOK})
    assert reply.status in (200, 201), reply.data
    handle = workbench.launch(
        "local-cpu", wait=True, protocol="tcp", security="none", **IN_PROCESS_CLUSTER
    )
    ARTIFACTS.mkdir(exist_ok=True)
    console: list[str] = []
    timings: dict[str, float] = {}
    with sync_playwright() as p:
        browser = launch_chromium(p)
        page = browser.new_page(viewport={"width": 1600, "height": 1000})
        page.set_default_timeout(60_000)
        page.on("console", lambda m: console.append(f"{m.type}: {m.text}"))
        try:
            url = f"{lab.url}lab/workspaces/wbpanes/tree/work.ipynb?reset&token={lab.token}"
            page.goto(url)
            tab = page.locator(
                '.jp-SideBar.jp-mod-left .lm-TabBar-tab[data-id="workbench-sidebar"]'
            )
            tab.wait_for(timeout=120_000)
            notebook = page.locator(".jp-NotebookPanel")
            notebook.locator(".jp-Cell").first.wait_for(timeout=120_000)
            tab.click()
            sidebar = page.locator("#workbench-sidebar")
            card = sidebar.locator(f'.jp-workbench-cluster[data-cluster-id="{handle.id}"]')
            expect(card).to_be_visible(timeout=60_000)
            # the only cluster is selected: its panes are listed
            expect(card).to_have_class(re.compile("jp-mod-selected"))
            panes = sidebar.locator("#workbench-section-panes")
            expect(panes.locator(".jp-workbench-panes")).to_have_attribute(
                "data-cluster-id", handle.id
            )
            wb = panes.locator('[data-pane-group="workbench"] button')
            expect(wb).to_have_text(["GPU", "Storage", "Network", "Cluster", "Energy"])
            dask = panes.locator('[data-pane-group="dask"] button')
            expect(dask.first).to_have_text("Task Stream")
            expect(dask).to_contain_text(["Task Stream", "Progress", "Workers Memory"])
            expect(panes.locator(".jp-workbench-more-plots summary")).to_contain_text(
                "More Dask plots"
            )

            opened = {
                "cluster": (
                    "workbench",
                    "cluster",
                    panes.locator('[data-pane-route="cluster"]'),
                ),
                "stream": (
                    "dask",
                    "individual-task-stream",
                    panes.locator('[data-pane-route="individual-task-stream"]'),
                ),
                "progress": (
                    "dask",
                    "individual-progress",
                    panes.locator('[data-pane-route="individual-progress"]'),
                ),
            }
            ids = {}
            for key, (kind, route, button) in opened.items():
                started = time.perf_counter()
                button.click()
                ids[key] = f"workbench-pane-{handle.id}-{kind}-{route}"
                pane = page.locator(f"#{ids[key]}")
                expect(pane).to_be_visible(timeout=120_000)
                expect(pane.locator("iframe")).to_have_attribute(
                    "src",
                    pane_src(route),
                    timeout=120_000,
                )
                timings[f"open {key} pane"] = time.perf_counter() - started
            # each shows its page: Bokeh draws in every iframe
            for key in opened:
                frame = page.locator(f"#{ids[key]} iframe").element_handle().content_frame()
                assert frame is not None
                frame.locator(".bk-Canvas, canvas, .bk-root, [data-root-id]").first.wait_for(
                    state="attached", timeout=90_000
                )
            cluster_frame = page.locator(f"#{ids['cluster']} iframe")
            cluster_frame.element_handle().content_frame().wait_for_function(
                "document.title.includes('workbench live metrics: Cluster')", timeout=60_000
            )

            # drag the Task Stream pane's tab to the right edge of the main area: it is
            # docked there, beside the notebook (Lumino's root-right drop zone). The tab
            # leaves its bar upwards first, over the menu bar: below the bar the pane's
            # iframe would take the pointer events before Lumino's drag starts (as it
            # would a user's).
            tab_box = _box(
                page.locator('.lm-DockPanel-tabBar .lm-TabBar-tab:has-text("Task Stream")')
            )
            dock_box = _box(page.locator("#jp-main-dock-panel"))
            x, y = tab_box["x"] + tab_box["width"] / 2, tab_box["y"] + tab_box["height"] / 2
            right = (dock_box["x"] + dock_box["width"] - 12, dock_box["y"] + dock_box["height"] / 2)
            _drag(page, (x, y), (x, 2), right)
            page.locator('.lm-DockPanel-tabBar .lm-TabBar-tab:has-text("work.ipynb")').click()
            stream = page.locator(f"#{ids['stream']}")
            expect(stream).to_be_visible()
            expect(notebook).to_be_visible()
            assert _side_by_side(_box(notebook), _box(stream)), (
                _box(notebook),
                _box(stream),
            )
            page.wait_for_timeout(1500)
            page.screenshot(path=str(ARTIFACTS / "lab-panes-docked.png"))

            # reload: the layout restorer reopens the three panes, the docked one in place
            started = time.perf_counter()
            page.goto(f"{lab.url}lab/workspaces/wbpanes?token={lab.token}")
            for key, (_, route, _) in opened.items():
                pane = page.locator(f"#{ids[key]}")
                expect(pane).to_have_count(1, timeout=120_000)
                expect(pane.locator("iframe")).to_have_attribute(
                    "src",
                    pane_src(route),
                    timeout=120_000,
                )
            timings["reload until the panes are back"] = time.perf_counter() - started
            expect(notebook).to_be_visible()
            expect(stream).to_be_visible()
            assert _side_by_side(_box(notebook), _box(stream)), "the docked pane moved"
            frame = stream.locator("iframe").element_handle().content_frame()
            assert frame is not None
            frame.locator(".bk-Canvas, canvas, [data-root-id]").first.wait_for(
                state="attached", timeout=90_000
            )
            page.wait_for_timeout(1500)
            page.screenshot(path=str(ARTIFACTS / "lab-panes-restored.png"))

            _sidebar_at_280_dark(page, sidebar, expect)
            _keyboard_walk(page, sidebar, handle.id, expect)
        except Exception:
            (ARTIFACTS / "lab-panes-console.log").write_text("\n".join(console))
            page.screenshot(path=str(ARTIFACTS / "lab-panes-failure.png"))
            raise
        finally:
            browser.close()
            handle.close()
    for what, seconds in timings.items():
        print(f"{what}: {seconds:.1f} s")
    assert not [line for line in console if "workbench" in line.lower() and "error" in line]


def _sidebar_at_280_dark(page: Any, sidebar: Any, expect: Any) -> None:
    """The sidebar dragged to 280 px wide, in the dark theme: nothing cut off."""
    page.locator('.lm-MenuBar-item:has-text("Settings")').click()
    page.locator('.lm-Menu-item:has-text("Theme")').first.hover()
    page.get_by_role("menuitem", name="JupyterLab Dark", exact=True).click()
    expect(page.locator("body")).to_have_attribute(
        "data-jp-theme-name", "JupyterLab Dark", timeout=30_000
    )
    handle = page.locator("#jp-main-split-panel > .lm-SplitPanel-handle").first
    # A drag made while the new theme still lays the page out can be lost: drag again
    # (from where the handle is now) until the sidebar has the width, a few times at most.
    for _ in range(5):
        box = _box(sidebar)
        hb = _box(handle)
        y = hb["y"] + hb["height"] / 2
        target = box["x"] + SIDEBAR_WIDTH + hb["width"] / 2
        _drag(page, (hb["x"] + hb["width"] / 2, y), (target, y))
        page.wait_for_timeout(500)
        box = _box(sidebar)
        if abs(box["width"] - SIDEBAR_WIDTH) <= 3:
            break
    assert abs(box["width"] - SIDEBAR_WIDTH) <= 3, box
    # every control fits: none reaches past the sidebar's right edge
    right = box["x"] + box["width"]
    for el in sidebar.locator("button:visible, input:visible, select:visible").all():
        b = el.bounding_box()
        if b is not None and b["width"] > 0:
            assert b["x"] + b["width"] <= right + 1, (el.evaluate("e => e.outerHTML"), b, box)
    overflow = sidebar.evaluate(
        "root => [...root.querySelectorAll('.jp-workbench-section-body')]"
        ".filter(e => e.scrollWidth > e.clientWidth + 1).map(e => e.className)"
    )
    assert overflow == [], f"sections scroll sideways at {SIDEBAR_WIDTH} px: {overflow}"
    # cards and panes are in the theme's colours: dark backgrounds, light text
    colours = sidebar.evaluate(
        """root => {
          const card = root.querySelector('.jp-workbench-cluster');
          const s = getComputedStyle(card);
          return [s.backgroundColor, s.color];
        }"""
    )
    background, text = ([int(v) for v in re.findall(r"\d+", c)[:3]] for c in colours)
    assert sum(background) < sum(text), colours
    page.wait_for_timeout(500)
    page.screenshot(path=str(ARTIFACTS / "lab-sidebar-280-dark.png"), clip=box)
    page.screenshot(path=str(ARTIFACTS / "lab-panes-dark.png"))


def _keyboard_walk(page: Any, sidebar: Any, cluster_id: str, expect: Any) -> None:
    """Every control of the sidebar has a name and is reached with Tab; Enter opens a pane."""
    names = sidebar.evaluate(CONTROL_NAMES)
    nameless = [c["html"] for c in names if not c["name"]]
    assert nameless == [], f"controls without an accessible name: {nameless}"
    controls = len(names)
    # start where a keyboard user lands first: the sidebar's first control
    sidebar.locator("button, input, select, summary").first.focus()
    seen: list[dict[str, Any]] = []
    energy = None
    for _ in range(controls + 20):
        focused = page.evaluate(FOCUSED)
        if not focused or not focused["inside"]:
            break
        seen.append(focused)
        if focused["route"] == "energy":
            energy = len(seen)
            break
        page.keyboard.press("Tab")
    assert energy is not None, f"Tab never reached the Energy pane button: {seen}"
    reached = {s["key"] for s in seen}
    for name in (
        f"Show the panes of local-cpu cluster {cluster_id}",
        "Dask dashboard",
        "Connect cell",
        f"Stop local-cpu cluster {cluster_id}",
    ):
        assert name in reached, f"{name!r} not reached by Tab: {sorted(reached)}"
    assert "Use in new notebooks" in reached, sorted(reached)
    page.keyboard.press("Enter")
    pane = page.locator(f"#workbench-pane-{cluster_id}-workbench-energy")
    expect(pane).to_be_visible(timeout=120_000)
    expect(pane.locator("iframe")).to_have_attribute("src", pane_src("energy"), timeout=120_000)
    page.wait_for_timeout(1000)
    page.screenshot(path=str(ARTIFACTS / "lab-keyboard-energy-pane.png"))
