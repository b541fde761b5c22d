// iptables-nft vs iptables-legacy, detected as kube-proxy's wrapper does: the variant already
// holding more rules wins, nft when neither has any.
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { detectVariant } from '../../control/backends/iptables/apply.ts';
import { run } from '../lab/exec.ts';
import { runPrefix } from '../lab/names.ts';

const netns = `${runPrefix()}-variant`;
const inNs = (file: string, args: string[]): Promise<{ ok: boolean; out: string }> =>
  run('nsenter', [`--net=/run/netns/${netns}`, '--', file, ...args]).then(
    (out) => ({ ok: true, out }),
    (e: Error) => ({ ok: false, out: e.message }),
  );

describe('iptables variant detection', () => {
  after(() => run('ip', ['netns', 'del', netns]).catch(() => undefined));

  it('nft on an empty system, legacy where the legacy tables hold the rules', async () => {
    await run('ip', ['netns', 'add', netns]);
    assert.equal(await detectVariant(inNs), 'nft');
    for (const chain of ['A', 'B', 'C']) await inNs('iptables-legacy', ['-t', 'filter', '-N', `CNI-${chain}`]);
    await inNs('iptables-legacy', ['-t', 'filter', '-A', 'CNI-A', '-j', 'ACCEPT']);
    await inNs('iptables-legacy', ['-t', 'filter', '-A', 'CNI-B', '-j', 'ACCEPT']);
    assert.equal(await detectVariant(inNs), 'legacy');
  });
});
