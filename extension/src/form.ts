/**
 * A launch form generated from a backend's options schema (pydantic's JSON schema).
 *
 * Pure functions, no DOM: `fieldsFromSchema` describes one input per option,
 * `toText` shows a value in an input, `parseField` reads it back, and
 * `collectOverrides` returns only the options the user changed. The server
 * validates the overrides again; this gives immediate feedback.
 */
import { IJSONSchema } from './request';

export type FieldKind = 'boolean' | 'integer' | 'number' | 'enum' | 'text';
type Accepts = 'string' | 'integer' | 'number' | 'boolean' | 'array' | 'object';

export interface IField {
  name: string;
  title: string;
  description: string;
  kind: FieldKind;
  /** null is allowed: an empty input means "use the default" */
  nullable: boolean;
  /** choices of an enum field, or named values a text field accepts */
  choices: string[];
  /** every JSON type a text field accepts, in the order they are tried */
  accepts: Accepts[];
  minimum?: number;
  maximum?: number;
  default: unknown;
}

function typesOf(schema: IJSONSchema): IJSONSchema[] {
  if (Array.isArray(schema.anyOf)) {
    return schema.anyOf.flatMap(typesOf);
  }
  if (Array.isArray(schema.type)) {
    return schema.type.map(t => ({ ...schema, type: t }));
  }
  return [schema];
}

function titleOf(name: string, schema: IJSONSchema): string {
  if (typeof schema.title === 'string' && schema.title) {
    return schema.title;
  }
  return name.replace(/_/g, ' ').replace(/^\w/, c => c.toUpperCase());
}

/** One field per property of an object schema, in the schema's order. */
export function fieldsFromSchema(schema: IJSONSchema): IField[] {
  const props = schema.properties ?? {};
  return Object.entries(props).map(([name, prop]) => fieldFor(name, prop));
}

export function fieldFor(name: string, prop: IJSONSchema): IField {
  const variants = typesOf(prop);
  const nullable = variants.some(v => v.type === 'null');
  const real = variants.filter(v => v.type !== 'null');
  const choices = real.flatMap(v =>
    Array.isArray(v.enum) ? v.enum.map(String) : []
  );
  const accepts: Accepts[] = [];
  for (const v of real) {
    const t = (v.type ?? (v.enum ? 'string' : 'object')) as Accepts;
    if (!accepts.includes(t)) {
      accepts.push(t);
    }
  }
  const numeric = real.find(v => v.type === 'integer' || v.type === 'number');
  let minimum = numeric?.minimum;
  if (minimum === undefined && typeof numeric?.exclusiveMinimum === 'number') {
    minimum = numeric.exclusiveMinimum;
  }
  const maximum = numeric?.maximum;
  let kind: FieldKind = 'text';
  if (real.length === 1) {
    const only = real[0];
    if (only.type === 'boolean') {
      kind = 'boolean';
    } else if (only.type === 'integer') {
      kind = 'integer';
    } else if (only.type === 'number') {
      kind = 'number';
    } else if (Array.isArray(only.enum)) {
      kind = 'enum';
    }
  }
  return {
    name,
    title: titleOf(name, prop),
    description: typeof prop.description === 'string' ? prop.description : '',
    kind,
    nullable,
    choices,
    accepts,
    minimum,
    maximum,
    default: prop.default
  };
}

/** The text an input shows for `value`. */
export function toText(field: IField, value: unknown): string {
  if (value === null || value === undefined) {
    return '';
  }
  if (field.kind === 'boolean') {
    return value ? 'true' : 'false';
  }
  if (Array.isArray(value) && field.accepts.length === 1) {
    // a plain list of names (e.g. modules to import): comma separated
    if (value.every(v => typeof v === 'string' && !v.includes(','))) {
      return value.join(', ');
    }
  }
  if (typeof value === 'object') {
    return JSON.stringify(value);
  }
  return String(value);
}

export interface IParsed {
  value?: unknown;
  error?: string;
}

function describe(field: IField): string {
  const words: string[] = [];
  if (field.choices.length) {
    words.push(field.choices.map(c => `'${c}'`).join(', '));
  }
  for (const a of field.accepts) {
    if (a === 'integer') {
      words.push('a whole number');
    } else if (a === 'number') {
      words.push('a number');
    } else if (a === 'array') {
      words.push('a list like [0, 1]');
    } else if (a === 'boolean') {
      words.push('true or false');
    } else if (a === 'object') {
      words.push('a JSON object');
    } else if (a === 'string' && !field.choices.length) {
      words.push('text');
    }
  }
  if (field.nullable) {
    words.push('empty for the default');
  }
  return words.join(', or ');
}

function checkRange(field: IField, n: number): IParsed {
  if (field.minimum !== undefined && n < field.minimum) {
    return { error: `${field.title}: must be at least ${field.minimum}` };
  }
  if (field.maximum !== undefined && n > field.maximum) {
    return { error: `${field.title}: must be at most ${field.maximum}` };
  }
  return { value: n };
}

/** Read the text of an input back into a JSON value for the field. */
export function parseField(field: IField, raw: string): IParsed {
  const text = raw.trim();
  if (text === '') {
    if (field.nullable) {
      return { value: null };
    }
    if (field.accepts.includes('array') && field.accepts.length === 1) {
      return { value: [] };
    }
    return { error: `${field.title}: a value is required` };
  }
  if (field.kind === 'boolean') {
    if (text === 'true' || text === 'false') {
      return { value: text === 'true' };
    }
    return { error: `${field.title}: expected true or false` };
  }
  if (field.choices.includes(text)) {
    return { value: text };
  }
  if (field.kind === 'enum') {
    return { error: `${field.title}: expected one of ${describe(field)}` };
  }
  for (const accept of field.accepts) {
    if (accept === 'integer' && /^[-+]?\d+$/.test(text)) {
      return checkRange(field, parseInt(text, 10));
    }
    if (
      accept === 'number' &&
      /^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$/.test(text)
    ) {
      return checkRange(field, parseFloat(text));
    }
    if (accept === 'boolean' && (text === 'true' || text === 'false')) {
      return { value: text === 'true' };
    }
    if (accept === 'array') {
      if (text.startsWith('[')) {
        try {
          const value = JSON.parse(text);
          if (Array.isArray(value)) {
            return { value };
          }
        } catch {
          return { error: `${field.title}: not a valid list: ${text}` };
        }
      } else if (field.accepts.length === 1) {
        return {
          value: text
            .split(',')
            .map(s => s.trim())
            .filter(Boolean)
        };
      }
    }
    if (accept === 'object' && text.startsWith('{')) {
      try {
        return { value: JSON.parse(text) };
      } catch {
        return { error: `${field.title}: not a valid JSON object` };
      }
    }
  }
  if (field.accepts.includes('string') && !field.choices.length) {
    return { value: text };
  }
  return {
    error: `${field.title}: expected ${describe(field)} (got '${text}')`
  };
}

function same(a: unknown, b: unknown): boolean {
  return JSON.stringify(a ?? null) === JSON.stringify(b ?? null);
}

export interface ICollected {
  overrides: Record<string, unknown>;
  errors: string[];
}

/**
 * The options the user changed from `effective` (the profile's own values), as
 * overrides for launching; and one error per field that cannot be read. Fields outside
 * `editable` (the options the profile lets the sidebar change; all when undefined) are
 * never sent: the server would refuse them.
 */
export function collectOverrides(
  fields: IField[],
  texts: Record<string, string>,
  effective: Record<string, unknown>,
  editable?: ReadonlySet<string>
): ICollected {
  const overrides: Record<string, unknown> = {};
  const errors: string[] = [];
  for (const field of fields) {
    if (!(field.name in texts) || (editable && !editable.has(field.name))) {
      continue;
    }
    const current = effective[field.name];
    if (texts[field.name] === toText(field, current)) {
      continue; // untouched
    }
    const parsed = parseField(field, texts[field.name]);
    if (parsed.error) {
      errors.push(parsed.error);
    } else if (!same(parsed.value, current)) {
      overrides[field.name] = parsed.value;
    }
  }
  return { overrides, errors };
}
