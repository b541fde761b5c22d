// Decides when the model's pending changes are handed to the backend. With minSyncPeriod 0
// (the eBPF backend) every change is applied on the next turn of the event loop; with a
// minSyncPeriod (kube-proxy's --iptables-min-sync-period) changes coalesce and syncs are at
// least that far apart. A periodic full sync (syncPeriod) catches drift in rule-based backends.
// A failed sync is retried as a full sync after a backoff that doubles per failure (1 s up to
// 30 s, never sooner than minSyncPeriod) and starts again after a success, as kube-proxy retries
// through its runner's RetryAfter: a backend that keeps failing is not retried in a hot loop.
import type { ChangeTracker } from '../model/tracker.ts';
import type { ChangeSet } from '../model/types.ts';

export interface SyncRunnerOptions {
  tracker: ChangeTracker;
  /** Applies changes; `full` asks the backend to rewrite everything, not only `changes`. */
  sync: (changes: ChangeSet, full: boolean) => void | Promise<void>;
  minSyncPeriodMs: number;
  /** 0: no periodic full sync. */
  syncPeriodMs: number;
  now?: () => number;
  /** After a failed sync: the error, how many failed in a row, and when the retry runs. */
  onError?: (error: Error, failures: number, retryInMs: number) => void;
  /** First and largest retry delay after failed syncs (default 1 s and 30 s). */
  retryMinMs?: number;
  retryMaxMs?: number;
}

export class SyncRunner {
  private readonly o: SyncRunnerOptions;
  private readonly now: () => number;
  private timer: NodeJS.Timeout | undefined;
  private periodic: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private again = false;
  private fullRequested = false;
  private stopped = false;
  /** When the last sync finished (ms since epoch), 0 before the first. */
  lastSyncAt = 0;
  /** When the oldest change not yet handed to a sync arrived, undefined when none waits. */
  pendingSince: number | undefined;
  /** When the oldest change the running sync carries arrived (it is not applied until that sync succeeds). */
  private inFlightSince: number | undefined;
  /** Failed syncs in a row, and the earliest moment the next sync may run after them. */
  failures = 0;
  private retryAt = 0;
  syncs = 0;

  constructor(options: SyncRunnerOptions) {
    this.o = options;
    this.now = options.now ?? Date.now;
  }

  /**
   * When the oldest change not yet applied arrived: waiting, or carried by a sync still running
   * (a hung sync keeps it, so health turns bad as kube-proxy's does), undefined when none.
   */
  get unappliedSince(): number | undefined {
    const a = this.pendingSince;
    const b = this.inFlightSince;
    return a === undefined ? b : b === undefined ? a : Math.min(a, b);
  }

  start(): void {
    if (this.o.syncPeriodMs > 0) {
      this.periodic = setInterval(() => this.requestFull(), this.o.syncPeriodMs);
      this.periodic.unref?.();
    }
  }

  /** Something changed in the model. */
  notify(): void {
    if (this.stopped) return;
    this.pendingSince ??= this.now();
    this.schedule();
  }

  /** Ask for a full rewrite at the next sync (periodic resync, or drift detected). */
  requestFull(): void {
    this.fullRequested = true;
    this.notify();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    clearInterval(this.periodic);
    await this.running;
  }

  /** Resolves when nothing is pending or running (for tests and orderly shutdown). */
  async idle(): Promise<void> {
    while (this.running !== undefined || this.timer !== undefined) {
      await (this.running ?? new Promise((r) => setTimeout(r, 1)));
    }
  }

  private schedule(): void {
    if (this.running !== undefined) {
      this.again = true;
      return;
    }
    if (this.timer !== undefined) return;
    const now = this.now();
    const wait = Math.max(0, this.lastSyncAt + this.o.minSyncPeriodMs - now, this.retryAt - now);
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.running = this.runOnce().finally(() => {
        this.running = undefined;
        if (this.again && !this.stopped) {
          this.again = false;
          this.schedule();
        }
      });
    }, wait);
  }

  private async runOnce(): Promise<void> {
    const full = this.fullRequested;
    this.fullRequested = false;
    const since = this.pendingSince ?? this.now();
    this.inFlightSince = since;
    this.pendingSince = undefined;
    const changes = this.o.tracker.flush();
    try {
      await this.o.sync(changes, full);
      this.syncs++;
      this.failures = 0;
      this.retryAt = 0;
      this.lastSyncAt = this.now();
    } catch (e) {
      // Not applied: it stays pending (health reports it) and is retried as a full sync (the
      // changes were flushed) once the backoff has passed.
      this.pendingSince = Math.min(since, this.pendingSince ?? since);
      this.fullRequested = true;
      this.failures++;
      const min = this.o.retryMinMs ?? 1000;
      const delay = Math.max(this.o.minSyncPeriodMs, Math.min(this.o.retryMaxMs ?? 30_000, min * 2 ** Math.min(this.failures - 1, 20)));
      this.lastSyncAt = this.now();
      this.retryAt = this.lastSyncAt + delay;
      this.o.onError?.(e as Error, this.failures, delay);
      this.again = true;
    } finally {
      this.inFlightSince = undefined;
    }
  }
}
