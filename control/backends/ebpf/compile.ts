// The eBPF backend's compiler: desired state -> the frontends, backend sets and backends the
// datapath maps must hold. Pure; ids are assigned later, by the adapter, so that they stay
// stable across syncs and restarts.
import type { Family } from '../../model/ip.ts';
import { planServicePort, type Decision, type FrontendPlan, type ServicePortPlan, type SourceClass } from '../../model/plan.ts';
import type { DesiredState, EndpointState, FamilyState, FrontendKind, ServicePortState } from '../../model/types.ts';
import { ALGORITHM, BE, FE, IPPROTO, SCOPE } from '../../bpf/layout.ts';

export interface BackendSpec {
  /** Backends are per service port: see struct sy_backend. */
  servicePort: string;
  addr: string;
  port: number;
  proto: number;
  family: Family;
  terminating: boolean;
}

export interface FrontendSpec {
  addr: string;
  port: number;
  proto: number;
  family: Family;
  scope: number;
  /** The service port this frontend belongs to (one service id per key). */
  servicePort: string;
  flags: number;
  algorithm: number;
  affinityTimeout: number;
  /** Backends of its set, by backendKey, in slot order. */
  backends: string[];
  /** CIDRs the source must be in (with SY_FE_SOURCE_RANGES), plus LB IPs allowed as source. */
  sourceRanges: string[];
  /** The address is the node's own (NodePorts, external IPs that are node addresses): see SY_RN_NODE_ADDRESS. */
  nodeAddress: boolean;
}

export interface CompiledDatapath {
  frontends: Map<string, FrontendSpec>;
  /** Every backend any flow may still use: set members and terminating endpoints. */
  backends: Map<string, BackendSpec>;
  /**
   * Service ports the datapath cannot translate, with why: SCTP, whose CRC32c checksum covers
   * the whole packet and cannot be updated incrementally in BPF.
   */
  unsupported: Array<{ servicePort: string; reason: string }>;
}

const PROTO: Record<string, number> = { TCP: IPPROTO.TCP, UDP: IPPROTO.UDP, SCTP: IPPROTO.SCTP };

export function backendKey(b: { servicePort: string; addr: string; port: number; proto: number }): string {
  return `${b.servicePort}|${b.addr}|${b.port}|${b.proto}`;
}

export function frontendKeyText(f: { addr: string; port: number; proto: number; scope: number }): string {
  return `${f.addr}|${f.port}|${f.proto}|${f.scope}`;
}

function toBackend(ep: EndpointState, sp: ServicePortState, proto: number): BackendSpec {
  return { servicePort: sp.key, addr: ep.ip, port: ep.port, proto, family: sp.family, terminating: ep.terminating || !ep.ready };
}

const KIND_FLAG: Record<FrontendKind, number> = { ClusterIP: FE.CLUSTER_IP, NodePort: FE.NODE_PORT, LoadBalancer: FE.LOAD_BALANCER, ExternalIP: FE.EXTERNAL_IP };

/** The set and flags that carry out one of the plan's decisions: count 0 drops, or rejects with SY_FE_REJECT. */
function setOf(d: Decision): { endpoints: readonly EndpointState[]; flags: number } {
  if (d.action !== 'FORWARD') return { endpoints: [], flags: (d.action === 'REJECT' ? FE.REJECT : 0) | (d.noLocalEndpoint === true ? FE.LOCAL : 0) };
  return { endpoints: d.endpoints, flags: (d.policy === 'Local' ? FE.LOCAL : 0) | (d.masquerade ? FE.MASQUERADE : 0) };
}

function sameDecision(a: Decision, b: Decision): boolean {
  if (a.action !== 'FORWARD' || b.action !== 'FORWARD') return a.action === b.action;
  return a.policy === b.policy && a.masquerade === b.masquerade && a.endpoints.length === b.endpoints.length && a.endpoints.every((ep, i) => ep === b.endpoints[i]);
}

/**
 * Translates one service port's plan. The external scope carries the decision for sources that are
 * neither this node's pods nor the node; the internal scope, looked up for packets from this node's
 * pods (the datapath knows them by device) and for the node's own sockets, carries the local-pod
 * decision where kube-proxy tells local pods apart at all (else the same as everyone's), and
 * exists only where it differs.
 */
function compileServicePort(plan: ServicePortPlan, fs: FamilyState, out: CompiledDatapath): void {
  const { sp } = plan;
  const proto = PROTO[sp.protocol]!;
  const family = sp.family;
  for (const ep of sp.endpoints) {
    const b = toBackend(ep, sp, proto);
    out.backends.set(backendKey(b), b);
  }
  const podSource: SourceClass = fs.localDetector.mode === 'None' ? 'other' : 'local-pod';
  const add = (fp: FrontendPlan, d: Decision, scope: number): void => {
    const set = setOf(d);
    const ranges = fp.sourceRanges.length > 0;
    const spec: FrontendSpec = {
      addr: fp.address,
      port: fp.port,
      proto,
      family,
      scope,
      servicePort: sp.key,
      flags: KIND_FLAG[fp.kind] | set.flags | (ranges ? FE.SOURCE_RANGES : 0),
      algorithm: ALGORITHM[sp.algorithm],
      affinityTimeout: sp.affinityTimeoutSeconds,
      backends: set.endpoints.map((ep) => backendKey(toBackend(ep, sp, proto))),
      sourceRanges: [...fp.sourceRanges],
      nodeAddress: fp.nodeAddress,
    };
    out.frontends.set(frontendKeyText(spec), spec);
  };
  for (const fp of plan.frontends) {
    add(fp, fp.bySource.other, SCOPE.EXTERNAL);
    if (!sameDecision(fp.bySource[podSource], fp.bySource.other)) add(fp, fp.bySource[podSource], SCOPE.INTERNAL);
  }
}

/** Marks each external-scope frontend that has an internal-scope twin (the datapath looks for it only then). */
function markTwins(out: CompiledDatapath): void {
  for (const spec of out.frontends.values()) {
    if (spec.scope !== SCOPE.INTERNAL) continue;
    const external = out.frontends.get(frontendKeyText({ ...spec, scope: SCOPE.EXTERNAL }));
    if (external !== undefined) external.flags |= FE.HAS_INTERNAL;
  }
}

export function compileDatapath(state: DesiredState): CompiledDatapath {
  const out: CompiledDatapath = { frontends: new Map(), backends: new Map(), unsupported: [] };
  for (const fs of state.families.values()) {
    for (const sp of fs.servicePorts.values()) {
      if (sp.protocol === 'SCTP') {
        out.unsupported.push({ servicePort: sp.key, reason: 'SCTP is not translated by the eBPF datapath (its CRC32c checksum cannot be updated in place)' });
        continue;
      }
      compileServicePort(planServicePort(sp, fs, state.config, 'ebpf'), fs, out);
    }
  }
  markTwins(out);
  return out;
}

/** The backend flags the map holds for a spec. */
export function backendFlags(b: BackendSpec): number {
  return b.terminating ? BE.TERMINATING : 0;
}
