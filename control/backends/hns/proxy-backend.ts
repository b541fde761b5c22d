// kernelspace mode (kube-proxy's name for the Windows proxier) behind the agent's ProxyBackend
// interface: HCN through computenetwork.dll, loaded at start (so on Linux the agent stops at
// once with the reason), every sync through the HNS adapter.
import { networkInterfaces } from 'node:os';
import type { ChangeSet, DesiredState } from '../../model/types.ts';
import type { BackendSyncResult, ProxyBackend } from '../backend.ts';
import { HnsBackend } from './apply.ts';
import type { HcnApi } from './hcn-api.ts';
import { HcnClient } from './hcn-client.ts';
import type { WinkernelConfig } from './winkernel-config.ts';

export interface KernelspaceOptions {
  winkernel: WinkernelConfig;
  minSyncPeriodMs: number;
  syncPeriodMs: number;
  healthzPort: number;
  /** The HCN service (the FFI binding unless a test gives another). */
  api?: HcnApi;
}

/** The MAC of the host interface holding one of the node's addresses, in HNS's "aa-bb-..." form. */
function hostMacFor(addresses: readonly string[]): string {
  for (const list of Object.values(networkInterfaces())) {
    for (const a of list ?? []) if (addresses.includes(a.address) && a.mac !== '00:00:00:00:00:00') return a.mac.replace(/:/g, '-');
  }
  return '00-11-22-33-44-55';
}

export class KernelspaceProxyBackend implements ProxyBackend {
  readonly mode = 'kernelspace' as const;
  readonly minSyncPeriodMs: number;
  readonly syncPeriodMs: number;
  private readonly o: KernelspaceOptions;
  private hns: HnsBackend | undefined;
  private api: HcnApi | undefined;

  constructor(o: KernelspaceOptions) {
    this.o = o;
    this.minSyncPeriodMs = o.minSyncPeriodMs;
    this.syncPeriodMs = o.syncPeriodMs;
  }

  async start(): Promise<void> {
    this.api = this.o.api ?? (await (await import('./hcn-ffi.ts')).loadHcnFfi());
  }

  async sync(state: DesiredState, changes: ChangeSet, full: boolean): Promise<BackendSyncResult> {
    if (this.api === undefined) throw new Error('kernelspace backend not started');
    this.hns ??= new HnsBackend({ client: new HcnClient(this.api), winkernel: this.o.winkernel, hostMac: hostMacFor(Object.values(state.node.primaryIPs).filter((x): x is string => x !== undefined)), healthzPort: this.o.healthzPort });
    return this.hns.sync(state, changes, full);
  }

  close(): void {}
}
