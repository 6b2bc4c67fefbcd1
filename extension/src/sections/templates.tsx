import { Notification, ReactWidget } from '@jupyterlab/apputils';
import React, { useCallback, useEffect, useMemo, useState } from 'react';

import { IWorkbenchContext, IWorkbenchSection } from '../context';
import {
  collectParameters,
  notebookPath,
  paramToText,
  parseParam
} from '../params';
import {
  createFromTemplate,
  ITemplate,
  ITemplateList,
  ITemplateParameter,
  listTemplates
} from '../request';
import { ErrorBox, ProblemList } from './common';

function ParamInput(props: {
  param: ITemplateParameter;
  text: string;
  disabled: boolean;
  onChange: (text: string) => void;
}) {
  const { param, text, disabled, onChange } = props;
  const id = `workbench-param-${param.name}`;
  const error = parseParam(param, text).error;
  return (
    <div
      className={`jp-workbench-field jp-workbench-field-${param.type}`}
      title={param.help}
    >
      <label htmlFor={id}>
        {param.name}
        <span className="jp-workbench-dim"> {param.type}</span>
      </label>
      {param.type === 'bool' ? (
        <input
          id={id}
          name={`param-${param.name}`}
          type="checkbox"
          checked={text === 'true'}
          disabled={disabled}
          onChange={e => onChange(e.target.checked ? 'true' : 'false')}
        />
      ) : (
        <input
          id={id}
          name={`param-${param.name}`}
          className={`jp-mod-styled${error ? ' jp-mod-invalid' : ''}`}
          type="text"
          value={text}
          disabled={disabled}
          placeholder={param.type === 'NoneType' ? 'None' : ''}
          onChange={e => onChange(e.target.value)}
        />
      )}
    </div>
  );
}

function TemplateForm(props: {
  template: ITemplate;
  context: IWorkbenchContext;
}) {
  const { template, context } = props;
  const initial = useMemo(() => {
    const t: Record<string, string> = {};
    for (const p of template.parameters) {
      t[p.name] = paramToText(p);
    }
    return t;
  }, [template]);
  const [texts, setTexts] = useState<Record<string, string>>(initial);
  const [path, setPath] = useState(`${template.name}.ipynb`);
  const [overwrite, setOverwrite] = useState(false);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<Error | null>(null);

  useEffect(() => {
    setTexts(initial);
    setPath(`${template.name}.ipynb`);
    setError(null);
  }, [template, initial]);

  const collected = collectParameters(template.parameters, texts);
  const target = notebookPath(path, template.name);
  const errors = [...(target.error ? [target.error] : []), ...collected.errors];

  const create = async () => {
    if (errors.length || !target.path) {
      return;
    }
    setBusy(true);
    setError(null);
    try {
      const made = await createFromTemplate(
        template.name,
        target.path,
        collected.values,
        overwrite,
        context.serverSettings
      );
      Notification.success(
        `Created ${made.path} from the template ${template.title}`,
        { autoClose: 4000 }
      );
      await context.openPath(made.path);
    } catch (e) {
      setError(e as Error);
    } finally {
      setBusy(false);
    }
  };

  return (
    <form
      className="jp-workbench-form jp-workbench-template-form"
      onSubmit={e => {
        e.preventDefault();
        void create();
      }}
    >
      <div className="jp-workbench-field">
        <label htmlFor="workbench-template-path">New notebook</label>
        <input
          id="workbench-template-path"
          name="template-path"
          className="jp-mod-styled"
          type="text"
          value={path}
          disabled={busy}
          onChange={e => setPath(e.target.value)}
        />
      </div>
      {template.parameters.map(p => (
        <ParamInput
          key={p.name}
          param={p}
          text={texts[p.name] ?? ''}
          disabled={busy}
          onChange={text => setTexts(t => ({ ...t, [p.name]: text }))}
        />
      ))}
      <label className="jp-workbench-check-row">
        <input
          type="checkbox"
          name="overwrite"
          checked={overwrite}
          disabled={busy}
          onChange={e => setOverwrite(e.target.checked)}
        />
        Replace an existing file
      </label>
      {errors.length > 0 && (
        <ul className="jp-workbench-error">
          {errors.map(e => (
            <li key={e}>{e}</li>
          ))}
        </ul>
      )}
      <div className="jp-workbench-row">
        <button
          type="submit"
          className="jp-Button jp-mod-styled jp-mod-accept"
          disabled={busy || errors.length > 0}
          data-workbench-action="create-notebook"
        >
          {busy ? 'Creating…' : 'Create'}
        </button>
        {Object.keys(collected.values).length > 0 && (
          <span className="jp-workbench-dim">
            {Object.keys(collected.values).length} parameter(s) changed
          </span>
        )}
      </div>
      <ErrorBox error={error} />
    </form>
  );
}

function TemplatesView(props: { context: IWorkbenchContext }) {
  const { context } = props;
  const [list, setList] = useState<ITemplateList | null>(null);
  const [selected, setSelected] = useState('');
  const [error, setError] = useState<Error | null>(null);

  const reload = useCallback(async () => {
    try {
      setList(await listTemplates(context.serverSettings));
      setError(null);
    } catch (e) {
      setError(e as Error);
    }
  }, [context]);

  useEffect(() => {
    void reload();
  }, [reload]);

  const template = list?.templates.find(t => t.name === selected) ?? null;
  return (
    <div className="jp-workbench-section-body jp-workbench-templates">
      <div className="jp-workbench-row">
        <span className="jp-workbench-dim">
          New notebooks from your team's templates
        </span>
        <button
          className="jp-Button jp-mod-minimal jp-workbench-icon-button"
          title="Reload templates from disk"
          onClick={() => void reload()}
        >
          ↻
        </button>
      </div>
      {list && list.templates.length === 0 && (
        <div className="jp-workbench-dim jp-workbench-empty">
          No templates. Teams add theirs with WORKBENCH_TEMPLATES or
          templates_dir in config.yaml.
        </div>
      )}
      <ul className="jp-workbench-gallery">
        {(list?.templates ?? []).map(t => (
          <li
            key={t.name}
            className={`jp-workbench-template${
              t.name === selected ? ' jp-mod-selected' : ''
            }`}
            data-template={t.name}
          >
            <button
              className="jp-workbench-template-pick"
              onClick={() => setSelected(s => (s === t.name ? '' : t.name))}
              title={t.source}
            >
              <b>{t.title}</b>
              <span className="jp-workbench-badge">{t.scope}</span>
              <span className="jp-workbench-dim jp-workbench-block">
                {t.description}
              </span>
              {t.tags.length > 0 && (
                <span className="jp-workbench-tags jp-workbench-block">
                  {t.tags.map(tag => (
                    <span key={tag} className="jp-workbench-tag">
                      {tag}
                    </span>
                  ))}
                </span>
              )}
            </button>
            {t.name === selected && template && (
              <TemplateForm template={template} context={context} />
            )}
          </li>
        ))}
      </ul>
      {list && (
        <ProblemList
          problems={list.problems}
          summary={`${list.problems.length} template(s) with problems`}
        />
      )}
      <ErrorBox error={error} />
    </div>
  );
}

export const templatesSection: IWorkbenchSection = {
  id: 'templates',
  title: 'Templates',
  rank: 30,
  weight: 2,
  create: context => ReactWidget.create(<TemplatesView context={context} />)
};
