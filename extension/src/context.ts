import { JupyterFrontEnd } from '@jupyterlab/application';
import { INotebookTracker } from '@jupyterlab/notebook';
import { ServerConnection } from '@jupyterlab/services';
import { ISignal } from '@lumino/signaling';
import { Widget } from '@lumino/widgets';

import { ICluster, IPaneItem } from './request';

/** What the Workbench sidebar gives each of its sections. */
export interface IWorkbenchContext {
  readonly app: JupyterFrontEnd;
  readonly notebooks: INotebookTracker | null;
  readonly serverSettings: ServerConnection.ISettings;
  /** Emitted after a section started or stopped a cluster: lists refresh at once. */
  readonly clustersChanged: ISignal<IWorkbenchContext, void>;
  notifyClustersChanged(): void;
  /** Open the cluster's Dask dashboard in a main-area tab (or say why it cannot be). */
  openDashboard(cluster: ICluster): Promise<void>;
  /** The clusters that exist now: dashboard tabs of clusters that are gone close. */
  clustersListed(ids: string[]): void;
  /** Insert the code connecting to the cluster into the active notebook. */
  insertConnectCell(cluster: ICluster): Promise<void>;
  /**
   * Put `code` into the active notebook: into the active cell when it is an empty code
   * cell, else into a new cell below it. `what` names the code in the error shown
   * when no notebook is open.
   */
  insertCode(code: string, what: string): void;
  /** Open the workbench Panel dashboards of the cluster in a main-area tab. */
  openWorkbenchDashboards(cluster: ICluster): Promise<void>;
  /** Open one Dask plot or workbench dashboard page as a dockable main-area panel. */
  openPane(item: IPaneItem): Promise<void>;
  /** The cluster whose panes the sidebar lists (null: none yet). */
  readonly selectedCluster: string | null;
  readonly selectionChanged: ISignal<IWorkbenchContext, string | null>;
  selectCluster(id: string | null): void;
  /** Open a file (relative to the Jupyter root) in JupyterLab. */
  openPath(path: string): Promise<void>;
}

/**
 * One section of the Workbench sidebar. Sections are listed in `sections/index.ts`;
 * each is a widget shown as a collapsible part of the sidebar, ordered by `rank`.
 */
export interface IWorkbenchSection {
  /** Stable id: the section widget gets the DOM id `workbench-section-<id>`. */
  id: string;
  title: string;
  rank: number;
  /** Its share of the sidebar's height, relative to the others' (default 1). */
  weight?: number;
  create(context: IWorkbenchContext): Widget;
}
