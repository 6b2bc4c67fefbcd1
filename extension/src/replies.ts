/**
 * The replies of the routes behind the dashboard panes, the status bar, auto-connect and
 * the cost shown on the cluster cards (re-exported by request.ts, which makes the calls).
 */

/** Worker-hours so far and, with a price in the profile, what they cost. */
export interface ICostEstimate {
  worker_hours: number;
  workers: number;
  elapsed_s: number;
  price_per_worker_hour: number | null;
  cost: number | null;
}

/** What a cluster's GPUs do now and how long they sat idle (workbench.metrics.accounting). */
export interface IGPUSummary {
  gpus: number;
  idle_now: number;
  /** Mean compute utilization of the GPUs, percent. */
  utilization: number | null;
  memory_used: number | null;
  memory_total: number | null;
  /** GPU-seconds allocated but under `idle_threshold` percent utilized. */
  idle_seconds: number;
  idle_threshold: number;
}

/** Cost and GPU idle time of one cluster; a null part says why in its `*_reason`. */
export interface IAccounting {
  cost: ICostEstimate | null;
  cost_reason: string | null;
  gpu: IGPUSummary | null;
  gpu_reason: string | null;
}

/** How the server found the cluster a kernel is connected to. */
export type KernelLink = 'owner' | 'connection' | 'auto-connect';

/** The cluster a kernel is connected to, with its live figures (`metrics?kernel=`). */
export interface IKernelStatus {
  kernel: {
    id: string;
    /** Every cluster the kernel is connected to; the first is shown. */
    clusters: string[];
    how: KernelLink | null;
    /** Set when the kernel was started with auto-connect. */
    autoconnect: IAutoConnectResult | null;
  };
  cluster: string | null;
  workers: number | null;
  /** Tasks processing or queued on the cluster now. */
  tasks: number | null;
  accounting: IAccounting | null;
  warming_up: boolean;
  error: string | null;
}

export interface IAutoConnectResult {
  cluster: string;
  /** 'starting' until the kernel reported, then 'connected' or 'failed'. */
  status: string;
  message: string;
}

/** The auto-connect mark: the cluster new kernels connect to (null: off). */
export interface IAutoConnect {
  cluster: string | null;
  since: number | null;
  /** Why the marked cluster cannot be used now (stopped, stale); null when it can. */
  problem: string | null;
}

/** One dockable pane: a Dask plot or a workbench dashboard page of a cluster. */
export interface IPaneItem {
  cluster: string;
  kind: 'dask' | 'workbench';
  /** Path under the dashboard's root ('individual-task-stream', 'gpu'; '' for all). */
  route: string;
  label: string;
}

/** What the sidebar lists for a cluster (`clusters/<id>/panes`). */
export interface IClusterPanes {
  id: string;
  dask: {
    /** The dashboard's root as the browser opens it (through the proxy when it can). */
    root: string | null;
    plots: { label: string; route: string }[];
    problem: string | null;
  };
  workbench: {
    pages: { label: string; route: string }[];
    problem: string | null;
  };
}
