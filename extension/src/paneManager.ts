/**
 * Opens, tracks and closes the dockable panes (see panes.ts); the layout restorer
 * reopens the tracked ones after a reload through OPEN_PANE_COMMAND.
 */
import { JupyterFrontEnd } from '@jupyterlab/application';
import { DocumentRegistry } from '@jupyterlab/docregistry';
import { Notification, WidgetTracker } from '@jupyterlab/apputils';
import { ServerConnection } from '@jupyterlab/services';

import { workbenchIcon } from './icon';
import {
  isPaneItem,
  OPEN_PANE_COMMAND,
  PANE_NAMESPACE,
  paneKey,
  paneLabel,
  paneUrl
} from './panes';
import { WorkbenchPane } from './paneWidget';
import { clusterPanes, IPaneItem, startWorkbenchDashboard } from './request';

export class PaneManager {
  constructor(
    readonly app: JupyterFrontEnd,
    readonly serverSettings: ServerConnection.ISettings
  ) {
    this.tracker = new WidgetTracker<WorkbenchPane>({
      namespace: PANE_NAMESPACE
    });
    app.commands.addCommand(OPEN_PANE_COMMAND, {
      label: args =>
        isPaneItem(args) ? `Open ${paneLabel(args)}` : 'Open a workbench pane',
      caption:
        'Open a Dask plot or a workbench dashboard page as a dockable panel',
      execute: async args => {
        if (!isPaneItem(args)) {
          throw new Error(`not a workbench pane: ${JSON.stringify(args)}`);
        }
        const item: IPaneItem = {
          cluster: args.cluster,
          kind: args.kind,
          route: args.route,
          label: args.label
        };
        const options = args.options as
          DocumentRegistry.IOpenOptions | undefined;
        return this.open(item, options);
      }
    });
  }

  /** Every pane, tracked for the layout restorer. */
  readonly tracker: WidgetTracker<WorkbenchPane>;

  /** The open pane showing `item`, if any. */
  find(item: IPaneItem): WorkbenchPane | undefined {
    const key = paneKey(item);
    return this.tracker.find(w => paneKey(w.item) === key);
  }

  /**
   * Open `item` as a main-area panel (or reveal it when it is open already); `options`
   * say where to dock it (`{mode: 'split-right', ref: id}`). Its URL is asked from the
   * server; the panel says why when the page cannot be shown.
   */
  async open(
    item: IPaneItem,
    options?: DocumentRegistry.IOpenOptions
  ): Promise<WorkbenchPane> {
    const open = this.find(item);
    if (open && !open.isDisposed) {
      if (!open.isAttached) {
        this.app.shell.add(open, 'main', options);
      }
      this.app.shell.activateById(open.id);
      return open;
    }
    const pane = new WorkbenchPane(item);
    pane.title.icon = workbenchIcon;
    this.app.shell.add(pane, 'main', options);
    void this.tracker.add(pane);
    this.app.shell.activateById(pane.id);
    try {
      pane.url = await this.url(item);
    } catch (e) {
      pane.showProblem(`${paneLabel(item)} cannot be shown: ${String(e)}`);
      throw e;
    }
    return pane;
  }

  /** Where the page of `item` is, through the Jupyter server's proxy when it can be. */
  async url(item: IPaneItem): Promise<string> {
    if (item.kind === 'workbench') {
      // Starts the cluster's dashboard process (once; later calls reuse it).
      const info = await startWorkbenchDashboard(
        item.cluster,
        this.serverSettings
      );
      if (!info.url) {
        throw new Error(`the dashboards of ${item.cluster} did not start`);
      }
      if (!info.proxied && !this._warned) {
        this._warned = true;
        Notification.warning(
          'jupyter-server-proxy is not enabled: the dashboards only load in a browser ' +
            "on the Jupyter server's machine. Diagnose says more.",
          { autoClose: 10000 }
        );
      }
      return paneUrl(info.url, item.route);
    }
    const panes = await clusterPanes(item.cluster, this.serverSettings);
    if (!panes.dask.root) {
      throw new Error(
        panes.dask.problem ?? 'the cluster has no Dask dashboard'
      );
    }
    return paneUrl(panes.dask.root, item.route);
  }

  /** Close the panes of clusters that are gone; `ids`: the clusters that exist. */
  clustersListed(ids: string[]): void {
    const alive = new Set(ids);
    const gone: WorkbenchPane[] = [];
    this.tracker.forEach(pane => {
      if (!alive.has(pane.item.cluster)) {
        gone.push(pane);
      }
    });
    for (const pane of gone) {
      pane.dispose();
    }
  }

  private _warned = false;
}
