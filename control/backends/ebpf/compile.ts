// The eBPF backend's compiler: desired state -> the frontends, backend sets and backends the
// datapath maps must hold. Pure; ids are assigned later, by the adapter, so that they stay
// stable across syncs and restarts.
import type { Family } from '../../model/ip.ts';
import type { DesiredState, EndpointState, FamilyState, ServicePortState } from '../../model/types.ts';
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

interface SetChoice {
  endpoints: readonly EndpointState[];
  flags: number;
}

/**
 * The backend set and flags for one kind of frontend and scope, following trace.ts: REJECT when
 * no endpoint exists anywhere, DROP (count 0, no flag) when the policy's set is empty.
 */
function chooseSet(sp: ServicePortState, external: boolean, scope: number, masqueradeClusterIP: boolean): SetChoice {
  const reject = sp.hasAnyEndpoints ? 0 : FE.REJECT;
  if (!external) {
    const endpoints = sp.internalPolicyLocal ? sp.localEndpoints : sp.clusterEndpoints;
    return { endpoints: sp.hasAnyEndpoints ? endpoints : [], flags: reject | (sp.internalPolicyLocal ? FE.LOCAL : 0) | (masqueradeClusterIP ? FE.MASQUERADE : 0) };
  }
  if (sp.externalPolicyLocal && scope === SCOPE.EXTERNAL) {
    return { endpoints: sp.hasAnyEndpoints ? sp.localEndpoints : [], flags: reject | FE.LOCAL };
  }
  // eTP Cluster masquerades external traffic; pods reaching an eTP Local frontend use the
  // cluster set without translation (kube-proxy's short-circuit).
  const masquerade = scope === SCOPE.EXTERNAL ? FE.MASQUERADE : 0;
  return { endpoints: sp.hasAnyEndpoints ? sp.clusterEndpoints : [], flags: reject | masquerade };
}

function compileServicePort(sp: ServicePortState, fs: FamilyState, state: DesiredState, out: CompiledDatapath): void {
  const proto = PROTO[sp.protocol]!;
  const family = sp.family;
  for (const ep of sp.endpoints) {
    const b = toBackend(ep, sp, proto);
    out.backends.set(backendKey(b), b);
  }
  // ClusterIP traffic is masqueraded when it does not come from a local pod (if local traffic
  // is detected at all), or always with --masquerade-all.
  const masquerade = (scope: number): boolean => state.config.masqueradeAll || (scope === SCOPE.EXTERNAL && fs.localDetector.mode !== 'None');
  const add = (addr: string, port: number, kindFlag: number, external: boolean, scope: number): void => {
    const set = chooseSet(sp, external, scope, masquerade(scope));
    const ranges = kindFlag === FE.LOAD_BALANCER && sp.loadBalancerSourceRanges.length > 0;
    const sourceRanges = ranges ? [...sp.loadBalancerSourceRanges, ...(sp.sourceRangesAllowLbIp ? sp.loadBalancerIPs.map((ip) => `${ip}/${family === 4 ? 32 : 128}`) : [])] : [];
    const spec: FrontendSpec = {
      addr,
      port,
      proto,
      family,
      scope,
      servicePort: sp.key,
      flags: kindFlag | set.flags | (ranges ? FE.SOURCE_RANGES : 0),
      algorithm: ALGORITHM[sp.algorithm],
      affinityTimeout: sp.affinityTimeoutSeconds,
      backends: set.endpoints.map((ep) => backendKey(toBackend(ep, sp, proto))),
      sourceRanges,
    };
    out.frontends.set(frontendKeyText(spec), spec);
  };
  const external = (addr: string, port: number, kindFlag: number): void => {
    add(addr, port, kindFlag, true, SCOPE.EXTERNAL);
    // Pod traffic to an external frontend of an eTP Local service uses another set.
    if (sp.externalPolicyLocal) add(addr, port, kindFlag, true, SCOPE.INTERNAL);
  };
  add(sp.clusterIP, sp.port, FE.CLUSTER_IP, false, SCOPE.EXTERNAL);
  if (masquerade(SCOPE.EXTERNAL) !== masquerade(SCOPE.INTERNAL)) add(sp.clusterIP, sp.port, FE.CLUSTER_IP, false, SCOPE.INTERNAL);
  for (const ip of sp.externalIPs) external(ip, sp.port, FE.EXTERNAL_IP);
  for (const ip of sp.loadBalancerIPs) external(ip, sp.port, FE.LOAD_BALANCER);
  if (sp.nodePort !== 0) for (const ip of fs.nodePortAddresses.addresses) external(ip, sp.nodePort, FE.NODE_PORT);
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
      compileServicePort(sp, fs, state, out);
    }
  }
  markTwins(out);
  return out;
}

/** The backend flags the map holds for a spec. */
export function backendFlags(b: BackendSpec): number {
  return b.terminating ? BE.TERMINATING : 0;
}
