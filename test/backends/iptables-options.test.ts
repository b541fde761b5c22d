// kube-proxy's iptables settings in the compiled rules: masqueradeBit (the KUBE-MARK-MASQ mark in
// iptables, nftables and ipvs modes), localhostNodePorts (the KUBE-SERVICES NodePort dispatch
// and KUBE-FIREWALL, as kube-proxy's iptables proxier writes them). The default output is the
// golden file's; these are the differences from it.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { compileIptables, renderRestore } from '../../control/backends/iptables/compile.ts';
import { compileIpvs } from '../../control/backends/ipvs/compile.ts';
import { compileNftables } from '../../control/backends/nftables/compile.ts';
import { renderFull } from '../../control/backends/nftables/render.ts';
import { kubeProxyTestCluster } from '../cases/kube-proxy-cluster.ts';

const LAST = '-m comment --comment "kubernetes service nodeports; NOTE: this must be the last rule in this chain"';
const lines = (text: string): string[] => text.split('\n');

describe('iptables compiler: masqueradeBit and localhostNodePorts', () => {
  it('masqueradeBit 14 (the default) is 0x4000; 13 puts 0x2000 in every mark rule, and no 0x4000 is left', () => {
    const text = renderRestore(compileIptables(kubeProxyTestCluster({ masqueradeBit: 13 }).state(), 4, { randomFully: true }));
    assert.ok(!text.includes('0x4000'), text);
    assert.ok(lines(text).includes('-A KUBE-MARK-MASQ -j MARK --or-mark 0x2000'));
    assert.ok(lines(text).includes('-A KUBE-POSTROUTING -m mark ! --mark 0x2000/0x2000 -j RETURN'));
    assert.ok(lines(text).includes('-A KUBE-POSTROUTING -j MARK --xor-mark 0x2000'));
    assert.ok(lines(text).includes('-A KUBE-FORWARD -m comment --comment "kubernetes forwarding rules" -m mark --mark 0x2000/0x2000 -j ACCEPT'));
    const bit31 = renderRestore(compileIptables(kubeProxyTestCluster({ masqueradeBit: 31 }).state(), 4, { randomFully: true }));
    assert.ok(lines(bit31).includes('-A KUBE-MARK-MASQ -j MARK --or-mark 0x80000000'), 'bit 31 is unsigned');
  });

  it('nf_conntrack_tcp_be_liberal set: no DROP of INVALID packets in KUBE-FORWARD (kube-proxy)', () => {
    const invalid = '-A KUBE-FORWARD -m conntrack --ctstate INVALID -j DROP';
    assert.ok(lines(renderRestore(compileIptables(kubeProxyTestCluster().state(), 4, { randomFully: true }))).includes(invalid));
    assert.ok(!lines(renderRestore(compileIptables(kubeProxyTestCluster().state(), 4, { randomFully: true, conntrackTCPLiberal: true }))).includes(invalid));
  });

  it('masqueradeBit reaches nftables and ipvs modes too', () => {
    const nft = renderFull(compileNftables(kubeProxyTestCluster({ masqueradeBit: 13 }).state(), 4), undefined).text;
    assert.match(nft, /meta mark set meta mark \| 0x00002000/);
    assert.match(nft, /meta mark & 0x00002000 == 0x00000000 return/);
    assert.ok(!nft.includes('0x00004000'));
    const ipvs = compileIpvs(kubeProxyTestCluster({ masqueradeBit: 13 }).state(), 4, { scheduler: 'rr', randomFully: true });
    const rules = renderRestore(ipvs.iptables);
    assert.ok(lines(rules).includes('-A KUBE-MARK-MASQ -j MARK --or-mark 0x2000'), rules);
    assert.ok(!rules.includes('0x4000'));
  });

  it('localhostNodePorts on (the default): every local address incl. 127.0.0.0/8 dispatches to KUBE-NODEPORTS, and KUBE-FIREWALL drops martians to loopback', () => {
    const text = renderRestore(compileIptables(kubeProxyTestCluster().state(), 4, { randomFully: true }));
    assert.ok(lines(text).includes(`-A KUBE-SERVICES ${LAST} -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS`));
    assert.ok(lines(text).includes('-A KUBE-FIREWALL -m comment --comment "block incoming localnet connections" -d 127.0.0.0/8 ! -s 127.0.0.0/8 -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP'));
  });

  it('localhostNodePorts false: loopback is left out of the NodePort dispatch, and no KUBE-FIREWALL', () => {
    const text = renderRestore(compileIptables(kubeProxyTestCluster({ localhostNodePorts: false }).state(), 4, { randomFully: true }));
    assert.ok(lines(text).includes(`-A KUBE-SERVICES ${LAST} -m addrtype --dst-type LOCAL ! -d 127.0.0.0/8 -j KUBE-NODEPORTS`), text);
    assert.ok(!text.includes('KUBE-FIREWALL'));
  });

  it('IPv6: never on ::1, whatever the setting', () => {
    const text = renderRestore(compileIptables(kubeProxyTestCluster({ families: [4, 6] }).state(), 6, { randomFully: true }));
    assert.ok(lines(text).includes(`-A KUBE-SERVICES ${LAST} -m addrtype --dst-type LOCAL ! -d ::1/128 -j KUBE-NODEPORTS`), text);
    assert.ok(!text.includes('KUBE-FIREWALL'));
  });

  it('nodePortAddresses CIDRs: 127.0.0.1 listed when they take in loopback and the setting is on, else not', () => {
    const on = renderRestore(compileIptables(kubeProxyTestCluster({ nodePortAddresses: ['192.168.0.0/24', '127.0.0.0/8'] }).state(), 4, { randomFully: true }));
    assert.deepEqual(lines(on).filter((l) => l.includes('-j KUBE-NODEPORTS')), [`-A KUBE-SERVICES ${LAST} -d 192.168.0.2/32 -j KUBE-NODEPORTS`, `-A KUBE-SERVICES ${LAST} -d 127.0.0.1/32 -j KUBE-NODEPORTS`]);
    const off = renderRestore(compileIptables(kubeProxyTestCluster({ nodePortAddresses: ['192.168.0.0/24', '127.0.0.0/8'], localhostNodePorts: false }).state(), 4, { randomFully: true }));
    assert.deepEqual(lines(off).filter((l) => l.includes('-j KUBE-NODEPORTS')), [`-A KUBE-SERVICES ${LAST} -d 192.168.0.2/32 -j KUBE-NODEPORTS`]);
    const noLoopback = renderRestore(compileIptables(kubeProxyTestCluster({ nodePortAddresses: ['192.168.0.0/24'] }).state(), 4, { randomFully: true }));
    assert.ok(!noLoopback.includes('KUBE-FIREWALL'), 'kube-proxy: localhostNodePorts is off when nodePortAddresses has no loopback');
  });
});
