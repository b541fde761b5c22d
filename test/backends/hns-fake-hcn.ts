// An in-memory HCN service behind the same HcnApi the Windows FFI binding implements. It does
// what the service does to callers: every document is checked against the schema subset in
// hns-schema.ts, ids must be GUIDs, and failures carry the HRESULTs hcsshim tells apart
// (ERROR_NOT_FOUND for unknown ids, HCN_E_PORT_ALREADY_EXISTS for a second load balancer on the
// same frontend, HCN_E_ENDPOINT_NOT_FOUND for a load balancer naming a missing endpoint,
// HCN_E_INVALID_JSON / HCN_E_INVALID_IP / HCN_E_GUID_CONVERSION_FAILURE for bad documents).
// Handles must be closed; openHandles() lets a test check nothing leaked.
import { HcnError, HRESULT, type HcnApi, type HcnHandle } from '../../control/backends/hns/hcn-api.ts';
import { LB_FLAGS } from '../../control/backends/hns/hcn-types.ts';
import type { HostComputeEndpoint, HostComputeLoadBalancer, HostComputeNetwork } from '../../control/backends/hns/hcn-types.ts';
import { ENDPOINT_POLICY_SETTINGS, ENDPOINT_POLICY_TYPES, HOST_COMPUTE_ENDPOINT, HOST_COMPUTE_LOAD_BALANCER, HOST_COMPUTE_NETWORK, isGuid, validate, type Spec } from './hns-schema.ts';

type Kind = 'network' | 'endpoint' | 'loadBalancer';

interface Handle extends HcnHandle {
  kind: Kind;
  id: string;
  open: boolean;
}

const norm = (id: string): string => id.replace(/[{}]/g, '').toLowerCase();

export class FakeHcn implements HcnApi {
  readonly networks = new Map<string, HostComputeNetwork>();
  readonly endpoints = new Map<string, HostComputeEndpoint>();
  readonly loadBalancers = new Map<string, HostComputeLoadBalancer>();
  private readonly handles = new Set<Handle>();
  /** Which load balancer listens on each frontend (protocol/port/VIP). */
  private readonly frontends = new Map<string, string>();
  /** Every call by name, in order (tests count the ones that change the host). */
  readonly calls: string[] = [];

  openHandles(): number {
    return [...this.handles].filter((h) => h.open).length;
  }

  // --- fixtures: what the CNI made before any proxy ran ---
  addNetwork(doc: HostComputeNetwork & { ID: string }): void {
    this.check('HcnCreateNetwork', doc, HOST_COMPUTE_NETWORK);
    this.networks.set(norm(doc.ID), structuredClone(doc));
  }

  addLocalEndpoint(doc: HostComputeEndpoint & { ID: string }): void {
    this.checkEndpoint('HcnCreateEndpoint', doc);
    this.endpoints.set(norm(doc.ID), structuredClone(doc));
  }

  // --- checks ---
  private check(call: string, doc: unknown, spec: Spec): void {
    const problems = validate(doc, spec);
    if (problems.length === 0) return;
    const first = problems[0]!;
    const hr = first.kind === 'ip' ? HRESULT.HCN_E_INVALID_IP : first.kind === 'guid' ? HRESULT.HCN_E_GUID_CONVERSION_FAILURE : HRESULT.HCN_E_INVALID_JSON;
    throw new HcnError(call, hr, JSON.stringify({ Error: problems.map((p) => `${p.path}: ${p.problem}`).join('; '), ErrorCode: hr, Success: false }));
  }

  private parse(call: string, text: string): unknown {
    try {
      return JSON.parse(text) as unknown;
    } catch (e) {
      throw new HcnError(call, HRESULT.HCN_E_INVALID_JSON, JSON.stringify({ Error: (e as Error).message, Success: false }));
    }
  }

  private guid(call: string, id: string): string {
    if (!isGuid(id)) throw new HcnError(call, HRESULT.HCN_E_GUID_CONVERSION_FAILURE, JSON.stringify({ Error: `not a GUID: ${id}`, Success: false }));
    return norm(id);
  }

  private checkEndpoint(call: string, doc: HostComputeEndpoint): void {
    this.check(call, doc, HOST_COMPUTE_ENDPOINT);
    if ((doc.IpConfigurations ?? []).length === 0) throw new HcnError(call, HRESULT.HCN_E_INVALID_ENDPOINT, JSON.stringify({ Error: 'an endpoint needs an IP configuration', Success: false }));
    for (const p of doc.Policies ?? []) {
      if (!(ENDPOINT_POLICY_TYPES as readonly string[]).includes(p.Type)) throw new HcnError(call, 0x803b000e, JSON.stringify({ Error: `invalid policy type ${p.Type}`, Success: false })); // HCN_E_INVALID_POLICY_TYPE
      const settings = ENDPOINT_POLICY_SETTINGS[p.Type];
      if (settings !== undefined) this.check(call, p.Settings, settings);
    }
  }

  /** What HNS refuses twice: the same family, protocol, port and VIP (a NodePort has none; its IPv4 and IPv6 load balancers differ by the IPv6 flag). */
  private frontendOf(lb: HostComputeLoadBalancer): string {
    const pm = lb.PortMappings[0]!;
    return `${(lb.Flags ?? 0) & LB_FLAGS.IPv6}/${pm.Protocol}/${pm.ExternalPort ?? 0}/${lb.FrontendVIPs?.[0] ?? ''}`;
  }

  private checkLoadBalancer(call: string, doc: HostComputeLoadBalancer, self: string | undefined): void {
    this.check(call, doc, HOST_COMPUTE_LOAD_BALANCER);
    for (const id of doc.HostComputeEndpoints ?? []) {
      if (!this.endpoints.has(norm(id))) throw new HcnError(call, HRESULT.HCN_E_ENDPOINT_NOT_FOUND, JSON.stringify({ Error: `endpoint ${id} not found`, Success: false }));
    }
    const holder = this.frontends.get(this.frontendOf(doc));
    if (holder !== undefined && holder !== self) throw new HcnError(call, HRESULT.HCN_E_PORT_ALREADY_EXISTS, JSON.stringify({ Error: 'The specified port already exists.', Success: false }));
  }

  /** Stores a load balancer, keeping the frontend index in step. */
  private storeLoadBalancer(id: string, doc: HostComputeLoadBalancer | undefined): void {
    const old = this.loadBalancers.get(id);
    if (old !== undefined) this.frontends.delete(this.frontendOf(old));
    if (doc === undefined) {
      this.loadBalancers.delete(id);
      return;
    }
    this.loadBalancers.set(id, doc);
    this.frontends.set(this.frontendOf(doc), id);
  }

  private handle(kind: Kind, id: string): Handle {
    const h: Handle = { hcnHandle: Symbol(kind), kind, id, open: true };
    this.handles.add(h);
    return h;
  }

  private use(call: string, h: HcnHandle, kind: Kind): Handle {
    const handle = h as Handle;
    if (!this.handles.has(handle) || !handle.open || handle.kind !== kind) throw new HcnError(call, 0x80070006, ''); // E_HANDLE
    return handle;
  }

  private close(call: string, h: HcnHandle, kind: Kind): void {
    this.use(call, h, kind).open = false;
  }

  private filtered<T extends { ID?: string }>(items: Map<string, T>, query: string, call: string): string {
    const q = this.parse(call, query) as { Filter?: string };
    const filter = q.Filter !== undefined && q.Filter !== '' ? (this.parse(call, q.Filter) as Record<string, string>) : {};
    const ids = [...items.entries()].filter(([, v]) => Object.entries(filter).every(([k, want]) => String((v as Record<string, unknown>)[k] ?? '').toLowerCase() === String(want).toLowerCase())).map(([id]) => id);
    return JSON.stringify(ids);
  }

  // --- HcnApi ---
  async enumerateNetworks(query: string): Promise<string> {
    this.calls.push('HcnEnumerateNetworks');
    return this.filtered(this.networks, query, 'HcnEnumerateNetworks');
  }

  async openNetwork(id: string): Promise<HcnHandle> {
    this.calls.push('HcnOpenNetwork');
    const g = this.guid('HcnOpenNetwork', id);
    if (!this.networks.has(g)) throw new HcnError('HcnOpenNetwork', HRESULT.ERROR_NOT_FOUND, '');
    return this.handle('network', g);
  }

  async queryNetworkProperties(network: HcnHandle, query: string): Promise<string> {
    this.parse('HcnQueryNetworkProperties', query);
    return JSON.stringify(this.networks.get(this.use('HcnQueryNetworkProperties', network, 'network').id));
  }

  async closeNetwork(network: HcnHandle): Promise<void> {
    this.close('HcnCloseNetwork', network, 'network');
  }

  async enumerateEndpoints(query: string): Promise<string> {
    this.calls.push('HcnEnumerateEndpoints');
    return this.filtered(this.endpoints, query, 'HcnEnumerateEndpoints');
  }

  async createEndpoint(network: HcnHandle, id: string, settings: string): Promise<HcnHandle> {
    this.calls.push('HcnCreateEndpoint');
    const net = this.use('HcnCreateEndpoint', network, 'network');
    const g = this.guid('HcnCreateEndpoint', id);
    const doc = this.parse('HcnCreateEndpoint', settings) as HostComputeEndpoint;
    this.checkEndpoint('HcnCreateEndpoint', doc);
    if (this.endpoints.has(g)) throw new HcnError('HcnCreateEndpoint', 0x800700b7, ''); // HRESULT_FROM_WIN32(ERROR_ALREADY_EXISTS)
    if (doc.HostComputeNetwork !== undefined && norm(doc.HostComputeNetwork) !== net.id) throw new HcnError('HcnCreateEndpoint', HRESULT.E_INVALIDARG, JSON.stringify({ Error: 'HostComputeNetwork differs from the network handle', Success: false }));
    this.endpoints.set(g, { ...doc, ID: g, HostComputeNetwork: net.id });
    return this.handle('endpoint', g);
  }

  async openEndpoint(id: string): Promise<HcnHandle> {
    const g = this.guid('HcnOpenEndpoint', id);
    if (!this.endpoints.has(g)) throw new HcnError('HcnOpenEndpoint', HRESULT.ERROR_NOT_FOUND, '');
    return this.handle('endpoint', g);
  }

  async queryEndpointProperties(endpoint: HcnHandle, query: string): Promise<string> {
    this.parse('HcnQueryEndpointProperties', query);
    return JSON.stringify(this.endpoints.get(this.use('HcnQueryEndpointProperties', endpoint, 'endpoint').id));
  }

  async deleteEndpoint(id: string): Promise<void> {
    this.calls.push('HcnDeleteEndpoint');
    const g = this.guid('HcnDeleteEndpoint', id);
    if (!this.endpoints.delete(g)) throw new HcnError('HcnDeleteEndpoint', HRESULT.ERROR_NOT_FOUND, '');
  }

  async closeEndpoint(endpoint: HcnHandle): Promise<void> {
    this.close('HcnCloseEndpoint', endpoint, 'endpoint');
  }

  async enumerateLoadBalancers(query: string): Promise<string> {
    this.calls.push('HcnEnumerateLoadBalancers');
    return this.filtered(this.loadBalancers, query, 'HcnEnumerateLoadBalancers');
  }

  async createLoadBalancer(id: string, settings: string): Promise<HcnHandle> {
    this.calls.push('HcnCreateLoadBalancer');
    const g = this.guid('HcnCreateLoadBalancer', id);
    const doc = this.parse('HcnCreateLoadBalancer', settings) as HostComputeLoadBalancer;
    this.checkLoadBalancer('HcnCreateLoadBalancer', doc, undefined);
    if (this.loadBalancers.has(g)) throw new HcnError('HcnCreateLoadBalancer', 0x800700b7, '');
    this.storeLoadBalancer(g, { ...doc, ID: g });
    return this.handle('loadBalancer', g);
  }

  async openLoadBalancer(id: string): Promise<HcnHandle> {
    const g = this.guid('HcnOpenLoadBalancer', id);
    if (!this.loadBalancers.has(g)) throw new HcnError('HcnOpenLoadBalancer', HRESULT.ERROR_NOT_FOUND, '');
    return this.handle('loadBalancer', g);
  }

  async modifyLoadBalancer(loadBalancer: HcnHandle, settings: string): Promise<void> {
    this.calls.push('HcnModifyLoadBalancer');
    const h = this.use('HcnModifyLoadBalancer', loadBalancer, 'loadBalancer');
    const doc = this.parse('HcnModifyLoadBalancer', settings) as HostComputeLoadBalancer;
    this.checkLoadBalancer('HcnModifyLoadBalancer', doc, h.id);
    this.storeLoadBalancer(h.id, { ...doc, ID: h.id });
  }

  async queryLoadBalancerProperties(loadBalancer: HcnHandle, query: string): Promise<string> {
    this.parse('HcnQueryLoadBalancerProperties', query);
    return JSON.stringify(this.loadBalancers.get(this.use('HcnQueryLoadBalancerProperties', loadBalancer, 'loadBalancer').id));
  }

  async deleteLoadBalancer(id: string): Promise<void> {
    this.calls.push('HcnDeleteLoadBalancer');
    const g = this.guid('HcnDeleteLoadBalancer', id);
    if (!this.loadBalancers.has(g)) throw new HcnError('HcnDeleteLoadBalancer', HRESULT.ERROR_NOT_FOUND, '');
    this.storeLoadBalancer(g, undefined);
  }

  async closeLoadBalancer(loadBalancer: HcnHandle): Promise<void> {
    this.close('HcnCloseLoadBalancer', loadBalancer, 'loadBalancer');
  }
}
