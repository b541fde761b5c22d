// The nftables backend behind the agent's ProxyBackend interface: changes coalesce for
// minSyncPeriod and go out as incremental transactions. As in kube-proxy's nftables mode, the
// syncPeriod syncs are partial too (cheap: a transaction that fails if our table is gone) and a
// full sync, which lists the table and repairs every chain that differs, runs at start, after a
// failure and once an hour.
import type { Family } from '../../model/ip.ts';
import type { ChangeSet, DesiredState } from '../../model/types.ts';
import type { BackendSyncResult, ProxyBackend } from '../backend.ts';
import { UdpConntrackCleaner } from '../conntrack-cleanup.ts';
import { NftablesBackend } from './apply.ts';

/** kube-proxy's proxyutil.FullSyncPeriod. */
export const FULL_SYNC_PERIOD_MS = 60 * 60 * 1000;

export class NftablesProxyBackend implements ProxyBackend {
  readonly mode = 'nftables' as const;
  readonly minSyncPeriodMs: number;
  readonly syncPeriodMs: number;
  /** Stale UDP flows go after each sync, as kube-proxy clears them. */
  readonly conntrack = new UdpConntrackCleaner();
  readonly nftables: NftablesBackend;
  private lastFullAt = -Infinity;
  private readonly now: () => number;

  constructor(options: { families: readonly Family[]; minSyncPeriodMs: number; syncPeriodMs: number; now?: () => number }) {
    this.minSyncPeriodMs = options.minSyncPeriodMs;
    this.syncPeriodMs = options.syncPeriodMs;
    this.now = options.now ?? Date.now;
    this.nftables = new NftablesBackend({ families: options.families });
  }

  async start(): Promise<void> {}

  /** `full` from the runner (every syncPeriod) is not a full sync here; see the header. */
  async sync(state: DesiredState, changes: ChangeSet, _full: boolean, first: boolean): Promise<BackendSyncResult> {
    const wantFull = first || this.now() - this.lastFullAt >= FULL_SYNC_PERIOD_MS;
    const report = await this.nftables.sync(state, wantFull, changes);
    if (report.full) this.lastFullAt = this.now();
    return { failed: [], unsupported: [], details: { full: report.full, families: report.families, ...(await this.conntrack.report(state, changes)) } };
  }

  /** A tool still running (a hung nft) is killed, so SIGTERM does not wait for it. */
  close(): void {
    this.nftables.stop();
    this.conntrack.stop();
  }
}
