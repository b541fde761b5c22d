// The eBPF backend behind the agent's ProxyBackend interface.
import type { ChangeSet, DesiredState } from '../../model/types.ts';
import type { BackendSyncResult, ProxyBackend } from '../backend.ts';
import { EbpfBackend, type EbpfBackendOptions } from './backend.ts';

export class EbpfProxyBackend implements ProxyBackend {
  readonly mode = 'ebpf' as const;
  readonly minSyncPeriodMs = 0; // every change at once: no rule rewrite to amortise
  readonly syncPeriodMs: number;
  readonly ebpf: EbpfBackend;

  constructor(options: EbpfBackendOptions, resyncPeriodMs: number) {
    this.ebpf = EbpfBackend.open(options);
    this.syncPeriodMs = resyncPeriodMs;
  }

  async start(): Promise<void> {
    // Watch first, then scan: a device appearing during the scan still triggers an attach.
    this.ebpf.watchDevices();
    await this.ebpf.attach();
    this.ebpf.startGc();
  }

  async sync(state: DesiredState, changes: ChangeSet, full: boolean, first: boolean): Promise<BackendSyncResult> {
    if (full && !first) await this.ebpf.datapath.readoptSliced(); // repair what changed behind our back
    if (changes.nodeChanged || first) this.ebpf.configure(state.node);
    const report = await this.ebpf.syncChanges(state, changes, full || first);
    return {
      failed: report.failed,
      notProgrammed: report.notProgrammed,
      unsupported: report.unsupported,
      details: { frontendsWritten: report.frontendsWritten, frontendsRemoved: report.frontendsRemoved, backendsWritten: report.backendsWritten, backendsRemoved: report.backendsRemoved },
    };
  }

  close(): void {
    this.ebpf.close();
  }
}
