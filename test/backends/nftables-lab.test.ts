// The semantic case table with real packets through nftables mode (kube-proxy's table, applied
// with `nft -f -` inside each lab node), held against trace() in nftables mode; and a
// one-service change sends only that service's objects.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { NftablesBackend } from '../../control/backends/nftables/apply.ts';
import { compileNftables } from '../../control/backends/nftables/compile.ts';
import { renderFull } from '../../control/backends/nftables/render.ts';
import { slice } from '../cases/objects.ts';
import type { Lab } from '../lab/lab.ts';
import { checkCase } from './case-check.ts';
import { udpFlowMovesOff } from './udp-flow.ts';
import { labCases } from './semantic-lab.ts';
import { ruleModeLab, ruleModeVariants, type RuleModeNode } from './rule-mode-lab.ts';

describe('nftables mode: semantic case table with real packets', () => {
  let lab: Lab;
  let nodes: Array<RuleModeNode<NftablesBackend>> = [];

  before(async () => {
    ({ lab, nodes } = await ruleModeLab((commandPrefix) => new NftablesBackend({ families: [4, 6], commandPrefix }), (b, t) => b.sync(t.state(), true)));
  });

  after(async () => {
    await lab?.teardown();
  });

  // As in the other modes, a node cannot send from an LB IP it does not hold.
  for (const c of labCases) {
    it(c.name, () => checkCase(lab, c, nodes[0]!.tracker.state(), { mode: 'nftables' }));
  }

  it('a UDP flow to a removed endpoint moves on once its stale conntrack entry is cleared', async () => {
    const n0 = nodes[0]!;
    await udpFlowMovesOff(lab, n0.tracker, () => n0.backend.sync(n0.tracker.state(), false), n0.cleaner);
  });

  it('a one-service change sends only that service\'s objects', async () => {
    const n0 = nodes[0]!;
    n0.tracker.upsertSlice(slice({ name: 'np-x', service: 'np', ports: [{ port: 8080 }], endpoints: [{ ip: '10.244.1.10', node: 'n1' }] }));
    const changes = n0.tracker.flush();
    const before = n0.backend.sent.total;
    const report = await n0.backend.sync(n0.tracker.state(), false, changes);
    assert.equal(report.full, false);
    const sent = n0.backend.sent.since(before);
    assert.deepEqual(sent.map((t) => t.family), [4], 'one transaction, IPv4 only (nothing changed for IPv6)');
    assert.deepEqual(report.families.map((f) => f.servicePorts), [1, 0], 'one service port compiled');
    const text = sent[0]!.text;
    const touched = new Set([...text.matchAll(/(?:service|external|local|endpoint|firewall)-[A-Z2-7]{8}-([^/\s]+\/[^/\s]+)\//g)].map((m) => m[1]));
    assert.deepEqual([...touched], ['demo/np'], 'only np\'s chains');
    assert.deepEqual(report.families.map((f) => [f.family, f.elementsAdded, f.elementsDeleted]), [[4, 0, 0], [6, 0, 0]], 'the maps keep their elements');
    const whole = renderFull(compileNftables(n0.tracker.state(), 4), undefined).text;
    assert.ok(text.length < whole.length / 5, `far less than a full sync (${text.length} of ${whole.length} bytes)`);
    const r = await lab.probe(lab.external.netns, { targets: [{ proto: 'tcp', host: lab.nodes[0]!.ipv4, port: 30080 }], count: 4 });
    assert.ok(r.every((x) => x.ok && x.reply.pod === 'n1p0'), 'the change took effect');
  });

  it('a full sync rewrites in place: the table survives and ClientIP affinity is kept', async () => {
    const n0 = nodes[0]!;
    const sticky = { targets: [{ proto: 'tcp' as const, host: '10.96.0.12', port: 80 }], count: 1 };
    const [first] = await lab.probe(lab.pod('n0p0').netns, sticky);
    assert.ok(first?.ok);
    const pod = first.reply.pod;
    const report = await n0.backend.sync(n0.tracker.state(), true);
    assert.equal(report.full, true);
    assert.ok(!n0.backend.sent.last()!.text.includes('delete table'));
    assert.deepEqual(report.families.map((f) => [f.family, f.chainsWritten, f.chainsDeleted]), [[4, 0, 0], [6, 0, 0]], 'nothing drifted, so the listing matches every chain and none is rewritten');
    const table = await lab.exec(lab.nodes[0]!.netns, 'nft', ['list', 'table', 'ip', 'kube-proxy']);
    assert.match(table, /set affinity-[^{]*\{[^}]*elements = \{ 10\.244\.0\.10 /, 'the client is still remembered');
    const again = await lab.probe(lab.pod('n0p0').netns, { ...sticky, count: 6 });
    assert.ok(again.every((x) => x.ok && x.reply.pod === pod), 'the same endpoint after the full sync');
  });

  it('a full sync repairs exactly the chains changed behind its back', async () => {
    const n0 = nodes[0]!;
    const node = lab.nodes[0]!.netns;
    const chains = (await lab.exec(node, 'nft', ['list', 'chains', 'ip'])).match(/chain (service-\S+demo\/np\/tcp\S*) /);
    assert.ok(chains !== null, 'np has a service chain');
    const victim = chains[1]!;
    await lab.exec(node, 'nft', ['flush', 'chain', 'ip', 'kube-proxy', victim]);
    await lab.exec(node, 'nft', ['add', 'chain', 'ip', 'kube-proxy', 'somebody-elses']);
    const report = await n0.backend.sync(n0.tracker.state(), true);
    assert.deepEqual(report.families.map((f) => [f.family, f.chainsWritten, f.chainsDeleted]), [[4, 1, 1], [6, 0, 0]]);
    assert.match(n0.backend.sent.since(0).findLast((t) => t.family === 4)!.text, new RegExp(`add rule ip kube-proxy ${victim.replace(/[/.]/g, '\\$&')} `));
    const r = await lab.probe(lab.external.netns, { targets: [{ proto: 'tcp', host: lab.nodes[0]!.ipv4, port: 30080 }], count: 2 });
    assert.ok(r.every((x) => x.ok), 'np works again');
  });

  it('a deleted table is noticed and rewritten whole by the next sync', async () => {
    const n0 = nodes[0]!;
    await lab.exec(lab.nodes[0]!.netns, 'nft', ['delete', 'table', 'ip', 'kube-proxy']);
    const failures = n0.backend.partialSyncFailures;
    const report = await n0.backend.sync(n0.tracker.state(), false);
    assert.deepEqual(report.families.map((f) => f.full), [true, false]);
    assert.equal(n0.backend.partialSyncFailures, failures + 1, 'the partial transaction failed on the missing table');
    assert.match(n0.backend.partialFailure ?? '', /No such file or directory/);
    const r = await lab.probe(lab.pod('n0p0').netns, { targets: [{ proto: 'tcp', host: '10.96.0.10', port: 80 }], count: 2 });
    assert.ok(r.every((x) => x.ok));
  });

  // Last: the variants leave the nodes under another configuration.
  ruleModeVariants(() => ({ lab, nodes }), 'nftables', (b, s) => b.sync(s, true));
});
