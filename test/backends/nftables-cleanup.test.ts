// --cleanup in nftables terms: the kube-proxy table of each family goes; someone else's tables,
// including an inet table and a table of the same name in another family, stay.
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { NftablesBackend, nftRunner } from '../../control/backends/nftables/apply.ts';
import { cleanupNftables } from '../../control/backends/nftables/cleanup.ts';
import { nodeFacts } from '../../control/model/node.ts';
import { ChangeTracker } from '../../control/model/tracker.ts';
import { config, node, services, slices } from '../cases/semantics.ts';
import { run } from '../lab/exec.ts';
import { inNetns } from '../lab/lab.ts';
import { runPrefix } from '../lab/names.ts';

const netns = `${runPrefix()}-nftclean`;
const prefix = inNetns(netns);
const inNs = (file: string, args: string[], input?: string): Promise<string> => run('nsenter', [`--net=/run/netns/${netns}`, '--', file, ...args], input);

describe('nftables cleanup', () => {
  after(() => run('ip', ['netns', 'del', netns]).catch(() => undefined));

  it('deletes the kube-proxy tables, keeps everyone else\'s', async () => {
    await run('ip', ['netns', 'add', netns]);
    const t = new ChangeTracker(config, nodeFacts('n0', node));
    for (const s of services) t.upsertService(s);
    for (const s of slices) t.upsertSlice(s);
    t.flush();
    await new NftablesBackend({ families: [4, 6], commandPrefix: prefix }).sync(t.state(), true);
    await inNs('nft', ['-f', '-'], 'add table inet kube-proxy\nadd table inet filter\nadd chain inet filter forward { type filter hook forward priority 0 ; }\nadd rule inet filter forward ip saddr 192.0.2.0/24 accept comment "someone else"\n');
    assert.match(await inNs('nft', ['list', 'tables']), /table ip6 kube-proxy/);
    const report = await cleanupNftables(nftRunner(prefix));
    assert.deepEqual(report.tables.sort(), ['ip kube-proxy', 'ip6 kube-proxy']);
    const left = await inNs('nft', ['list', 'ruleset']);
    assert.doesNotMatch(left, /table ip6? kube-proxy/);
    assert.match(left, /table inet kube-proxy/, 'another family\'s table of the same name is not ours');
    assert.match(left, /ip saddr 192\.0\.2\.0\/24 accept comment "someone else"/);
    assert.deepEqual(await cleanupNftables(nftRunner(prefix)), { tables: [] }, 'a second cleanup finds nothing');
  });
});
