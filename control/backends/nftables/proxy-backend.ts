// The nftables backend behind the agent's ProxyBackend interface: changes coalesce for
// minSyncPeriod and go out as incremental transactions; a full rewrite runs every syncPeriod,
// as in kube-proxy's nftables mode.
import type { Family } from '../../model/ip.ts';
import type { ChangeSet, DesiredState } from '../../model/types.ts';
import type { BackendSyncResult, ProxyBackend } from '../backend.ts';
import { UdpConntrackCleaner } from '../conntrack-cleanup.ts';
import { NftablesBackend } from './apply.ts';

export class NftablesProxyBackend implements ProxyBackend {
  readonly mode = 'nftables' as const;
  readonly minSyncPeriodMs: number;
  readonly syncPeriodMs: number;
  /** Stale UDP flows go after each sync, as kube-proxy clears them. */
  readonly conntrack = new UdpConntrackCleaner();
  readonly nftables: NftablesBackend;

  constructor(options: { families: readonly Family[]; minSyncPeriodMs: number; syncPeriodMs: number }) {
    this.minSyncPeriodMs = options.minSyncPeriodMs;
    this.syncPeriodMs = options.syncPeriodMs;
    this.nftables = new NftablesBackend({ families: options.families });
  }

  async start(): Promise<void> {}

  async sync(state: DesiredState, _changes: ChangeSet, full: boolean, first: boolean): Promise<BackendSyncResult> {
    const report = await this.nftables.sync(state, full || first);
    return { failed: [], unsupported: [], details: { full: report.full, families: report.families, ...(await this.conntrack.report(state)) } };
  }

  close(): void {}
}
