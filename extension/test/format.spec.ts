/**
 * What the cards and the status bar say: cost, GPU idle time, a kernel's cluster.
 */
import {
  accountingParts,
  accountingTitle,
  formatBytes,
  formatCost,
  formatDuration,
  formatGPUs,
  idleNow,
  statusText
} from '../src/format';
import { IAccounting, IGPUSummary, IKernelStatus } from '../src/request';

const GPU: IGPUSummary = {
  gpus: 2,
  idle_now: 1,
  utilization: 37.4,
  memory_used: 2.5 * 2 ** 30,
  memory_total: 160 * 2 ** 30,
  idle_seconds: 5400,
  idle_threshold: 5
};

const PRICED: IAccounting = {
  cost: {
    worker_hours: 1.5,
    workers: 2,
    elapsed_s: 2700,
    price_per_worker_hour: 2.5,
    cost: 3.75
  },
  cost_reason: null,
  gpu: GPU,
  gpu_reason: null
};

function status(overrides: Partial<IKernelStatus> = {}): IKernelStatus {
  return {
    kernel: {
      id: 'k1',
      clusters: ['abcdef123456'],
      how: 'connection',
      autoconnect: null
    },
    cluster: 'abcdef123456',
    workers: 2,
    tasks: 0,
    accounting: PRICED,
    warming_up: false,
    error: null,
    ...overrides
  };
}

describe('formatting', () => {
  it('writes bytes, durations and costs briefly', () => {
    expect(formatBytes(0)).toBe('');
    expect(formatBytes(1536)).toBe('1.5 KiB');
    expect(formatBytes(80 * 2 ** 30)).toBe('80 GiB');
    expect([42, 210, 8100].map(formatDuration)).toEqual([
      '42 s',
      '3.5 min',
      '2.25 h'
    ]);
    expect(formatCost(PRICED.cost)).toBe('cost 3.75');
    expect(
      formatCost({ ...PRICED.cost!, price_per_worker_hour: null, cost: null })
    ).toBe('1.50 worker-h');
    expect(formatCost(null)).toBeNull();
  });

  it('writes GPUs with utilization and memory in the unit of the total', () => {
    expect(formatGPUs(GPU)).toBe('2 GPUs 37% · 2.5/160 GiB');
    expect(formatGPUs({ ...GPU, gpus: 1, utilization: null })).toBe(
      '1 GPU · 2.5/160 GiB'
    );
    expect(formatGPUs({ ...GPU, gpus: 0 })).toBeNull();
    expect(formatGPUs(null)).toBeNull();
  });

  it('shows cost and GPU idle time on a card, and explains them', () => {
    expect(accountingParts(PRICED)).toEqual([
      'cost 3.75',
      'idle 1.50 h GPU time'
    ]);
    expect(accountingParts(undefined)).toEqual([]);
    const title = accountingTitle(PRICED);
    expect(title).toContain('Estimated cost so far: 3.75');
    expect(title).toContain('under 5% utilization; 1 of 2 GPU(s) idle now');
    const unknown = accountingTitle({
      cost: null,
      cost_reason: 'its owner does not answer',
      gpu: null,
      gpu_reason: 'the cluster has no GPUs'
    });
    expect(unknown).toBe(
      'Cost unknown: its owner does not answer\nthe cluster has no GPUs'
    );
    expect(idleNow(GPU)).toBe(true);
    expect(idleNow({ ...GPU, idle_now: 0 })).toBe(false);
    expect(idleNow(null)).toBe(false);
  });
});

describe('statusText', () => {
  it('waits, then says none when the kernel has no cluster', () => {
    expect(statusText(null).text).toBe('Cluster: …');
    const none = statusText(
      status({
        cluster: null,
        kernel: { id: 'k1', clusters: [], how: null, autoconnect: null },
        accounting: null,
        workers: null
      })
    );
    expect(none).toMatchObject({
      text: 'Cluster: none',
      cluster: null,
      warn: false
    });
  });

  it('shows the cluster, workers, tasks, GPUs, cost and idle time', () => {
    const shown = statusText(status({ tasks: 4 }));
    expect(shown.text).toBe(
      'Cluster abcdef · 2 workers · 4 tasks · 2 GPUs 37% · 2.5/160 GiB · cost 3.75 · idle 1.50 h'
    );
    expect(shown.cluster).toBe('abcdef123456');
    expect(shown.warn).toBe(true); // a GPU is idle now
    expect(shown.title).toContain('connected to cluster abcdef123456');
    expect(shown.title).toContain('Click to show it in the sidebar');
  });

  it('says when the kernel was auto-connected, and when that failed', () => {
    const auto = statusText(
      status({
        kernel: {
          id: 'k1',
          clusters: ['abcdef123456', 'ffff'],
          how: 'auto-connect',
          autoconnect: {
            cluster: 'abcdef123456',
            status: 'connected',
            message: ''
          }
        },
        accounting: { ...PRICED, gpu: null },
        tasks: null
      })
    );
    expect(auto.text).toBe('Cluster abcdef (auto) · 2 workers · cost 3.75');
    expect(auto.title).toContain('auto-connected to cluster abcdef123456');
    expect(auto.title).toContain('also connected to ffff');
    expect(auto.warn).toBe(false);
    const failed = statusText(
      status({
        cluster: null,
        kernel: {
          id: 'k1',
          clusters: [],
          how: null,
          autoconnect: {
            cluster: 'gone1',
            status: 'failed',
            message: 'cluster gone1 is stale'
          }
        }
      })
    );
    expect(failed.text).toBe('Cluster: auto-connect failed');
    expect(failed.title).toContain('cluster gone1 is stale');
    expect(failed.cluster).toBe('gone1');
    expect(failed.warn).toBe(true);
  });
});
