import {
  ILayoutRestorer,
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import { INotebookTracker, NotebookPanel } from '@jupyterlab/notebook';
import { IStatusBar } from '@jupyterlab/statusbar';

import { PaneManager } from './paneManager';
import { OPEN_PANE_COMMAND, paneKey } from './panes';
import { KernelStatusPoller } from './poller';
import { kernelStatus } from './request';
import { SECTIONS } from './sections';
import { WorkbenchSidebar } from './sidebar';
import { ClusterStatusItem, STATUS_ITEM_ID } from './statusbar';

/**
 * The Workbench left sidebar (cluster profiles, running clusters, dashboard panes,
 * templates, datasets), the dockable dashboard panes restored after a reload, and the
 * status bar item of the active notebook's cluster.
 */
const plugin: JupyterFrontEndPlugin<void> = {
  id: 'workbench-lab:sidebar',
  description:
    'Workbench sidebar: launch, watch and connect to Dask clusters; dashboard panes; ' +
    "the active notebook's cluster in the status bar.",
  autoStart: true,
  optional: [INotebookTracker, ILayoutRestorer, IStatusBar],
  activate: (
    app: JupyterFrontEnd,
    notebooks: INotebookTracker | null,
    restorer: ILayoutRestorer | null,
    statusBar: IStatusBar | null
  ) => {
    const settings = app.serviceManager.serverSettings;
    const panes = new PaneManager(app, settings);
    const sidebar = new WorkbenchSidebar(app, notebooks, panes, settings);
    for (const section of SECTIONS) {
      sidebar.addSection(section);
    }
    app.shell.add(sidebar, 'left', { rank: 300 });
    if (restorer) {
      restorer.add(sidebar, sidebar.id);
      void restorer.restore(panes.tracker, {
        command: OPEN_PANE_COMMAND,
        args: pane => ({ ...pane.item }),
        name: pane => paneKey(pane.item)
      });
    }

    if (statusBar && notebooks) {
      // One poller for every notebook: it asks about the active one's kernel only.
      const poller = new KernelStatusPoller({
        fetch: id => kernelStatus(id, settings)
      });
      const item = new ClusterStatusItem(poller, id =>
        sidebar.revealCluster(id)
      );
      const follow = (panel: NotebookPanel | null) => {
        poller.kernelId = panel?.sessionContext.session?.kernel?.id ?? null;
      };
      notebooks.currentChanged.connect((_, panel) => follow(panel));
      notebooks.widgetAdded.connect((_, panel) => {
        panel.sessionContext.kernelChanged.connect(() => {
          if (notebooks.currentWidget === panel) {
            follow(panel);
          }
        });
      });
      follow(notebooks.currentWidget);
      sidebar.clustersChanged.connect(() => void poller.refresh());
      statusBar.registerStatusItem(STATUS_ITEM_ID, {
        item,
        align: 'left',
        rank: 50,
        isActive: () => true
      });
    }
  }
};

export default plugin;
