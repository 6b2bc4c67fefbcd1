import { JupyterFrontEnd } from '@jupyterlab/application';
import {
  Dialog,
  IFrame,
  MainAreaWidget,
  Notification,
  ReactWidget,
  showDialog
} from '@jupyterlab/apputils';
import { INotebookTracker, NotebookActions } from '@jupyterlab/notebook';
import { ServerConnection } from '@jupyterlab/services';
import { SidePanel } from '@jupyterlab/ui-components';
import { Signal } from '@lumino/signaling';
import { AccordionPanel } from '@lumino/widgets';
import React from 'react';

import { IWorkbenchContext, IWorkbenchSection } from './context';
import { workbenchIcon } from './icon';
import {
  clusterHealth,
  connectCode,
  ICluster,
  startWorkbenchDashboard
} from './request';
import { HealthReport } from './sections/clusters';

/** The Workbench left sidebar: one collapsible part per registered section. */
export class WorkbenchSidebar extends SidePanel implements IWorkbenchContext {
  constructor(
    readonly app: JupyterFrontEnd,
    readonly notebooks: INotebookTracker | null,
    readonly serverSettings: ServerConnection.ISettings = app.serviceManager
      .serverSettings
  ) {
    super();
    this.id = 'workbench-sidebar';
    this.addClass('jp-workbench-sidebar');
    this.title.icon = workbenchIcon;
    this.title.caption = 'Workbench: clusters';
  }

  get clustersChanged(): Signal<IWorkbenchContext, void> {
    return this._clustersChanged;
  }

  notifyClustersChanged(): void {
    this._clustersChanged.emit();
  }

  /** Add a section; sections are ordered by rank. */
  addSection(section: IWorkbenchSection): void {
    const widget = section.create(this);
    widget.id = `workbench-section-${section.id}`;
    widget.title.label = section.title;
    widget.addClass('jp-workbench-section');
    this._ranks.set(widget.id, section.rank);
    const index = this.widgets.filter(
      w => (this._ranks.get(w.id) ?? 0) <= section.rank
    ).length;
    this.insertWidget(index, widget);
    this._weights.set(widget.id, section.weight ?? 1);
    if (this.content instanceof AccordionPanel) {
      this.content.setRelativeSizes(
        this.widgets.map(w => this._weights.get(w.id) ?? 1)
      );
    }
  }

  async openDashboard(cluster: ICluster): Promise<void> {
    const health = await clusterHealth(
      cluster.id,
      window.location.hostname,
      this.serverSettings
    );
    const url = health.dashboard.url;
    if (!url || !health.ok) {
      const result = await showDialog({
        title: url
          ? `The dashboard of ${cluster.id} may not load`
          : `Cluster ${cluster.id} has no reachable dashboard`,
        body: ReactWidget.create(React.createElement(HealthReport, { health })),
        buttons: url
          ? [Dialog.cancelButton(), Dialog.okButton({ label: 'Open anyway' })]
          : [Dialog.okButton({ label: 'Close' })]
      });
      if (!url || !result.button.accept) {
        return;
      }
    }
    this._openFrame(
      `workbench-dashboard-${cluster.id}`,
      cluster.id,
      url,
      `Dask ${cluster.profile} ${cluster.id.slice(0, 6)}`,
      'jp-workbench-dashboard'
    );
  }

  async openWorkbenchDashboards(cluster: ICluster): Promise<void> {
    const id = `workbench-dashboards-${cluster.id}`;
    const open = this._dashboards.get(id);
    if (open && !open.widget.isDisposed) {
      this.app.shell.activateById(id);
      return;
    }
    // Starts the dashboard process of the cluster (once; later calls reuse it).
    const info = await startWorkbenchDashboard(cluster.id, this.serverSettings);
    if (!info.url) {
      throw new Error(`the dashboards of ${cluster.id} did not start`);
    }
    if (!info.proxied) {
      Notification.warning(
        'jupyter-server-proxy is not enabled: the dashboards only load in a browser ' +
          "on the Jupyter server's machine. Diagnose says more.",
        { autoClose: 10000 }
      );
    }
    this._openFrame(
      id,
      cluster.id,
      info.url,
      `Dashboards ${cluster.profile} ${cluster.id.slice(0, 6)}`,
      'jp-workbench-panel-dashboards'
    );
  }

  private _openFrame(
    id: string,
    clusterId: string,
    url: string,
    label: string,
    className: string
  ): void {
    const open = this._dashboards.get(id);
    if (open && !open.widget.isDisposed) {
      this.app.shell.activateById(id);
      return;
    }
    const frame = new IFrame({
      sandbox: [
        'allow-scripts',
        'allow-same-origin',
        'allow-forms',
        'allow-popups'
      ]
    });
    frame.url = url;
    const widget = new MainAreaWidget({ content: frame });
    widget.id = id;
    widget.title.label = label;
    widget.title.caption = url;
    widget.title.icon = workbenchIcon;
    widget.title.closable = true;
    widget.addClass(className);
    this._dashboards.set(id, { clusterId, widget });
    this.app.shell.add(widget, 'main');
    this.app.shell.activateById(id);
  }

  clustersListed(ids: string[]): void {
    const alive = new Set(ids);
    for (const [id, open] of this._dashboards) {
      if (!alive.has(open.clusterId) || open.widget.isDisposed) {
        this._dashboards.delete(id);
        open.widget.dispose();
      }
    }
  }

  async openPath(path: string): Promise<void> {
    await this.app.commands.execute('docmanager:open', { path });
  }

  async insertConnectCell(cluster: ICluster): Promise<void> {
    this._notebookOrThrow('the connect cell');
    const code = await connectCode(cluster.id, this.serverSettings);
    this.insertCode(code, 'the connect cell');
  }

  private _notebookOrThrow(what: string) {
    const panel = this.notebooks?.currentWidget;
    if (!panel) {
      throw new Error(
        `No notebook is open: open or create a notebook, then insert ${what}.`
      );
    }
    return panel;
  }

  insertCode(code: string, what: string): void {
    const panel = this._notebookOrThrow(what);
    const notebook = panel.content;
    const active = notebook.activeCell;
    const reuse =
      active &&
      active.model.type === 'code' &&
      active.model.sharedModel.getSource().trim() === '';
    if (!reuse) {
      NotebookActions.insertBelow(notebook);
    }
    notebook.activeCell?.model.sharedModel.setSource(code);
    this.app.shell.activateById(panel.id);
  }

  private _clustersChanged = new Signal<IWorkbenchContext, void>(this);
  private _ranks = new Map<string, number>();
  private _weights = new Map<string, number>();
  private _dashboards = new Map<
    string,
    { clusterId: string; widget: MainAreaWidget<IFrame> }
  >();
}
