import {
  ILayoutRestorer,
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import { INotebookTracker } from '@jupyterlab/notebook';

import { SECTIONS } from './sections';
import { WorkbenchSidebar } from './sidebar';

/** The Workbench left sidebar: cluster profiles and running clusters. */
const plugin: JupyterFrontEndPlugin<void> = {
  id: 'workbench-lab:sidebar',
  description: 'Workbench sidebar: launch, watch and connect to Dask clusters.',
  autoStart: true,
  optional: [INotebookTracker, ILayoutRestorer],
  activate: (
    app: JupyterFrontEnd,
    notebooks: INotebookTracker | null,
    restorer: ILayoutRestorer | null
  ) => {
    const sidebar = new WorkbenchSidebar(app, notebooks);
    for (const section of SECTIONS) {
      sidebar.addSection(section);
    }
    app.shell.add(sidebar, 'left', { rank: 300 });
    restorer?.add(sidebar, sidebar.id);
  }
};

export default plugin;
