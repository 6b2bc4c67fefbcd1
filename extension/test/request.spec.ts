/**
 * request.ts against a real HTTP server on 127.0.0.1 that answers like the
 * workbench server extension does (the real routes are tested in
 * tests/test_lab_server.py): URLs, auth header, JSON bodies and error mapping.
 */
import { ServerConnection } from '@jupyterlab/services';
import { AddressInfo } from 'net';
import http from 'http';

import {
  adaptCluster,
  clusterHealth,
  connectCode,
  createFromTemplate,
  getDataset,
  getMetrics,
  launchCluster,
  listDatasets,
  listTemplates,
  startWorkbenchDashboard,
  listClusters,
  listProfiles,
  previewLaunch,
  requestAPI,
  scaleCluster,
  stopCluster,
  WorkbenchAPIError
} from '../src/request';

interface ISeen {
  method: string;
  url: string;
  query: string;
  auth: string | undefined;
  contentType: string | undefined;
  body: string;
}

const TOKEN = 'secret-test-token';
let server: http.Server;
let settings: ServerConnection.ISettings;
const seen: ISeen[] = [];

function reply(
  res: http.ServerResponse,
  status: number,
  body: string,
  type = 'application/json'
) {
  res.writeHead(status, { 'Content-Type': type });
  res.end(body);
}

/** The WorkbenchAPIError a call fails with (fails the test if it succeeds). */
async function failure(call: Promise<unknown>): Promise<WorkbenchAPIError> {
  try {
    await call;
  } catch (e) {
    expect(e).toBeInstanceOf(WorkbenchAPIError);
    return e as WorkbenchAPIError;
  }
  throw new Error('the call succeeded');
}

beforeAll(async () => {
  server = http.createServer((req, res) => {
    let body = '';
    req.on('data', chunk => (body += chunk));
    req.on('end', () => {
      // ServerConnection adds a numeric cache-buster to the query: keep the rest.
      const [url, query = ''] = (req.url ?? '').split('?');
      seen.push({
        method: req.method ?? '',
        url,
        query: query
          .split('&')
          .filter(q => q && !/^\d+$/.test(q))
          .join('&'),
        auth: req.headers.authorization,
        contentType: req.headers['content-type'],
        body
      });
      if (req.headers.authorization !== `token ${TOKEN}`) {
        return reply(res, 403, JSON.stringify({ message: 'Forbidden' }));
      }
      if (url === '/base/workbench/api/profiles') {
        return reply(
          res,
          200,
          JSON.stringify({
            profiles: [{ name: 'local' }],
            problems: [],
            files: []
          })
        );
      }
      if (url === '/base/workbench/api/profiles/slurm/preview') {
        return reply(
          res,
          200,
          JSON.stringify({
            profile: 'slurm',
            backend: 'slurm',
            kind: 'SLURMCluster',
            options: { cores: 2 },
            job_script: '#!/usr/bin/env bash\n#SBATCH -J wb-slurm-1a2b3c\n',
            checked: true,
            verdict: 'SLURM: would start at 2026-12-07T20:00:00 on node vm'
          })
        );
      }
      if (url === '/base/workbench/api/profiles/broken/preview') {
        return reply(
          res,
          500,
          JSON.stringify({
            reason: 'Internal Server Error',
            message:
              "checking profile 'broken' failed unexpectedly: OSError: disk full. " +
              'This is a bug in workbench or its environment; the traceback is in ' +
              "/state/server-errors.log and the Jupyter server's log.",
            error: 'OSError',
            step: "checking profile 'broken' and writing its job script",
            log: '/state/server-errors.log'
          })
        );
      }
      if (url === '/base/workbench/api/clusters' && req.method === 'GET') {
        return reply(res, 200, JSON.stringify({ clusters: [{ id: 'abc' }] }));
      }
      if (url === '/base/workbench/api/clusters' && req.method === 'POST') {
        return reply(
          res,
          400,
          JSON.stringify({
            message: "profile 'local' has invalid options",
            problems: [
              "override key 'n_workers': Input should be greater than or equal to 0"
            ],
            error: 'ProfileError'
          })
        );
      }
      if (url === '/base/workbench/api/clusters/a%2Fb/scale') {
        return reply(
          res,
          200,
          JSON.stringify({ id: 'a/b', requested_workers: 3 })
        );
      }
      if (url === '/base/workbench/api/clusters/gw1/adapt') {
        return reply(
          res,
          200,
          JSON.stringify({ id: 'gw1', adapt: { minimum: 1, maximum: 4 } })
        );
      }
      if (url === '/base/workbench/api/clusters/lost1/scale') {
        return reply(
          res,
          409,
          JSON.stringify({
            message:
              'cluster lost1: the dask-gateway at http://gw reports its cluster x FAILED (its scheduler stopped or was killed)',
            problems: [],
            error: 'ClusterUnreachableError'
          })
        );
      }
      if (url === '/base/workbench/api/clusters/abc') {
        return reply(res, 200, JSON.stringify({ id: 'abc', stopped: true }));
      }
      if (url === '/base/workbench/api/clusters/abc/connect') {
        return reply(
          res,
          200,
          JSON.stringify({ id: 'abc', code: 'client = Client()' })
        );
      }
      if (url === '/base/workbench/api/clusters/abc/health') {
        return reply(
          res,
          200,
          JSON.stringify({ id: 'abc', ok: true, checks: [] })
        );
      }
      if (url === '/base/workbench/api/templates') {
        return reply(res, 200, JSON.stringify({ templates: [], problems: [] }));
      }
      if (
        url === '/base/workbench/api/templates/etl' &&
        req.method === 'POST'
      ) {
        const sent = JSON.parse(body);
        if (sent.path.includes('..')) {
          return reply(
            res,
            400,
            JSON.stringify({
              message: "path '../x' must not contain '..'",
              error: 'RequestError'
            })
          );
        }
        return reply(
          res,
          201,
          JSON.stringify({ template: 'etl', path: sent.path, name: 'x.ipynb' })
        );
      }
      if (url === '/base/workbench/api/templates/a%20b') {
        return reply(
          res,
          404,
          JSON.stringify({ message: "unknown template 'a b'" })
        );
      }
      if (url === '/base/workbench/api/datasets') {
        return reply(
          res,
          200,
          JSON.stringify({
            datasets: [{ name: 'trips' }],
            problems: ['bad'],
            files: []
          })
        );
      }
      if (url === '/base/workbench/api/datasets/trips') {
        return reply(
          res,
          200,
          JSON.stringify({ name: 'trips', code: 'df = 1' })
        );
      }
      if (url === '/base/workbench/api/metrics') {
        return reply(
          res,
          200,
          JSON.stringify({ cluster: seen[seen.length - 1].query || null })
        );
      }
      if (url === '/base/workbench/api/clusters/abc/dashboard') {
        return reply(
          res,
          200,
          JSON.stringify({ id: 'abc', running: true, url: '/base/proxy/1234/' })
        );
      }
      if (url === '/base/workbench/api/html-error') {
        return reply(res, 502, '<html>Bad gateway</html>', 'text/html');
      }
      if (url === '/base/workbench/api/not-json') {
        return reply(res, 200, 'hello', 'text/plain');
      }
      reply(res, 404, JSON.stringify({ message: `no route ${url}` }));
    });
  });
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  settings = ServerConnection.makeSettings({
    baseUrl: `http://127.0.0.1:${port}/base/`,
    wsUrl: `ws://127.0.0.1:${port}/base/`,
    token: TOKEN
  });
});

afterAll(async () => {
  await new Promise<void>(resolve => server.close(() => resolve()));
});

beforeEach(() => {
  seen.length = 0;
});

describe('requestAPI', () => {
  it('calls {baseUrl}workbench/api/<endpoint> with the token', async () => {
    const data = await listProfiles(settings);
    expect(data.profiles[0].name).toBe('local');
    expect(seen).toHaveLength(1);
    expect(seen[0]).toMatchObject({
      method: 'GET',
      url: '/base/workbench/api/profiles',
      auth: `token ${TOKEN}`
    });
  });

  it('sends JSON bodies and turns a 400 into a WorkbenchAPIError with problems', async () => {
    const error = await failure(
      launchCluster('local', { n_workers: -1 }, settings)
    );
    expect(error).toBeInstanceOf(WorkbenchAPIError);
    expect(error.status).toBe(400);
    expect(error.message).toBe("profile 'local' has invalid options");
    expect(error.problems).toEqual([
      "override key 'n_workers': Input should be greater than or equal to 0"
    ]);
    expect(error.kind).toBe('ProfileError');
    expect(seen[0].method).toBe('POST');
    expect(seen[0].contentType).toBe('application/json');
    expect(JSON.parse(seen[0].body)).toEqual({
      profile: 'local',
      options: { n_workers: -1 }
    });
  });

  it('adapts through the same route for every backend', async () => {
    expect(await adaptCluster('gw1', 1, 4, settings)).toEqual({
      id: 'gw1',
      adapt: { minimum: 1, maximum: 4 }
    });
    expect(JSON.parse(seen[0].body)).toEqual({ minimum: 1, maximum: 4 });
    expect(seen[0].method).toBe('POST');
  });

  it('says why a cluster whose scheduler is gone cannot scale', async () => {
    const error = await scaleCluster('lost1', 2, settings).catch(e => e);
    expect(error).toBeInstanceOf(WorkbenchAPIError);
    expect(error.status).toBe(409);
    expect(error.message).toContain('its scheduler stopped or was killed');
  });

  it('escapes ids in paths and uses the right methods', async () => {
    expect(await scaleCluster('a/b', 3, settings)).toEqual({
      id: 'a/b',
      requested_workers: 3
    });
    expect(JSON.parse(seen[0].body)).toEqual({ n: 3 });
    expect(await stopCluster('abc', settings)).toEqual({
      id: 'abc',
      stopped: true
    });
    expect(seen[1].method).toBe('DELETE');
    expect(await connectCode('abc', settings)).toBe('client = Client()');
    expect((await listClusters(settings)).map(c => c.id)).toEqual(['abc']);
    await clusterHealth('abc', 'lab.example.org', settings);
    expect(seen[4].url).toBe('/base/workbench/api/clusters/abc/health');
    expect(seen[4].query).toBe('page_host=lab.example.org');
  });

  it('previews a launch: the job script and the live check, nothing started', async () => {
    const preview = await previewLaunch('slurm', { cores: 2 }, settings);
    expect(preview.job_script).toContain('#SBATCH -J wb-slurm-1a2b3c');
    expect(preview.verdict).toMatch(/^SLURM: would start/);
    expect(seen[0].method).toBe('POST');
    expect(seen[0].url).toBe('/base/workbench/api/profiles/slurm/preview');
    expect(JSON.parse(seen[0].body)).toEqual({
      options: { cores: 2 },
      check: true
    });
  });

  it('keeps the failed step and the log of an unexpected server failure', async () => {
    const error = await failure(previewLaunch('broken', {}, settings));
    expect(error.status).toBe(500);
    expect(error.kind).toBe('OSError');
    expect(error.step).toBe(
      "checking profile 'broken' and writing its job script"
    );
    expect(error.log).toBe('/state/server-errors.log');
    expect(error.message).toContain('failed unexpectedly: OSError: disk full');
  });

  it('reports errors without a JSON body by their status', async () => {
    const error = await failure(requestAPI('html-error', {}, settings));
    expect(error).toBeInstanceOf(WorkbenchAPIError);
    expect(error.status).toBe(502);
    expect(error.message).toMatch(/^502/);
    const notJson = await failure(requestAPI('not-json', {}, settings));
    expect(notJson.message).toMatch(/not JSON/);
  });

  it('reports a refused token and an unreachable server', async () => {
    const wrong = ServerConnection.makeSettings({
      baseUrl: settings.baseUrl,
      token: 'wrong'
    });
    const error = await failure(listProfiles(wrong));
    expect(error.status).toBe(403);
    const away = ServerConnection.makeSettings({
      baseUrl: 'http://127.0.0.1:9/'
    });
    const network = await failure(listProfiles(away));
    expect(network).toBeInstanceOf(WorkbenchAPIError);
    expect(network.status).toBe(0);
    expect(network.message).toMatch(/cannot reach the Jupyter server/);
  });
});

describe('templates, datasets, metrics and dashboards', () => {
  it('lists templates and creates a notebook with its parameters', async () => {
    expect(await listTemplates(settings)).toEqual({
      templates: [],
      problems: []
    });
    const made = await createFromTemplate(
      'etl',
      'work/x.ipynb',
      { n_workers: 3, columns: ['a'] },
      true,
      settings
    );
    expect(made.path).toBe('work/x.ipynb');
    expect(seen[1].method).toBe('POST');
    expect(JSON.parse(seen[1].body)).toEqual({
      path: 'work/x.ipynb',
      parameters: { n_workers: 3, columns: ['a'] },
      overwrite: true
    });
    const bad = await failure(
      createFromTemplate('etl', '../x', {}, false, settings)
    );
    expect(bad.status).toBe(400);
    expect(bad.kind).toBe('RequestError');
    const unknown = await failure(
      createFromTemplate('a b', 'x', {}, false, settings)
    );
    expect(unknown.status).toBe(404);
    expect(seen[3].url).toBe('/base/workbench/api/templates/a%20b');
  });

  it('lists datasets, gets one, reads metrics and starts dashboards', async () => {
    const list = await listDatasets(settings);
    expect(list.datasets[0].name).toBe('trips');
    expect(list.problems).toEqual(['bad']);
    expect((await getDataset('trips', settings)).code).toBe('df = 1');
    expect((await getMetrics(null, settings)).cluster).toBeNull();
    expect(seen[2].query).toBe('');
    expect((await getMetrics('a&b', settings)).cluster).toBe('cluster=a%26b');
    const dash = await startWorkbenchDashboard('abc', settings);
    expect(dash.url).toBe('/base/proxy/1234/');
    expect(seen[4].method).toBe('POST');
  });
});
