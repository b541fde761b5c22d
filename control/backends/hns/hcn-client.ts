// hcsshim's hcn package over HcnApi: list, create, modify and delete documents, opening and
// closing handles as the service wants. Counts every call that changes the host, so a sync can
// report (and a test can check) what it cost.
import { randomUUID } from 'node:crypto';
import type { HcnApi, HcnHandle } from './hcn-api.ts';
import { DEFAULT_QUERY, SCHEMA_V2, type HostComputeEndpoint, type HostComputeLoadBalancer, type HostComputeNetwork } from './hcn-types.ts';

export interface HcnCallCounts {
  loadBalancersCreated: number;
  loadBalancersModified: number;
  loadBalancersDeleted: number;
  endpointsCreated: number;
  endpointsDeleted: number;
}

const query = (filter?: Record<string, string>): string => (filter === undefined ? DEFAULT_QUERY : JSON.stringify({ SchemaVersion: SCHEMA_V2, Flags: 0, Filter: JSON.stringify(filter) }));

export class HcnClient {
  readonly counts: HcnCallCounts = { loadBalancersCreated: 0, loadBalancersModified: 0, loadBalancersDeleted: 0, endpointsCreated: 0, endpointsDeleted: 0 };

  private readonly api: HcnApi;
  /** Ids for new objects (random GUIDs; a test passes a counter for stable golden documents). */
  private readonly newId: () => string;

  constructor(api: HcnApi, newId: () => string = randomUUID) {
    this.api = api;
    this.newId = newId;
  }

  private async withHandle<T>(open: () => Promise<HcnHandle>, use: (h: HcnHandle) => Promise<T>, close: (h: HcnHandle) => Promise<void>): Promise<T> {
    const h = await open();
    try {
      return await use(h);
    } finally {
      await close(h);
    }
  }

  private async ids(enumerate: Promise<string>): Promise<string[]> {
    const parsed = JSON.parse(await enumerate) as unknown;
    return Array.isArray(parsed) ? parsed.filter((x): x is string => typeof x === 'string') : [];
  }

  async listNetworks(): Promise<HostComputeNetwork[]> {
    const out: HostComputeNetwork[] = [];
    for (const id of await this.ids(this.api.enumerateNetworks(DEFAULT_QUERY))) {
      out.push(JSON.parse(await this.withHandle(() => this.api.openNetwork(id), (h) => this.api.queryNetworkProperties(h, DEFAULT_QUERY), (h) => this.api.closeNetwork(h))) as HostComputeNetwork);
    }
    return out;
  }

  async listEndpoints(networkId?: string): Promise<HostComputeEndpoint[]> {
    const out: HostComputeEndpoint[] = [];
    for (const id of await this.ids(this.api.enumerateEndpoints(query(networkId === undefined ? undefined : { HostComputeNetwork: networkId })))) {
      out.push(JSON.parse(await this.withHandle(() => this.api.openEndpoint(id), (h) => this.api.queryEndpointProperties(h, DEFAULT_QUERY), (h) => this.api.closeEndpoint(h))) as HostComputeEndpoint);
    }
    return out;
  }

  /** Creates an endpoint on a network (a remote one when its Flags say so); returns it as the service stored it. */
  async createEndpoint(networkId: string, doc: HostComputeEndpoint): Promise<HostComputeEndpoint> {
    const id = this.newId();
    const text = await this.withHandle(
      () => this.api.openNetwork(networkId),
      (net) => this.withHandle(() => this.api.createEndpoint(net, id, JSON.stringify(doc)), (ep) => this.api.queryEndpointProperties(ep, DEFAULT_QUERY), (ep) => this.api.closeEndpoint(ep)),
      (net) => this.api.closeNetwork(net),
    );
    this.counts.endpointsCreated++;
    return JSON.parse(text) as HostComputeEndpoint;
  }

  async deleteEndpoint(id: string): Promise<void> {
    await this.api.deleteEndpoint(id);
    this.counts.endpointsDeleted++;
  }

  async listLoadBalancers(): Promise<HostComputeLoadBalancer[]> {
    const out: HostComputeLoadBalancer[] = [];
    for (const id of await this.ids(this.api.enumerateLoadBalancers(DEFAULT_QUERY))) {
      out.push(JSON.parse(await this.withHandle(() => this.api.openLoadBalancer(id), (h) => this.api.queryLoadBalancerProperties(h, DEFAULT_QUERY), (h) => this.api.closeLoadBalancer(h))) as HostComputeLoadBalancer);
    }
    return out;
  }

  /** Creates a load balancer; returns its id as the service reports it (hcsshim queries it back the same way). */
  async createLoadBalancer(doc: HostComputeLoadBalancer): Promise<string> {
    const id = this.newId();
    const text = await this.withHandle(() => this.api.createLoadBalancer(id, JSON.stringify(doc)), (h) => this.api.queryLoadBalancerProperties(h, DEFAULT_QUERY), (h) => this.api.closeLoadBalancer(h));
    this.counts.loadBalancersCreated++;
    return (JSON.parse(text) as HostComputeLoadBalancer).ID ?? id;
  }

  /** Replaces a load balancer's settings in place (kube-proxy's updateLoadBalancer: the whole document, its id only in the handle). */
  async modifyLoadBalancer(id: string, doc: HostComputeLoadBalancer): Promise<void> {
    const { ID: _ignored, ...settings } = doc;
    void _ignored;
    await this.withHandle(() => this.api.openLoadBalancer(id), (h) => this.api.modifyLoadBalancer(h, JSON.stringify(settings)), (h) => this.api.closeLoadBalancer(h));
    this.counts.loadBalancersModified++;
  }

  async deleteLoadBalancer(id: string): Promise<void> {
    await this.api.deleteLoadBalancer(id);
    this.counts.loadBalancersDeleted++;
  }
}
