/**
 * The status bar's shared poller against a real HTTP server answering like the
 * `metrics?kernel=` route: one request per interval at most, whatever the number of
 * notebooks and however quickly the user switches between them; answers about a kernel
 * that is no longer the active one are dropped. Also the pane and auto-connect calls.
 */
import { ServerConnection } from '@jupyterlab/services';
import http from 'http';
import { AddressInfo } from 'net';

import { KernelStatusPoller } from '../src/poller';
import {
  clusterPanes,
  getAutoConnect,
  IKernelStatus,
  kernelStatus,
  setAutoConnect
} from '../src/request';

const TOKEN = 'poller-test-token';
let server: http.Server;
let settings: ServerConnection.ISettings;
const asked: { time: number; kernel: string; view: string }[] = [];
const sent: { method: string; url: string; body: string }[] = [];
let delayMs = 0;

beforeAll(async () => {
  server = http.createServer((req, res) => {
    let body = '';
    req.on('data', chunk => (body += chunk));
    req.on('end', () => {
      const url = new URL(req.url ?? '', 'http://x');
      sent.push({ method: req.method ?? '', url: url.pathname, body });
      res.setHeader('Content-Type', 'application/json');
      if (req.headers.authorization !== `token ${TOKEN}`) {
        res.writeHead(403);
        return res.end('{"message": "Forbidden"}');
      }
      if (url.pathname === '/base/workbench/api/metrics') {
        const kernel = url.searchParams.get('kernel') ?? '';
        asked.push({
          time: Date.now(),
          kernel,
          view: url.searchParams.get('view') ?? ''
        });
        const answer: IKernelStatus = {
          kernel: {
            id: kernel,
            clusters: [`c-${kernel}`],
            how: 'connection',
            autoconnect: null
          },
          cluster: `c-${kernel}`,
          workers: 1,
          tasks: 0,
          accounting: null,
          warming_up: false,
          error: null
        };
        return void setTimeout(() => res.end(JSON.stringify(answer)), delayMs);
      }
      if (url.pathname === '/base/workbench/api/clusters/c%201/panes') {
        return res.end(
          JSON.stringify({
            id: 'c 1',
            dask: { root: '/base/proxy/8787/', plots: [], problem: null },
            workbench: {
              pages: [{ label: 'GPU', route: 'gpu' }],
              problem: null
            }
          })
        );
      }
      if (url.pathname === '/base/workbench/api/autoconnect') {
        const cluster =
          req.method === 'PUT'
            ? JSON.parse(body).cluster
            : req.method === 'DELETE'
              ? null
              : 'c1';
        return res.end(JSON.stringify({ cluster, since: null, problem: null }));
      }
      res.writeHead(404);
      return res.end('{"message": "no such route"}');
    });
  });
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  settings = ServerConnection.makeSettings({
    baseUrl: `http://127.0.0.1:${port}/base/`,
    token: TOKEN,
    appendToken: false
  });
});

afterAll(done => {
  server.close(() => done());
});

function sleep(ms: number): Promise<void> {
  return new Promise(resolve => setTimeout(resolve, ms));
}

describe('KernelStatusPoller', () => {
  it('asks about the active kernel only, at most once per interval', async () => {
    asked.length = 0;
    const interval = 300;
    const starts: number[] = [];
    const poller = new KernelStatusPoller({
      fetch: id => {
        starts.push(Date.now());
        return kernelStatus(id, settings);
      },
      interval,
      pollWhenHidden: true
    });
    const seen: (string | null)[] = [];
    poller.changed.connect((_, status) => seen.push(status?.cluster ?? null));
    try {
      expect(poller.status).toBeNull();
      await sleep(2 * interval);
      expect(asked).toHaveLength(0); // no notebook, no request
      // twenty notebooks, switched between as fast as a user can click
      const start = Date.now();
      for (let round = 0; round < 3; round++) {
        for (let i = 0; i < 20; i++) {
          poller.kernelId = `k${i}`;
          await sleep(5);
        }
      }
      await sleep(3 * interval);
      const elapsed = Date.now() - start;
      expect(poller.kernelId).toBe('k19');
      expect(poller.status?.cluster).toBe('c-k19');
      expect(asked.length).toBeGreaterThanOrEqual(2);
      expect(asked.length).toBeLessThanOrEqual(
        Math.floor(elapsed / interval) + 1
      );
      // requests start one interval apart at least (2 ms for the timers' rounding)
      for (let i = 1; i < starts.length; i++) {
        expect(starts[i] - starts[i - 1]).toBeGreaterThanOrEqual(interval - 2);
      }
      expect(asked.every(a => a.view === 'summary')).toBe(true);
      expect(poller.requests).toBe(asked.length);
      // a closed notebook: nothing more is asked
      poller.kernelId = null;
      const before = asked.length;
      await sleep(3 * interval);
      expect(asked.length).toBe(before);
      expect(seen[seen.length - 1]).toBeNull();
    } finally {
      poller.dispose();
    }
  });

  it('drops an answer about a kernel that is no longer active', async () => {
    asked.length = 0;
    delayMs = 200;
    const poller = new KernelStatusPoller({
      fetch: id => kernelStatus(id, settings),
      interval: 100,
      pollWhenHidden: true
    });
    const seen: (string | null)[] = [];
    poller.changed.connect((_, status) => seen.push(status?.cluster ?? null));
    try {
      poller.kernelId = 'slow';
      await sleep(50); // the request about 'slow' is in flight
      poller.kernelId = 'fast';
      await sleep(600);
      expect(asked[0].kernel).toBe('slow');
      expect(seen).not.toContain('c-slow');
      expect(poller.status?.cluster).toBe('c-fast');
    } finally {
      delayMs = 0;
      poller.dispose();
    }
  });
});

describe('pane and auto-connect calls', () => {
  it('lists the panes of a cluster and sets or clears the mark', async () => {
    const panes = await clusterPanes('c 1', settings);
    expect(panes.workbench.pages).toEqual([{ label: 'GPU', route: 'gpu' }]);
    expect((await getAutoConnect(settings)).cluster).toBe('c1');
    expect((await setAutoConnect('c2', settings)).cluster).toBe('c2');
    expect(sent[sent.length - 1]).toMatchObject({
      method: 'PUT',
      body: '{"cluster":"c2"}'
    });
    expect((await setAutoConnect(null, settings)).cluster).toBeNull();
    expect(sent[sent.length - 1].method).toBe('DELETE');
  });
});
