import React from 'react';

import { WorkbenchAPIError } from '../request';

export function ErrorBox(props: { error: WorkbenchAPIError | Error | null }) {
  const { error } = props;
  if (!error) {
    return null;
  }
  const problems = error instanceof WorkbenchAPIError ? error.problems : [];
  const log = error instanceof WorkbenchAPIError ? error.log : null;
  return (
    <div className="jp-workbench-error" role="alert">
      <div>{error.message}</div>
      {log && !error.message.includes(log) && (
        <div className="jp-workbench-error-log">
          log: <code>{log}</code>
        </div>
      )}
      {problems.length > 0 && (
        <ul>
          {problems.map(p => (
            <li key={p}>{p}</li>
          ))}
        </ul>
      )}
    </div>
  );
}

/** Problems found in a section's YAML files (profiles, catalogs, templates), folded. */
export function ProblemList(props: { problems: string[]; summary: string }) {
  if (props.problems.length === 0) {
    return null;
  }
  return (
    <details className="jp-workbench-problems">
      <summary>{props.summary}</summary>
      <ul>
        {props.problems.map(p => (
          <li key={p}>{p}</li>
        ))}
      </ul>
    </details>
  );
}

/** The files a section's entries come from, and which of them are missing. */
export function SourceFiles(props: {
  files: { path: string; scope: string; exists: boolean }[];
  title: string;
  missing: string;
}) {
  return (
    <details className="jp-workbench-files">
      <summary className="jp-workbench-dim">{props.title}</summary>
      <ul>
        {props.files.map(f => (
          <li key={f.path} className="jp-workbench-dim">
            {f.scope}: <code>{f.path}</code>
            {f.exists ? '' : ` (${props.missing})`}
          </li>
        ))}
      </ul>
    </details>
  );
}
