// The eBPF backend behind the agent's ProxyBackend interface.
import type { ChangeSet, DesiredState } from '../../model/types.ts';
import type { BackendSyncResult, ProxyBackend } from '../backend.ts';
import { EbpfBackend, type EbpfBackendOptions } from './backend.ts';

export class EbpfProxyBackend implements ProxyBackend {
  readonly mode = 'ebpf' as const;
  /** Every change at once: no rule rewrite to amortise. */
  static readonly MIN_SYNC_PERIOD_MS = 0;
  readonly minSyncPeriodMs = EbpfProxyBackend.MIN_SYNC_PERIOD_MS;
  readonly syncPeriodMs: number;
  readonly ebpf: EbpfBackend;

  /** Options load the datapath here, on the JavaScript thread; the agent hands one loaded by open(). */
  constructor(backend: EbpfBackendOptions | EbpfBackend, resyncPeriodMs: number) {
    this.ebpf = backend instanceof EbpfBackend ? backend : EbpfBackend.open(backend);
    this.syncPeriodMs = resyncPeriodMs;
  }

  /** Loads the datapath with verification on a worker thread (seconds), the event loop free meanwhile. */
  static async open(options: EbpfBackendOptions, resyncPeriodMs: number): Promise<EbpfProxyBackend> {
    return new EbpfProxyBackend(await EbpfBackend.openAsync(options), resyncPeriodMs);
  }

  /** The programs are attached after the first sync, once flows of a proxy before us are known (takeover.ts). */
  private attaching: Promise<void> | undefined;

  async start(): Promise<void> {
    // Attached at once only where our datapath already forwards (pins adopted: a restart);
    // otherwise after the first sync, when another proxy's flows have been taken over.
    // Rules a rule mode or kube-proxy added since serve no flow (tc translates first): they go.
    if (this.ebpf.datapath.frontendCount > 0) {
      await this.attach();
      this.removeRuleModes();
      return;
    }
    this.ebpf.attachSockets();
  }

  /** The rule modes' removal, started once. */
  private removingRules: Promise<void> | undefined;

  /**
   * Off the sync path, once our programs are attached: a rule mode's rules no longer translate
   * any flow (tc comes first), so the first sync is done without waiting for a dozen tool runs
   * (each a fork of a process holding the whole model). It logs its own failures.
   */
  private removeRuleModes(): void {
    this.removingRules ??= this.ebpf.removeRuleModes();
  }

  /** Once: the first sync may run while start() still attaches. */
  private attach(): Promise<void> {
    this.attaching ??= (async () => {
      // Watch first, then scan: a device appearing during the scan still triggers an attach.
      this.ebpf.watchDevices();
      await this.ebpf.attach();
      this.ebpf.startGc();
    })();
    return this.attaching;
  }

  async sync(state: DesiredState, changes: ChangeSet, full: boolean, first: boolean): Promise<BackendSyncResult> {
    if (full && !first) await this.ebpf.datapath.readoptSliced(); // repair what changed behind our back
    if (changes.nodeChanged || first) this.ebpf.configure(state.node);
    const report = await this.ebpf.syncChanges(state, changes, full || first);
    if (this.attaching === undefined) {
      // Flows another proxy translated stay with netfilter; read again once attached, for
      // those opened while we attached; then its rules go (the flows no longer need them).
      await this.ebpf.takeOver('before attaching');
      await this.attach();
      await this.ebpf.takeOver('after attaching');
      this.removeRuleModes();
    }
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
