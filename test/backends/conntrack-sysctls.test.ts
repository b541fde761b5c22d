// kube-proxy's conntrack section in the rule-based modes: the nf_conntrack sysctls it sets, set
// for real inside a lab node's network namespace (the per-namespace timeouts; nf_conntrack_max is
// the initial namespace's and is not touched here), left alone when already right, and skipped
// with the reason where they cannot be written (a read-only /proc/sys in a pod).
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { applyConntrackSysctls, conntrackSysctls } from '../../control/backends/conntrack-sysctls.ts';
import { IptablesBackend } from '../../control/backends/iptables/apply.ts';
import { toolRunner, type ToolRunner } from '../../control/backends/tool-runner.ts';
import { kubeProxyTestCluster } from '../cases/kube-proxy-cluster.ts';
import { inNetns, Lab } from '../lab/lab.ts';

describe('nf_conntrack sysctls (rule-based modes)', () => {
  it('what kube-proxy sets: max = maxPerCore x CPUs, at least min; timeouts when given; be_liberal only when true', () => {
    assert.deepEqual(conntrackSysctls({ maxPerCore: 32768, min: 131072 }, 2), [{ name: 'net.netfilter.nf_conntrack_max', value: 131072 }]);
    assert.deepEqual(conntrackSysctls({ maxPerCore: 32768, min: 131072 }, 8), [{ name: 'net.netfilter.nf_conntrack_max', value: 262144 }]);
    assert.deepEqual(conntrackSysctls({ maxPerCore: 0, min: 131072, tcpBeLiberal: false, udpTimeoutSeconds: 0 }, 8), [], '0: left alone');
    assert.deepEqual(conntrackSysctls({ tcpEstablishedTimeoutSeconds: 86400, tcpCloseWaitTimeoutSeconds: 3600, tcpBeLiberal: true, udpTimeoutSeconds: 30, udpStreamTimeoutSeconds: 120 }, 1).map((s) => s.name.replace('net.netfilter.nf_conntrack_', '')), ['tcp_timeout_established', 'tcp_timeout_close_wait', 'tcp_be_liberal', 'udp_timeout', 'udp_timeout_stream']);
  });

  it('a read-only /proc/sys: each one skipped with the tool\'s reason, nothing thrown', async () => {
    const run: ToolRunner = async (_file, args) => (args[0] === '-n' ? { ok: true, out: '432000\n' } : { ok: false, out: 'sysctl: permission denied on key "net.netfilter.nf_conntrack_tcp_timeout_established"\n' });
    const r = await applyConntrackSysctls([{ name: 'net.netfilter.nf_conntrack_tcp_timeout_established', value: 86400 }], run);
    assert.deepEqual(r, { set: [], unchanged: [], skipped: [{ name: 'net.netfilter.nf_conntrack_tcp_timeout_established', why: 'sysctl: permission denied on key "net.netfilter.nf_conntrack_tcp_timeout_established"' }] });
  });

  describe('in a lab node', () => {
    let lab: Lab;
    before(async () => {
      lab = await Lab.create({ nodes: 1, podsPerNode: 1, ports: [8080] });
    });
    after(async () => {
      await lab?.teardown();
    });

    it('sets the per-namespace ones, and a second start finds them in place', async () => {
      const n = lab.nodes[0]!;
      const run = toolRunner(inNetns(n.netns));
      // nf_conntrack's sysctls exist once the module is in use: the node's first iptables rule loads it.
      await run('iptables', ['-w', '5', '-t', 'raw', '-S']);
      const wanted = conntrackSysctls({ tcpEstablishedTimeoutSeconds: 7207, tcpBeLiberal: true, udpTimeoutSeconds: 31, udpStreamTimeoutSeconds: 121 }, 1);
      const first = await applyConntrackSysctls(wanted, run);
      assert.deepEqual(first.skipped, []);
      assert.deepEqual(first.set, ['net.netfilter.nf_conntrack_tcp_timeout_established=7207', 'net.netfilter.nf_conntrack_tcp_be_liberal=1', 'net.netfilter.nf_conntrack_udp_timeout=31', 'net.netfilter.nf_conntrack_udp_timeout_stream=121']);
      for (const { name, value } of wanted) assert.equal((await lab.exec(n.netns, 'sysctl', ['-n', name])).trim(), String(value), name);
      const again = await applyConntrackSysctls(wanted, run);
      assert.deepEqual([again.set, again.unchanged.length], [[], wanted.length]);
    });

    it('with tcp_be_liberal set (above), iptables mode leaves out the DROP of INVALID packets, as kube-proxy', async () => {
      const n = lab.nodes[0]!;
      await new IptablesBackend({ families: [4], commandPrefix: inNetns(n.netns) }).sync(kubeProxyTestCluster().state(), true);
      const forward = (await lab.exec(n.netns, 'iptables', ['-w', '5', '-t', 'filter', '-S', 'KUBE-FORWARD'])).split('\n');
      assert.ok(forward.some((l) => l.includes('kubernetes forwarding rules')), forward.join('\n'));
      assert.ok(!forward.some((l) => l.includes('INVALID')), forward.join('\n'));
    });

    it('nf_conntrack_max is the initial namespace\'s: refused here (sysctl exits 0 all the same), so skipped, and nothing changes', async (t) => {
      const n = lab.nodes[0]!;
      const name = 'net.netfilter.nf_conntrack_max';
      // Only where the kernel makes it read-only outside the initial namespace: elsewhere the write
      // would reach the machine's own table size.
      const mode = (await lab.exec(n.netns, 'stat', ['-c', '%a', '/proc/sys/net/netfilter/nf_conntrack_max'])).trim();
      if (mode !== '444') {
        t.skip(`nf_conntrack_max is writable (mode ${mode}) in a lab netns on this kernel: the test would change the machine's own value`);
        return;
      }
      const before = (await lab.exec(n.netns, 'sysctl', ['-n', name])).trim();
      const r = await applyConntrackSysctls([{ name, value: Number(before) + 1 }], toolRunner(inNetns(n.netns)));
      assert.deepEqual(r.set, []);
      assert.equal(r.skipped[0]?.name, name);
      assert.equal((await lab.exec(n.netns, 'sysctl', ['-n', name])).trim(), before);
    });
  });
});
