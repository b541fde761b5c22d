// Which stale UDP flows the rule-based modes clear after a sync (pure), and the conntrack argv.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { conntrackArgs, snapshotUdp, staleUdpFlows, UdpConntrackCleaner } from '../../control/backends/conntrack-cleanup.ts';
import { nodeFacts } from '../../control/model/node.ts';
import { ChangeTracker } from '../../control/model/tracker.ts';
import { DEFAULT_MODEL_CONFIG } from '../../control/model/types.ts';
import { service, slice } from '../cases/objects.ts';

function cluster(): ChangeTracker {
  const t = new ChangeTracker({ ...DEFAULT_MODEL_CONFIG, families: [4] }, nodeFacts('n0', { metadata: { name: 'n0' }, status: { addresses: [{ type: 'InternalIP', address: '10.254.0.11' }] } }));
  t.upsertService(service({ name: 'dns', type: 'NodePort', clusterIPs: ['10.96.0.10'], externalIPs: ['192.0.2.10'], ports: [{ name: 'dns', port: 53, protocol: 'UDP', nodePort: 30053 }, { name: 'tcp', port: 53, protocol: 'TCP' }] }));
  t.upsertSlice(slice({ name: 'dns-x', service: 'dns', ports: [{ name: 'dns', port: 5353, protocol: 'UDP' }, { name: 'tcp', port: 5353 }], endpoints: [{ ip: '10.244.0.5', node: 'n0' }, { ip: '10.244.1.5', node: 'n1' }] }));
  t.upsertService(service({ name: 'fresh', clusterIPs: ['10.96.0.20'], ports: [{ port: 53, protocol: 'UDP' }] }));
  t.flush();
  return t;
}

describe('stale UDP flows', () => {
  it('an endpoint that leaves: its flows to every address of the port, NodePort included', () => {
    const t = cluster();
    const before = snapshotUdp(t.state());
    t.upsertSlice(slice({ name: 'dns-x', service: 'dns', ports: [{ name: 'dns', port: 5353, protocol: 'UDP' }, { name: 'tcp', port: 5353 }], endpoints: [{ ip: '10.244.1.5', node: 'n1' }] }));
    t.flush();
    assert.deepEqual(staleUdpFlows(before, snapshotUdp(t.state())), [
      { family: 4, origDst: '10.96.0.10', dstNat: '10.244.0.5' },
      { family: 4, origDst: '192.0.2.10', dstNat: '10.244.0.5' },
      { family: 4, origPortDst: 30053, dstNat: '10.244.0.5' },
    ]);
  });

  it('a port that gets its first endpoint: its untranslated flows; TCP ports never', () => {
    const t = cluster();
    const before = snapshotUdp(t.state());
    t.upsertSlice(slice({ name: 'fresh-x', service: 'fresh', ports: [{ port: 53, protocol: 'UDP' }], endpoints: [{ ip: '10.244.0.7', node: 'n0' }] }));
    t.flush();
    assert.deepEqual(staleUdpFlows(before, snapshotUdp(t.state())), [{ family: 4, origDst: '10.96.0.20' }]);
    assert.deepEqual(staleUdpFlows(snapshotUdp(t.state()), snapshotUdp(t.state())), [], 'nothing changed, nothing cleared');
  });

  it('a removed service port clears the flows to all its endpoints', () => {
    const t = cluster();
    const before = snapshotUdp(t.state());
    t.deleteService('demo/dns');
    t.flush();
    assert.equal(staleUdpFlows(before, snapshotUdp(t.state())).length, 6);
  });

  it('argv for conntrack -D, and exit 1 with "0 flow entries" is not an error', async () => {
    assert.deepEqual(conntrackArgs({ family: 6, origPortDst: 30053, dstNat: 'fd00::5' }), ['-D', '-f', 'ipv6', '-p', 'udp', '--orig-port-dst', '30053', '--dst-nat', 'fd00::5']);
    const calls: string[][] = [];
    const cleaner = new UdpConntrackCleaner(async (_file, args) => {
      calls.push(args);
      return { ok: false, out: 'conntrack v1.4.7 (conntrack-tools): 0 flow entries have been deleted.\n' };
    });
    const t = cluster();
    assert.deepEqual(await cleaner.afterSync(t.state()), { deletions: 0, flows: 0 }, 'the first sync only takes the snapshot');
    t.deleteService('demo/dns');
    t.flush();
    assert.deepEqual(await cleaner.afterSync(t.state()), { deletions: 6, flows: 0 });
    assert.equal(calls.length, 6);
    const failing = new UdpConntrackCleaner(async () => ({ ok: false, out: 'conntrack: Operation not permitted' }));
    await failing.afterSync(cluster().state());
    const t2 = cluster();
    t2.deleteService('demo/dns');
    t2.flush();
    assert.match(JSON.stringify(await failing.report(t2.state())), /conntrackError.*Operation not permitted/);
  });
});
