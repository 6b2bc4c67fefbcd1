import { JupyterFrontEnd } from '@jupyterlab/application';
import { Dialog, ReactWidget, showDialog } from '@jupyterlab/apputils';
import { INotebookTracker, NotebookActions } from '@jupyterlab/notebook';
import { ServerConnection } from '@jupyterlab/services';
import { SidePanel } from '@jupyterlab/ui-components';
import { Signal } from '@lumino/signaling';
import { AccordionPanel } from '@lumino/widgets';
import React from 'react';

import { IWorkbenchContext, IWorkbenchSection } from './context';
import { workbenchIcon } from './icon';
import { PaneManager } from './paneManager';
import { clusterHealth, connectCode, ICluster, IPaneItem } from './request';
import { HealthReport } from './sections/clusters';

/** The Workbench left sidebar: one collapsible part per registered section. */
export class WorkbenchSidebar extends SidePanel implements IWorkbenchContext {
  constructor(
    readonly app: JupyterFrontEnd,
    readonly notebooks: INotebookTracker | null,
    readonly panes: PaneManager,
    readonly serverSettings: ServerConnection.ISettings = app.serviceManager
      .serverSettings
  ) {
    super();
    this.id = 'workbench-sidebar';
    this.addClass('jp-workbench-sidebar');
    this.title.icon = workbenchIcon;
    this.title.caption = 'Workbench: clusters';
    this.node.setAttribute('role', 'region');
    this.node.setAttribute('aria-label', 'Workbench: clusters');
  }

  get selectedCluster(): string | null {
    return this._selected;
  }

  get selectionChanged(): Signal<IWorkbenchContext, string | null> {
    return this._selectionChanged;
  }

  selectCluster(id: string | null): void {
    if (id !== this._selected) {
      this._selected = id;
      this._selectionChanged.emit(id);
    }
  }

  /** Show the cluster's card: open the sidebar, select it, scroll to it and focus it. */
  revealCluster(id: string): void {
    this.app.shell.activateById(this.id);
    this.selectCluster(id);
    const section = this.widgets.find(
      w => w.id === 'workbench-section-clusters'
    );
    if (section && this.content instanceof AccordionPanel) {
      const index = this.content.widgets.indexOf(section);
      if (index >= 0 && !section.isVisible) {
        this.content.expand(index);
      }
    }
    // The card renders with the selection on React's next pass.
    requestAnimationFrame(() => {
      const card = this.node.querySelector<HTMLElement>(
        `.jp-workbench-cluster[data-cluster-id="${CSS.escape(id)}"]`
      );
      card?.scrollIntoView({ block: 'nearest' });
      card?.querySelector<HTMLElement>('.jp-workbench-cluster-select')?.focus();
    });
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
    await this.openPane({
      cluster: cluster.id,
      kind: 'dask',
      route: 'status',
      label: 'dashboard'
    });
  }

  async openWorkbenchDashboards(cluster: ICluster): Promise<void> {
    await this.openPane({
      cluster: cluster.id,
      kind: 'workbench',
      route: '',
      label: 'Dashboards'
    });
  }

  async openPane(item: IPaneItem): Promise<void> {
    await this.panes.open(item);
  }

  clustersListed(ids: string[]): void {
    this.panes.clustersListed(ids);
    if (this._selected !== null && !ids.includes(this._selected)) {
      this.selectCluster(ids[0] ?? null);
    } else if (this._selected === null && ids.length > 0) {
      this.selectCluster(ids[0]);
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
  private _selectionChanged = new Signal<IWorkbenchContext, string | null>(
    this
  );
  private _selected: string | null = null;
  private _ranks = new Map<string, number>();
  private _weights = new Map<string, number>();
}
