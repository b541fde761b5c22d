// nftables mode in kube-proxy's current layout (pkg/proxy/nftables, 1.33+): its base chains and
// priorities (the firewall check before DNAT at -110; the endpoint and cluster-IP checks at
// filter priority, after DNAT), an earlier layout replaced by the first full sync, and the
// cluster-ips-check with real packets: a ClusterIP's unserved port is rejected, an unallocated
// address in the service CIDRs is dropped.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { NftablesBackend } from '../../control/backends/nftables/apply.ts';
import { compileNftables } from '../../control/backends/nftables/compile.ts';
import type { ChangeTracker } from '../../control/model/tracker.ts';
import { DEFAULT_MODEL_CONFIG, type ModelConfig } from '../../control/model/types.ts';
import { kubeProxyTestCluster } from '../cases/kube-proxy-cluster.ts';
import { service, slice } from '../cases/objects.ts';
import { inNetns, Lab, type LabNode } from '../lab/lab.ts';
import { semanticTracker } from './semantic-lab.ts';

/** kube-proxy's nftablesBaseChains: name, type, hook, priority (numeric, as `nft -y` lists them). */
const KUBE_PROXY_BASE_CHAINS = [
  ['filter-prerouting-pre-dnat', 'type filter hook prerouting priority -110'],
  ['filter-output-pre-dnat', 'type filter hook output priority -110'],
  ['filter-input', 'type filter hook input priority 0'],
  ['filter-forward', 'type filter hook forward priority 0'],
  ['filter-output', 'type filter hook output priority 0'],
  ['nat-prerouting', 'type nat hook prerouting priority -100'],
  ['nat-output', 'type nat hook output priority -100'],
  ['nat-postrouting', 'type nat hook postrouting priority 100'],
];

describe('nftables layout: kube-proxy\'s base chains and cluster-ips-check', () => {
  it('the base chains, their priorities and the jumps are kube-proxy\'s', () => {
    const t = compileNftables(kubeProxyTestCluster().state(), 4);
    assert.deepEqual([...t.baseChains], KUBE_PROXY_BASE_CHAINS);
    const jumps = (chain: string): readonly string[] => t.chains.get(chain)!;
    assert.deepEqual(jumps('filter-prerouting-pre-dnat'), ['ct state new jump firewall-check']);
    assert.deepEqual(jumps('filter-output-pre-dnat'), ['ct state new jump firewall-check']);
    assert.deepEqual(jumps('filter-input'), ['ct state new jump nodeport-endpoints-check', 'ct state new jump service-endpoints-check']);
    assert.deepEqual(jumps('filter-forward'), ['ct state new jump service-endpoints-check', 'ct state new jump cluster-ips-check']);
    assert.deepEqual(jumps('filter-output'), ['ct state new jump service-endpoints-check', 'ct state new jump cluster-ips-check']);
  });

  it('cluster-ips-check: rejects unserved ports of ClusterIPs; with service CIDRs, drops the rest of their addresses (each family its own)', () => {
    const without = compileNftables(kubeProxyTestCluster().state(), 4);
    assert.deepEqual(without.chains.get('cluster-ips-check'), ['ip daddr @cluster-ips reject comment "Reject traffic to invalid ports of ClusterIPs"']);
    const state = kubeProxyTestCluster({ families: [4, 6], serviceCIDRs: ['172.30.0.0/16', 'fd00:30::/108', '10.100.0.0/24'] }).state();
    assert.deepEqual(compileNftables(state, 4).chains.get('cluster-ips-check'), [
      'ip daddr @cluster-ips reject comment "Reject traffic to invalid ports of ClusterIPs"',
      'ip daddr { 10.100.0.0/24, 172.30.0.0/16 } drop comment "Drop traffic to unallocated ClusterIPs"',
    ]);
    assert.deepEqual(compileNftables(state, 6).chains.get('cluster-ips-check'), [
      'ip6 daddr @cluster-ips reject comment "Reject traffic to invalid ports of ClusterIPs"',
      'ip6 daddr fd00:30::/108 drop comment "Drop traffic to unallocated ClusterIPs"',
    ]);
  });
});

const CLUSTER_IP = '10.96.7.10';
const UNALLOCATED = '10.96.7.99';
const fill = (n: LabNode) => (t: ChangeTracker): void => {
  t.upsertService(service({ name: 'cip', clusterIPs: [CLUSTER_IP], ports: [{ port: 80, targetPort: 8080 }] }));
  t.upsertSlice(slice({ name: 'cip-x', service: 'cip', ports: [{ port: 8080 }], endpoints: [{ ip: n.pods[0]!.ipv4, node: n.name }] }));
};
const model = (serviceCIDRs: string[]): ModelConfig => ({ ...DEFAULT_MODEL_CONFIG, families: [4, 6], clusterCIDRs: ['10.244.0.0/16'], detectLocalMode: 'ClusterCIDR', serviceCIDRs });

describe('nftables layout in a lab node', () => {
  let lab: Lab;
  before(async () => {
    lab = await Lab.create({ nodes: 1, podsPerNode: 2, ports: [8080] });
  });
  after(async () => {
    await lab?.teardown();
  });

  it('an earlier layout (filter-prerouting, filter-output-post-dnat, filter chains at -110) is replaced by the full sync', async () => {
    const n = lab.nodes[0]!;
    await lab.exec(n.netns, 'nft', ['-f', '-'], [
      'add table ip kube-proxy',
      'add chain ip kube-proxy filter-prerouting { type filter hook prerouting priority -110 ; }',
      'add chain ip kube-proxy filter-input { type filter hook input priority -110 ; }',
      'add chain ip kube-proxy filter-output-post-dnat { type filter hook output priority -90 ; }',
      '',
    ].join('\n'));
    await new NftablesBackend({ families: [4, 6], commandPrefix: inNetns(n.netns) }).sync(semanticTracker(n, fill(n), model(['10.96.0.0/16'])).state(), true);
    const listing = await lab.exec(n.netns, 'nft', ['-t', '-y', 'list', 'table', 'ip', 'kube-proxy']);
    const chains = [...listing.matchAll(/^\tchain (\S+) \{\n(?:\t\t(type [^;]+);)?/gm)].filter((m) => m[2] !== undefined).map((m) => [m[1], m[2]]);
    assert.deepEqual(chains.sort(), [...KUBE_PROXY_BASE_CHAINS].sort());
  });

  it('a ClusterIP\'s unserved port is refused; an unallocated address in the service CIDRs is dropped only when the CIDRs are known (from a pod and from the node)', async () => {
    const n = lab.nodes[0]!;
    const [pod, client] = [n.pods[0]!, n.pods[1]!]; // the endpoint, and a client that is not it (no hairpin)
    // Something answers at the unallocated address (pod 0 holds it too), so a drop is seen as one.
    await lab.exec(pod.netns, 'ip', ['addr', 'add', `${UNALLOCATED}/32`, 'dev', 'eth0']);
    await lab.exec(n.netns, 'ip', ['route', 'add', `${UNALLOCATED}/32`, 'dev', pod.hostIf]);
    const targets = [{ proto: 'tcp' as const, host: CLUSTER_IP, port: 80 }, { proto: 'tcp' as const, host: CLUSTER_IP, port: 81 }, { proto: 'tcp' as const, host: UNALLOCATED, port: 8080 }];
    const backend = new NftablesBackend({ families: [4, 6], commandPrefix: inNetns(n.netns) });
    for (const [cidrs, unallocated] of [[[], pod.name], [['10.96.0.0/16'], 'ETIMEDOUT']] as const) {
      await backend.sync(semanticTracker(n, fill(n), model([...cidrs])).state(), true);
      for (const from of [client.netns, n.netns]) {
        const r = await lab.probe(from, { targets, timeoutMs: 1000 });
        assert.deepEqual(r.map((x) => (x.ok ? x.reply.pod : x.error)), [pod.name, 'ECONNREFUSED', unallocated], `${from}, service CIDRs ${JSON.stringify(cidrs)}`);
      }
    }
  });
});
