// The semantic case table through the eBPF datapath as one suite, with real packets: for every
// case, the pod that answered and the client address it saw must be what trace() predicts on
// node n0. `prepare` adds what the node has beside us (netfilter rules, another agent's filters).
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { compileDatapath } from '../../control/backends/ebpf/compile.ts';
import type { DesiredState } from '../../control/model/types.ts';
import type { Lab } from '../lab/lab.ts';
import { checkCase } from './case-check.ts';
import { programNode, type ProgrammedNode } from './ebpf-lab.ts';
import { labCases, labVariants, semanticLab, semanticTracker } from './semantic-lab.ts';

export function semanticTableSuite(title: string, prepare: (lab: Lab) => Promise<void> = async () => undefined): void {
  describe(title, () => {
    let lab: Lab;
    let nodes: ProgrammedNode[] = [];

    before(async () => {
      lab = await semanticLab();
      await prepare(lab);
      nodes = lab.nodes.map((n) => programNode(lab, n));
    });

    after(async () => {
      for (const n of nodes) n.datapath.close();
      await lab?.teardown();
    });

    // A node process cannot send from an LB IP it does not own; trace covers that case.
    for (const c of labCases) {
      it(c.name, () => checkCase(lab, c, nodes[0]!.tracker.state(), { cgroup: nodes[0]!.cgroup, mode: 'ebpf' }));
    }

    // Last: each variant re-syncs every node's maps from the cluster under its configuration.
    for (const v of labVariants) {
      describe(`configuration: ${v.name}`, () => {
        let state: DesiredState;
        before(() => {
          for (const n of nodes) {
            const tracker = semanticTracker(n.node, undefined, v.config);
            const report = n.datapath.sync(compileDatapath(tracker.state()));
            assert.deepEqual(report.failed, [], `${n.node.name} synced`);
            if (n === nodes[0]) state = tracker.state();
          }
        });
        for (const c of v.cases) it(c.name, () => checkCase(lab, c, state, { cgroup: nodes[0]!.cgroup }));
      });
    }
  });
}
