/**
 * The parameter form of a notebook template (pure functions, no DOM).
 *
 * A template's parameters carry the Python type of their default (str, int, float,
 * bool, list, dict, NoneType). `paramToText` shows a value in an input,
 * `parseParam` reads it back as that type, `collectParameters` returns only the
 * parameters the user changed, and `notebookPath` checks the path of the new
 * notebook. The server checks everything again (workbench.templates).
 */
import { ITemplateParameter } from './request';

export interface IParsed {
  value?: unknown;
  error?: string;
}

export function paramToText(param: ITemplateParameter): string {
  const value = param.default;
  if (param.type === 'str') {
    return String(value ?? '');
  }
  if (param.type === 'bool') {
    return value ? 'true' : 'false';
  }
  if (param.type === 'NoneType' || value === null || value === undefined) {
    return '';
  }
  if (param.type === 'int' || param.type === 'float') {
    return String(value);
  }
  return JSON.stringify(value);
}

function parseJSON(text: string): IParsed {
  try {
    return { value: JSON.parse(text) };
  } catch {
    return { error: 'not valid JSON' };
  }
}

/** The typed value of an input, or why it is not one. */
export function parseParam(param: ITemplateParameter, text: string): IParsed {
  const t = text.trim();
  const fail = (expected: string): IParsed => ({
    error: `${param.name}: expected ${expected}, got '${text}'`
  });
  switch (param.type) {
    case 'str':
      return { value: text };
    case 'bool':
      if (t === 'true' || t === 'false') {
        return { value: t === 'true' };
      }
      return fail('true or false');
    case 'int':
      if (/^[-+]?\d+$/.test(t)) {
        const n = Number(t);
        return Number.isSafeInteger(n)
          ? { value: n }
          : fail('a smaller number');
      }
      return fail('a whole number');
    case 'float': {
      const n = t === '' ? NaN : Number(t);
      return Number.isFinite(n) ? { value: n } : fail('a number');
    }
    case 'list': {
      const parsed = parseJSON(t);
      return Array.isArray(parsed.value)
        ? parsed
        : fail('a JSON list like ["a", "b"]');
    }
    case 'dict': {
      const parsed = parseJSON(t);
      const v = parsed.value;
      return v !== null && typeof v === 'object' && !Array.isArray(v)
        ? parsed
        : fail('a JSON object like {"key": "value"}');
    }
    default: {
      // NoneType (any value): empty is None, JSON if it parses, else the text
      if (t === '') {
        return { value: null };
      }
      const parsed = parseJSON(t);
      return parsed.error ? { value: text } : parsed;
    }
  }
}

/** The parameters whose input differs from the default's text, typed; and every error. */
export function collectParameters(
  params: ITemplateParameter[],
  texts: Record<string, string>
): { values: Record<string, unknown>; errors: string[] } {
  const values: Record<string, unknown> = {};
  const errors: string[] = [];
  for (const p of params) {
    const text = texts[p.name];
    if (text === undefined || text === paramToText(p)) {
      continue;
    }
    const parsed = parseParam(p, text);
    if (parsed.error) {
      errors.push(parsed.error);
    } else {
      values[p.name] = parsed.value;
    }
  }
  return { values, errors };
}

/** The notebook path to create (relative to the server root), or why it cannot be. */
export function notebookPath(
  text: string,
  templateName: string
): { path?: string; error?: string } {
  let path = text.trim().replace(/\\/g, '/');
  if (path === '') {
    path = `${templateName}.ipynb`;
  }
  if (path.startsWith('/') || path.startsWith('~')) {
    return {
      error: 'Path: must be relative to the Jupyter root (like work/run.ipynb)'
    };
  }
  const parts = path.split('/').filter(p => p !== '' && p !== '.');
  if (parts.length === 0) {
    return { error: 'Path: names no file' };
  }
  if (parts.includes('..')) {
    return { error: "Path: must not contain '..'" };
  }
  if (parts.some(p => p.startsWith('.'))) {
    return { error: 'Path: must not name a hidden file or directory' };
  }
  if (!parts[parts.length - 1].endsWith('.ipynb')) {
    parts[parts.length - 1] += '.ipynb';
  }
  return { path: parts.join('/') };
}
