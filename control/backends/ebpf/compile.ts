// The eBPF backend's compiler: desired state -> the frontends, backend sets and backends the
// datapath maps must hold. Pure; ids are assigned later, by the adapter, so that they stay
// stable across syncs and restarts.
import type { Family } from '../../model/ip.ts';
import { ebpfSctpUnsupported, planServicePort, unallocatedDropCIDRsOf, type Decision, type FrontendPlan, type SourceClass } from '../../model/plan.ts';
import type { DesiredState, EndpointState, FamilyState, FrontendKind, ModelConfig, ServicePortState } from '../../model/types.ts';
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
   * Service ports the datapath cannot translate, or not all of their frontends, with why: SCTP
   * frontends whose port is not their endpoints' (the datapath rewrites SCTP addresses only).
   */
  unsupported: Array<{ servicePort: string; reason: string }>;
  /** The CIDRs whose unallocated addresses are dropped (the plan's unallocatedDropCIDRs); absent: left as they are. */
  serviceCidrs?: readonly string[];
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

/** One service port compiled alone: what it asks the maps to hold, keyed as in CompiledDatapath. */
export interface PortCompiled {
  servicePort: string;
  /** Its frontends, without SY_FE_HAS_INTERNAL (that depends on the other frontends: CompiledModel). */
  frontends: Map<string, FrontendSpec>;
  backends: Map<string, BackendSpec>;
  /** Why the datapath cannot translate it, or some of its frontends (those named are not programmed; with none left it has no backends either). */
  unsupported?: string;
}

/** What a change to the compiled model asks of the maps: entries to write (a spec) or remove (undefined). */
export interface CompiledDelta {
  frontends: Map<string, FrontendSpec | undefined>;
  backends: Map<string, BackendSpec | undefined>;
  /** Service ports touched: true while they have frontends or backends (they need a service id), false once gone. */
  ports: Map<string, boolean>;
}

export function emptyDelta(): CompiledDelta {
  return { frontends: new Map(), backends: new Map(), ports: new Map() };
}

/**
 * Translates one service port's plan. The external scope carries the decision for sources that are
 * neither this node's pods nor the node; the internal scope, looked up for packets from this node's
 * pods (the datapath knows them by device) and for the node's own sockets, carries the local-pod
 * decision where kube-proxy tells local pods apart at all (else the same as everyone's), and
 * exists only where it differs.
 */
export function compilePort(sp: ServicePortState, fs: FamilyState, config: ModelConfig): PortCompiled {
  const out: PortCompiled = { servicePort: sp.key, frontends: new Map(), backends: new Map() };
  const plan = planServicePort(sp, fs, config, 'ebpf');
  // SCTP: frontends whose port is not the endpoints' stay unprogrammed (ebpfSctpUnsupported).
  const reasons = new Set<string>();
  const frontends = plan.frontends.filter((fp) => {
    const why = ebpfSctpUnsupported(sp, fp.kind, fp.port);
    if (why !== undefined) reasons.add(why);
    return why === undefined;
  });
  if (reasons.size > 0) out.unsupported = [...reasons].join('; ');
  if (frontends.length === 0 && reasons.size > 0) return out;
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
  for (const fp of frontends) {
    add(fp, fp.bySource.other, SCOPE.EXTERNAL);
    if (!sameDecision(fp.bySource[podSource], fp.bySource.other)) add(fp, fp.bySource[podSource], SCOPE.INTERNAL);
  }
  return out;
}

function sameStrings(a: readonly string[], b: readonly string[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

export function sameFrontendSpec(a: FrontendSpec, b: FrontendSpec): boolean {
  return (
    a.addr === b.addr && a.port === b.port && a.proto === b.proto && a.family === b.family && a.scope === b.scope && a.servicePort === b.servicePort &&
    a.flags === b.flags && a.algorithm === b.algorithm && a.affinityTimeout === b.affinityTimeout && a.nodeAddress === b.nodeAddress &&
    sameStrings(a.backends, b.backends) && sameStrings(a.sourceRanges, b.sourceRanges)
  );
}

export function sameBackendSpec(a: BackendSpec, b: BackendSpec): boolean {
  return a.servicePort === b.servicePort && a.addr === b.addr && a.port === b.port && a.proto === b.proto && a.family === b.family && a.terminating === b.terminating;
}

/**
 * The compiled datapath kept up to date one service port at a time. A frontend key claimed by
 * several service ports (two services listing the same external IP and port) goes to the
 * service port whose key sorts first, whatever order they came in, so an incremental update
 * and a full compile agree; an external-scope frontend carries SY_FE_HAS_INTERNAL while its
 * internal twin exists.
 */
export class CompiledModel implements CompiledDatapath {
  readonly frontends = new Map<string, FrontendSpec>();
  readonly backends = new Map<string, BackendSpec>();
  private readonly ports = new Map<string, PortCompiled>();
  /** Frontend key -> the service ports that compile it. */
  private readonly claims = new Map<string, string[]>();
  private readonly unsupportedPorts = new Map<string, string>();
  /** Frontend keys whose winner or flags may have changed since the last resolve(). */
  private touched = new Set<string>();
  serviceCidrs: readonly string[] = [];

  get unsupported(): Array<{ servicePort: string; reason: string }> {
    return [...this.unsupportedPorts].map(([servicePort, reason]) => ({ servicePort, reason }));
  }

  get portCount(): number {
    return this.ports.size;
  }

  has(servicePort: string): boolean {
    return this.ports.has(servicePort);
  }

  /** Replaces one service port's compiled form (undefined: it is gone), noting in delta what changes. */
  set(servicePort: string, next: PortCompiled | undefined, delta: CompiledDelta): void {
    const old = this.ports.get(servicePort);
    if (old !== undefined) {
      for (const key of old.backends.keys()) {
        if (next?.backends.has(key) === true) continue;
        this.backends.delete(key);
        delta.backends.set(key, undefined);
      }
      for (const text of old.frontends.keys()) {
        if (next?.frontends.has(text) === true) continue;
        const list = this.claims.get(text);
        if (list !== undefined) {
          const rest = list.filter((p) => p !== servicePort);
          if (rest.length > 0) this.claims.set(text, rest);
          else this.claims.delete(text);
        }
        this.touched.add(text);
      }
    }
    if (next !== undefined) {
      for (const [key, b] of next.backends) {
        const prev = this.backends.get(key);
        if (prev !== undefined && sameBackendSpec(prev, b)) continue;
        this.backends.set(key, b);
        delta.backends.set(key, b);
      }
      for (const text of next.frontends.keys()) {
        const list = this.claims.get(text);
        if (list === undefined) this.claims.set(text, [servicePort]);
        else if (!list.includes(servicePort)) list.push(servicePort);
        this.touched.add(text);
      }
      this.ports.set(servicePort, next);
      if (next.unsupported !== undefined) this.unsupportedPorts.set(servicePort, next.unsupported);
      else this.unsupportedPorts.delete(servicePort);
    } else {
      this.ports.delete(servicePort);
      this.unsupportedPorts.delete(servicePort);
    }
    delta.ports.set(servicePort, next !== undefined && (next.frontends.size > 0 || next.backends.size > 0));
  }

  /** Settles the frontends touched since the last call: their winners and twin flags, into delta. */
  resolve(delta: CompiledDelta): void {
    for (const _ of this.resolveSteps(delta));
  }

  /** resolve() as steps: a yield every few hundred frontends (a full compile touches all of them). */
  *resolveSteps(delta: CompiledDelta): Generator<void> {
    const keys = this.touched;
    this.touched = new Set();
    let n = 0;
    for (const text of [...keys]) {
      // The external twin's SY_FE_HAS_INTERNAL follows the internal entry.
      if ((++n & 1023) === 0) yield;
      const i = text.lastIndexOf('|');
      if (Number(text.slice(i + 1)) === SCOPE.INTERNAL) keys.add(`${text.slice(0, i)}|${SCOPE.EXTERNAL}`);
    }
    for (const text of keys) {
      if ((++n & 511) === 0) yield;
      const spec = this.effective(text);
      const prev = this.frontends.get(text);
      if (spec === undefined) {
        if (prev === undefined) continue;
        this.frontends.delete(text);
        delta.frontends.set(text, undefined);
      } else if (prev === undefined || !sameFrontendSpec(prev, spec)) {
        this.frontends.set(text, spec);
        delta.frontends.set(text, spec);
      }
    }
  }

  /** A delta that writes everything one service port has (to retry it after a failure). */
  rewrite(servicePort: string, delta: CompiledDelta): void {
    const p = this.ports.get(servicePort);
    if (p === undefined) return;
    for (const key of p.backends.keys()) delta.backends.set(key, this.backends.get(key));
    for (const text of p.frontends.keys()) if (this.frontends.has(text)) delta.frontends.set(text, this.frontends.get(text));
    delta.ports.set(servicePort, p.frontends.size > 0 || p.backends.size > 0);
  }

  private effective(text: string): FrontendSpec | undefined {
    const list = this.claims.get(text);
    if (list === undefined) return undefined;
    let winner = list[0]!;
    for (const p of list) if (p < winner) winner = p;
    const spec = this.ports.get(winner)!.frontends.get(text)!;
    if (spec.scope !== SCOPE.EXTERNAL) return spec;
    const i = text.lastIndexOf('|');
    if (!this.claims.has(`${text.slice(0, i)}|${SCOPE.INTERNAL}`)) return spec;
    return { ...spec, flags: spec.flags | FE.HAS_INTERNAL };
  }
}

/** Compiles every service port of the state: start-up, resyncs, and whoever wants the whole picture. */
export function compileDatapath(state: DesiredState): CompiledModel {
  const model = new CompiledModel();
  const delta = emptyDelta();
  for (const fs of state.families.values()) for (const sp of fs.servicePorts.values()) model.set(sp.key, compilePort(sp, fs, state.config), delta);
  model.resolve(delta);
  model.serviceCidrs = unallocatedDropCIDRsOf(state, 'ebpf');
  return model;
}

/**
 * The same, a slice at a time: the event loop gets a turn whenever a slice has run sliceMs, so
 * health and metrics keep answering while a large state compiles.
 */
export async function compileDatapathSliced(state: DesiredState, sliceMs = 5): Promise<CompiledModel> {
  const model = new CompiledModel();
  const delta = emptyDelta();
  let t0 = performance.now();
  let n = 0;
  for (const fs of state.families.values()) {
    for (const sp of fs.servicePorts.values()) {
      model.set(sp.key, compilePort(sp, fs, state.config), delta);
      if ((++n & 63) === 0 && performance.now() - t0 > sliceMs) {
        await new Promise<void>((r) => setImmediate(r));
        t0 = performance.now();
      }
    }
  }
  for (const _ of model.resolveSteps(delta)) {
    if (performance.now() - t0 > sliceMs) {
      await new Promise<void>((r) => setImmediate(r));
      t0 = performance.now();
    }
  }
  model.serviceCidrs = unallocatedDropCIDRsOf(state, 'ebpf');
  return model;
}

/** The backend flags the map holds for a spec. */
export function backendFlags(b: BackendSpec): number {
  return b.terminating ? BE.TERMINATING : 0;
}
