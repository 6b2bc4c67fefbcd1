/**
 * The status bar item: the cluster the active notebook's kernel is connected to (or
 * none), its workers and running tasks, GPUs with utilization and memory, the cost so
 * far and the GPU idle time. A click reveals the cluster in the sidebar. It is fed by
 * one KernelStatusPoller shared by every notebook.
 */
import { ReactWidget } from '@jupyterlab/apputils';
import React from 'react';

import { statusText } from './format';
import { KernelStatusPoller } from './poller';

export const STATUS_ITEM_ID = 'workbench-lab:cluster-status';

export class ClusterStatusItem extends ReactWidget {
  constructor(
    readonly poller: KernelStatusPoller,
    readonly reveal: (clusterId: string) => void
  ) {
    super();
    this.addClass('jp-workbench-statusbar');
    this.id = 'workbench-cluster-status';
    poller.changed.connect(() => this.update(), this);
  }

  render(): JSX.Element | null {
    if (this.poller.kernelId === null) {
      return null;
    }
    const shown = statusText(this.poller.status);
    const open = () => {
      if (shown.cluster) {
        this.reveal(shown.cluster);
      }
    };
    const className = `jp-workbench-statusbar-text${
      shown.warn ? ' jp-mod-warn' : ''
    }`;
    if (!shown.cluster) {
      return (
        <span className={className} title={shown.title} role="status">
          {shown.text}
        </span>
      );
    }
    return (
      <button
        className={className}
        title={shown.title}
        aria-label={shown.title}
        data-cluster-id={shown.cluster}
        onClick={open}
      >
        {shown.text}
      </button>
    );
  }
}
