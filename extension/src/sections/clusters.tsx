import { Dialog, ReactWidget, showDialog } from '@jupyterlab/apputils';
import { Poll } from '@lumino/polling';
import React, { useEffect, useRef, useState } from 'react';

import { IWorkbenchContext, IWorkbenchSection } from '../context';
import {
  accountingParts,
  accountingTitle,
  formatBytes,
  idleNow
} from '../format';
import {
  adaptCluster,
  clusterHealth,
  ICluster,
  IClusterHealth,
  listClusters,
  scaleCluster,
  setAutoConnect,
  stopCluster,
  WorkbenchAPIError
} from '../request';
import { ErrorBox } from './common';

/** How often the list is refreshed, so clusters started in notebooks appear. */
export const POLL_INTERVAL_MS = 5000;

export { formatBytes };

export function HealthReport(props: { health: IClusterHealth }) {
  return (
    <ul className="jp-workbench-health">
      {props.health.checks.map(c => (
        <li key={c.name} className={`jp-workbench-check jp-mod-${c.status}`}>
          <span className="jp-workbench-check-mark">
            {c.status === 'ok' ? '✓' : c.status === 'warn' ? '!' : '✗'}
          </span>
          <span>
            <b>{c.name}</b>: {c.summary}
            {c.advice && <div className="jp-workbench-dim">{c.advice}</div>}
          </span>
        </li>
      ))}
    </ul>
  );
}

function parseCount(text: string): number | null {
  return /^\d+$/.test(text.trim()) ? parseInt(text.trim(), 10) : null;
}

function ClusterCard(props: {
  cluster: ICluster;
  context: IWorkbenchContext;
  refresh: () => void;
  selected: boolean;
}) {
  const { cluster, context, refresh, selected } = props;
  const settings = context.serverSettings;
  const [workers, setWorkers] = useState(String(cluster.workers ?? 1));
  const [minimum, setMinimum] = useState('0');
  const [maximum, setMaximum] = useState('4');
  const [busy, setBusy] = useState('');
  const [error, setError] = useState<Error | null>(null);
  const [health, setHealth] = useState<IClusterHealth | null>(null);

  const act = async (label: string, fn: () => Promise<unknown>) => {
    setBusy(label);
    setError(null);
    try {
      await fn();
      refresh();
    } catch (e) {
      setError(e as Error);
    } finally {
      setBusy('');
    }
  };

  const scale = () => {
    const n = parseCount(workers);
    if (n === null) {
      setError(
        new Error(`Workers: expected a whole number ≥ 0, got '${workers}'`)
      );
      return;
    }
    void act('scale', () => scaleCluster(cluster.id, n, settings));
  };

  const adapt = () => {
    const lo = parseCount(minimum);
    const hi = maximum.trim() === '' ? null : parseCount(maximum);
    if (lo === null || (maximum.trim() !== '' && hi === null)) {
      setError(
        new Error('Adapt: minimum and maximum must be whole numbers ≥ 0')
      );
      return;
    }
    void act('adapt', () => adaptCluster(cluster.id, lo, hi, settings));
  };

  const stop = async () => {
    const result = await showDialog({
      title: `Stop cluster ${cluster.id}?`,
      body: `Its ${cluster.workers ?? 0} worker(s) stop and work in progress is lost.`,
      buttons: [Dialog.cancelButton(), Dialog.warnButton({ label: 'Stop' })]
    });
    if (result.button.accept) {
      await act('stop', async () => {
        await stopCluster(cluster.id, settings);
        context.notifyClustersChanged();
      });
    }
  };

  const diagnose = () =>
    act('diagnose', async () => {
      setHealth(
        await clusterHealth(cluster.id, window.location.hostname, settings)
      );
    });

  // Shown at once; the list's next refresh (right after the request) confirms it.
  const [autoOn, setAutoOn] = useState(!!cluster.autoconnect);
  useEffect(() => setAutoOn(!!cluster.autoconnect), [cluster.autoconnect]);
  const toggleAutoConnect = (on: boolean) => {
    setAutoOn(on);
    return act('autoconnect', async () => {
      try {
        await setAutoConnect(on ? cluster.id : null, settings);
      } catch (e) {
        setAutoOn(!on);
        throw e;
      }
      context.notifyClustersChanged();
    });
  };

  const running = cluster.status === 'running';
  const gpus = cluster.n_gpus ? `${cluster.n_gpus} GPU(s)` : 'CPU';
  const money = accountingParts(cluster.accounting);
  const name = `${cluster.profile} cluster ${cluster.id}`;
  return (
    <li
      className={`jp-workbench-cluster jp-mod-${cluster.status}${
        selected ? ' jp-mod-selected' : ''
      }`}
      data-cluster-id={cluster.id}
      aria-label={name}
    >
      <div className="jp-workbench-cluster-head">
        <span
          className={`jp-workbench-status jp-mod-${cluster.status}`}
          title={cluster.problem ?? cluster.status}
          aria-hidden="true"
        />
        <button
          className="jp-workbench-cluster-select"
          aria-pressed={selected}
          aria-label={`Show the panes of ${name}`}
          title="List this cluster's dashboard panes below"
          onClick={() => context.selectCluster(cluster.id)}
          data-workbench-action="select"
        >
          <b className="jp-workbench-cluster-profile">{cluster.profile}</b>
          <code className="jp-workbench-dim">{cluster.id}</code>
        </button>
        <span
          className="jp-workbench-cluster-state"
          title={cluster.problem ?? undefined}
        >
          {cluster.status}
        </span>
      </div>
      {cluster.problem ? (
        <div className="jp-workbench-cluster-problem">{cluster.problem}</div>
      ) : null}
      <div className="jp-workbench-cluster-facts">
        <span className="jp-workbench-workers">
          {cluster.workers ?? '–'} worker{cluster.workers === 1 ? '' : 's'}
        </span>
        {cluster.threads ? <span>{cluster.threads} threads</span> : null}
        {cluster.memory ? <span>{formatBytes(cluster.memory)}</span> : null}
        <span className="jp-workbench-gpus" title={cluster.gpus.join('\n')}>
          {gpus}
        </span>
        <span title="backend">{cluster.backend}</span>
      </div>
      <div
        className="jp-workbench-dim jp-workbench-address"
        title={`owner pid ${cluster.owner_pid} on ${cluster.hostname}${
          cluster.detached ? ' (detached)' : ''
        }`}
      >
        {cluster.scheduler_address}
      </div>
      {money.length > 0 && (
        <div
          className={`jp-workbench-cost${
            idleNow(cluster.accounting?.gpu) ? ' jp-mod-warn' : ''
          }`}
          title={accountingTitle(cluster.accounting)}
        >
          {money.join(' · ')}
        </div>
      )}
      {running && (
        <label className="jp-workbench-autoconnect">
          <input
            type="checkbox"
            checked={autoOn}
            disabled={!!busy}
            onChange={e => void toggleAutoConnect(e.target.checked)}
            data-workbench-action="autoconnect"
          />
          Use in new notebooks
        </label>
      )}
      <div className="jp-workbench-actions">
        <button
          className="jp-Button jp-workbench-button"
          disabled={!running || !!busy}
          onClick={() =>
            void act('dashboard', () => context.openDashboard(cluster))
          }
          data-workbench-action="dashboard"
          title="Dask's own dashboard of this cluster"
        >
          Dask dashboard
        </button>
        <button
          className="jp-Button jp-workbench-button"
          disabled={!running || !!busy}
          onClick={() =>
            void act('dashboards', () =>
              context.openWorkbenchDashboards(cluster)
            )
          }
          data-workbench-action="dashboards"
          title="Workbench's live dashboards: GPU, storage, network, cluster, energy"
        >
          {busy === 'dashboards' ? 'Starting…' : 'Dashboards'}
        </button>
        <button
          className="jp-Button jp-workbench-button"
          disabled={!running || !!busy}
          onClick={() =>
            void act('connect', () => context.insertConnectCell(cluster))
          }
          data-workbench-action="connect"
          title="Insert a cell that connects a Client to this cluster into the active notebook"
        >
          Connect cell
        </button>
        <button
          className="jp-Button jp-workbench-button"
          disabled={!!busy}
          onClick={() => void diagnose()}
          data-workbench-action="diagnose"
          title="Check each step from the browser to the dashboards"
        >
          Diagnose
        </button>
        <button
          className="jp-Button jp-mod-styled jp-mod-warn"
          disabled={!!busy}
          onClick={() => void stop()}
          data-workbench-action="stop"
          aria-label={`Stop ${name}`}
        >
          {busy === 'stop' ? 'Stopping…' : 'Stop'}
        </button>
      </div>
      {running && (
        <div className="jp-workbench-scale">
          <label>
            Workers
            <input
              className="jp-mod-styled"
              name="workers"
              size={3}
              value={workers}
              onChange={e => setWorkers(e.target.value)}
            />
          </label>
          <button
            className="jp-Button jp-workbench-button"
            disabled={!!busy}
            onClick={scale}
            data-workbench-action="scale"
          >
            {busy === 'scale' ? 'Scaling…' : 'Scale'}
          </button>
          <label>
            Adapt
            <input
              className="jp-mod-styled"
              name="adapt-minimum"
              aria-label="Adapt: minimum workers"
              size={2}
              value={minimum}
              onChange={e => setMinimum(e.target.value)}
            />
            –
            <input
              className="jp-mod-styled"
              name="adapt-maximum"
              aria-label="Adapt: maximum workers"
              size={2}
              value={maximum}
              onChange={e => setMaximum(e.target.value)}
            />
          </label>
          <button
            className="jp-Button jp-workbench-button"
            disabled={!!busy}
            onClick={adapt}
            data-workbench-action="adapt"
          >
            Adapt
          </button>
        </div>
      )}
      {health && (
        <div className="jp-workbench-health-box">
          <HealthReport health={health} />
          <button
            className="jp-Button jp-mod-minimal jp-workbench-link"
            onClick={() => setHealth(null)}
            aria-label="Hide the diagnosis"
          >
            Hide
          </button>
        </div>
      )}
      <ErrorBox error={error} />
    </li>
  );
}

function ClustersView(props: { context: IWorkbenchContext }) {
  const { context } = props;
  const [clusters, setClusters] = useState<ICluster[] | null>(null);
  const [error, setError] = useState<WorkbenchAPIError | null>(null);
  const [selected, setSelected] = useState<string | null>(
    context.selectedCluster
  );
  const poll = useRef<Poll | null>(null);

  useEffect(() => {
    const onSelect = (_: unknown, id: string | null) => setSelected(id);
    context.selectionChanged.connect(onSelect);
    return () => {
      context.selectionChanged.disconnect(onSelect);
    };
  }, [context]);

  useEffect(() => {
    const p = new Poll({
      factory: async () => {
        try {
          const listed = await listClusters(context.serverSettings);
          setClusters(listed);
          setError(null);
          context.clustersListed(listed.map(c => c.id));
        } catch (e) {
          setError(e as WorkbenchAPIError);
          throw e; // back off while the server is away
        }
      },
      frequency: { interval: POLL_INTERVAL_MS, backoff: true, max: 60000 },
      name: 'workbench:clusters',
      standby: 'when-hidden'
    });
    poll.current = p;
    const onChange = () => void p.refresh();
    context.clustersChanged.connect(onChange);
    return () => {
      context.clustersChanged.disconnect(onChange);
      p.dispose();
    };
  }, [context]);

  const refresh = () => void poll.current?.refresh();

  return (
    <div className="jp-workbench-section-body jp-workbench-clusters">
      {clusters === null && !error && (
        <div className="jp-workbench-dim">Loading…</div>
      )}
      {clusters !== null && clusters.length === 0 && (
        <div className="jp-workbench-dim jp-workbench-empty">
          No clusters. Launch one from a profile, or call workbench.launch() in
          a notebook.
        </div>
      )}
      <ul className="jp-workbench-cluster-list" aria-label="Running clusters">
        {(clusters ?? []).map(c => (
          <ClusterCard
            key={c.id}
            cluster={c}
            context={context}
            refresh={refresh}
            selected={c.id === selected}
          />
        ))}
      </ul>
      <ErrorBox error={error} />
    </div>
  );
}

export const clustersSection: IWorkbenchSection = {
  id: 'clusters',
  title: 'Running clusters',
  rank: 20,
  weight: 3,
  create: context => ReactWidget.create(<ClustersView context={context} />)
};
