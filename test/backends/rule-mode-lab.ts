// The semantic lab with every node programmed by a rule-based mode (iptables, nftables, IPVS) as
// its agent would run it: the node's model, one sync through the mode's backend inside the
// node's netns, and the UDP conntrack cleaner after it. Shared by the three modes' lab tests.
import { conntrackRunner, UdpConntrackCleaner } from '../../control/backends/conntrack-cleanup.ts';
import type { ChangeTracker } from '../../control/model/tracker.ts';
import { inNetns, type Lab } from '../lab/lab.ts';
import { semanticLab, semanticTracker } from './semantic-lab.ts';

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
