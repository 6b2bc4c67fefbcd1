import { ReactWidget } from '@jupyterlab/apputils';
import React, { useCallback, useEffect, useState } from 'react';

import { IWorkbenchContext, IWorkbenchSection } from '../context';
import { storageOptionsText } from '../display';
import { IDataset, IDatasetList, listDatasets } from '../request';
import { ErrorBox, ProblemList, SourceFiles } from './common';

function DatasetCard(props: { dataset: IDataset; context: IWorkbenchContext }) {
  const { dataset, context } = props;
  const [error, setError] = useState<Error | null>(null);
  const options = storageOptionsText(dataset.storage_options);
  const insert = () => {
    setError(null);
    try {
      context.insertCode(dataset.code, 'the load cell');
    } catch (e) {
      setError(e as Error);
    }
  };
  return (
    <li className="jp-workbench-dataset" data-dataset={dataset.name}>
      <div className="jp-workbench-cluster-head">
        <b className="jp-workbench-dataset-name">{dataset.name}</b>
        <span className="jp-workbench-badge">{dataset.format}</span>
        <span
          className="jp-workbench-dim"
          title={`${dataset.source}${dataset.line ? `:${dataset.line}` : ''}`}
        >
          {dataset.scope}
        </span>
      </div>
      {dataset.description && (
        <div className="jp-workbench-description">{dataset.description}</div>
      )}
      <code
        className="jp-workbench-dim jp-workbench-address"
        title={dataset.uri}
      >
        {dataset.uri}
      </code>
      {options && (
        <div className="jp-workbench-dim" title="storage options (references)">
          {options}
        </div>
      )}
      {dataset.tags.length > 0 && (
        <div className="jp-workbench-tags">
          {dataset.tags.map(tag => (
            <span key={tag} className="jp-workbench-tag">
              {tag}
            </span>
          ))}
        </div>
      )}
      <div className="jp-workbench-actions">
        <button
          className="jp-Button jp-workbench-button"
          onClick={insert}
          data-workbench-action="insert-load"
          title={dataset.code}
        >
          Insert load cell
        </button>
      </div>
      <ErrorBox error={error} />
    </li>
  );
}

function DatasetsView(props: { context: IWorkbenchContext }) {
  const { context } = props;
  const [list, setList] = useState<IDatasetList | null>(null);
  const [error, setError] = useState<Error | null>(null);

  const reload = useCallback(async () => {
    try {
      setList(await listDatasets(context.serverSettings));
      setError(null);
    } catch (e) {
      setError(e as Error);
    }
  }, [context]);

  useEffect(() => {
    void reload();
  }, [reload]);

  return (
    <div className="jp-workbench-section-body jp-workbench-datasets">
      <div className="jp-workbench-row">
        <span className="jp-workbench-dim">The team's data catalog</span>
        <button
          className="jp-Button jp-mod-minimal jp-workbench-icon-button"
          title="Reload the catalog from disk"
          onClick={() => void reload()}
        >
          ↻
        </button>
      </div>
      {list && list.datasets.length === 0 && (
        <div className="jp-workbench-dim jp-workbench-empty">
          No datasets. Add them to catalog.yaml in your workbench config
          directory, or a team catalog (WORKBENCH_CATALOG).
        </div>
      )}
      <ul className="jp-workbench-dataset-list">
        {(list?.datasets ?? []).map(d => (
          <DatasetCard key={d.name} dataset={d} context={context} />
        ))}
      </ul>
      {list && (
        <ProblemList
          problems={list.problems}
          summary={`${list.problems.length} problem(s) in catalog files`}
        />
      )}
      {list && (
        <SourceFiles
          files={list.files}
          title="Catalog files"
          missing="not found"
        />
      )}
      <ErrorBox error={error} />
    </div>
  );
}

export const datasetsSection: IWorkbenchSection = {
  id: 'datasets',
  title: 'Datasets',
  rank: 40,
  weight: 2,
  create: context => ReactWidget.create(<DatasetsView context={context} />)
};
