// The HNS adapter: the compiled load balancers of each service port, written to HCN. It adopts
// what it finds instead of recreating it: at a full sync it lists the host's load balancers and
// the network's endpoints, and a load balancer already listening on a compiled frontend (left by
// a previous agent or by kube-proxy) is kept when it matches and modified in place when it does
// not; remote endpoints are found by IP as kube-proxy finds them. A partial sync touches only the
// service ports that changed, so a changed endpoint costs one HcnModifyLoadBalancer per load
// balancer of that port. Load balancers and remote endpoints nobody wants any more are deleted.
import type { Family } from '../../model/ip.ts';
import type { ChangeSet, DesiredState, FamilyState, ServicePortState } from '../../model/types.ts';
import { planServicePort } from '../../model/plan.ts';
import type { BackendSyncResult } from '../backend.ts';
import { compileServicePort, frontendKey, loadBalancerDocument, remoteEndpointDocument, type HnsCompileOptions, type HnsNetworkFacts, type LoadBalancerSpec, type PortCompile } from './compile.ts';
import { HcnError } from './hcn-api.ts';
import type { HcnClient } from './hcn-client.ts';
import { ENDPOINT_FLAGS, SCHEMA_V2, type HostComputeEndpoint, type HostComputeLoadBalancer } from './hcn-types.ts';
import type { WinkernelConfig } from './winkernel-config.ts';

/** E_NOTIMPL: HNS versions before Windows Server 2022 cannot modify a load balancer (kube-proxy then deletes and recreates). */
const E_NOTIMPL = 0x80004001;

export interface HnsBackendOptions {
  client: HcnClient;
  winkernel: WinkernelConfig;
  /** The host's MAC, for overlay service-VIP endpoints. */
  hostMac: string;
  healthzPort: number;
}

interface Written {
  id: string;
  doc: HostComputeLoadBalancer;
}

interface PortState {
  lbs: Map<string, Written>;
  /** Remote endpoint IPs this port's load balancers point at. */
  remote: Set<string>;
}

const isRemote = (ep: HostComputeEndpoint): boolean => ((ep.Flags ?? 0) & ENDPOINT_FLAGS.RemoteEndpoint) !== 0;
const upper = (ids: readonly string[] | undefined): string[] => (ids ?? []).map((i) => i.toUpperCase()).sort();

/** Two load balancers do the same thing (ids compared as a set, absent numbers as 0, whatever else the service adds ignored). */
export function sameLoadBalancer(a: HostComputeLoadBalancer, b: HostComputeLoadBalancer): boolean {
  const pm = (lb: HostComputeLoadBalancer) => lb.PortMappings.map((p) => [p.Protocol, p.InternalPort ?? 0, p.ExternalPort ?? 0, p.DistributionType ?? 0, p.Flags ?? 0].join('/')).join(',');
  return (
    upper(a.HostComputeEndpoints).join() === upper(b.HostComputeEndpoints).join() &&
    (a.SourceVIP ?? '') === (b.SourceVIP ?? '') &&
    (a.FrontendVIPs ?? []).join() === (b.FrontendVIPs ?? []).join() &&
    pm(a) === pm(b) &&
    (a.Flags ?? 0) === (b.Flags ?? 0)
  );
}

export class HnsBackend {
  private readonly o: HnsBackendOptions;
  private network: { id: string; facts: HnsNetworkFacts } | undefined;
  /** Endpoints on our network by IP (a local one wins over a remote one of the same IP, as in kube-proxy). */
  private endpointsByIp = new Map<string, HostComputeEndpoint>();
  private endpointsByName = new Map<string, HostComputeEndpoint>();
  /** Every load balancer on the host by frontend, unclaimed ones included (adoption). */
  private byFrontend = new Map<string, Written>();
  private readonly ports = new Map<string, PortState>();
  private modifyWorks = true;
  /** How many service ports point at each remote endpoint IP. */
  private readonly refs = new Map<string, number>();
  /** Remote endpoint IPs that lost their last reference in this sync: what a partial sync may delete. */
  private released = new Set<string>();
  private loadBalancerCount = 0;
  /** The last sync failed somewhere: the next one is full. */
  private repair = false;
  private failed: BackendSyncResult['failed'] = [];

  constructor(o: HnsBackendOptions) {
    this.o = o;
  }

  get client(): HcnClient {
    return this.o.client;
  }

  /** What each service port holds, by slot (for tests and inspection). */
  written(): ReadonlyMap<string, ReadonlyMap<string, Written>> {
    return new Map([...this.ports].map(([k, p]) => [k, p.lbs]));
  }

  private async loadNetwork(): Promise<{ id: string; facts: HnsNetworkFacts }> {
    const name = this.o.winkernel.networkName;
    const net = (await this.o.client.listNetworks()).find((n) => n.Name === name);
    if (net?.ID === undefined) throw new Error(`HNS network "${name}" not found (winkernel.networkName / $KUBE_NETWORK; is the CNI deployed?)`);
    const remoteSubnets = (net.Policies ?? [])
      .filter((p) => p.Type === 'RemoteSubnetRoute')
      .map((p) => ({ destinationPrefix: String(p.Settings.DestinationPrefix ?? ''), providerAddress: String(p.Settings.ProviderAddress ?? '') }));
    if (net.Type.toLowerCase() === 'overlay' && this.o.winkernel.sourceVip === '') throw new Error(`HNS network "${name}" is an overlay network: winkernel.sourceVip is required`);
    return { id: net.ID, facts: { type: net.Type, remoteSubnets } };
  }

  private index(endpoints: readonly HostComputeEndpoint[]): void {
    this.endpointsByIp = new Map();
    this.endpointsByName = new Map();
    for (const ep of endpoints) {
      if (ep.Name !== undefined) this.endpointsByName.set(ep.Name, ep);
      for (const ipc of (ep.IpConfigurations ?? []).slice(0, 2)) {
        const had = this.endpointsByIp.get(ipc.IpAddress);
        if (had === undefined || (isRemote(had) && !isRemote(ep))) this.endpointsByIp.set(ipc.IpAddress, ep);
      }
    }
  }

  private compileOptions(state: DesiredState): HnsCompileOptions {
    return { winkernel: this.o.winkernel, network: this.network!.facts, nodeIPs: state.node.primaryIPs, hostMac: this.o.hostMac, healthzPort: this.o.healthzPort };
  }

  private compile(state: DesiredState, sp: ServicePortState, fs: FamilyState): PortCompile {
    return compileServicePort(planServicePort(sp, fs, state.config), fs, this.compileOptions(state));
  }

  /** Applies the desired state: everything (full) or the service ports in `changes`. */
  async sync(state: DesiredState, changes: ChangeSet, fullRequested: boolean): Promise<BackendSyncResult> {
    // Node facts feed every port (source VIP, NodePort addresses): a change to them recompiles all;
    // after a sync with failures the next one re-reads HCN and repairs, as kube-proxy re-lists.
    const full = fullRequested || changes.nodeChanged || this.repair;
    this.failed = [];
    const unsupported: BackendSyncResult['unsupported'] = [];
    const before = { ...this.o.client.counts };
    if (full || this.network === undefined) {
      this.network = await this.loadNetwork();
      this.index(await this.o.client.listEndpoints(this.network.id));
      this.byFrontend = new Map((await this.o.client.listLoadBalancers()).filter((lb) => lb.ID !== undefined).map((lb) => [frontendKey(lb), { id: lb.ID!, doc: lb }]));
      await this.ensureSourceVipEndpoint(state);
    }
    const report = (pc: PortCompile): void => {
      for (const u of pc.unsupported) unsupported.push({ servicePort: pc.servicePort, reason: `${u.frontend} (${u.sources.join(', ')}): ${u.reason}` });
    };
    if (full) {
      const wanted = new Set<string>();
      for (const fs of state.families.values()) {
        for (const sp of fs.servicePorts.values()) {
          wanted.add(sp.key);
          const pc = this.compile(state, sp, fs);
          report(pc);
          await this.applyPort(pc);
        }
      }
      for (const key of [...this.ports.keys()]) if (!wanted.has(key)) await this.removePort(key);
      await this.deleteUnclaimedLoadBalancers();
    } else {
      const upserted = new Set(changes.upserted.map((sp) => sp.key));
      for (const sp of changes.removed) if (!upserted.has(sp.key)) await this.removePort(sp.key);
      for (const sp of changes.upserted) {
        const fs = state.families.get(sp.family as Family);
        const current = fs?.servicePorts.get(sp.key);
        if (fs === undefined || current === undefined) continue;
        const pc = this.compile(state, current, fs);
        report(pc);
        await this.applyPort(pc);
      }
    }
    await this.deleteUnreferencedRemoteEndpoints(full);
    this.repair = this.failed.length > 0;
    const c = this.o.client.counts;
    return {
      failed: this.failed,
      unsupported,
      details: {
        full,
        loadBalancers: this.loadBalancerCount,
        created: c.loadBalancersCreated - before.loadBalancersCreated,
        modified: c.loadBalancersModified - before.loadBalancersModified,
        deleted: c.loadBalancersDeleted - before.loadBalancersDeleted,
        endpointsCreated: c.endpointsCreated - before.endpointsCreated,
        endpointsDeleted: c.endpointsDeleted - before.endpointsDeleted,
      },
    };
  }

  /** Overlay: kube-proxy's newSourceVIP, a local endpoint holding the source VIP, on the node (its provider address). */
  private async ensureSourceVipEndpoint(state: DesiredState): Promise<void> {
    const vip = this.o.winkernel.sourceVip;
    if (this.network!.facts.type.toLowerCase() !== 'overlay' || this.endpointsByIp.has(vip)) return;
    const family = vip.includes(':') ? 6 : 4;
    const nodeIP = state.node.primaryIPs[family];
    const doc: HostComputeEndpoint = {
      HostComputeNetwork: this.network!.id,
      IpConfigurations: [{ IpAddress: vip }],
      MacAddress: this.o.hostMac,
      Flags: ENDPOINT_FLAGS.None,
      ...(nodeIP !== undefined ? { Policies: [{ Type: 'ProviderAddress', Settings: { ProviderAddress: nodeIP } }] } : {}),
      SchemaVersion: SCHEMA_V2,
    };
    try {
      this.endpointsByIp.set(vip, await this.o.client.createEndpoint(this.network!.id, doc));
    } catch (e) {
      this.fail(`source VIP endpoint ${vip}`, e);
    }
  }

  private fail(what: string, e: unknown): void {
    this.failed.push({ frontend: what, error: e instanceof Error ? e.message : String(e) });
  }

  private async ensureRemoteEndpoints(pc: PortCompile): Promise<void> {
    for (const spec of pc.remoteEndpoints) {
      if (this.endpointsByIp.has(spec.ip)) continue; // a local endpoint, or a remote one made before (by us or kube-proxy)
      try {
        const ep = await this.o.client.createEndpoint(this.network!.id, remoteEndpointDocument(spec, this.network!.id));
        this.endpointsByIp.set(spec.ip, ep);
      } catch (e) {
        this.fail(`${pc.servicePort} remote endpoint ${spec.ip}`, e);
      }
    }
  }

  private resolve(pc: PortCompile, spec: LoadBalancerSpec): string[] {
    const ids: string[] = [];
    for (const ref of spec.endpoints) {
      const ep = ref.kind === 'ip' ? this.endpointsByIp.get(ref.ip) : this.endpointsByName.get(ref.name);
      if (ep?.ID !== undefined) ids.push(ep.ID);
      else if (ref.kind === 'ip' && ref.local) this.fail(`${pc.servicePort} ${spec.slot}`, `local endpoint ${ref.ip} not found on HNS network "${this.o.winkernel.networkName}" (left out, as kube-proxy does)`);
      else if (ref.kind === 'name') this.fail(`${pc.servicePort} ${spec.slot}`, `endpoint "${ref.name}" (winkernel.rootHnsEndpointName) not found`);
    }
    return ids;
  }

  private async applyPort(pc: PortCompile): Promise<void> {
    await this.ensureRemoteEndpoints(pc);
    const prev = this.ports.get(pc.key) ?? { lbs: new Map<string, Written>(), remote: new Set<string>() };
    const next: PortState = { lbs: new Map(), remote: new Set() };
    this.ports.set(pc.key, next);
    for (const spec of pc.loadBalancers) {
      const ids = this.resolve(pc, spec);
      if (ids.length === 0) continue;
      for (const ref of spec.endpoints) if (ref.kind === 'ip' && !ref.local) next.remote.add(ref.ip);
      const doc = loadBalancerDocument(spec, ids);
      const fk = frontendKey(doc);
      const mine = prev.lbs.get(spec.slot);
      // The load balancer on that frontend as HCN last listed it (a full sync re-lists, so one
      // deleted behind our back is gone from here): ours from last time, or one we adopt.
      const there = this.byFrontend.get(fk);
      if (mine !== undefined && mine.id !== there?.id) await this.deleteLoadBalancer(pc.servicePort, mine);
      try {
        const written = there === undefined ? await this.create(doc) : sameLoadBalancer(there.doc, doc) ? there : await this.modify(there, doc);
        next.lbs.set(spec.slot, written);
        this.byFrontend.set(fk, written);
      } catch (e) {
        this.fail(`${pc.servicePort} ${spec.slot}`, e);
      }
    }
    // The overlay service-VIP endpoint belongs to the port while it has any load balancer.
    if (next.lbs.size > 0) for (const spec of pc.remoteEndpoints) next.remote.add(spec.ip);
    for (const [slot, w] of prev.lbs) if (!next.lbs.has(slot) && [...next.lbs.values()].every((n) => n.id !== w.id)) await this.deleteLoadBalancer(pc.servicePort, w);
    this.rereference(prev.remote, next.remote);
    this.loadBalancerCount += next.lbs.size - prev.lbs.size;
  }

  private async create(doc: HostComputeLoadBalancer): Promise<Written> {
    return { id: await this.o.client.createLoadBalancer(doc), doc };
  }

  private async modify(there: Written, doc: HostComputeLoadBalancer): Promise<Written> {
    if (this.modifyWorks) {
      try {
        await this.o.client.modifyLoadBalancer(there.id, doc);
        return { id: there.id, doc };
      } catch (e) {
        if (!(e instanceof HcnError && e.hresult === E_NOTIMPL)) throw e;
        this.modifyWorks = false; // this HNS cannot modify: delete and recreate from now on
      }
    }
    await this.o.client.deleteLoadBalancer(there.id);
    this.byFrontend.delete(frontendKey(there.doc));
    return this.create(doc);
  }

  private async deleteLoadBalancer(servicePort: string, w: Written): Promise<void> {
    try {
      await this.o.client.deleteLoadBalancer(w.id);
    } catch (e) {
      if (!(e instanceof HcnError && e.hresult === 0x80070490)) this.fail(`${servicePort} delete ${w.id}`, e); // already gone is fine
    }
    const fk = frontendKey(w.doc);
    if (this.byFrontend.get(fk)?.id === w.id) this.byFrontend.delete(fk);
  }

  private async removePort(key: string): Promise<void> {
    const p = this.ports.get(key);
    if (p === undefined) return;
    this.ports.delete(key);
    for (const w of p.lbs.values()) await this.deleteLoadBalancer(key, w);
    this.rereference(p.remote, new Set());
    this.loadBalancerCount -= p.lbs.size;
  }

  /** Load balancers on the host that no service port claims, pointing only at endpoints of our network (or at none). */
  private async deleteUnclaimedLoadBalancers(): Promise<void> {
    const claimed = new Set([...this.ports.values()].flatMap((p) => [...p.lbs.values()].map((w) => w.id)));
    const ours = new Set([...this.endpointsByIp.values(), ...this.endpointsByName.values()].map((e) => e.ID?.toUpperCase()));
    for (const w of [...this.byFrontend.values()]) {
      if (claimed.has(w.id)) continue;
      if ((w.doc.HostComputeEndpoints ?? []).every((id) => ours.has(id.toUpperCase()))) await this.deleteLoadBalancer('unclaimed', w);
    }
  }

  /** Moves a port's references from `prev` to `next` remote endpoint IPs. */
  private rereference(prev: ReadonlySet<string>, next: ReadonlySet<string>): void {
    for (const ip of next) if (!prev.has(ip)) this.refs.set(ip, (this.refs.get(ip) ?? 0) + 1);
    for (const ip of prev) {
      if (next.has(ip)) continue;
      const n = (this.refs.get(ip) ?? 1) - 1;
      if (n > 0) this.refs.set(ip, n);
      else {
        this.refs.delete(ip);
        this.released.add(ip);
      }
    }
  }

  /**
   * Remote endpoints no service port points at any more: those released in this sync (work in
   * proportion to the change), or after a full sync every remote endpoint on the network that
   * nothing references, whoever made it.
   */
  private async deleteUnreferencedRemoteEndpoints(full: boolean): Promise<void> {
    const referenced = full ? new Set([...this.byFrontend.values()].flatMap((w) => upper(w.doc.HostComputeEndpoints))) : new Set<string>();
    const candidates = full ? [...this.endpointsByIp.keys()] : [...this.released];
    this.released = new Set();
    for (const ip of candidates) {
      const ep = this.endpointsByIp.get(ip);
      if (ep?.ID === undefined || !isRemote(ep) || this.refs.has(ip) || referenced.has(ep.ID.toUpperCase())) continue;
      try {
        await this.o.client.deleteEndpoint(ep.ID);
        this.endpointsByIp.delete(ip);
      } catch (e) {
        this.fail(`remote endpoint ${ip}`, e);
      }
    }
  }
}
