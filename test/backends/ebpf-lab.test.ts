// The semantic case table with real packets through the eBPF datapath: for every case, the pod
// that answered and the client address it saw must be what trace() predicts on node n0.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { trace } from '../../control/trace/trace.ts';
import { cases, EXTERNAL_IP, LB_BLOCKED_IP, LB_IP, podOf } from '../cases/semantics.ts';
import { Lab } from '../lab/lab.ts';
import { programNode, type ProgrammedNode } from './ebpf-lab.ts';

describe('eBPF datapath: semantic case table with real packets', () => {
  let lab: Lab;
  let nodes: ProgrammedNode[] = [];

  before(async () => {
    lab = await Lab.create({ nodes: 2, podsPerNode: 3, ports: [8080, 8081] });
    // The external client reaches LB and external IPs through node n0, as a router would send them.
    await lab.exec(lab.external.netns, 'ip', ['-batch', '-'], [LB_IP, LB_BLOCKED_IP, '10.254.0.52', EXTERNAL_IP].map((ip) => `route add ${ip}/32 via ${lab.nodes[0]!.ipv4}`).join('\n') + '\n');
    nodes = lab.nodes.map((n) => programNode(lab, n));
  });

  after(async () => {
    for (const n of nodes) n.datapath.close();
    await lab?.teardown();
  });

  // A node process cannot send from an LB IP it does not own; trace covers that case.
  for (const c of cases.filter((x) => !('node' in x.from && x.src === LB_IP))) {
    it(c.name, async () => {
      const fromNode = 'node' in c.from;
      const netns = 'pod' in c.from ? lab.pod(c.from.pod).netns : fromNode ? lab.nodes[0]!.netns : lab.external.netns;
      const verdict = trace(nodes[0]!.tracker.state(), { src: c.src, dst: c.dst, port: c.port, protocol: c.protocol });
      assert.equal(verdict.verdict, c.expect.verdict, 'trace agrees with the table');
      const count = verdict.verdict === 'FORWARD' ? 6 : 1;
      const results = await lab.probe(netns, { targets: [{ proto: c.protocol === 'TCP' ? 'tcp' : 'udp', host: c.dst, port: c.port }], count, timeoutMs: 700, cgroup: fromNode ? nodes[0]!.cgroup : undefined });
      const nodeAddresses = new Set([...lab.nodes.flatMap((n) => [n.ipv4, n.ipv6]), '10.244.0.1']);
      for (const r of results) {
        if (verdict.verdict === 'FORWARD') {
          assert.ok(r.ok, `expected an answer, got ${r.ok ? '' : r.error}`);
          const answered = verdict.endpoints.find((e) => podOf(e.ip) === r.reply.pod);
          assert.ok(answered, `${r.reply.pod} answered; trace allows ${verdict.endpoints.map((e) => podOf(e.ip)).join(', ')}`);
          assert.equal(r.reply.port, answered.port, 'the target port');
          if (answered.sourceTranslated) assert.ok(nodeAddresses.has(r.reply.client), `the pod saw a node address, not ${r.reply.client}`);
          else assert.equal(r.reply.client, c.src, 'the pod saw the client address');
        } else if (verdict.verdict === 'REJECT') {
          assert.ok(!r.ok && r.error === 'ECONNREFUSED', `expected a refusal, got ${r.ok ? `an answer from ${r.reply.pod}` : r.error}`);
        } else if (verdict.verdict === 'DROP') {
          assert.ok(!r.ok && r.error === 'ETIMEDOUT', `expected silence, got ${r.ok ? `an answer from ${r.reply.pod}` : r.error}`);
        } else {
          assert.ok(!r.ok || !/^n\dp\d$/.test(r.reply.pod), 'no pod answers a packet that matches no service');
        }
      }
    });
  }
});
