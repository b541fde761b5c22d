// Stale UDP flows in the kernel's connection tracking, for the modes that NAT through it
// (iptables, nftables, IPVS), as kube-proxy clears them: a UDP flow keeps its translation for as
// long as packets keep coming, so
// - when an endpoint leaves a service port, flows translated to it are deleted (else a client
//   that keeps sending never reaches the remaining endpoints);
// - when a service port gets its first endpoint, flows to its addresses are deleted (they were
//   tracked untranslated while it had none, and would otherwise stay that way).
// The plan is pure; the adapter runs `conntrack -D` with an argv per deletion.
import type { Family } from '../model/ip.ts';
import type { ChangeSet, DesiredState, ServicePortState } from '../model/types.ts';
import { toolRunner, type StoppableToolRunner } from './tool-runner.ts';

export interface FlowDeletion {
  family: Family;
  /** The service address the client sent to; absent for a NodePort (any node address). */
  origDst?: string;
  /** The NodePort, for flows to a NodePort. */
  origPortDst?: number;
  /** The endpoint the flow was translated to; absent for flows not translated at all. */
  dstNat?: string;
}

/** What a service port contributes: its addresses, NodePort and endpoint IPs. */
interface UdpPort {
  family: Family;
  addresses: readonly string[];
  nodePort: number;
  endpoints: ReadonlySet<string>;
}

export type UdpSnapshot = ReadonlyMap<string, UdpPort>;

export function snapshotUdp(state: DesiredState): UdpSnapshot {
  const out = new Map<string, UdpPort>();
  for (const fs of state.families.values()) {
    for (const sp of fs.servicePorts.values()) {
      if (sp.protocol === 'UDP') out.set(sp.key, udpPort(sp));
    }
  }
  return out;
}

function udpPort(sp: ServicePortState): UdpPort {
  return { family: sp.family, addresses: [sp.clusterIP, ...sp.externalIPs, ...sp.loadBalancerIPs], nodePort: sp.nodePort, endpoints: endpointIps(sp) };
}

function endpointIps(sp: ServicePortState): Set<string> {
  return new Set([...sp.clusterEndpoints, ...sp.localEndpoints].map((ep) => ep.ip));
}

/** Pure: the deletions between two snapshots, without duplicates. */
export function staleUdpFlows(before: UdpSnapshot, after: UdpSnapshot): FlowDeletion[] {
  const out = new Map<string, FlowDeletion>();
  const add = (d: FlowDeletion): void => void out.set(conntrackArgs(d).join(' '), d);
  for (const [key, was] of before) {
    const now = after.get(key);
    for (const ip of was.endpoints) {
      if (now?.endpoints.has(ip)) continue;
      for (const a of was.addresses) add({ family: was.family, origDst: a, dstNat: ip });
      if (was.nodePort !== 0) add({ family: was.family, origPortDst: was.nodePort, dstNat: ip });
    }
  }
  for (const [key, now] of after) {
    if (now.endpoints.size === 0 || (before.get(key)?.endpoints.size ?? 0) > 0) continue;
    for (const a of now.addresses) add({ family: now.family, origDst: a });
    if (now.nodePort !== 0) add({ family: now.family, origPortDst: now.nodePort });
  }
  return [...out.values()];
}

export function conntrackArgs(d: FlowDeletion): string[] {
  const args = ['-D', '-f', d.family === 4 ? 'ipv4' : 'ipv6', '-p', 'udp'];
  if (d.origDst !== undefined) args.push('--orig-dst', d.origDst);
  if (d.origPortDst !== undefined) args.push('--orig-port-dst', String(d.origPortDst));
  if (d.dstNat !== undefined) args.push('--dst-nat', d.dstNat);
  return args;
}

export type Runner = (file: string, args: string[]) => Promise<{ ok: boolean; out: string }>;

/** conntrack reports what it deleted on stderr, so both streams are read. */
export function conntrackRunner(prefix: readonly string[] = []): StoppableToolRunner {
  return toolRunner(prefix, { bothStreams: true });
}

/** Keeps the last synced snapshot and clears what became stale after each sync. */
export class UdpConntrackCleaner {
  private last: Map<string, UdpPort> | undefined;
  private readonly run: Runner;
  /** Flows deleted so far. */
  deleted = 0;

  constructor(run: Runner = conntrackRunner()) {
    this.run = run;
  }

  /** Kills a running conntrack (the agent is stopping). */
  stop(): void {
    (this.run as Partial<StoppableToolRunner>).stop?.();
  }

  /**
   * Call after the new state is in the kernel. The first call only takes the snapshot. With the
   * sync's change set only the ports it names are compared (work proportional to the change).
   */
  async afterSync(state: DesiredState, changes?: ChangeSet): Promise<{ deletions: number; flows: number }> {
    let deletions: FlowDeletion[];
    if (this.last === undefined || changes === undefined || changes.nodeChanged) {
      const before = this.last;
      this.last = new Map(snapshotUdp(state));
      if (before === undefined) return { deletions: 0, flows: 0 };
      deletions = staleUdpFlows(before, this.last);
    } else {
      const before = new Map<string, UdpPort>();
      const after = new Map<string, UdpPort>();
      for (const changed of [...changes.upserted, ...changes.removed]) {
        const was = this.last.get(changed.key);
        if (was !== undefined) before.set(changed.key, was);
        const sp = state.families.get(changed.family)?.servicePorts.get(changed.key);
        if (sp !== undefined && sp.protocol === 'UDP') after.set(changed.key, udpPort(sp));
      }
      deletions = staleUdpFlows(before, after);
      for (const k of before.keys()) this.last.delete(k);
      for (const [k, p] of after) this.last.set(k, p);
    }
    let flows = 0;
    for (const d of deletions) {
      // conntrack exits 1 when nothing matched ("0 flow entries have been deleted").
      const r = await this.run('conntrack', conntrackArgs(d));
      const m = /(\d+) flow entries have been deleted/.exec(r.out);
      if (m !== null) flows += Number(m[1]);
      else if (!r.ok) throw new Error(`conntrack ${conntrackArgs(d).join(' ')}: ${r.out.trim()}`);
    }
    this.deleted += flows;
    return { deletions: deletions.length, flows };
  }

  /** afterSync for a sync's log line: a failure here is reported, not fatal to the sync. */
  async report(state: DesiredState, changes?: ChangeSet): Promise<{ staleUdpFlowsDeleted: number } | { conntrackError: string }> {
    try {
      return { staleUdpFlowsDeleted: (await this.afterSync(state, changes)).flows };
    } catch (e) {
      return { conntrackError: (e as Error).message };
    }
  }
}
