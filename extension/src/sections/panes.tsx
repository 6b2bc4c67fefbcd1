import { ReactWidget } from '@jupyterlab/apputils';
import React, { useCallback, useEffect, useState } from 'react';

import { IWorkbenchContext, IWorkbenchSection } from '../context';
import { splitPlots } from '../panes';
import { clusterPanes, IClusterPanes, IPaneItem } from '../request';
import { ErrorBox } from './common';

/**
 * The dockable panes of the selected cluster: every workbench dashboard page (GPU,
 * Storage, Network, Cluster, Energy) and every Dask plot its scheduler serves (the
 * `individual-*` pages). A click opens one as a main-area panel.
 */
function PaneButton(props: {
  item: IPaneItem;
  context: IWorkbenchContext;
  onError: (e: Error) => void;
}) {
  const { item, context, onError } = props;
  const what = item.kind === 'dask' ? `Dask plot ${item.label}` : item.label;
  return (
    <li>
      <button
        className="jp-Button jp-workbench-button jp-workbench-pane-button"
        data-pane-kind={item.kind}
        data-pane-route={item.route}
        aria-label={`Open ${what} of cluster ${item.cluster} as a panel`}
        title={`Open ${what} as a panel you can dock anywhere`}
        onClick={() => context.openPane(item).catch(onError)}
      >
        {item.label}
      </button>
    </li>
  );
}

type Plot = { label: string; route: string };

/** Task stream, progress, worker memory and GPU plots first; the others folded. */
function DaskPlots(props: {
  plots: Plot[];
  button: (plot: Plot) => JSX.Element;
}) {
  const { primary, more } = splitPlots(props.plots);
  return (
    <>
      <ul
        className="jp-workbench-pane-list"
        aria-labelledby="workbench-panes-dask"
        data-pane-group="dask"
      >
        {primary.map(props.button)}
      </ul>
      {more.length > 0 && (
        <details className="jp-workbench-more-plots">
          <summary>More Dask plots ({more.length})</summary>
          <ul
            className="jp-workbench-pane-list"
            aria-label="More Dask plots"
            data-pane-group="dask-more"
          >
            {more.map(props.button)}
          </ul>
        </details>
      )}
    </>
  );
}

function PanesView(props: { context: IWorkbenchContext }) {
  const { context } = props;
  const [cluster, setCluster] = useState<string | null>(
    context.selectedCluster
  );
  const [panes, setPanes] = useState<IClusterPanes | null>(null);
  const [error, setError] = useState<Error | null>(null);

  useEffect(() => {
    const onSelect = (_: unknown, id: string | null) => setCluster(id);
    context.selectionChanged.connect(onSelect);
    return () => {
      context.selectionChanged.disconnect(onSelect);
    };
  }, [context]);

  const load = useCallback(
    async (id: string | null) => {
      setPanes(null);
      setError(null);
      if (id === null) {
        return;
      }
      try {
        const listed = await clusterPanes(id, context.serverSettings);
        if (context.selectedCluster === id) {
          setPanes(listed);
        }
      } catch (e) {
        setError(e as Error);
      }
    },
    [context]
  );

  useEffect(() => {
    void load(cluster);
  }, [cluster, load]);

  if (cluster === null) {
    return (
      <div className="jp-workbench-section-body jp-workbench-panes">
        <div className="jp-workbench-dim jp-workbench-empty">
          Select a running cluster to list its dashboard panes.
        </div>
      </div>
    );
  }
  const item = (kind: IPaneItem['kind'], label: string, route: string) => ({
    cluster,
    kind,
    label,
    route
  });
  return (
    <div
      className="jp-workbench-section-body jp-workbench-panes"
      data-cluster-id={cluster}
    >
      <div className="jp-workbench-dim">
        Cluster <code>{cluster}</code>: click one to open it as a panel; drag
        its tab to dock it anywhere.
      </div>
      {panes === null && !error && (
        <div className="jp-workbench-dim">Loading…</div>
      )}
      {panes && (
        <>
          <h3 className="jp-workbench-pane-heading" id="workbench-panes-wb">
            Workbench dashboards
          </h3>
          {panes.workbench.problem ? (
            <div className="jp-workbench-dim">{panes.workbench.problem}</div>
          ) : (
            <ul
              className="jp-workbench-pane-list"
              aria-labelledby="workbench-panes-wb"
              data-pane-group="workbench"
            >
              {panes.workbench.pages.map(p => (
                <PaneButton
                  key={p.route}
                  item={item('workbench', p.label, p.route)}
                  context={context}
                  onError={setError}
                />
              ))}
            </ul>
          )}
          <h3 className="jp-workbench-pane-heading" id="workbench-panes-dask">
            Dask plots
          </h3>
          {panes.dask.problem ? (
            <div className="jp-workbench-dim">{panes.dask.problem}</div>
          ) : (
            <DaskPlots
              plots={panes.dask.plots}
              button={p => (
                <PaneButton
                  key={p.route}
                  item={item('dask', p.label, p.route)}
                  context={context}
                  onError={setError}
                />
              )}
            />
          )}
        </>
      )}
      {error && (
        <button
          className="jp-Button jp-mod-minimal jp-workbench-link"
          onClick={() => void load(cluster)}
          aria-label="List the panes again"
        >
          Retry
        </button>
      )}
      <ErrorBox error={error} />
    </div>
  );
}

export const panesSection: IWorkbenchSection = {
  id: 'panes',
  title: 'Dashboard panes',
  rank: 25,
  weight: 2,
  create: context => ReactWidget.create(<PanesView context={context} />)
};
