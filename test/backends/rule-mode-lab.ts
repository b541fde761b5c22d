// The semantic lab with every node programmed by a rule-based mode (iptables, nftables, IPVS) as
// its agent would run it: the node's model, one sync through the mode's backend inside the
// node's netns, and the UDP conntrack cleaner after it. Shared by the three modes' lab tests.
import { after, before, describe, it } from 'node:test';
import { conntrackRunner, UdpConntrackCleaner } from '../../control/backends/conntrack-cleanup.ts';
import type { ChangeTracker } from '../../control/model/tracker.ts';
import type { DesiredState } from '../../control/model/types.ts';
import { inNetns, type Lab } from '../lab/lab.ts';
import { checkCase } from './case-check.ts';
import { labVariants, semanticLab, semanticTracker } from './semantic-lab.ts';

export interface RuleModeNode<B> {
  tracker: ChangeTracker;
  backend: B;
  cleaner: UdpConntrackCleaner;
}

/**
 * Builds the semantic lab and programs each node: `create` gets the node's netns command prefix,
 * `sync` applies the node's model through the backend (a full sync).
 */
export async function ruleModeLab<B>(
  create: (commandPrefix: string[]) => B,
  sync: (backend: B, tracker: ChangeTracker) => Promise<unknown>,
): Promise<{ lab: Lab; nodes: Array<RuleModeNode<B>> }> {
  const lab = await semanticLab();
  const nodes: Array<RuleModeNode<B>> = [];
  for (const n of lab.nodes) {
    const tracker = semanticTracker(n);
    const backend = create(inNetns(n.netns));
    await sync(backend, tracker);
    const cleaner = new UdpConntrackCleaner(conntrackRunner(inNetns(n.netns)));
    await cleaner.afterSync(tracker.state());
    nodes.push({ tracker, backend, cleaner });
  }
  return { lab, nodes };
}

/**
 * The configuration variants' cases, each after a full sync of every node under its
 * configuration; afterwards every node is synced with the table's configuration again.
 */
export function ruleModeVariants<B>(
  setup: () => { lab: Lab; nodes: Array<RuleModeNode<B>> },
  mode: 'nftables' | 'ipvs' | undefined,
  fullSync: (backend: B, state: DesiredState) => Promise<unknown>,
): void {
  describe('configuration variants', () => {
    after(async () => {
      // Back to the table's own configuration, for whatever the suite runs after.
      const { nodes } = setup();
      for (const n of nodes) await fullSync(n.backend, n.tracker.state());
    });
    for (const v of labVariants) {
      describe(`configuration: ${v.name}`, () => {
        let state: DesiredState;
        before(async () => {
          const { lab, nodes } = setup();
          for (const [i, n] of lab.nodes.entries()) {
            const tracker = semanticTracker(n, undefined, v.config);
            await fullSync(nodes[i]!.backend, tracker.state());
            if (i === 0) state = tracker.state();
          }
        });
        for (const c of v.cases) it(c.name, { skip: mode !== undefined ? c.notSentIn?.[mode] : undefined }, () => checkCase(setup().lab, c, state, { mode }));
      });
    }
  });
}
