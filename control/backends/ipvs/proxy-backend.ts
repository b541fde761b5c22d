// The IPVS backend behind the agent's ProxyBackend interface: the first and the periodic syncs
// plan against what the kernel lists (as kube-proxy's IPVS mode does every sync); the others
// plan only the service ports the change set names. While real servers drain, their removal is
// re-checked on a timer.
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

  async sync(state: DesiredState, changes: ChangeSet, full: boolean, first: boolean): Promise<BackendSyncResult> {
    // Periodic and first syncs plan against the kernel's listing; the others only the changed ports.
    const report = await this.ipvs.sync(state, { full: full || first, changes });
    this.scheduleDrain(report.draining);
    return { failed: [], unsupported: [], details: { full, ...report, ...(await this.conntrack.report(state, changes)) } };
  }

  private scheduleDrain(draining: number): void {
    if (draining === 0 || this.drainTimer !== undefined) return;
    this.drainTimer = setTimeout(() => {
      this.drainTimer = undefined;
      this.ipvs.drain().then((left) => this.scheduleDrain(left), (e: Error) => this.onError(e));
    }, this.drainCheckMs);
    this.drainTimer.unref();
  }

  /** A tool still running is killed, so SIGTERM does not wait for it. */
  close(): void {
    clearTimeout(this.drainTimer);
    this.ipvs.stop();
    this.conntrack.stop();
  }
}
