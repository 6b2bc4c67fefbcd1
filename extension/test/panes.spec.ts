/**
 * Pane identities, labels and URLs, and the Dask plots of a scheduler's listing.
 */
import {
  daskPlots,
  isPaneItem,
  paneId,
  paneKey,
  paneLabel,
  paneUrl,
  splitPlots
} from '../src/panes';
import { IPaneItem } from '../src/request';

const GPU: IPaneItem = {
  cluster: 'abcdef1234',
  kind: 'workbench',
  route: 'gpu',
  label: 'GPU'
};

describe('panes', () => {
  it('gives each cluster page one id, key and label', () => {
    expect(paneId(GPU)).toBe('workbench-pane-abcdef1234-workbench-gpu');
    const stream: IPaneItem = {
      cluster: 'abcdef1234',
      kind: 'dask',
      route: 'individual-task-stream',
      label: 'Task Stream'
    };
    expect(paneId(stream)).toBe(
      'workbench-pane-abcdef1234-dask-individual-task-stream'
    );
    // the odd characters of a route do not reach the DOM id
    expect(
      paneId({ ...stream, route: '/statics/individual-cluster-map.html' })
    ).toBe(
      'workbench-pane-abcdef1234-dask-statics-individual-cluster-map-html'
    );
    expect(paneKey(stream)).toBe('abcdef1234:dask:individual-task-stream');
    expect(paneLabel(stream)).toBe('Dask Task Stream · abcdef');
    expect(paneLabel(GPU)).toBe('GPU · abcdef');
  });

  it('keeps the ids of the whole dashboards', () => {
    expect(
      paneId({
        cluster: 'c1',
        kind: 'dask',
        route: 'status',
        label: 'dashboard'
      })
    ).toBe('workbench-dashboard-c1');
    expect(
      paneId({
        cluster: 'c1',
        kind: 'workbench',
        route: '',
        label: 'Dashboards'
      })
    ).toBe('workbench-dashboards-c1');
  });

  it('recognises restored arguments', () => {
    expect(isPaneItem({ ...GPU })).toBe(true);
    expect(isPaneItem({ ...GPU, kind: 'bokeh' })).toBe(false);
    expect(isPaneItem({ ...GPU, cluster: '' })).toBe(false);
    expect(
      isPaneItem({ cluster: 'c', kind: 'dask', route: 1, label: 'x' })
    ).toBe(false);
    expect(isPaneItem(null)).toBe(false);
    expect(isPaneItem('gpu')).toBe(false);
  });

  it('joins a dashboard root and a route', () => {
    expect(paneUrl('/base/proxy/8787/', 'individual-progress')).toBe(
      '/base/proxy/8787/individual-progress'
    );
    expect(paneUrl('/base/proxy/9000/', 'gpu')).toBe('/base/proxy/9000/gpu');
    expect(paneUrl('/base/proxy/9000/', '')).toBe('/base/proxy/9000/');
    expect(paneUrl('http://127.0.0.1:8787/', 'individual-progress')).toBe(
      'http://127.0.0.1:8787/individual-progress'
    );
  });

  it('lists the individual plots of a scheduler, sorted, without "Individual"', () => {
    // as distributed's /individual-plots.json answers (bokeh apps and static pages)
    const listing = {
      'Individual Task Stream': '/individual-task-stream',
      'Individual Progress': '/individual-progress',
      'Individual Gpu Utilization': '/individual-gpu-utilization',
      'Individual Cluster Map': '/statics/individual-cluster-map.html',
      Status: '/status',
      Broken: 42
    };
    expect(daskPlots(listing)).toEqual([
      { label: 'Cluster Map', route: 'statics/individual-cluster-map.html' },
      { label: 'Gpu Utilization', route: 'individual-gpu-utilization' },
      { label: 'Progress', route: 'individual-progress' },
      { label: 'Task Stream', route: 'individual-task-stream' }
    ]);
  });
});

describe('splitPlots', () => {
  it('lists task stream, progress, worker memory and GPU plots first', () => {
    const plots = [
      { label: 'Workers Memory', route: 'individual-workers-memory' },
      { label: 'Cpu', route: 'individual-cpu' },
      { label: 'Task Stream', route: 'individual-task-stream' },
      { label: 'Gpu Memory', route: 'individual-gpu-memory' },
      { label: 'Progress', route: 'individual-progress' }
    ];
    const { primary, more } = splitPlots(plots);
    expect(primary.map(p => p.label)).toEqual([
      'Task Stream',
      'Progress',
      'Workers Memory',
      'Gpu Memory'
    ]);
    expect(more.map(p => p.label)).toEqual(['Cpu']);
    expect(splitPlots([])).toEqual({ primary: [], more: [] });
  });
});
