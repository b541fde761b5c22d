// The semantic case table with real packets through iptables mode (kube-proxy's rules, applied
// with iptables-restore inside each lab node), held against trace() like every other mode; and
// a one-service change rewrites only that service's chains.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { IptablesBackend } from '../../control/backends/iptables/apply.ts';
import { slice } from '../cases/objects.ts';
import type { Lab } from '../lab/lab.ts';
import { checkCase } from './case-check.ts';
import { udpFlowMovesOff } from './udp-flow.ts';
import { labCases } from './semantic-lab.ts';
import { ruleModeLab, ruleModeVariants, type RuleModeNode } from './rule-mode-lab.ts';

describe('iptables mode: semantic case table with real packets', () => {
  let lab: Lab;
  let nodes: Array<RuleModeNode<IptablesBackend>> = [];

  before(async () => {
    ({ lab, nodes } = await ruleModeLab((commandPrefix) => new IptablesBackend({ families: [4, 6], commandPrefix }), (b, t) => b.sync(t.state(), true)));
  });

  after(async () => {
    await lab?.teardown();
  });

  for (const c of labCases) {
    it(c.name, () => checkCase(lab, c, nodes[0]!.tracker.state()));
  }

  it('a UDP flow to a removed endpoint moves on once its stale conntrack entry is cleared', async () => {
    const n0 = nodes[0]!;
    await udpFlowMovesOff(lab, n0.tracker, () => n0.backend.sync(n0.tracker.state(), false), n0.cleaner);
  });

  it('a one-service change rewrites only that service\'s chains', async () => {
    const n0 = nodes[0]!;
    n0.tracker.upsertSlice(slice({ name: 'np-x', service: 'np', ports: [{ port: 8080 }], endpoints: [{ ip: '10.244.1.10', node: 'n1' }] }));
    const before = n0.backend.sent.total;
    const changes = n0.tracker.flush();
    const report = await n0.backend.sync(n0.tracker.state(), false, changes);
    assert.equal(report.full, false);
    assert.deepEqual(report.families.map((f) => f.rewritten), [1, 0], 'one IPv4 service port, no IPv6 one');
    const sent = n0.backend.sent.since(before);
    assert.deepEqual(sent.map((t) => t.family), [4], 'one restore, IPv4 only (nothing changed for IPv6)');
    const text = sent[0]!.text;
    const ownChains = text.split('\n').filter((l) => /^:KUBE-(SVC|SEP|EXT|SVL|FW)-/.test(l));
    assert.ok(ownChains.length <= 4, `only np's chains are declared: ${ownChains.join(' ')}`);
    assert.ok(!/^:KUBE-SERVICES /m.test(text), 'the shared chains are not rewritten');
    const r = await lab.probe(lab.external.netns, { targets: [{ proto: 'tcp', host: lab.nodes[0]!.ipv4, port: 30080 }], count: 4 });
    assert.ok(r.every((x) => x.ok && x.reply.pod === 'n1p0'), 'the change took effect');
  });

  // Last: the variants leave the nodes under another configuration.
  ruleModeVariants(() => ({ lab, nodes }), undefined, (b, s) => b.sync(s, true));
});
