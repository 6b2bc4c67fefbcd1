import { Notification, ReactWidget } from '@jupyterlab/apputils';
import React, { useCallback, useEffect, useMemo, useState } from 'react';

import { IWorkbenchContext, IWorkbenchSection } from '../context';
import { ErrorBox, ProblemList, SourceFiles } from './common';
import { collectOverrides, fieldsFromSchema, IField, toText } from '../form';
import {
  getProfile,
  ILaunchPreview,
  IProfileDetail,
  IProfileList,
  launchCluster,
  listProfiles,
  previewLaunch
} from '../request';

/** What a launch would do: the live check's verdict and each job's batch script. */
function PreviewBox(props: { preview: ILaunchPreview }) {
  const { preview } = props;
  return (
    <div
      className="jp-workbench-preview"
      data-workbench-preview={preview.profile}
    >
      <div className="jp-workbench-preview-verdict">
        ✓ {preview.verdict || `profile ${preview.profile} passed the checks`}
      </div>
      {preview.job_script !== null && (
        <details className="jp-workbench-preview-script">
          <summary>Job script</summary>
          <pre>{preview.job_script}</pre>
        </details>
      )}
    </div>
  );
}

/** Why a field cannot be changed here. */
const PROFILE_FILE_ONLY =
  "Set in the profile file: the sidebar may not change it (security, addresses, limits and what runs are the profile's decision; a profile lists what the sidebar may change under overridable:).";

function FieldInput(props: {
  field: IField;
  text: string;
  onChange: (text: string) => void;
  disabled: boolean;
  fixed: boolean;
}) {
  const { field, text, onChange, fixed } = props;
  const disabled = props.disabled || fixed;
  const id = `workbench-option-${field.name}`;
  let input: React.ReactElement;
  if (field.kind === 'boolean') {
    input = (
      <input
        id={id}
        name={field.name}
        type="checkbox"
        checked={text === 'true'}
        disabled={disabled}
        onChange={e => onChange(e.target.checked ? 'true' : 'false')}
      />
    );
  } else if (field.kind === 'enum') {
    input = (
      <select
        id={id}
        name={field.name}
        className="jp-mod-styled"
        value={text}
        disabled={disabled}
        onChange={e => onChange(e.target.value)}
      >
        {field.nullable && <option value="">(default)</option>}
        {field.choices.map(c => (
          <option key={c} value={c}>
            {c}
          </option>
        ))}
      </select>
    );
  } else {
    input = (
      <input
        id={id}
        name={field.name}
        className="jp-mod-styled"
        type="text"
        inputMode={
          field.kind === 'integer'
            ? 'numeric'
            : field.kind === 'number'
              ? 'decimal'
              : 'text'
        }
        placeholder={field.nullable ? 'default' : ''}
        value={text}
        disabled={disabled}
        onChange={e => onChange(e.target.value)}
      />
    );
  }
  return (
    <div
      className={`jp-workbench-field jp-workbench-field-${field.kind}${
        fixed ? ' jp-workbench-field-fixed' : ''
      }`}
      title={
        fixed ? `${field.description}\n${PROFILE_FILE_ONLY}` : field.description
      }
    >
      <label htmlFor={id}>{field.title}</label>
      {input}
    </div>
  );
}

function ProfilesView(props: { context: IWorkbenchContext }) {
  const { context } = props;
  const settings = context.serverSettings;
  const [list, setList] = useState<IProfileList | null>(null);
  const [selected, setSelected] = useState<string>('');
  const [detail, setDetail] = useState<IProfileDetail | null>(null);
  const [texts, setTexts] = useState<Record<string, string>>({});
  const [error, setError] = useState<Error | null>(null);
  const [launching, setLaunching] = useState(false);
  const [checking, setChecking] = useState(false);
  const [preview, setPreview] = useState<ILaunchPreview | null>(null);
  const [showAll, setShowAll] = useState(false);

  const reload = useCallback(async () => {
    try {
      const reply = await listProfiles(settings);
      setList(reply);
      setError(null);
      setSelected(current => {
        if (current && reply.profiles.some(p => p.name === current)) {
          return current;
        }
        const first =
          reply.profiles.find(p => p.valid && p.name === 'local') ??
          reply.profiles.find(p => p.valid);
        return first ? first.name : '';
      });
    } catch (e) {
      setError(e as Error);
    }
  }, [settings]);

  useEffect(() => {
    void reload();
  }, [reload]);

  useEffect(() => {
    // Never show (or launch) the previous profile's form while this one loads.
    setDetail(null);
    if (!selected) {
      return;
    }
    let cancelled = false;
    getProfile(selected, settings)
      .then(d => {
        if (cancelled) {
          return;
        }
        // The inputs get their texts in the same render as the fields appear.
        const t: Record<string, string> = {};
        for (const f of fieldsFromSchema(d.schema)) {
          t[f.name] = toText(f, (d.effective_options ?? {})[f.name]);
        }
        setTexts(t);
        setDetail(d);
        setError(null);
      })
      .catch(e => {
        if (!cancelled) {
          setDetail(null);
          setError(e as Error);
        }
      });
    return () => {
      cancelled = true;
    };
  }, [selected, settings]);

  const fields = useMemo(
    () => (detail ? fieldsFromSchema(detail.schema) : []),
    [detail]
  );
  const effective = useMemo(() => detail?.effective_options ?? {}, [detail]);
  const editable = useMemo(
    () =>
      detail?.sidebar_options ? new Set(detail.sidebar_options) : undefined,
    [detail]
  );

  const collected = useMemo(
    () => collectOverrides(fields, texts, effective, editable),
    [fields, texts, effective, editable]
  );

  // A preview is of the options it was made with: any change makes it stale.
  useEffect(() => setPreview(null), [selected, texts]);

  const check = async () => {
    if (!detail || detail.name !== selected || collected.errors.length) {
      return;
    }
    setChecking(true);
    setError(null);
    try {
      setPreview(
        await previewLaunch(detail.name, collected.overrides, settings)
      );
    } catch (e) {
      setPreview(null);
      setError(e as Error);
    } finally {
      setChecking(false);
    }
  };

  const launch = async () => {
    if (!detail || detail.name !== selected || collected.errors.length) {
      return;
    }
    setLaunching(true);
    setError(null);
    try {
      const cluster = await launchCluster(
        detail.name,
        collected.overrides,
        settings
      );
      Notification.success(
        `Cluster ${cluster.id} (${cluster.profile}) is running with ${
          cluster.workers ?? 0
        } worker(s)`,
        { autoClose: 5000 }
      );
      for (const warning of cluster.warnings ?? []) {
        Notification.warning(warning, { autoClose: false });
      }
      context.notifyClustersChanged();
    } catch (e) {
      setError(e as Error);
    } finally {
      setLaunching(false);
    }
  };

  // The options this profile sets, and the commonly changed ones, come first.
  const primary = new Set([
    ...Object.keys(detail?.options ?? {}),
    'n_workers',
    'threads_per_worker',
    'memory_limit',
    'gpus'
  ]);
  const shown = fields.filter(
    f => showAll || primary.has(f.name) || f.name in collected.overrides
  );
  const hidden = fields.length - shown.length;

  return (
    <div className="jp-workbench-section-body jp-workbench-profiles">
      <div className="jp-workbench-row">
        <label htmlFor="workbench-profile-select">Profile</label>
        <select
          id="workbench-profile-select"
          className="jp-mod-styled"
          value={selected}
          disabled={launching}
          onChange={e => setSelected(e.target.value)}
        >
          {(list?.profiles ?? []).map(p => (
            <option key={p.name} value={p.name} disabled={!p.valid}>
              {p.name}
              {p.valid ? '' : ' (invalid)'}
            </option>
          ))}
        </select>
        <button
          className="jp-Button jp-mod-minimal jp-workbench-icon-button"
          title="Reload profiles from disk"
          onClick={() => void reload()}
        >
          ↻
        </button>
      </div>
      {detail && (
        <div className="jp-workbench-profile-meta">
          <div className="jp-workbench-description">{detail.description}</div>
          <div className="jp-workbench-dim">
            backend <code>{detail.backend}</code> · from{' '}
            <span title={detail.source}>{detail.scope}</span>
          </div>
        </div>
      )}
      {list && (
        <ProblemList
          problems={list.problems}
          summary={`${list.problems.length} problem(s) in profile files`}
        />
      )}
      {list && (
        <SourceFiles
          files={list.files}
          title="Profile files"
          missing="not created yet"
        />
      )}
      {detail && (
        <form
          className="jp-workbench-form"
          onSubmit={e => {
            e.preventDefault();
            void launch();
          }}
        >
          {shown.map(f => (
            <FieldInput
              key={f.name}
              field={f}
              text={texts[f.name] ?? ''}
              disabled={launching}
              fixed={editable !== undefined && !editable.has(f.name)}
              onChange={text => setTexts(t => ({ ...t, [f.name]: text }))}
            />
          ))}
          {(hidden > 0 || showAll) && (
            <button
              type="button"
              className="jp-Button jp-mod-minimal jp-workbench-link"
              onClick={() => setShowAll(s => !s)}
            >
              {showAll ? 'Fewer options' : `All options (${hidden} more)`}
            </button>
          )}
          {collected.errors.length > 0 && (
            <ul className="jp-workbench-error">
              {collected.errors.map(e => (
                <li key={e}>{e}</li>
              ))}
            </ul>
          )}
          <div className="jp-workbench-row">
            <button
              type="submit"
              className="jp-Button jp-mod-styled jp-mod-accept"
              disabled={launching || collected.errors.length > 0}
              data-workbench-action="launch"
            >
              {launching ? 'Launching…' : 'Launch'}
            </button>
            <button
              type="button"
              className="jp-Button jp-mod-styled jp-mod-reject"
              title="Validate the options and check them against the live system (SLURM: sbatch --test-only); shows the job script. Starts nothing."
              disabled={launching || checking || collected.errors.length > 0}
              data-workbench-action="preview"
              onClick={() => void check()}
            >
              {checking ? 'Checking…' : 'Check'}
            </button>
            {Object.keys(collected.overrides).length > 0 && (
              <span className="jp-workbench-dim">
                {Object.keys(collected.overrides).length} option(s) changed
              </span>
            )}
          </div>
          {preview && <PreviewBox preview={preview} />}
        </form>
      )}
      <ErrorBox error={error} />
    </div>
  );
}

export const profilesSection: IWorkbenchSection = {
  id: 'profiles',
  title: 'Cluster profiles',
  rank: 10,
  weight: 3,
  create: context => ReactWidget.create(<ProfilesView context={context} />)
};
