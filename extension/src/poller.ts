/**
 * One poller for the status bar, whatever the number of open notebooks: it asks about
 * the active notebook's kernel only, and never more often than once per `interval`,
 * even when the user switches notebooks quickly (a switch is answered at the next
 * allowed moment, not at once).
 */
import { Poll } from '@lumino/polling';
import { ISignal, Signal } from '@lumino/signaling';

import { IKernelStatus } from './request';

/** Milliseconds between two status requests. */
export const STATUS_INTERVAL_MS = 3000;

export interface IKernelStatusPollerOptions {
  /** One request about a kernel. */
  fetch: (kernelId: string) => Promise<IKernelStatus>;
  interval?: number;
  /** Poll while the page is hidden (tests); default: pause while hidden. */
  pollWhenHidden?: boolean;
  /** Clock, for tests. */
  now?: () => number;
}

export class KernelStatusPoller {
  constructor(options: IKernelStatusPollerOptions) {
    this._fetch = options.fetch;
    this._interval = options.interval ?? STATUS_INTERVAL_MS;
    this._now = options.now ?? (() => Date.now());
    this._poll = new Poll({
      factory: () => this._tick(),
      frequency: {
        interval: this._interval,
        backoff: true,
        max: 10 * this._interval
      },
      name: 'workbench:kernel-status',
      standby: options.pollWhenHidden ? 'never' : 'when-hidden'
    });
  }

  /** The kernel asked about (the active notebook's); null: none, nothing is asked. */
  get kernelId(): string | null {
    return this._kernelId;
  }
  set kernelId(id: string | null) {
    if (id === this._kernelId) {
      return;
    }
    this._kernelId = id;
    this._setStatus(null);
    if (id !== null) {
      void this._soon();
    }
  }

  /** The newest answer about the current kernel (null until it comes). */
  get status(): IKernelStatus | null {
    return this._status;
  }

  /** Emitted when the status changes (a new answer, another kernel). */
  get changed(): ISignal<this, IKernelStatus | null> {
    return this._changed;
  }

  /** Requests made so far. */
  get requests(): number {
    return this._requests;
  }

  get isDisposed(): boolean {
    return this._poll.isDisposed;
  }

  /** Ask again as soon as the rate limit allows (after a launch, a stop...). */
  refresh(): Promise<void> {
    return this._soon();
  }

  dispose(): void {
    this._poll.dispose();
    Signal.clearData(this);
  }

  private _soon(): Promise<void> {
    const wait = this._last + this._interval - this._now();
    return this._poll.schedule({
      cancel: last => last.phase === 'refreshed',
      interval: wait > 0 ? wait : Poll.IMMEDIATE,
      phase: 'refreshed'
    });
  }

  private async _tick(): Promise<void> {
    const id = this._kernelId;
    if (id === null) {
      return;
    }
    this._last = this._now();
    this._requests++;
    const status = await this._fetch(id); // an error backs the poll off
    if (id === this._kernelId) {
      this._setStatus(status);
    }
  }

  private _setStatus(status: IKernelStatus | null): void {
    this._status = status;
    this._changed.emit(status);
  }

  private _fetch: (kernelId: string) => Promise<IKernelStatus>;
  private _interval: number;
  private _now: () => number;
  private _poll: Poll;
  private _kernelId: string | null = null;
  private _status: IKernelStatus | null = null;
  private _last = -Infinity;
  private _requests = 0;
  private _changed = new Signal<this, IKernelStatus | null>(this);
}
