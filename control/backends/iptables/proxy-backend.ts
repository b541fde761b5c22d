// The iptables backend behind the agent's ProxyBackend interface: changes coalesce for
// minSyncPeriod, and a full sync runs every syncPeriod, as in kube-proxy's iptables mode.
import type { Family } from '../../model/ip.ts';
import type { ChangeSet, DesiredState } from '../../model/types.ts';
import type { BackendSyncResult, ProxyBackend } from '../backend.ts';
import { UdpConntrackCleaner } from '../conntrack-cleanup.ts';
import { IptablesBackend } from './apply.ts';

export class IptablesProxyBackend implements ProxyBackend {
  readonly mode = 'iptables' as const;
  readonly minSyncPeriodMs: number;
  readonly syncPeriodMs: number;
  /** Stale UDP flows go after each sync, as kube-proxy clears them. */
  readonly conntrack = new UdpConntrackCleaner();
  readonly iptables: IptablesBackend;

  constructor(options: { families: readonly Family[]; minSyncPeriodMs: number; syncPeriodMs: number }) {
    this.minSyncPeriodMs = options.minSyncPeriodMs;
    this.syncPeriodMs = options.syncPeriodMs;
    this.iptables = new IptablesBackend({ families: options.families });
  }

  async start(): Promise<void> {}

  async sync(state: DesiredState, changes: ChangeSet, full: boolean, first: boolean): Promise<BackendSyncResult> {
    const report = await this.iptables.sync(state, full || first, changes);
    return { failed: [], unsupported: [], details: { full: report.full, variant: report.variant, rulesPerTable: report.rulesPerTable, families: report.families, ...(await this.conntrack.report(state, changes)) } };
  }

  /** A tool still running (a hung iptables-restore) is killed, so SIGTERM does not wait for it. */
  close(): void {
    this.iptables.stop();
    this.conntrack.stop();
  }
}
