// Decides when the model's pending changes are handed to the backend. With minSyncPeriod 0
// (the eBPF backend) every change is applied on the next turn of the event loop; with a
// minSyncPeriod (kube-proxy's --iptables-min-sync-period) changes coalesce and syncs are at
// least that far apart. A periodic full sync (syncPeriod) catches drift in rule-based backends.
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
  onError?: (error: Error) => void;
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
  /** When the oldest change not yet applied arrived, undefined when none is pending. */
  pendingSince: number | undefined;
  syncs = 0;

  constructor(options: SyncRunnerOptions) {
    this.o = options;
    this.now = options.now ?? Date.now;
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
    const wait = Math.max(0, this.lastSyncAt + this.o.minSyncPeriodMs - this.now());
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
    const since = this.pendingSince;
    this.pendingSince = undefined;
    const changes = this.o.tracker.flush();
    try {
      await this.o.sync(changes, full);
      this.syncs++;
      this.lastSyncAt = this.now();
    } catch (e) {
      // Not applied: it stays pending (health reports it) and is retried after minSyncPeriod.
      this.pendingSince = since ?? this.now();
      this.fullRequested = true;
      this.o.onError?.(e as Error);
      this.lastSyncAt = this.now();
      this.again = true;
    }
  }
}
