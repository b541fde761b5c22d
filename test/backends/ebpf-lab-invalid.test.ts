// The semantic case table through the eBPF datapath with conntrack INVALID dropped on every node
// (as Calico's and Docker's rules do): answers must never look INVALID to netfilter.
import { after, before, describe, it } from 'node:test';
import type { Lab } from '../lab/lab.ts';
import { checkCase } from './case-check.ts';
import { programNode, type ProgrammedNode } from './ebpf-lab.ts';
import { labCases, semanticLab } from './semantic-lab.ts';

// Calico's and Docker's rules drop what conntrack calls INVALID. Answers translated before
// netfilter saw them would be (a SYN-ACK from the service address to a client whose SYN went to
// the pod): the datapath translates them after netfilter, or keeps node-address flows past it.
describe('eBPF datapath: semantic case table with conntrack INVALID dropped on every node', () => {
  let lab: Lab;
  let nodes: ProgrammedNode[] = [];

  before(async () => {
    lab = await semanticLab();
    for (const n of lab.nodes) {
      for (const tool of ['iptables', 'ip6tables']) {
        for (const chain of ['FORWARD', 'INPUT']) await lab.exec(n.netns, tool, ['-w', '5', '-A', chain, '-m', 'conntrack', '--ctstate', 'INVALID', '-j', 'DROP']);
      }
    }
    nodes = lab.nodes.map((n) => programNode(lab, n));
  });

  after(async () => {
    for (const n of nodes) n.datapath.close();
    await lab?.teardown();
  });

  for (const c of labCases) {
    it(c.name, () => checkCase(lab, c, nodes[0]!.tracker.state(), { cgroup: nodes[0]!.cgroup }));
  }
});
