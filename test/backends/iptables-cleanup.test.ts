// --cleanup in iptables terms: every chain of kube-proxy's layout and every jump to one goes, in
// both families; kubelet's chains (KUBE-FIREWALL and its jumps, KUBE-KUBELET-CANARY) and someone
// else's rules and chains stay, as with kube-proxy's own cleanup.
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { IptablesBackend } from '../../control/backends/iptables/apply.ts';
import { cleanupIptables, defaultRunner, splitRule } from '../../control/backends/iptables/cleanup.ts';
import { nodeFacts } from '../../control/model/node.ts';
import { ChangeTracker } from '../../control/model/tracker.ts';
import { config, node, services, slices } from '../cases/semantics.ts';
import { run } from '../lab/exec.ts';
import { inNetns } from '../lab/lab.ts';
import { runPrefix } from '../lab/names.ts';

const netns = `${runPrefix()}-ipclean`;
const prefix = inNetns(netns);
const inNs = (file: string, args: string[]): Promise<string> => run('nsenter', [`--net=/run/netns/${netns}`, '--', file, ...args]);

describe('iptables cleanup', () => {
  after(() => run('ip', ['netns', 'del', netns]).catch(() => undefined));

  it('splits saved rules with quoted comments', () => {
    assert.deepEqual(splitRule('PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES'), ['PREROUTING', '-m', 'comment', '--comment', 'kubernetes service portals', '-j', 'KUBE-SERVICES']);
  });

  it('removes our chains and jumps, keeps a foreign rule and chain', async () => {
    await run('ip', ['netns', 'add', netns]);
    const t = new ChangeTracker(config, nodeFacts('n0', node));
    for (const s of services) t.upsertService(s);
    for (const s of slices) t.upsertSlice(s);
    t.flush();
    await new IptablesBackend({ families: [4, 6], commandPrefix: prefix }).sync(t.state(), true);
    await inNs('iptables', ['-A', 'FORWARD', '-s', '192.0.2.0/24', '-m', 'comment', '--comment', 'someone else', '-j', 'ACCEPT']);
    await inNs('iptables', ['-t', 'nat', '-N', 'CNI-HOSTPORT']);
    await inNs('iptables', ['-t', 'nat', '-A', 'PREROUTING', '-j', 'CNI-HOSTPORT']);
    // What kubelet writes at start (kubelet_network_linux.go).
    await inNs('iptables', ['-N', 'KUBE-FIREWALL']);
    await inNs('iptables', ['-A', 'KUBE-FIREWALL', '-d', '127.0.0.0/8', '!', '-s', '127.0.0.0/8', '-m', 'conntrack', '!', '--ctstate', 'RELATED,ESTABLISHED,DNAT', '-j', 'DROP']);
    await inNs('iptables', ['-A', 'INPUT', '-j', 'KUBE-FIREWALL']);
    await inNs('iptables', ['-A', 'OUTPUT', '-j', 'KUBE-FIREWALL']);
    for (const table of ['mangle', 'nat', 'filter']) await inNs('iptables', ['-t', table, '-N', 'KUBE-KUBELET-CANARY']);
    assert.match(await inNs('iptables-save', []), /KUBE-SVC-/);
    const report = await cleanupIptables(defaultRunner(prefix));
    assert.ok(report.chains > 50 && report.jumps >= 12, JSON.stringify(report));
    assert.doesNotMatch(await inNs('ip6tables-save', []), /KUBE-/, 'ip6tables-save shows nothing of ours');
    const after = await inNs('iptables-save', []);
    const kubelets = after.split('\n').filter((l) => /KUBE-/.test(l));
    assert.ok(kubelets.every((l) => /KUBE-FIREWALL|KUBE-KUBELET-CANARY/.test(l)), `only kubelet's chains are left:\n${kubelets.join('\n')}`);
    assert.match(after, /^-A INPUT -j KUBE-FIREWALL$/m);
    assert.match(after, /^-A OUTPUT -j KUBE-FIREWALL$/m);
    assert.match(after, /^-A KUBE-FIREWALL ! -s 127\.0\.0\.0\/8 -d 127\.0\.0\.0\/8 .* -j DROP$/m);
    assert.equal(after.match(/^:KUBE-KUBELET-CANARY /gm)?.length, 3, 'the canary in mangle, nat and filter');
    assert.match(after, /-A FORWARD -s 192\.0\.2\.0\/24 .*someone else.* -j ACCEPT/);
    assert.match(after, /-A PREROUTING -j CNI-HOSTPORT/);
  });
});
