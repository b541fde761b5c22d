// Golden HCN documents for kube-proxy's winkernel test shapes: a ClusterIP, a NodePort and an LB
// with externalTrafficPolicy Local (DSR, local endpoints only, the forwarded health-check VIP),
// ClientIP affinity (DistributionType SourceIP), a dual-stack service (the IPv6 flag), on an
// L2Bridge network; and one service on an overlay network (ProviderAddress policies, the
// service-VIP endpoint, the configured SourceVIP). The documents are what the in-memory HCN
// stored after a full sync, so each also passed its schema check. UPDATE_GOLDEN=1 rewrites the
// files after a deliberate change; read the diff against kube-proxy's hns.go and proxier.go.
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, it } from 'node:test';
import { HcnClient } from '../../control/backends/hns/hcn-client.ts';
import { HnsBackend } from '../../control/backends/hns/apply.ts';
import { SCHEMA_V2 } from '../../control/backends/hns/hcn-types.ts';
import { nodeFacts } from '../../control/model/node.ts';
import { ChangeTracker } from '../../control/model/tracker.ts';
import { DEFAULT_MODEL_CONFIG } from '../../control/model/types.ts';
import { service, slice } from '../cases/objects.ts';
import { emptyChanges } from './hns-changes.ts';
import { fakeHcn, guid, NETWORK_ID, winkernel } from './hns-fixture.ts';
import type { FakeHcn } from './hns-fake-hcn.ts';

function cluster(): ChangeTracker {
  const t = new ChangeTracker(
    { ...DEFAULT_MODEL_CONFIG, families: [4, 6], clusterCIDRs: ['10.180.0.0/16', 'fd00:10:180::/64'], detectLocalMode: 'ClusterCIDR' },
    nodeFacts('test-node', { metadata: { name: 'test-node' }, status: { addresses: [{ type: 'InternalIP', address: '192.168.0.2' }, { type: 'InternalIP', address: 'fd00:192::2' }] } }),
  );
  t.upsertService(service({ ns: 'ns1', name: 'svc1', clusterIPs: ['172.30.0.41'], ports: [{ name: 'p80', port: 80 }] }));
  t.upsertSlice(slice({ ns: 'ns1', name: 'svc1-x', service: 'svc1', ports: [{ name: 'p80', port: 80 }], endpoints: [{ ip: '10.180.0.1', node: 'other' }] }));
  t.upsertService(service({ ns: 'ns2', name: 'svc2', type: 'NodePort', clusterIPs: ['172.30.0.42'], ports: [{ name: 'p80', port: 80, nodePort: 3001 }], eTP: 'Local' }));
  t.upsertSlice(slice({ ns: 'ns2', name: 'svc2-x', service: 'svc2', ports: [{ name: 'p80', port: 80 }], endpoints: [{ ip: '10.180.0.2', node: 'test-node' }, { ip: '10.180.0.3', node: 'other' }] }));
  t.upsertService(service({ ns: 'ns3', name: 'svc3', type: 'LoadBalancer', clusterIPs: ['172.30.0.43'], ports: [{ name: 'p80', port: 80, nodePort: 3003 }], lbIPs: ['1.2.3.4'], eTP: 'Local', healthCheckNodePort: 30000 }));
  t.upsertSlice(slice({ ns: 'ns3', name: 'svc3-x', service: 'svc3', ports: [{ name: 'p80', port: 80 }], endpoints: [{ ip: '10.180.0.4', node: 'test-node' }, { ip: '10.180.0.5', node: 'other' }] }));
  t.upsertService(service({ ns: 'ns4', name: 'sticky', clusterIPs: ['172.30.0.44'], ports: [{ name: 'p80', port: 80 }], affinity: 10800 }));
  t.upsertSlice(slice({ ns: 'ns4', name: 'sticky-x', service: 'sticky', ports: [{ name: 'p80', port: 80 }], endpoints: [{ ip: '10.180.0.6', node: 'other' }, { ip: '10.180.0.7', node: 'other' }] }));
  t.upsertService(service({ ns: 'ns5', name: 'dual', clusterIPs: ['172.30.0.45', 'fd00:30::45'], ports: [{ name: 'p80', port: 80 }] }));
  t.upsertSlice(slice({ ns: 'ns5', name: 'dual-v4', service: 'dual', ports: [{ name: 'p80', port: 80 }], endpoints: [{ ip: '10.180.0.8', node: 'other' }] }));
  t.upsertSlice(slice({ ns: 'ns5', name: 'dual-v6', service: 'dual', family: 6, ports: [{ name: 'p80', port: 80 }], endpoints: [{ ip: 'fd00:10:180::8', node: 'other' }] }));
  t.flush();
  return t;
}

/** What the backend made on the host, in a stable order: endpoints by IP, load balancers by frontend. */
function snapshot(hcn: FakeHcn, fixture: ReadonlySet<string>): string {
  const endpoints = [...hcn.endpoints.values()].filter((e) => !fixture.has(e.ID!)).sort((a, b) => a.IpConfigurations[0]!.IpAddress.localeCompare(b.IpConfigurations[0]!.IpAddress));
  const key = (lb: { FrontendVIPs?: string[]; PortMappings: Array<{ ExternalPort: number }> }) => `${lb.FrontendVIPs?.[0] ?? '*'}:${lb.PortMappings[0]!.ExternalPort}`;
  const loadBalancers = [...hcn.loadBalancers.values()].sort((a, b) => key(a).localeCompare(key(b)));
  return `${JSON.stringify({ endpoints, loadBalancers }, null, 2)}\n`;
}

async function run(hcn: FakeHcn, over: Parameters<typeof winkernel>[0]): Promise<string> {
  const fixture = new Set(hcn.endpoints.keys());
  let n = 0x200;
  const backend = new HnsBackend({ client: new HcnClient(hcn, () => guid(n++)), winkernel: winkernel(over), hostMac: '00-15-5d-aa-bb-cc', healthzPort: 10256 });
  const r = await backend.sync(cluster().state(), emptyChanges(), true);
  assert.deepEqual(r.failed, []);
  return snapshot(hcn, fixture);
}

function golden(name: string, text: string): void {
  const file = fileURLToPath(new URL(`./golden/${name}`, import.meta.url));
  if (process.env.UPDATE_GOLDEN === '1') writeFileSync(file, text);
  assert.equal(text, readFileSync(file, 'utf8'));
}

const localPods = [
  { id: guid(0x102), ips: ['10.180.0.2'] },
  { id: guid(0x104), ips: ['10.180.0.4'] },
];

describe('HNS compiler golden documents', () => {
  it('L2Bridge with enableDSR and forwardHealthCheckVip: test/backends/golden/hns-l2bridge.json', async () => {
    golden('hns-l2bridge.json', await run(fakeHcn(localPods), { enableDSR: true, forwardHealthCheckVip: true }));
  });

  it('Overlay with a source VIP: test/backends/golden/hns-overlay.json', async () => {
    const hcn = fakeHcn(localPods, { type: 'Overlay' });
    // The CNI's remote-subnet route: the remote endpoints above sit in 10.180.0.0/24 behind node 192.168.0.3.
    hcn.networks.get(NETWORK_ID)!.Policies = [{ Type: 'RemoteSubnetRoute', Settings: { DestinationPrefix: '10.180.0.0/24', ProviderAddress: '192.168.0.3', IsolationId: 4096 } }];
    hcn.networks.get(NETWORK_ID)!.SchemaVersion = SCHEMA_V2;
    golden('hns-overlay.json', await run(hcn, { sourceVip: '10.180.0.250' }));
  });
});
