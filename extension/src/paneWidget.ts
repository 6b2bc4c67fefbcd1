import { IFrame, MainAreaWidget } from '@jupyterlab/apputils';

import { paneId, paneLabel } from './panes';
import { IPaneItem } from './request';

/** A pane: a Lab main-area panel showing one dashboard page in an iframe. */
export class WorkbenchPane extends MainAreaWidget<IFrame> {
  constructor(item: IPaneItem) {
    super({
      content: new IFrame({
        // Bokeh's pages run scripts and talk to their server (same origin, via the proxy).
        sandbox: [
          'allow-scripts',
          'allow-same-origin',
          'allow-forms',
          'allow-popups'
        ]
      })
    });
    this.item = item;
    this.id = paneId(item);
    this.title.label = paneLabel(item);
    this.title.closable = true;
    this.addClass('jp-workbench-pane');
    this.addClass(`jp-workbench-pane-${item.kind}`);
    if (item.kind === 'dask' && item.route === 'status') {
      this.addClass('jp-workbench-dashboard');
    }
    if (item.kind === 'workbench' && item.route === '') {
      this.addClass('jp-workbench-panel-dashboards');
    }
    this.node.dataset.cluster = item.cluster;
    this.node.dataset.paneKind = item.kind;
    this.node.dataset.paneRoute = item.route;
    this.content.node.setAttribute('role', 'region');
    this.content.node.setAttribute('aria-label', this.title.label);
    this._message = document.createElement('div');
    this._message.className = 'jp-workbench-pane-message';
    this._message.setAttribute('role', 'status');
    this.content.node.appendChild(this._message);
    this.showStatus(`Opening ${this.title.label}…`);
  }

  /** Say what the pane waits for (shown until its page is set). */
  showStatus(message: string): void {
    this._message.textContent = message;
    this._message.style.display = '';
  }

  readonly item: IPaneItem;

  /** The page shown; set once the server said where it is. */
  get url(): string {
    return this.content.url;
  }
  set url(value: string) {
    this.content.url = value;
    this.title.caption = `${paneLabel(this.item)}\n${value}`;
    this.content.node
      .querySelector('iframe')
      ?.setAttribute('title', this.title.label);
    this._message.textContent = '';
    this._message.style.display = 'none';
  }

  /** Say why the page cannot be shown (the cluster stopped, the dashboard is gone). */
  showProblem(message: string): void {
    this.content.url = '';
    this.showStatus(message);
  }

  private _message: HTMLElement;
}
