/**
 * Dockable panes (pure functions; the widget is in paneWidget.ts): each Dask plot of a cluster's scheduler (its `individual-*` pages) and
 * each workbench dashboard page (GPU, Storage, Network, Cluster, Energy) opens as a Lab
 * main-area panel of its own, a MainAreaWidget around an IFrame, as dask-labextension
 * does. The panes are tracked by a WidgetTracker that the layout restorer saves, so they
 * come back where they were docked after a page reload.
 *
 * A pane remembers what it shows (an IPaneItem: cluster, kind, route, label), never a
 * URL: its URL is asked from the server each time it is opened or restored, because a
 * restarted dashboard process listens on another port.
 */
import { URLExt } from '@jupyterlab/coreutils';

import { IPaneItem } from './request';

/** The command that opens (or reveals) a pane; the restorer calls it after a reload. */
export const OPEN_PANE_COMMAND = 'workbench:open-pane';

/** The tracker's namespace in the saved layout. */
export const PANE_NAMESPACE = 'workbench-pane';

/** Kept for the sidebar's two first buttons: the whole Dask / workbench dashboards. */
const LEGACY_IDS: Record<IPaneItem['kind'], Record<string, string>> = {
  dask: { status: 'workbench-dashboard' },
  workbench: { '': 'workbench-dashboards' }
};

/** The DOM id of a pane: one pane per cluster and page. */
export function paneId(item: IPaneItem): string {
  const legacy = LEGACY_IDS[item.kind][item.route];
  if (legacy) {
    return `${legacy}-${item.cluster}`;
  }
  const route = item.route.replace(/[^A-Za-z0-9_-]+/g, '-').replace(/^-+/, '');
  return `workbench-pane-${item.cluster}-${item.kind}-${route}`;
}

/** The name the layout restorer saves a pane under. */
export function paneKey(item: IPaneItem): string {
  return `${item.cluster}:${item.kind}:${item.route}`;
}

/** The tab title of a pane: what it shows, then the cluster. */
export function paneLabel(item: IPaneItem): string {
  const what = item.kind === 'dask' ? `Dask ${item.label}` : item.label;
  return `${what} · ${item.cluster.slice(0, 6)}`;
}

/** Whether `args` (a restored command's arguments) describe a pane. */
export function isPaneItem(args: unknown): args is IPaneItem {
  if (typeof args !== 'object' || args === null) {
    return false;
  }
  const a = args as Record<string, unknown>;
  return (
    typeof a.cluster === 'string' &&
    a.cluster.length > 0 &&
    (a.kind === 'dask' || a.kind === 'workbench') &&
    typeof a.route === 'string' &&
    typeof a.label === 'string'
  );
}

/**
 * The Dask plots of a scheduler's `/individual-plots.json` ({"Individual Task Stream":
 * "/individual-task-stream", ...}), sorted by label, the label without "Individual".
 */
export function daskPlots(
  listing: Record<string, unknown>
): { label: string; route: string }[] {
  const out: { label: string; route: string }[] = [];
  for (const [name, path] of Object.entries(listing)) {
    if (typeof path !== 'string') {
      continue;
    }
    const route = path.replace(/^\/+/, '');
    if (!route.startsWith('individual-') && !route.includes('/individual-')) {
      continue;
    }
    out.push({ label: name.replace(/^Individual\s+/i, '').trim(), route });
  }
  return out.sort((a, b) => a.label.localeCompare(b.label));
}

/** The URL of a pane from its dashboard's root (`/proxy/8787/` or `http://h:8787/`). */
export function paneUrl(root: string, route: string): string {
  return route ? URLExt.join(root, route) : root;
}

/** The Dask plots listed first (the rest are under "More Dask plots"), in this order. */
export const PRIMARY_DASK_PLOTS = [
  'individual-task-stream',
  'individual-progress',
  'individual-workers-memory',
  'individual-gpu-utilization',
  'individual-gpu-memory'
];

/** The plots a scheduler serves, split into the primary ones (in order) and the rest. */
export function splitPlots<T extends { route: string }>(
  plots: T[]
): { primary: T[]; more: T[] } {
  const primary = PRIMARY_DASK_PLOTS.map(route =>
    plots.find(p => p.route === route)
  ).filter((p): p is T => p !== undefined);
  const more = plots.filter(p => !PRIMARY_DASK_PLOTS.includes(p.route));
  return { primary, more };
}
