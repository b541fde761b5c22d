// eBPF mode drops traffic to an unallocated ClusterIP with real packets, as nftables mode does
// (nftables-layout-lab.test.ts): something answers at the unallocated address, so a drop is seen
// as one, and the same packets are answered once the range is gone. The drop is counted under
// its reason; the range's ClusterIP is served and its unserved port passed as before.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { compileDatapath } from '../../control/backends/ebpf/compile.ts';
import type { ChangeTracker } from '../../control/model/tracker.ts';
import { service, slice } from '../cases/objects.ts';
import { Lab, type LabNode } from '../lab/lab.ts';
import { programNode, type ProgrammedNode } from './ebpf-lab.ts';

const CLUSTER_IP = '10.97.7.10';
const UNALLOCATED = '10.97.7.99';
const fill = (n: LabNode) => (t: ChangeTracker): void => {
  t.upsertService(service({ name: 'cip', clusterIPs: [CLUSTER_IP], ports: [{ port: 80, targetPort: 8080 }] }));
  t.upsertSlice(slice({ name: 'cip-x', service: 'cip', ports: [{ port: 8080 }], endpoints: [{ ip: n.pods[0]!.ipv4, node: n.name }] }));
  t.upsertServiceCIDR({ metadata: { name: 'kubernetes' }, spec: { cidrs: ['10.97.0.0/16'] } });
};

describe('eBPF mode: unallocated ClusterIPs with real packets', () => {
  let lab: Lab;
  let p: ProgrammedNode;
  before(async () => {
    lab = await Lab.create({ nodes: 1, podsPerNode: 2, ports: [8080] });
    const n = lab.nodes[0]!;
    p = programNode(lab, n, fill(n));
    // Pod 0 holds the unallocated address too: without the drop it answers there.
    await lab.exec(n.pods[0]!.netns, 'ip', ['addr', 'add', `${UNALLOCATED}/32`, 'dev', 'eth0']);
    await lab.exec(n.netns, 'ip', ['route', 'add', `${UNALLOCATED}/32`, 'dev', n.pods[0]!.hostIf]);
  });
  after(async () => {
    p?.datapath.close();
    await lab?.teardown();
  });

  it('dropped (and counted) while the ServiceCIDR covers it, answered once it is gone; the ClusterIP keeps its verdicts', async () => {
    const n = lab.nodes[0]!;
    const [pod, client] = [n.pods[0]!, n.pods[1]!]; // the endpoint, and a client that is not it (no hairpin)
    const targets = [{ proto: 'tcp' as const, host: CLUSTER_IP, port: 80 }, { proto: 'tcp' as const, host: CLUSTER_IP, port: 8080 }, { proto: 'tcp' as const, host: UNALLOCATED, port: 8080 }];
    const before = p.datapath.drops()['unallocated-cluster-ip'];
    let r = await lab.probe(client.netns, { targets, timeoutMs: 1000 });
    assert.deepEqual(r[0]!.ok ? r[0]!.reply.pod : r[0]!.error, pod.name, 'the ClusterIP is served');
    // Its unserved port passes untouched (not dropped as unallocated): no pod holds the ClusterIP itself.
    assert.ok(!r[1]!.ok, 'no pod answers the ClusterIP on an unserved port');
    assert.deepEqual(r[2]!.ok ? r[2]!.reply.pod : r[2]!.error, 'ETIMEDOUT', 'the unallocated address is dropped');
    assert.ok(p.datapath.drops()['unallocated-cluster-ip'] > before, 'the drop is counted under its reason');
    const afterDrop = p.datapath.drops()['unallocated-cluster-ip'];
    p.tracker.deleteServiceCIDR('kubernetes');
    p.tracker.flush();
    p.datapath.sync(compileDatapath(p.tracker.state()));
    r = await lab.probe(client.netns, { targets: [targets[2]!], timeoutMs: 1000 });
    assert.deepEqual(r.map((x) => (x.ok ? x.reply.pod : x.error)), [pod.name], 'without the range the address is reached');
    assert.equal(p.datapath.drops()['unallocated-cluster-ip'], afterDrop);
  });
});
