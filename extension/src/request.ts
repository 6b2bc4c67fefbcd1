/**
 * Every HTTP call of the Workbench extension: the server routes under
 * `{baseUrl}workbench/api/` (see workbench/server/routes.py).
 */
import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';

import {
  IAccounting,
  IAutoConnect,
  IClusterPanes,
  IKernelStatus
} from './replies';

export * from './replies';

/** The REST namespace of the workbench server extension. */
export const API_NAMESPACE = 'workbench/api';

/** An error answered by the workbench server, with what was wrong. */
export class WorkbenchAPIError extends Error {
  constructor(
    message: string,
    readonly status: number,
    readonly problems: string[] = [],
    readonly kind: string = '',
    /** Where the details are: the cluster process's log, or the server's error log. */
    readonly log: string | null = null,
    /** The step that failed unexpectedly ("checking profile 'slurm' ..."). */
    readonly step: string | null = null
  ) {
    super(message);
    this.name = 'WorkbenchAPIError';
  }
}

/**
 * Call the workbench server extension and return its JSON reply.
 *
 * Errors (HTTP status >= 400) are thrown as WorkbenchAPIError carrying the
 * server's message and problem list; a network failure is thrown as
 * WorkbenchAPIError with status 0.
 */
export async function requestAPI<T>(
  endPoint: string,
  init: RequestInit = {},
  settings: ServerConnection.ISettings = ServerConnection.makeSettings()
): Promise<T> {
  const url = URLExt.join(settings.baseUrl, API_NAMESPACE, endPoint);
  const headers = new Headers(init.headers ?? {});
  if (init.body !== undefined && !headers.has('Content-Type')) {
    headers.set('Content-Type', 'application/json');
  }
  let response: Response;
  try {
    response = await ServerConnection.makeRequest(
      url,
      { ...init, headers },
      settings
    );
  } catch (error) {
    throw new WorkbenchAPIError(
      `cannot reach the Jupyter server at ${settings.baseUrl}: ${String(error)}`,
      0
    );
  }
  const text = await response.text();
  let data: any = undefined;
  if (text.length > 0) {
    try {
      data = JSON.parse(text);
    } catch {
      data = undefined;
    }
  }
  if (!response.ok) {
    const message =
      (data && typeof data.message === 'string' && data.message) ||
      `${response.status} ${response.statusText}`.trim();
    const problems: string[] = Array.isArray(data?.problems)
      ? data.problems.map(String)
      : [];
    const text = (key: string): string | null =>
      data && typeof data[key] === 'string' ? data[key] : null;
    throw new WorkbenchAPIError(
      message,
      response.status,
      problems,
      text('error') ?? '',
      text('log'),
      text('step')
    );
  }
  if (data === undefined && text.length > 0) {
    throw new WorkbenchAPIError(
      `the server answered ${url} with something that is not JSON`,
      response.status
    );
  }
  return data as T;
}

// -- types of the replies --------------------------------------------------------

export interface IProfileSummary {
  name: string;
  backend: string;
  description: string;
  extends: string | null;
  options: Record<string, unknown>;
  source: string;
  scope: string;
  line: number | null;
  valid: boolean;
  problems: string[];
}

export interface IProfileList {
  profiles: IProfileSummary[];
  problems: string[];
  files: { path: string; scope: string; exists: boolean }[];
}

export interface IProfileDetail extends IProfileSummary {
  /** The options the sidebar may change; the others are set in the profile file only. */
  sidebar_options?: string[];
  effective_options: Record<string, unknown> | null;
  schema: IJSONSchema;
}

export interface IJSONSchema {
  type?: string | string[];
  title?: string;
  description?: string;
  default?: unknown;
  enum?: unknown[];
  anyOf?: IJSONSchema[];
  items?: IJSONSchema;
  properties?: Record<string, IJSONSchema>;
  minimum?: number;
  maximum?: number;
  exclusiveMinimum?: number;
  exclusiveMaximum?: number;
  $ref?: string;
  [key: string]: unknown;
}

export type ClusterStatus = 'running' | 'stale' | 'unreachable';

export interface ICluster {
  id: string;
  profile: string;
  backend: string;
  scheduler_address: string;
  dashboard_link: string | null;
  owner_pid: number;
  hostname: string;
  created: number;
  gpus: string[];
  n_gpus: number;
  detached: boolean;
  log_file: string | null;
  status: ClusterStatus;
  /** Why the cluster is not running (stale, scheduler gone); null while it runs. */
  problem: string | null;
  /** Seconds without tasks after which the cluster closes itself; null: never. */
  idle_timeout: number | null;
  workers: number | null;
  threads: number | null;
  memory: number | null;
  /** Running cost and GPU idle time (absent from servers before workbench 0.2). */
  accounting?: IAccounting;
  /** Whether new notebooks' kernels connect to this cluster by themselves. */
  autoconnect?: boolean;
  /** In a launch's reply: what the profile risks on a shared machine. */
  warnings?: string[];
}

export interface IHealthCheck {
  name: string;
  status: 'ok' | 'warn' | 'fail';
  summary: string;
  advice: string;
}

export interface IClusterHealth {
  id: string;
  ok: boolean;
  checks: IHealthCheck[];
  dashboard: {
    link: string | null;
    proxied: string | null;
    url: string | null;
  };
  proxy: { installed: boolean; enabled: boolean; reason: string };
}

// -- the calls ------------------------------------------------------------------------

const enc = encodeURIComponent;

function json(method: string, body?: unknown): RequestInit {
  return body === undefined
    ? { method }
    : { method, body: JSON.stringify(body) };
}

/** What a launch would do, nothing started (`POST profiles/<name>/preview`). */
export interface ILaunchPreview {
  profile: string;
  backend: string;
  kind: string;
  options: Record<string, unknown>;
  /** The batch script of each job (SLURM); null for backends without jobs. */
  job_script: string | null;
  checked: boolean;
  /** What the checks against the live system said (SLURM: sbatch --test-only). */
  verdict: string | null;
}

export function listProfiles(
  settings?: ServerConnection.ISettings
): Promise<IProfileList> {
  return requestAPI<IProfileList>('profiles', {}, settings);
}

export function getProfile(
  name: string,
  settings?: ServerConnection.ISettings
): Promise<IProfileDetail> {
  return requestAPI<IProfileDetail>(`profiles/${enc(name)}`, {}, settings);
}

export function previewLaunch(
  profile: string,
  options: Record<string, unknown>,
  settings?: ServerConnection.ISettings
): Promise<ILaunchPreview> {
  return requestAPI<ILaunchPreview>(
    `profiles/${enc(profile)}/preview`,
    json('POST', { options, check: true }),
    settings
  );
}

export async function listClusters(
  settings?: ServerConnection.ISettings
): Promise<ICluster[]> {
  const reply = await requestAPI<{ clusters: ICluster[] }>(
    'clusters',
    {},
    settings
  );
  return reply.clusters;
}

export function launchCluster(
  profile: string,
  options: Record<string, unknown>,
  settings?: ServerConnection.ISettings
): Promise<ICluster> {
  return requestAPI<ICluster>(
    'clusters',
    json('POST', { profile, options }),
    settings
  );
}

export function scaleCluster(
  id: string,
  n: number,
  settings?: ServerConnection.ISettings
): Promise<{ id: string; requested_workers: number }> {
  return requestAPI(`clusters/${enc(id)}/scale`, json('POST', { n }), settings);
}

export function adaptCluster(
  id: string,
  minimum: number,
  maximum: number | null,
  settings?: ServerConnection.ISettings
): Promise<{ id: string }> {
  return requestAPI(
    `clusters/${enc(id)}/adapt`,
    json('POST', { minimum, maximum }),
    settings
  );
}

export function stopCluster(
  id: string,
  settings?: ServerConnection.ISettings
): Promise<{ id: string; stopped: boolean }> {
  return requestAPI(`clusters/${enc(id)}`, json('DELETE'), settings);
}

export async function connectCode(
  id: string,
  settings?: ServerConnection.ISettings
): Promise<string> {
  const reply = await requestAPI<{ code: string }>(
    `clusters/${enc(id)}/connect`,
    {},
    settings
  );
  return reply.code;
}

export function clusterHealth(
  id: string,
  pageHost: string,
  settings?: ServerConnection.ISettings
): Promise<IClusterHealth> {
  return requestAPI<IClusterHealth>(
    `clusters/${enc(id)}/health?page_host=${enc(pageHost)}`,
    {},
    settings
  );
}

// -- templates, datasets, metrics, workbench dashboards -----------------------------

export interface ITemplateParameter {
  name: string;
  default: unknown;
  /** Python's type name of the default: str, int, float, bool, list, dict, NoneType */
  type: string;
  help: string;
}

export interface ITemplate {
  name: string;
  title: string;
  description: string;
  /** 'built-in' or 'team' */
  scope: string;
  tags: string[];
  source: string;
  parameters: ITemplateParameter[];
}

export interface ITemplateList {
  templates: ITemplate[];
  problems: string[];
}

export interface ICreatedNotebook {
  template: string;
  /** relative to the Jupyter server's root, as the document manager opens it */
  path: string;
  name: string;
}

export interface IDataset {
  name: string;
  uri: string;
  format: string;
  description: string;
  /** as the catalog writes them: secrets are references like env:NAME */
  storage_options: Record<string, unknown>;
  columns: string[] | null;
  tags: string[];
  source: string;
  scope: string;
  line: number | null;
  /** the cell that loads it */
  code: string;
}

export interface IDatasetList {
  datasets: IDataset[];
  problems: string[];
  files: { path: string; scope: string; exists: boolean }[];
}

export interface IMetricsSource {
  id: string;
  kind: 'host' | 'worker';
  label: string;
  host: string;
  name: string;
  gone: boolean;
  time: number | null;
  age: number | null;
  values: Record<string, number>;
  unavailable: Record<string, string>;
}

export interface IMetrics {
  cluster: string | null;
  scheduler_address: string | null;
  time: number;
  interval: number;
  warming_up: boolean;
  host: IMetricsSource | null;
  workers: IMetricsSource[];
  cluster_state: { time: number; values: Record<string, number> } | null;
  error: string | null;
  plugin_error: string | null;
  metrics: Record<string, { help: string; unit: string; kind: string }>;
}

export interface IWorkbenchDashboard {
  id: string;
  running: boolean;
  url: string | null;
  proxied?: boolean;
  port?: number;
  pid?: number;
  started?: boolean;
  log?: string;
}

export function listTemplates(
  settings?: ServerConnection.ISettings
): Promise<ITemplateList> {
  return requestAPI<ITemplateList>('templates', {}, settings);
}

export function createFromTemplate(
  name: string,
  path: string,
  parameters: Record<string, unknown>,
  overwrite = false,
  settings?: ServerConnection.ISettings
): Promise<ICreatedNotebook> {
  return requestAPI<ICreatedNotebook>(
    `templates/${enc(name)}`,
    json('POST', { path, parameters, overwrite }),
    settings
  );
}

export function listDatasets(
  settings?: ServerConnection.ISettings
): Promise<IDatasetList> {
  return requestAPI<IDatasetList>('datasets', {}, settings);
}

export function getDataset(
  name: string,
  settings?: ServerConnection.ISettings
): Promise<IDataset> {
  return requestAPI<IDataset>(`datasets/${enc(name)}`, {}, settings);
}

export function getMetrics(
  clusterId: string | null,
  settings?: ServerConnection.ISettings
): Promise<IMetrics> {
  const query = clusterId ? `?cluster=${enc(clusterId)}` : '';
  return requestAPI<IMetrics>(`metrics${query}`, {}, settings);
}

export function clusterPanes(
  id: string,
  settings?: ServerConnection.ISettings
): Promise<IClusterPanes> {
  return requestAPI<IClusterPanes>(`clusters/${enc(id)}/panes`, {}, settings);
}

export function getAutoConnect(
  settings?: ServerConnection.ISettings
): Promise<IAutoConnect> {
  return requestAPI<IAutoConnect>('autoconnect', {}, settings);
}

/** Mark `cluster` for new notebooks, or turn auto-connect off with null. */
export function setAutoConnect(
  cluster: string | null,
  settings?: ServerConnection.ISettings
): Promise<IAutoConnect> {
  return cluster === null
    ? requestAPI<IAutoConnect>('autoconnect', json('DELETE'), settings)
    : requestAPI<IAutoConnect>(
        'autoconnect',
        json('PUT', { cluster }),
        settings
      );
}

/** The cluster a kernel is connected to and its figures, in one small reply. */
export function kernelStatus(
  kernelId: string,
  settings?: ServerConnection.ISettings
): Promise<IKernelStatus> {
  return requestAPI<IKernelStatus>(
    `metrics?kernel=${enc(kernelId)}&view=summary`,
    {},
    settings
  );
}

export function startWorkbenchDashboard(
  clusterId: string,
  settings?: ServerConnection.ISettings
): Promise<IWorkbenchDashboard> {
  return requestAPI<IWorkbenchDashboard>(
    `clusters/${enc(clusterId)}/dashboard`,
    json('POST'),
    settings
  );
}
