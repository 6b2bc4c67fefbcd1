"""A real JupyterLab in headless Debian chromium: the Workbench sidebar end to end.

JupyterLab runs as a subprocess with token auth and private config/state dirs;
Playwright drives /usr/bin/chromium (scripts/setup/40-browser.sh installs it).
Screenshots go to artifacts/.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import nbformat
import pytest

import workbench
from workbench.clusters import ClusterControl

from ._browser import empty_notebook, launch_chromium
from ._contract import wait_until
from ._lab_fixtures import IN_PROCESS_CLUSTER, JupyterProcess
from .test_templates import make_template

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "artifacts"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.usefixtures("stop_clusters_after"),
]

NOTEBOOK = empty_notebook("connect")

# The newest time of each plot's data in the page's BokehJS (filled over the websocket).
PLOT_TIMES = """() => {
  const out = [];
  if (typeof Bokeh === "undefined") return out;
  for (const doc of Bokeh.documents) for (const m of doc._all_models.values())
    if (m.type == "ColumnDataSource" && m.data.time && m.data.time.length)
      out.push(Math.max(...m.data.time));
  return out;
}"""


def _gallery_and_catalog(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A team template and a user catalog (the Jupyter server inherits the environment)."""
    team = tmp_path / "team-templates"
    path = make_template(team, "etl", "n_workers = 2  # workers\nname = 'a'\n", title="Team ETL")
    nb = nbformat.read(path, as_version=4)
    nb.metadata["kernelspec"] = NOTEBOOK["metadata"]["kernelspec"]  # no kernel dialog
    nbformat.write(nb, path)
    monkeypatch.setenv("WORKBENCH_TEMPLATES", str(team))
    data = tmp_path / "catalog-data"
    data.mkdir()
    (data / "trips.csv").write_text("fare\n1.0\n")
    config = Path(__import__("os").environ["WORKBENCH_CONFIG_DIR"])
    (config / "catalog.yaml").write_text(
        "datasets:\n"
        f"  trips:\n    uri: {data}/trips.csv\n    format: csv\n"
        "    description: Taxi trips, a small CSV\n"
        "    storage_options: {token: env:TRIPS_TOKEN}\n"
    )
    monkeypatch.setenv("TRIPS_TOKEN", "not-to-be-shown-4711")


def test_sidebar_launch_scale_connect_dashboard_stop(
    lab_process: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from playwright.sync_api import expect, sync_playwright

    _gallery_and_catalog(monkeypatch, tmp_path)
    lab: JupyterProcess = lab_process("lab")
    reply = lab.request(
        "PUT", "api/contents/connect.ipynb", {"type": "notebook", "content": NOTEBOOK}
    )
    assert reply.status in (200, 201), reply.data
    ARTIFACTS.mkdir(exist_ok=True)
    console: list[str] = []

    with sync_playwright() as p:
        browser = launch_chromium(p)
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
            (record,) = ClusterControl().list()
            assert record.profile == "local-cpu" and record.detached
            expect(card).to_have_attribute("data-cluster-id", record.id)
            expect(card.locator(".jp-workbench-cluster-state")).to_have_text("running")
            expect(card.locator(".jp-workbench-gpus")).to_have_text("CPU")

            card.locator("input[name=workers]").fill("2")
            card.locator("[data-workbench-action=scale]").click()
            expect(card.locator(".jp-workbench-workers")).to_have_text("2 workers", timeout=90_000)

            card.locator("[data-workbench-action=connect]").click()
            cell = page.locator(".jp-NotebookPanel .jp-Cell").first
            # TLS by default: the cell connects with the cluster's credentials, by path
            expect(cell.locator(".cm-content")).to_contain_text(
                f"Client('{record.scheduler_address}', security=security)", timeout=30_000
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
            # through workbench's own route (mutual TLS to the scheduler), not /proxy/<port>/;
            # the pane gets its URL once the panes route answered
            expect(dash.locator("iframe")).to_have_attribute(
                "src", f"/workbench/api/clusters/{record.id}/view/dask/status", timeout=60_000
            )
            frame = dash.locator("iframe").element_handle().content_frame()
            assert frame is not None
            frame.locator("canvas").first.wait_for(timeout=60_000)
            assert "Dask" in frame.title()
            page.wait_for_timeout(1500)  # let bokeh draw before the picture
            page.screenshot(path=str(ARTIFACTS / "lab-workbench.png"))

            # workbench's own Panel dashboards, served by a process of their own, through
            # the proxy; their data arrives over Bokeh's websocket, and keeps arriving.
            card.locator("[data-workbench-action=dashboards]").click()
            panel_tab = page.locator(f"#workbench-dashboards-{record.id}")
            expect(panel_tab).to_be_visible(timeout=120_000)
            # the pane shows at once and gets its page once the dashboard process serves
            expect(panel_tab.locator("iframe")).to_have_attribute(
                "src", f"/workbench/api/clusters/{record.id}/view/dashboards/", timeout=120_000
            )
            panel_frame = panel_tab.locator("iframe").element_handle().content_frame()
            assert panel_frame is not None
            panel_frame.wait_for_function(f"({PLOT_TIMES})().length >= 3", timeout=90_000)
            first = max(panel_frame.evaluate(PLOT_TIMES))
            panel_frame.wait_for_function(
                f"Math.max(...({PLOT_TIMES})()) > {first}", timeout=30_000
            )
            assert "workbench live metrics" in panel_frame.title()
            page.wait_for_timeout(1000)
            page.screenshot(path=str(ARTIFACTS / "lab-workbench-dashboards.png"))

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
            expect(sidebar.get_by_text("No clusters.")).to_be_visible()
            expect(dash).to_have_count(0)  # the stopped cluster's dashboard tab closed
            expect(panel_tab).to_have_count(0)
            assert ClusterControl().list() == []
            page.screenshot(path=str(ARTIFACTS / "lab-workbench-stopped.png"))

            # A cluster started elsewhere (here, as in a notebook kernel) shows up by polling.
            handle = workbench.launch(
                "local-cpu",
                wait=True,
                protocol="tcp",
                security="none",
                **IN_PROCESS_CLUSTER,
            )
            try:
                other = sidebar.locator(f'.jp-workbench-cluster[data-cluster-id="{handle.id}"]')
                expect(other).to_be_visible(timeout=30_000)
                expect(other.locator(".jp-workbench-workers")).to_have_text("1 worker")
            finally:
                handle.close()
            expect(sidebar.locator(".jp-workbench-cluster")).to_have_count(0, timeout=30_000)

            # Templates: pick one, change a parameter, create; the notebook opens.
            gallery = sidebar.locator("#workbench-section-templates")
            etl = gallery.locator('.jp-workbench-template[data-template="etl"]')
            etl.locator(".jp-workbench-template-pick").click()
            etl.locator("input[name=template-path]").fill("made/etl-run")
            etl.locator("input[name=param-n_workers]").fill("two")
            expect(etl.locator(".jp-workbench-error")).to_contain_text(
                "n_workers: expected a whole number"
            )
            expect(etl.locator("[data-workbench-action=create-notebook]")).to_be_disabled()
            etl.locator("input[name=param-n_workers]").fill("5")
            etl.locator("[data-workbench-action=create-notebook]").click()
            made = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden)")
            expect(made.locator(".jp-Cell").filter(has_text="n_workers = 5")).to_have_count(
                1, timeout=60_000
            )
            expect(page.locator(".lm-TabBar-tab.lm-mod-current.jp-mod-current")).to_contain_text(
                "etl-run.ipynb"
            )
            assert (lab.root / "made" / "etl-run.ipynb").is_file()
            # the same path again: the server refuses to overwrite it
            etl.locator("[data-workbench-action=create-notebook]").click()
            expect(etl.locator(".jp-workbench-error")).to_contain_text("already exists")

            # Datasets: the catalog, references only; insert a load cell into the notebook.
            datasets = sidebar.locator("#workbench-section-datasets")
            trips = datasets.locator('.jp-workbench-dataset[data-dataset="trips"]')
            expect(trips).to_contain_text("Taxi trips, a small CSV")
            expect(trips).to_contain_text("token=env:TRIPS_TOKEN")
            assert "not-to-be-shown-4711" not in page.content()
            made.locator(".jp-Cell").last.click()
            trips.locator("[data-workbench-action=insert-load]").click()
            expect(made.locator(".jp-Cell").last.locator(".cm-content")).to_contain_text(
                "df = workbench.data.load('trips')", timeout=30_000
            )
            page.screenshot(path=str(ARTIFACTS / "lab-workbench-templates-datasets.png"))
        except Exception:
            (ARTIFACTS / "lab-browser-console.log").write_text("\n".join(console))
            page.screenshot(path=str(ARTIFACTS / "lab-workbench-failure.png"))
            raise
        finally:
            browser.close()
    assert not [line for line in console if "workbench" in line.lower() and "error" in line]


def test_sidebar_controls_gateway_and_kubernetes_clusters(
    lab_process: Any,
    gateway_server: Any,
    gateway_password: str,
    kube_standin: Any,
    user_profiles: Any,
    tmp_path: Path,
) -> None:
    """Scale, Adapt, Connect and Stop from the sidebar reach clusters whose scheduler is not
    in their owner's process: a real dask-gateway cluster, and a DaskCluster of the
    Kubernetes STAND-IN (tests/_kube_standin.py; no Kubernetes runs here)."""
    import yaml
    from playwright.sync_api import expect, sync_playwright

    kube = {
        "backend": "kubernetes",
        "options": {
            "kubeconfig": str(kube_standin.kubeconfig(tmp_path / "kubeconfig")),
            "n_workers": 1,
            "scheduler_service_type": "LoadBalancer",
        },
    }
    gw = yaml.safe_load(gateway_server.profile(name="gw", n_workers=1))["profiles"]
    user_profiles(yaml.safe_dump({"profiles": {**gw, "kube": kube}}))
    lab: JupyterProcess = lab_process("lab")
    reply = lab.request(
        "PUT", "api/contents/connect.ipynb", {"type": "notebook", "content": NOTEBOOK}
    )
    assert reply.status in (200, 201), reply.data
    # Started as in a notebook kernel: the sidebar finds them in the record store.
    handles = [workbench.launch(p, wait=1, timeout=180, progress="off") for p in ("gw", "kube")]
    try:
        with sync_playwright() as p:
            browser = launch_chromium(p)
            try:
                page = browser.new_page(viewport={"width": 1440, "height": 900})
                page.set_default_timeout(60_000)
                page.goto(
                    f"{lab.url}lab/workspaces/wbremote/tree/connect.ipynb?reset&token={lab.token}"
                )
                tab = page.locator(
                    '.jp-SideBar.jp-mod-left .lm-TabBar-tab[data-id="workbench-sidebar"]'
                )
                tab.wait_for(timeout=120_000)
                page.locator(".jp-NotebookPanel .jp-Cell").first.wait_for(timeout=120_000)
                tab.click()
                sidebar = page.locator("#workbench-sidebar")
                for handle in handles:
                    card = sidebar.locator(f'.jp-workbench-cluster[data-cluster-id="{handle.id}"]')
                    workers = card.locator(".jp-workbench-workers")
                    expect(workers).to_have_text("1 worker", timeout=60_000)
                    card.locator("input[name=workers]").fill("2")
                    card.locator("[data-workbench-action=scale]").click()
                    expect(workers).to_have_text("2 workers", timeout=120_000)
                    assert handle.n_workers() == 2
                    card.locator("input[name=adapt-minimum]").fill("1")
                    card.locator("input[name=adapt-maximum]").fill("1")
                    card.locator("[data-workbench-action=adapt]").click()
                    expect(workers).to_have_text("1 worker", timeout=120_000)
                    expect(card.locator(".jp-workbench-error")).to_have_count(0)
                # The gateway's own connect code goes into the notebook, and runs there.
                gw_card = sidebar.locator(
                    f'.jp-workbench-cluster[data-cluster-id="{handles[0].id}"]'
                )
                gw_card.locator("[data-workbench-action=connect]").click()
                cell = page.locator(".jp-NotebookPanel .jp-Cell").first
                name = handles[0].record.extra["cluster_name"]
                expect(cell.locator(".cm-content")).to_contain_text(
                    f"gateway.connect('{name}')", timeout=30_000
                )
                cell.locator(".cm-content").click()
                page.keyboard.press("Shift+Enter")
                output = cell.locator(".jp-OutputArea-output")
                expect(output.first).to_contain_text("Client", timeout=120_000)
                assert "Traceback" not in output.all_inner_texts()[0]
                page.screenshot(path=str(ARTIFACTS / "lab-workbench-gateway-kubernetes.png"))
                for handle in handles:
                    card = sidebar.locator(f'.jp-workbench-cluster[data-cluster-id="{handle.id}"]')
                    card.locator("[data-workbench-action=stop]").click()
                    page.locator(".jp-Dialog button.jp-mod-warn").click()
                    expect(card).to_have_count(0, timeout=60_000)
            finally:
                browser.close()
        for handle in handles:
            wait_until(lambda h=handle: h.status == "closed", 30)
        assert name not in gateway_server.running_clusters()
        assert kube_standin.clusters() == []
    finally:
        for handle in handles:
            handle.close()


@pytest.mark.slurm
def test_sidebar_checks_and_launches_the_builtin_slurm_profile(
    lab_process: Any, slurm: Any
) -> None:
    """The built-in ``slurm`` profile from the sidebar of a ``jupyter lab`` started as users
    start it (its first import of dask-jobqueue is in the server's thread pool; it failed
    with "signal only works in main thread" until the extension imported it at start):
    Check shows SLURM's verdict and the job script, Launch starts a worker in a real job,
    the card's dashboard answers, Stop cancels the job."""
    from playwright.sync_api import expect, sync_playwright

    lab: JupyterProcess = lab_process("lab")
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = launch_chromium(p)
        page = browser.new_page(viewport={"width": 1440, "height": 900})
        page.set_default_timeout(60_000)
        try:
            page.goto(f"{lab.url}lab/workspaces/wbslurm?reset&token={lab.token}")
            tab = page.locator(
                '.jp-SideBar.jp-mod-left .lm-TabBar-tab[data-id="workbench-sidebar"]'
            )
            tab.wait_for(timeout=120_000)
            tab.click()
            sidebar = page.locator("#workbench-sidebar")
            sidebar.locator("#workbench-profile-select").select_option("slurm")
            sidebar.locator("input[name=memory]").fill("1GiB")
            sidebar.locator("[data-workbench-action=preview]").click()
            preview = sidebar.locator(".jp-workbench-preview")
            expect(preview.locator(".jp-workbench-preview-verdict")).to_contain_text(
                "SLURM: would start", timeout=60_000
            )
            preview.locator("summary").click()
            expect(preview.locator("pre")).to_contain_text("--mem=")
            expect(preview.locator("pre")).to_contain_text("--dashboard-address 127.0.0.1:0")

            sidebar.locator("[data-workbench-action=launch]").click()
            card = sidebar.locator(".jp-workbench-cluster")
            expect(card).to_have_count(1, timeout=150_000)
            expect(card.locator(".jp-workbench-workers")).to_have_text("1 worker", timeout=90_000)
            expect(sidebar.locator(".jp-workbench-error")).to_have_count(0)
            (record,) = ClusterControl().list()
            assert record.backend == "slurm" and record.profile == "slurm"
            assert slurm.jobs_named(record.extra["job_name"])
            page.screenshot(path=str(ARTIFACTS / "lab-workbench-slurm.png"))

            card.locator("[data-workbench-action=dashboard]").click()
            dash = page.locator(f"#workbench-dashboard-{record.id}")
            expect(dash).to_be_visible(timeout=60_000)
            frame = dash.locator("iframe").element_handle().content_frame()
            assert frame is not None
            frame.locator("canvas").first.wait_for(timeout=60_000)
            assert "Dask" in frame.title()

            card.locator("[data-workbench-action=stop]").click()
            page.locator(".jp-Dialog button.jp-mod-warn").click()
            expect(sidebar.locator(".jp-workbench-cluster")).to_have_count(0, timeout=60_000)
            wait_until(lambda: not slurm.jobs_named(record.extra["job_name"]), 60)
        except Exception:
            page.screenshot(path=str(ARTIFACTS / "lab-workbench-slurm-failure.png"))
            raise
        finally:
            browser.close()
    assert not lab.workbench_errors(), lab.workbench_errors()
