// The IPVS backend behind the agent's ProxyBackend interface: every sync plans against what the
// kernel lists (kube-proxy's IPVS mode does the same), so full and partial syncs are one path;
// while real servers drain, their removal is re-checked on a timer.
import type { Family } from '../../model/ip.ts';
import type { ChangeSet, DesiredState } from '../../model/types.ts';
import type { BackendSyncResult, ProxyBackend } from '../backend.ts';
import { UdpConntrackCleaner } from '../conntrack-cleanup.ts';
import { IpvsBackend } from './apply.ts';

export class IpvsProxyBackend implements ProxyBackend {
  readonly mode = 'ipvs' as const;
  readonly minSyncPeriodMs: number;
  readonly syncPeriodMs: number;
  /** Stale UDP flows go after each sync, as kube-proxy clears them. */
  readonly conntrack = new UdpConntrackCleaner();
  readonly ipvs: IpvsBackend;
  private readonly drainCheckMs: number;
  private drainTimer: NodeJS.Timeout | undefined;
  private readonly onError: (e: Error) => void;

  constructor(options: {
    families: readonly Family[];
    minSyncPeriodMs: number;
    syncPeriodMs: number;
    scheduler: string;
    timeouts?: { tcp: number; tcpFin: number; udp: number };
    drainCheckMs?: number;
    onError?: (e: Error) => void;
  }) {
    this.minSyncPeriodMs = options.minSyncPeriodMs;
    this.syncPeriodMs = options.syncPeriodMs;
    this.drainCheckMs = options.drainCheckMs ?? 60_000;
    this.onError = options.onError ?? (() => undefined);
    this.ipvs = new IpvsBackend({ families: options.families, scheduler: options.scheduler, timeouts: options.timeouts });
  }

  async start(): Promise<void> {}

  async sync(state: DesiredState, _changes: ChangeSet, full: boolean): Promise<BackendSyncResult> {
    const report = await this.ipvs.sync(state);
    this.scheduleDrain(report.draining);
    return { failed: [], unsupported: [], details: { full, ...report, ...(await this.conntrack.report(state)) } };
  }

  private scheduleDrain(draining: number): void {
    if (draining === 0 || this.drainTimer !== undefined) return;
    this.drainTimer = setTimeout(() => {
      this.drainTimer = undefined;
      this.ipvs.drain().then((left) => this.scheduleDrain(left), (e: Error) => this.onError(e));
    }, this.drainCheckMs);
    this.drainTimer.unref();
  }

  close(): void {
    clearTimeout(this.drainTimer);
  }
}
