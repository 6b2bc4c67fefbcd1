/**
 * The launch form generated from the local backend's real options schema
 * (fixtures/local-options.schema.json, kept equal to pydantic's output by
 * tests/test_lab_extension.py).
 */
import {
  collectOverrides,
  fieldFor,
  fieldsFromSchema,
  IField,
  parseField,
  toText
} from '../src/form';
import { IJSONSchema } from '../src/request';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const schema: IJSONSchema = require('./fixtures/local-options.schema.json');

function byName(fields: IField[]): Record<string, IField> {
  return Object.fromEntries(fields.map(f => [f.name, f]));
}

describe('fieldsFromSchema', () => {
  const fields = byName(fieldsFromSchema(schema));

  it('has one field per option, in the schema order', () => {
    expect(fieldsFromSchema(schema).map(f => f.name)).toEqual(
      Object.keys(schema.properties!)
    );
  });

  it('maps option types to inputs', () => {
    expect(fields.processes.kind).toBe('boolean');
    expect(fields.n_workers).toMatchObject({
      kind: 'integer',
      nullable: true,
      minimum: 0,
      title: 'N Workers'
    });
    expect(fields.threads_per_worker.minimum).toBe(1);
    expect(fields.protocol).toMatchObject({
      kind: 'enum',
      nullable: true,
      choices: ['tcp', 'tls', 'ucx', 'inproc']
    });
    expect(fields.dashboard_address).toMatchObject({
      kind: 'text',
      nullable: true,
      accepts: ['string']
    });
    // gpus: 'auto' | 'all' | 'none' | N | [indices or UUIDs]
    expect(fields.gpus).toMatchObject({
      kind: 'text',
      nullable: false,
      choices: ['auto', 'all', 'none'],
      accepts: ['string', 'integer', 'array']
    });
    expect(fields.memory_limit.accepts).toEqual([
      'string',
      'integer',
      'number'
    ]);
    expect(fields.pre_import.accepts).toEqual(['array']);
    expect(fields.gpus.description).toContain("'auto': every visible GPU");
  });

  it('reads typed input back and rejects what the option cannot take', () => {
    expect(parseField(fields.n_workers, '3')).toEqual({ value: 3 });
    expect(parseField(fields.n_workers, '')).toEqual({ value: null });
    expect(parseField(fields.n_workers, '-1').error).toBe(
      'N Workers: must be at least 0'
    );
    expect(parseField(fields.n_workers, '1.5').error).toMatch(
      /N Workers: expected a whole number/
    );
    expect(parseField(fields.n_workers, 'two').error).toMatch(/got 'two'/);
    expect(parseField(fields.threads_per_worker, '0').error).toBe(
      'Threads Per Worker: must be at least 1'
    );
    expect(parseField(fields.gpus, 'none')).toEqual({ value: 'none' });
    expect(parseField(fields.gpus, '2')).toEqual({ value: 2 });
    expect(parseField(fields.gpus, '[0, "GPU-abc"]')).toEqual({
      value: [0, 'GPU-abc']
    });
    expect(parseField(fields.gpus, 'many').error).toBe(
      "Gpus: expected 'auto', 'all', 'none', or a whole number, or a list like [0, 1] (got 'many')"
    );
    expect(parseField(fields.gpus, '').error).toBe('Gpus: a value is required');
    expect(parseField(fields.memory_limit, '16GB')).toEqual({ value: '16GB' });
    expect(parseField(fields.memory_limit, '0.5')).toEqual({ value: 0.5 });
    expect(parseField(fields.processes, 'false')).toEqual({ value: false });
    expect(parseField(fields.protocol, 'carrier-pigeon').error).toMatch(
      /Protocol: expected one of 'tcp', 'tls', 'ucx', 'inproc'/
    );
    expect(parseField(fields.pre_import, 'numpy, cudf')).toEqual({
      value: ['numpy', 'cudf']
    });
    expect(parseField(fields.pre_import, '')).toEqual({ value: [] });
  });

  it('shows values as text and reads them back unchanged', () => {
    const values: Record<string, unknown> = {
      gpus: [0, 1],
      n_workers: 2,
      memory_limit: 'auto',
      processes: true,
      protocol: null,
      pre_import: ['numpy', 'pandas']
    };
    for (const [name, value] of Object.entries(values)) {
      const f = fields[name];
      expect(parseField(f, toText(f, value))).toEqual({ value });
    }
    expect(toText(fields.protocol, null)).toBe('');
    expect(toText(fields.pre_import, ['numpy', 'pandas'])).toBe(
      'numpy, pandas'
    );
  });
});

describe('collectOverrides', () => {
  const fields = fieldsFromSchema(schema);
  const effective: Record<string, unknown> = {
    gpus: 'none',
    n_workers: null,
    threads_per_worker: null,
    memory_limit: 'auto',
    processes: true,
    pre_import: []
  };
  const texts = () =>
    Object.fromEntries(fields.map(f => [f.name, toText(f, effective[f.name])]));

  it('sends nothing when nothing changed', () => {
    expect(collectOverrides(fields, texts(), effective)).toEqual({
      overrides: {},
      errors: []
    });
  });

  it('sends only the changed options, typed', () => {
    const t = { ...texts(), n_workers: '1', processes: 'false', gpus: 'none' };
    expect(collectOverrides(fields, t, effective)).toEqual({
      overrides: { n_workers: 1, processes: false },
      errors: []
    });
  });

  it('never sends an option the profile keeps to its file', () => {
    const t = { ...texts(), n_workers: '3', processes: 'false' };
    expect(
      collectOverrides(fields, t, effective, new Set(['n_workers']))
    ).toEqual({ overrides: { n_workers: 3 }, errors: [] });
  });

  it('reports every unreadable field', () => {
    const t = { ...texts(), n_workers: '-2', threads_per_worker: 'x' };
    const { overrides, errors } = collectOverrides(fields, t, effective);
    expect(overrides).toEqual({});
    expect(errors).toEqual([
      'N Workers: must be at least 0',
      "Threads Per Worker: expected a whole number, or empty for the default (got 'x')"
    ]);
  });

  it('handles schemas without titles and with type lists', () => {
    const f = fieldFor('max_jobs', { type: ['integer', 'null'], maximum: 8 });
    expect(f).toMatchObject({
      title: 'Max jobs',
      kind: 'integer',
      nullable: true
    });
    expect(parseField(f, '9').error).toBe('Max jobs: must be at most 8');
  });
});
