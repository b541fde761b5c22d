// The semantic case table with real packets through the eBPF datapath: for every case, the pod
// that answered and the client address it saw must be what trace() predicts on node n0.
import { after, before, describe, it } from 'node:test';
import { cases, EXTERNAL_IP, LB_BLOCKED_IP, LB_IP } from '../cases/semantics.ts';
import { Lab } from '../lab/lab.ts';
import { checkCase, routeServiceIpsViaNode0 } from './case-check.ts';
import { programNode, type ProgrammedNode } from './ebpf-lab.ts';

describe('eBPF datapath: semantic case table with real packets', () => {
  let lab: Lab;
  let nodes: ProgrammedNode[] = [];

  before(async () => {
    lab = await Lab.create({ nodes: 2, podsPerNode: 3, ports: [8080, 8081] });
    await routeServiceIpsViaNode0(lab, [LB_IP, LB_BLOCKED_IP, '10.254.0.52', EXTERNAL_IP]);
    nodes = lab.nodes.map((n) => programNode(lab, n));
  });

  after(async () => {
    for (const n of nodes) n.datapath.close();
    await lab?.teardown();
  });

  // A node process cannot send from an LB IP it does not own; trace covers that case.
  for (const c of cases.filter((x) => !('node' in x.from && x.src === LB_IP))) {
    it(c.name, () => checkCase(lab, c, nodes[0]!.tracker.state(), { cgroup: nodes[0]!.cgroup }));
  }
});
