// The HNS adapter against the in-memory HCN over time: a restarted agent (or one starting where
// kube-proxy ran) adopts the load balancers and remote endpoints it finds and changes nothing;
// a changed endpoint costs one HcnModifyLoadBalancer; a removed service takes its load balancers
// and remote endpoints with it; cleanup leaves the CNI's endpoints only; HNS without modify
// support gets delete + create. The fake itself refuses what HCN refuses.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { createHash } from 'node:crypto';
import { cleanupHns } from '../../control/backends/hns/cleanup.ts';
import { hashEndpoints, loadBalancerIdentifier } from '../../control/backends/hns/compile.ts';
import { HcnClient } from '../../control/backends/hns/hcn-client.ts';
import { HcnError, HRESULT, type HcnHandle } from '../../control/backends/hns/hcn-api.ts';
import { SCHEMA_V2 } from '../../control/backends/hns/hcn-types.ts';
import { nodeFacts } from '../../control/model/node.ts';
import { ChangeTracker } from '../../control/model/tracker.ts';
import { DEFAULT_MODEL_CONFIG } from '../../control/model/types.ts';
import { service, slice } from '../cases/objects.ts';
import { emptyChanges } from './hns-changes.ts';
import { FakeHcn } from './hns-fake-hcn.ts';
import { fakeHcn, guid, hnsBackend, NETWORK_ID } from './hns-fixture.ts';

const MUTATING = new Set(['HcnCreateLoadBalancer', 'HcnModifyLoadBalancer', 'HcnDeleteLoadBalancer', 'HcnCreateEndpoint', 'HcnDeleteEndpoint']);
const mutations = (hcn: FakeHcn, from = 0): string[] => hcn.calls.slice(from).filter((c) => MUTATING.has(c));

function cluster(endpoints: string[] = ['10.180.0.1', '10.180.0.2']): ChangeTracker {
  const t = new ChangeTracker(
    { ...DEFAULT_MODEL_CONFIG, families: [4], clusterCIDRs: ['10.180.0.0/16'], detectLocalMode: 'ClusterCIDR' },
    nodeFacts('test-node', { metadata: { name: 'test-node' }, status: { addresses: [{ type: 'InternalIP', address: '192.168.0.2' }] } }),
  );
  t.upsertService(service({ ns: 'ns1', name: 'svc1', clusterIPs: ['172.30.0.41'], ports: [{ name: 'p80', port: 80 }] }));
  t.upsertSlice(slice({ ns: 'ns1', name: 'svc1-x', service: 'svc1', ports: [{ name: 'p80', port: 80 }], endpoints: endpoints.map((ip) => ({ ip, node: 'other' })) }));
  t.upsertService(service({ ns: 'ns2', name: 'np', type: 'NodePort', clusterIPs: ['172.30.0.42'], ports: [{ name: 'p80', port: 80, nodePort: 3001 }] }));
  t.upsertSlice(slice({ ns: 'ns2', name: 'np-x', service: 'np', ports: [{ name: 'p80', port: 80 }], endpoints: [{ ip: '10.180.0.9', node: 'test-node' }, { ip: '10.180.0.3', node: 'other' }] }));
  t.flush();
  return t;
}

const localPods = [{ id: guid(0x109), ips: ['10.180.0.9'] }];

describe('HNS adapter: adoption, incremental changes, cleanup', () => {
  it('a restarted agent finds its own load balancers and endpoints and changes nothing', async () => {
    const hcn = fakeHcn(localPods);
    const backend = hnsBackend(hcn);
    const first = { backend, result: await backend.sync(cluster().state(), emptyChanges(), true) };
    assert.deepEqual(first.result.failed, []);
    assert.equal(first.result.details.created, 3, 'ClusterIP svc1, ClusterIP np, NodePort np');
    const lbsBefore = structuredClone([...hcn.loadBalancers]);
    // The same agent's periodic full sync (it re-lists HCN) changes nothing either.
    const periodic = hcn.calls.length;
    await first.backend.sync(cluster().state(), emptyChanges(), true);
    assert.deepEqual(mutations(hcn, periodic), [], 'a full sync of an unchanged state');
    const mark = hcn.calls.length;
    const again = await hnsBackend(hcn).sync(cluster().state(), emptyChanges(), true);
    assert.deepEqual(again.failed, []);
    assert.deepEqual(mutations(hcn, mark), [], 'no create, modify or delete');
    assert.deepEqual([...hcn.loadBalancers], lbsBefore, 'the same load balancers, same ids');
    assert.equal(again.details.loadBalancers, 3, 'all three adopted');
    assert.equal(hcn.openHandles(), 0);
  });

  it('a changed endpoint changes one load balancer (partial sync), and a restart after a change modifies, not recreates', async () => {
    const hcn = fakeHcn(localPods);
    const tracker = cluster();
    const backend = hnsBackend(hcn);
    await backend.sync(tracker.state(), emptyChanges(), true);
    const ids = new Set(hcn.loadBalancers.keys());
    tracker.upsertSlice(slice({ ns: 'ns1', name: 'svc1-x', service: 'svc1', ports: [{ name: 'p80', port: 80 }], endpoints: [{ ip: '10.180.0.1', node: 'other' }, { ip: '10.180.0.5', node: 'other' }] }));
    const changes = tracker.flush();
    assert.equal(changes.upserted.length, 1);
    let mark = hcn.calls.length;
    const r = await backend.sync(tracker.state(), changes, false);
    assert.deepEqual(r.failed, []);
    assert.deepEqual(mutations(hcn, mark).sort(), ['HcnCreateEndpoint', 'HcnDeleteEndpoint', 'HcnModifyLoadBalancer'], 'one endpoint in, one out, one load balancer modified');
    assert.deepEqual(new Set(hcn.loadBalancers.keys()), ids, 'same load balancer ids');
    const svc1 = [...hcn.loadBalancers.values()].find((lb) => lb.FrontendVIPs?.[0] === '172.30.0.41')!;
    const ips = svc1.HostComputeEndpoints.map((id) => hcn.endpoints.get(id)!.IpConfigurations[0]!.IpAddress).sort();
    assert.deepEqual(ips, ['10.180.0.1', '10.180.0.5']);
    assert.ok(![...hcn.endpoints.values()].some((e) => e.IpConfigurations[0]!.IpAddress === '10.180.0.2'), 'the unreferenced remote endpoint is gone');
    // A new agent on a state that changed meanwhile: one modify, nothing recreated.
    mark = hcn.calls.length;
    const restarted = await hnsBackend(hcn).sync(cluster(['10.180.0.5']).state(), emptyChanges(), true);
    assert.deepEqual(restarted.failed, []);
    assert.deepEqual(mutations(hcn, mark).sort(), ['HcnDeleteEndpoint', 'HcnModifyLoadBalancer']);
    assert.deepEqual(new Set(hcn.loadBalancers.keys()), ids);
  });

  it('adopts what kube-proxy made: its remote endpoint by IP and its load balancer by frontend', async () => {
    const hcn = fakeHcn(localPods);
    const client = new HcnClient(hcn);
    const kpEndpoint = await client.createEndpoint(NETWORK_ID, { IpConfigurations: [{ IpAddress: '10.180.0.1' }], MacAddress: '02-11-0a-b4-00-01', Flags: 1, SchemaVersion: SCHEMA_V2 });
    const kpLb = await client.createLoadBalancer({ HostComputeEndpoints: [kpEndpoint.ID!.toUpperCase()], SourceVIP: '192.168.0.2', FrontendVIPs: ['172.30.0.41'], PortMappings: [{ Protocol: 6, InternalPort: 80, ExternalPort: 80, DistributionType: 0, Flags: 0 }], SchemaVersion: SCHEMA_V2, Flags: 0 });
    // kube-proxy's leftover for a service that no longer exists: deleted by the first full sync.
    const stale = await client.createLoadBalancer({ HostComputeEndpoints: [kpEndpoint.ID!], FrontendVIPs: ['172.30.0.99'], PortMappings: [{ Protocol: 6, InternalPort: 80, ExternalPort: 80 }], SchemaVersion: SCHEMA_V2 });
    const mark = hcn.calls.length;
    const r = await hnsBackend(hcn, { enableDSR: false }).sync(cluster(['10.180.0.1']).state(), emptyChanges(), true);
    assert.deepEqual(r.failed, []);
    assert.ok(hcn.loadBalancers.has(kpLb), 'kube-proxy\'s ClusterIP load balancer kept');
    assert.ok(!hcn.loadBalancers.has(stale), 'the stale one deleted');
    assert.deepEqual(mutations(hcn, mark).sort(), ['HcnCreateEndpoint', 'HcnCreateLoadBalancer', 'HcnCreateLoadBalancer', 'HcnDeleteLoadBalancer'], 'only the np service\'s two load balancers and its remote endpoint are new');
  });

  it('a removed service takes its load balancers and remote endpoints; cleanup leaves only the CNI\'s endpoints', async () => {
    const hcn = fakeHcn(localPods);
    const tracker = cluster();
    const backend = hnsBackend(hcn);
    await backend.sync(tracker.state(), emptyChanges(), true);
    tracker.deleteService('ns2/np');
    const changes = tracker.flush();
    const mark = hcn.calls.length;
    await backend.sync(tracker.state(), changes, false);
    assert.deepEqual(mutations(hcn, mark).sort(), ['HcnDeleteEndpoint', 'HcnDeleteLoadBalancer', 'HcnDeleteLoadBalancer']);
    assert.equal(hcn.loadBalancers.size, 1);
    const report = await cleanupHns(new HcnClient(hcn), 'cbr0');
    assert.deepEqual(report, { loadBalancers: 1, endpoints: 2 });
    assert.equal(hcn.loadBalancers.size, 0);
    assert.deepEqual([...hcn.endpoints.keys()].sort(), [guid(0x109), guid(0xfff)], 'the local pod and the root endpoint stay');
  });

  it('a full sync repairs drift; after a failed sync the next one is full and repairs too', async () => {
    class Flaky extends FakeHcn {
      failCreates = 0;
      override async createLoadBalancer(id: string, settings: string): Promise<HcnHandle> {
        if (this.failCreates > 0) {
          this.failCreates--;
          throw new HcnError('HcnCreateLoadBalancer', 0x80070005, ''); // E_ACCESSDENIED, say
        }
        return super.createLoadBalancer(id, settings);
      }
    }
    const hcn = new Flaky();
    const seed = fakeHcn(localPods);
    for (const n of seed.networks.values()) hcn.addNetwork({ ...n, ID: n.ID! });
    for (const e of seed.endpoints.values()) hcn.addLocalEndpoint({ ...e, ID: e.ID! });
    const tracker = cluster();
    const backend = hnsBackend(hcn);
    await backend.sync(tracker.state(), emptyChanges(), true);
    // Someone deletes a load balancer behind the agent's back: the next full sync puts it back.
    const victim = [...hcn.loadBalancers.keys()][0]!;
    await hcn.deleteLoadBalancer(victim);
    const repaired = await backend.sync(tracker.state(), emptyChanges(), true);
    assert.equal(repaired.details.created, 1);
    assert.equal(hcn.loadBalancers.size, 3);
    // A change whose create fails is reported; the next (partial) sync runs full and creates it.
    tracker.upsertService(service({ ns: 'ns3', name: 'new', clusterIPs: ['172.30.0.43'], ports: [{ name: 'p80', port: 80 }] }));
    tracker.upsertSlice(slice({ ns: 'ns3', name: 'new-x', service: 'new', ports: [{ name: 'p80', port: 80 }], endpoints: [{ ip: '10.180.0.9', node: 'test-node' }] }));
    hcn.failCreates = 1;
    const failed = await backend.sync(tracker.state(), tracker.flush(), false);
    assert.equal(failed.failed.length, 1);
    assert.match(failed.failed[0]!.error, /0x80070005/);
    const next = await backend.sync(tracker.state(), emptyChanges(), false);
    assert.equal(next.details.full, true, 'the sync after a failure is full');
    assert.deepEqual(next.failed, []);
    assert.equal(hcn.loadBalancers.size, 4);
  });

  it('HNS without load balancer modify (E_NOTIMPL) gets delete and create, as kube-proxy falls back', async () => {
    class OldHns extends FakeHcn {
      override async modifyLoadBalancer(lb: HcnHandle, settings: string): Promise<void> {
        void lb;
        void settings;
        throw new HcnError('HcnModifyLoadBalancer', 0x80004001, '');
      }
    }
    const hcn = new OldHns();
    const seed = fakeHcn(localPods);
    for (const n of seed.networks.values()) hcn.addNetwork({ ...n, ID: n.ID! });
    for (const e of seed.endpoints.values()) hcn.addLocalEndpoint({ ...e, ID: e.ID! });
    await hnsBackend(hcn).sync(cluster().state(), emptyChanges(), true);
    const mark = hcn.calls.length;
    const r = await hnsBackend(hcn).sync(cluster(['10.180.0.1']).state(), emptyChanges(), true);
    assert.deepEqual(r.failed, []);
    assert.deepEqual(mutations(hcn, mark).sort(), ['HcnCreateLoadBalancer', 'HcnDeleteEndpoint', 'HcnDeleteLoadBalancer']);
  });
});

describe('kube-proxy\'s load balancer identifier', () => {
  it('XOR of SHA-1 over upper-cased endpoint ids: order and case do not matter, membership does', async () => {
    assert.equal(hashEndpoints(['ab-cd']), createHash('sha1').update('AB-CD').digest('hex'));
    assert.equal(hashEndpoints([guid(1), guid(2)]), hashEndpoints([guid(2).toUpperCase(), guid(1)]));
    assert.notEqual(hashEndpoints([guid(1), guid(2)]), hashEndpoints([guid(1), guid(3)]));
    // What kube-proxy would compute from our stored load balancers finds them again (switching back to kube-proxy adopts them).
    const hcn = fakeHcn(localPods);
    await hnsBackend(hcn).sync(cluster().state(), emptyChanges(), true);
    for (const lb of hcn.loadBalancers.values()) {
      const reordered = { ...lb, HostComputeEndpoints: [...lb.HostComputeEndpoints].reverse().map((id) => id.toUpperCase()) };
      assert.equal(loadBalancerIdentifier(reordered), loadBalancerIdentifier(lb));
      assert.match(loadBalancerIdentifier(lb), /^6\/80\/(80|3001)\/(172\.30\.0\.4[12])?\/[0-9a-f]{40}$/);
    }
  });
});

describe('in-memory HCN refuses what HCN refuses', () => {
  const lb = (over: Record<string, unknown> = {}) => JSON.stringify({ HostComputeEndpoints: [guid(0x109)], FrontendVIPs: ['172.30.0.41'], PortMappings: [{ Protocol: 6, InternalPort: 80, ExternalPort: 80 }], SchemaVersion: SCHEMA_V2, ...over });
  const hresult = async (p: Promise<unknown>): Promise<number> => {
    try {
      await p;
    } catch (e) {
      assert.ok(e instanceof HcnError, String(e));
      return e.hresult;
    }
    assert.fail('expected an HcnError');
  };

  it('duplicates, missing endpoints, bad GUIDs, schema violations, unknown ids', async () => {
    const hcn = fakeHcn(localPods);
    await hcn.closeLoadBalancer(await hcn.createLoadBalancer(guid(1), lb()));
    assert.equal(await hresult(hcn.createLoadBalancer(guid(2), lb())), HRESULT.HCN_E_PORT_ALREADY_EXISTS, 'a second load balancer on the same frontend');
    assert.equal(await hresult(hcn.createLoadBalancer(guid(3), lb({ FrontendVIPs: ['172.30.0.50'], HostComputeEndpoints: [guid(0x999)] }))), HRESULT.HCN_E_ENDPOINT_NOT_FOUND);
    assert.equal(await hresult(hcn.createLoadBalancer('not-a-guid', lb({ FrontendVIPs: ['172.30.0.51'] }))), HRESULT.HCN_E_GUID_CONVERSION_FAILURE);
    assert.equal(await hresult(hcn.createLoadBalancer(guid(4), lb({ FrontendVIPs: ['172.30.0.52'], FrontendVIP: '172.30.0.52' }))), HRESULT.HCN_E_INVALID_JSON, 'unknown field');
    assert.equal(await hresult(hcn.createLoadBalancer(guid(5), lb({ FrontendVIPs: ['172.30.0.300'] }))), HRESULT.HCN_E_INVALID_IP);
    assert.equal(await hresult(hcn.createLoadBalancer(guid(6), lb({ FrontendVIPs: ['172.30.0.53'], PortMappings: [{ Protocol: 6, InternalPort: 70000, ExternalPort: 80 }] }))), HRESULT.HCN_E_INVALID_JSON, 'port out of range');
    assert.equal(await hresult(hcn.createLoadBalancer(guid(7), lb({ FrontendVIPs: ['172.30.0.54'], Flags: 4 }))), HRESULT.HCN_E_INVALID_JSON, 'unknown load balancer flag');
    assert.equal(await hresult(hcn.createLoadBalancer(guid(8), '{not json')), HRESULT.HCN_E_INVALID_JSON);
    assert.equal(await hresult(hcn.deleteLoadBalancer(guid(9))), HRESULT.ERROR_NOT_FOUND);
    assert.equal(await hresult(hcn.openEndpoint(guid(9))), HRESULT.ERROR_NOT_FOUND);
    const net = await hcn.openNetwork(NETWORK_ID);
    assert.equal(await hresult(hcn.createEndpoint(net, guid(10), JSON.stringify({ IpConfigurations: [{ IpAddress: '10.180.0.7' }], Policies: [{ Type: 'ProviderAddress', Settings: { ProviderAddress: 'nowhere' } }], SchemaVersion: SCHEMA_V2 }))), HRESULT.HCN_E_INVALID_IP);
    await hcn.closeNetwork(net);
    assert.equal(await hresult(hcn.queryNetworkProperties(net, '{}')), 0x80070006, 'a closed handle');
    assert.equal(hcn.openHandles(), 0);
  });
});
