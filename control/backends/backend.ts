// What the agent needs from a backend, whichever mode: apply the desired state (all of it, or
// what changed), say what it could not program, and leave the kernel as it is when closed.
import type { ChangeSet, DesiredState } from '../model/types.ts';

export interface BackendSyncResult {
  failed: Array<{ frontend: string; error: string; servicePort?: string }>;
  unsupported: Array<{ servicePort: string; reason: string }>;
  /**
   * Backends that sync incrementally: every service port not programmed now (failed names only
   * this sync's failures). Trigger times of their services are not observed as programmed.
   */
  notProgrammed?: Array<{ servicePort: string; service: string; frontend: string; error: string }>;
  /** Mode-specific figures for the log line. */
  details: Record<string, unknown>;
}

export interface ProxyBackend {
  readonly mode: 'ebpf' | 'iptables' | 'nftables' | 'ipvs' | 'kernelspace';
  /** kube-proxy's minSyncPeriod: 0 applies every change at once. */
  readonly minSyncPeriodMs: number;
  /** A full sync this often (0: never). */
  readonly syncPeriodMs: number;
  start(): Promise<void>;
  /** `first`: the first sync after the sources synced. */
  sync(state: DesiredState, changes: ChangeSet, full: boolean, first: boolean): Promise<BackendSyncResult>;
  close(): void;
}
