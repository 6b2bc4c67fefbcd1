/**
 * How cost, GPU idle time and a kernel's cluster are written in the sidebar's cards and
 * the status bar (pure functions, no DOM).
 */
import {
  IAccounting,
  ICostEstimate,
  IGPUSummary,
  IKernelStatus
} from './request';

const BYTE_UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];

/** `1.5 GiB`, `980 MiB`, '' for nothing. */
export function formatBytes(n: number | null | undefined): string {
  if (!n) {
    return '';
  }
  let i = 0;
  let v = n;
  while (v >= 1024 && i < BYTE_UNITS.length - 1) {
    v /= 1024;
    i++;
  }
  return `${v >= 10 || i === 0 ? v.toFixed(0) : v.toFixed(1)} ${BYTE_UNITS[i]}`;
}

/** `42 s`, `3.5 min`, `2.25 h` (as workbench.metrics.accounting.format_duration). */
export function formatDuration(seconds: number): string {
  if (seconds < 60) {
    return `${seconds.toFixed(0)} s`;
  }
  if (seconds < 3600) {
    return `${(seconds / 60).toFixed(1)} min`;
  }
  return `${(seconds / 3600).toFixed(2)} h`;
}

/** The cost when the profile has a price, else the worker-hours; null when unknown. */
export function formatCost(
  cost: ICostEstimate | null | undefined
): string | null {
  if (!cost) {
    return null;
  }
  if (cost.cost === null || cost.cost === undefined) {
    return `${cost.worker_hours.toFixed(2)} worker-h`;
  }
  return `cost ${cost.cost.toFixed(2)}`;
}

/** `1 GPU 37% · 2.1/80 GiB` for the GPUs now; null without GPUs. */
export function formatGPUs(gpu: IGPUSummary | null | undefined): string | null {
  if (!gpu || gpu.gpus === 0) {
    return null;
  }
  const parts = [`${gpu.gpus} GPU${gpu.gpus === 1 ? '' : 's'}`];
  if (gpu.utilization !== null) {
    parts[0] += ` ${gpu.utilization.toFixed(0)}%`;
  }
  if (gpu.memory_used !== null && gpu.memory_total) {
    const total = formatBytes(gpu.memory_total);
    const unit = total.split(' ')[1];
    const divisor = 1024 ** BYTE_UNITS.indexOf(unit);
    parts.push(`${(gpu.memory_used / divisor).toFixed(1)}/${total}`);
  }
  return parts.join(' · ');
}

/** `idle 3.5 min` (GPU-time allocated but under the threshold); null without GPUs. */
export function formatIdle(gpu: IGPUSummary | null | undefined): string | null {
  if (!gpu || gpu.gpus === 0) {
    return null;
  }
  return `idle ${formatDuration(gpu.idle_seconds)}`;
}

/** Whether GPUs sit idle now: the cards and the status bar then warn. */
export function idleNow(gpu: IGPUSummary | null | undefined): boolean {
  return !!gpu && gpu.gpus > 0 && gpu.idle_now > 0;
}

/** The words of a cluster's cost and GPU idle time, for a card. */
export function accountingParts(accounting: IAccounting | undefined): string[] {
  if (!accounting) {
    return [];
  }
  const parts: string[] = [];
  const cost = formatCost(accounting.cost);
  if (cost) {
    parts.push(cost);
  }
  const idle = formatIdle(accounting.gpu);
  if (idle) {
    parts.push(`${idle} GPU time`);
  }
  return parts;
}

/** A longer explanation of the same, for tooltips and accessible names. */
export function accountingTitle(accounting: IAccounting | undefined): string {
  if (!accounting) {
    return '';
  }
  const lines: string[] = [];
  const cost = accounting.cost;
  if (cost) {
    const hours = `${cost.worker_hours.toFixed(3)} worker-hours`;
    lines.push(
      cost.cost === null
        ? `${hours} so far (set price_per_worker_hour in the profile to see a cost)`
        : `Estimated cost so far: ${cost.cost.toFixed(2)} (${hours} at ${cost.price_per_worker_hour} per worker-hour)`
    );
  } else if (accounting.cost_reason) {
    lines.push(`Cost unknown: ${accounting.cost_reason}`);
  }
  const gpu = accounting.gpu;
  if (gpu && gpu.gpus > 0) {
    lines.push(
      `GPU idle time: ${formatDuration(gpu.idle_seconds)} of GPU time under ` +
        `${gpu.idle_threshold}% utilization; ${gpu.idle_now} of ${gpu.gpus} GPU(s) idle now`
    );
  } else if (accounting.gpu_reason) {
    lines.push(accounting.gpu_reason);
  }
  return lines.join('\n');
}

/** What the status bar item says about the active notebook's kernel. */
export interface IStatusText {
  /** Short text shown in the status bar. */
  text: string;
  /** The full sentence, for the tooltip and screen readers. */
  title: string;
  /** The cluster a click reveals in the sidebar. */
  cluster: string | null;
  /** GPUs allocated and idle now: shown as a warning. */
  warn: boolean;
}

export function statusText(status: IKernelStatus | null): IStatusText {
  if (!status) {
    return {
      text: 'Cluster: …',
      title: 'Workbench: asking which cluster this kernel is connected to',
      cluster: null,
      warn: false
    };
  }
  const auto = status.kernel.autoconnect;
  if (!status.cluster) {
    const failed = auto && auto.status === 'failed';
    return {
      text: failed ? 'Cluster: auto-connect failed' : 'Cluster: none',
      title: failed
        ? `Workbench: auto-connect to ${auto.cluster} failed: ${auto.message}`
        : 'Workbench: this kernel is not connected to a workbench cluster',
      cluster: failed ? auto.cluster : null,
      warn: !!failed
    };
  }
  const id = status.cluster;
  const parts = [`Cluster ${id.slice(0, 6)}`];
  if (status.kernel.how === 'auto-connect') {
    parts[0] += ' (auto)';
  }
  if (status.workers !== null) {
    parts.push(`${status.workers} worker${status.workers === 1 ? '' : 's'}`);
  }
  if (status.tasks) {
    parts.push(`${status.tasks} task${status.tasks === 1 ? '' : 's'}`);
  }
  const accounting = status.accounting;
  const gpus = formatGPUs(accounting?.gpu);
  if (gpus) {
    parts.push(gpus);
  }
  const cost = formatCost(accounting?.cost);
  if (cost) {
    parts.push(cost);
  }
  const idle = formatIdle(accounting?.gpu);
  if (idle) {
    parts.push(idle);
  }
  const more =
    status.kernel.clusters.length > 1
      ? ` (also connected to ${status.kernel.clusters.slice(1).join(', ')})`
      : '';
  const how =
    status.kernel.how === 'auto-connect'
      ? 'auto-connected'
      : status.kernel.how === 'owner'
        ? 'launched by this kernel'
        : 'connected';
  const title = [
    `Workbench: this kernel is ${how} to cluster ${id}${more}. Click to show it in the sidebar.`,
    accountingTitle(accounting ?? undefined),
    status.warming_up ? 'Metrics are warming up.' : '',
    status.error ?? ''
  ]
    .filter(Boolean)
    .join('\n');
  return {
    text: parts.join(' · '),
    title,
    cluster: id,
    warn: idleNow(accounting?.gpu)
  };
}
