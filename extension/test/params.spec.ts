/**
 * The template parameter form: values shown, parsed back to the default's Python type,
 * only changed parameters sent, and the new notebook's path checked.
 */
import { storageOptionsText } from '../src/display';
import {
  collectParameters,
  notebookPath,
  paramToText,
  parseParam
} from '../src/params';
import { ITemplateParameter } from '../src/request';

function param(name: string, type: string, value: unknown): ITemplateParameter {
  return { name, type, default: value, help: '' };
}

const PARAMS = [
  param('n_workers', 'int', 2),
  param('ratio', 'float', 0.5),
  param('name', 'str', 'trips'),
  param('verbose', 'bool', false),
  param('columns', 'list', ['a']),
  param('opts', 'dict', { k: 1 }),
  param('anything', 'NoneType', null)
];

describe('paramToText', () => {
  it('shows each default as its input text', () => {
    expect(PARAMS.map(paramToText)).toEqual([
      '2',
      '0.5',
      'trips',
      'false',
      '["a"]',
      '{"k":1}',
      ''
    ]);
  });
});

describe('parseParam', () => {
  it('reads values back as the default type', () => {
    expect(parseParam(PARAMS[0], ' 7 ')).toEqual({ value: 7 });
    expect(parseParam(PARAMS[0], '-3')).toEqual({ value: -3 });
    expect(parseParam(PARAMS[1], '2')).toEqual({ value: 2 });
    expect(parseParam(PARAMS[1], '1e-3')).toEqual({ value: 0.001 });
    expect(parseParam(PARAMS[2], ' keep spaces ')).toEqual({
      value: ' keep spaces '
    });
    expect(parseParam(PARAMS[3], 'true')).toEqual({ value: true });
    expect(parseParam(PARAMS[4], '["x", "y"]')).toEqual({ value: ['x', 'y'] });
    expect(parseParam(PARAMS[5], '{"a": null}')).toEqual({
      value: { a: null }
    });
    expect(parseParam(PARAMS[6], '')).toEqual({ value: null });
    expect(parseParam(PARAMS[6], '3')).toEqual({ value: 3 });
    expect(parseParam(PARAMS[6], 'free text')).toEqual({ value: 'free text' });
  });

  it('says what is wrong with a bad value', () => {
    expect(parseParam(PARAMS[0], 'two').error).toBe(
      "n_workers: expected a whole number, got 'two'"
    );
    expect(parseParam(PARAMS[0], '1.5').error).toMatch(/whole number/);
    expect(parseParam(PARAMS[0], '99999999999999999999').error).toMatch(
      /smaller/
    );
    expect(parseParam(PARAMS[1], '').error).toMatch(/expected a number/);
    expect(parseParam(PARAMS[1], 'abc').error).toMatch(/expected a number/);
    expect(parseParam(PARAMS[3], 'yes').error).toMatch(/true or false/);
    expect(parseParam(PARAMS[4], '{"a": 1}').error).toMatch(/JSON list/);
    expect(parseParam(PARAMS[4], '[1,').error).toMatch(/JSON list/);
    expect(parseParam(PARAMS[5], '[1]').error).toMatch(/JSON object/);
  });
});

describe('collectParameters', () => {
  it('sends only what changed, typed, and collects every error', () => {
    const texts: Record<string, string> = {};
    for (const p of PARAMS) {
      texts[p.name] = paramToText(p);
    }
    expect(collectParameters(PARAMS, texts)).toEqual({
      values: {},
      errors: []
    });
    texts.n_workers = '4';
    texts.verbose = 'true';
    texts.columns = '["a", "b"]';
    expect(collectParameters(PARAMS, texts)).toEqual({
      values: { n_workers: 4, verbose: true, columns: ['a', 'b'] },
      errors: []
    });
    texts.ratio = 'half';
    const out = collectParameters(PARAMS, texts);
    expect(out.errors).toEqual(["ratio: expected a number, got 'half'"]);
    expect(out.values).not.toHaveProperty('ratio');
  });
});

describe('notebookPath', () => {
  it('defaults to the template name and adds .ipynb', () => {
    expect(notebookPath('', 'etl')).toEqual({ path: 'etl.ipynb' });
    expect(notebookPath(' work/run ', 'etl')).toEqual({
      path: 'work/run.ipynb'
    });
    expect(notebookPath('./a//b.ipynb', 'etl')).toEqual({ path: 'a/b.ipynb' });
    expect(notebookPath('a\\b', 'etl')).toEqual({ path: 'a/b.ipynb' });
  });

  it('refuses paths that leave the Jupyter root', () => {
    expect(notebookPath('/etc/x.ipynb', 'etl').error).toMatch(/relative/);
    expect(notebookPath('~/x', 'etl').error).toMatch(/relative/);
    expect(notebookPath('a/../../x', 'etl').error).toMatch(/'\.\.'/);
    expect(notebookPath('.hidden/x', 'etl').error).toMatch(/hidden/);
    expect(notebookPath('./', 'etl').error).toMatch(/names no file/);
  });
});

describe('storageOptionsText', () => {
  it('shows options as the catalog writes them', () => {
    expect(
      storageOptionsText({
        key: 'env:KEY',
        anon: false,
        client_kwargs: { a: 1 }
      })
    ).toBe('key=env:KEY, anon=false, client_kwargs={"a":1}');
    expect(storageOptionsText({})).toBe('');
  });
});
