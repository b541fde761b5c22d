// Tens of thousands of masqueraded connections to one backend: SNAT ports must neither leak nor
// collide. An external client opens 30,000 sequential connections to a NodePort (eTP Cluster, so
// every one is SNATed to n0's address) served by one pod on n1; then a pod does the same through
// a ClusterIP with masqueradeAll. Every connection must succeed without a SYN retransmission (a
// dropped SYN shows there first), and connection tracking must stay bounded. How fast, against
// the pod reached directly, is bench:lab's question.
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { compileDatapath } from '../../control/backends/ebpf/compile.ts';
import { config } from '../cases/semantics.ts';
import { service, slice } from '../cases/objects.ts';
import { Lab } from '../lab/lab.ts';
import { programNode, type ProgrammedNode } from './ebpf-lab.ts';

const LOAD = fileURLToPath(new URL('../lab/load.ts', import.meta.url));
const CONNECTIONS = 30_000;

/** The client netns's SYN retransmissions so far (nstat reads the netns's own counters). */
async function synRetransmissions(lab: Lab, netns: string): Promise<number> {
  const out = await lab.exec(netns, 'nstat', ['-az', '-j', 'TcpExtTCPSynRetrans']);
  return Number((JSON.parse(out) as { kernel: Record<string, number> }).kernel.TcpExtTCPSynRetrans ?? 0);
}

for (const variant of ['NodePort, eTP Cluster', 'ClusterIP with masqueradeAll'] as const) {
  describe(`eBPF SNAT under load: ${CONNECTIONS} sequential connections through a ${variant}`, () => {
    let lab: Lab;
    let nodes: ProgrammedNode[] = [];
    const nodePort = variant.startsWith('NodePort');

    before(async () => {
      lab = await Lab.create({ nodes: 2, podsPerNode: 2, ports: [8080] });
      const server = lab.pod('n1p1');
      const fill = (t: { upsertService: (o: unknown) => unknown; upsertSlice: (o: unknown) => unknown }): void => {
        t.upsertService(service({ name: 'load', type: 'NodePort', clusterIPs: ['10.96.5.1'], ports: [{ port: 80, targetPort: 8080, nodePort: 30095 }] }));
        t.upsertSlice(slice({ name: 'load-x', service: 'load', ports: [{ port: 8080 }], endpoints: [{ ip: server.ipv4, node: 'n1' }] }));
      };
      nodes = lab.nodes.map((n) => programNode(lab, n, fill, undefined, { model: { ...config, masqueradeAll: !nodePort } }));
    });

    after(async () => {
      for (const n of nodes) n.datapath.close();
      await lab?.teardown();
    });

    it('every connection succeeds, no SYN is retransmitted, and connection tracking stays bounded', async () => {
      const client = nodePort ? lab.external.netns : lab.pod('n0p0').netns;
      const target = nodePort ? { host: lab.nodes[0]!.ipv4, port: 30095 } : { host: '10.96.5.1', port: 80 };
      const synBefore = await synRetransmissions(lab, client);
      const result = JSON.parse(await lab.exec(client, process.execPath, [LOAD, JSON.stringify({ mode: 'connections', ...target, count: CONNECTIONS })])) as { connections: number; failures: number; errors: string[] };
      const synAfter = await synRetransmissions(lab, client);
      assert.deepEqual({ connections: result.connections, failures: result.failures, errors: result.errors }, { connections: CONNECTIONS, failures: 0, errors: [] });
      assert.equal(synAfter - synBefore, 0, 'SYN retransmissions');
      const n0 = nodes[0]!;
      // Two entries per flow at most, closed flows included until their TIME_WAIT ends.
      assert.ok(n0.datapath.conntrackEntries() <= 2 * CONNECTIONS + 64, `${n0.datapath.conntrackEntries()} entries`);
      assert.equal(n0.datapath.drops()['snat-exhausted'], 0n, 'no flow went without a port');
      // The sweep removes nothing live and keeps the table as it is (every flow closed, none expired yet).
      const before = n0.datapath.conntrackEntries();
      const gc = await n0.datapath.gc();
      assert.equal(gc.entriesBefore, before);
      assert.ok(compileDatapath(n0.tracker.state()).frontends.size > 0);
    });
  });
}
