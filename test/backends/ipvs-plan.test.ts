// IPVS mode's pure parts: the compiled kernel state for kube-proxy's test-cluster shapes against
// a golden file (virtual servers, ipsets, iptables rules), the listing parsers, and the plans:
// graceful termination, ownership, ipset and address differences.
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, it } from 'node:test';
import { compileIpvs, compileIpvsPort, setName, vsKey, type VirtualServer } from '../../control/backends/ipvs/compile.ts';
import { IpvsBackend } from '../../control/backends/ipvs/apply.ts';
import { IpvsHoldings, type HeldPort } from '../../control/backends/ipvs/holdings.ts';
import { planServicePort } from '../../control/model/plan.ts';
import type { DesiredState } from '../../control/model/types.ts';
import { slice } from '../cases/objects.ts';
import { parseIpsetSave, parseIpvsList, planAddresses, planIpsets, planIpvs } from '../../control/backends/ipvs/plan.ts';
import { renderRestore } from '../../control/backends/iptables/compile.ts';
import { kubeProxyTestCluster } from '../cases/kube-proxy-cluster.ts';

function render(): string {
  const c = compileIpvs(kubeProxyTestCluster().state(), 4, { scheduler: 'rr', randomFully: true });
  const plan = planIpvs(new Map(), c.virtualServers, () => true);
  const sets = planIpsets(new Map(), c.ipsets);
  const addresses = planAddresses(new Set(), c.addresses, 4);
  return ['# ipvsadm -R', ...plan.commands, '# ipset restore -exist', ...sets.adds, '# ip -batch -', ...addresses.adds, '# iptables-restore --noflush', renderRestore(c.iptables)].join('\n');
}

const LISTING = `IP Virtual Server version 1.2.1 (size=4096)
Prot LocalAddress:Port Scheduler Flags
  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn
TCP  10.96.0.10:80 rr
  -> 10.244.0.11:8080             Masq    1      1          0
  -> 10.244.1.11:8080             Masq    1      0          0
TCP  10.96.0.12:80 rr persistent 60
  -> 10.244.0.11:8080             Masq    1      0          3
UDP  10.96.0.10:53 rr
  -> 10.244.0.11:8080             Masq    1      0          1
TCP  [fd00:96::10]:80 rr
  -> [fd00:10:244::b]:8080        Masq    1      0          0
FWM  7 rr
  -> 10.1.1.1:0                   Route   1      0          0
TCP  192.0.2.10:80 wlc
`;

const vs = (address: string, port: number, rs: string[], extra: Partial<VirtualServer> = {}): [string, VirtualServer] => [
  vsKey(extra.protocol ?? 'TCP', address, port),
  { protocol: 'TCP', address, port, scheduler: 'rr', persistenceSeconds: 0, realServers: new Map(rs.map((r) => [r, { ip: r.split(':')[0]!, port: 8080, weight: 1 }])), ...extra },
];

describe('IPVS mode: compile and plan', () => {
  it('matches test/backends/golden/ipvs-v4.txt', () => {
    const file = fileURLToPath(new URL('./golden/ipvs-v4.txt', import.meta.url));
    const text = render();
    if (process.env.UPDATE_GOLDEN === '1') writeFileSync(file, text);
    assert.equal(text, readFileSync(file, 'utf8'));
  });

  it('parses ipvsadm -L -n, IPv6 and persistence included, firewall marks skipped', () => {
    const l = parseIpvsList(LISTING);
    assert.deepEqual([...l.keys()], ['-t 10.96.0.10:80', '-t 10.96.0.12:80', '-u 10.96.0.10:53', '-t [fd00:96::10]:80', '-t 192.0.2.10:80']);
    assert.equal(l.get('-t 10.96.0.12:80')!.persistenceSeconds, 60);
    assert.deepEqual(l.get('-t 10.96.0.10:80')!.realServers.get('10.244.0.11:8080'), { ip: '10.244.0.11', port: 8080, weight: 1, active: 1, inactive: 0 });
    assert.equal(l.get('-t [fd00:96::10]:80')!.realServers.has('[fd00:10:244::b]:8080'), true);
  });

  it('graceful termination: TCP with connections goes to weight 0, without them or UDP is deleted', () => {
    const current = parseIpvsList(LISTING);
    const desired = new Map([
      vs('10.96.0.10', 80, ['10.244.1.11:8080']),
      vs('10.96.0.12', 80, [], { persistenceSeconds: 60 }),
      vs('10.96.0.10', 53, [], { protocol: 'UDP' }),
      vs('fd00:96::10', 80, ['[fd00:10:244::b]:8080']),
    ]);
    const plan = planIpvs(current, desired, (_key, v) => v.address !== '192.0.2.10');
    assert.deepEqual(plan.commands, [
      '-e -t 10.96.0.10:80 -r 10.244.0.11:8080 -m -w 0', // one active connection
      '-e -t 10.96.0.12:80 -r 10.244.0.11:8080 -m -w 0', // three in TIME_WAIT and the like
      '-d -u 10.96.0.10:53 -r 10.244.0.11:8080', // UDP: at once
    ]);
    assert.equal(plan.draining, 2);
    // Once drained (weight 0, no connections), deleted; a returning endpoint gets its weight back.
    const drained = parseIpvsList(LISTING.replace('Masq    1      1          0', 'Masq    0      0          0').replace('Masq    1      0          3', 'Masq    0      0          0'));
    assert.deepEqual(planIpvs(drained, desired, () => false).commands, ['-d -t 10.96.0.10:80 -r 10.244.0.11:8080', '-d -t 10.96.0.12:80 -r 10.244.0.11:8080', '-d -u 10.96.0.10:53 -r 10.244.0.11:8080']);
    const back = new Map([...desired, vs('10.96.0.10', 80, ['10.244.0.11:8080', '10.244.1.11:8080'])]);
    assert.ok(planIpvs(drained, back, () => false).commands.includes('-e -t 10.96.0.10:80 -r 10.244.0.11:8080 -m -w 1'));
  });

  it('deletes only virtual servers that are ours; creates and edits the rest', () => {
    const current = parseIpvsList(LISTING);
    const desired = new Map([vs('10.96.0.10', 80, ['10.244.0.11:8080', '10.244.1.11:8080'], { scheduler: 'lc' }), vs('10.96.0.99', 80, ['10.244.1.11:8080'], { persistenceSeconds: 10800 })]);
    const plan = planIpvs(current, desired, (_key, v) => v.address.startsWith('10.96.') || v.address.startsWith('fd00:96:'));
    assert.deepEqual(plan.commands, [
      '-E -t 10.96.0.10:80 -s lc',
      '-A -t 10.96.0.99:80 -s rr -p 10800',
      '-a -t 10.96.0.99:80 -r 10.244.1.11:8080 -m -w 1',
      '-D -t 10.96.0.12:80',
      '-D -u 10.96.0.10:53',
      '-D -t [fd00:96::10]:80',
    ]);
  });

  it('ipsets: kube-proxy names (KUBE-6- for IPv6, cut to 31 characters), entries added and deleted one by one', () => {
    assert.equal(setName('LOAD-BALANCER-SOURCE-CIDR', 6), 'KUBE-6-LOAD-BALANCER-SOURCE-CID');
    const c = compileIpvs(kubeProxyTestCluster().state(), 4, { scheduler: 'rr', randomFully: true });
    const saved = `create KUBE-CLUSTER-IP hash:ip,port family inet hashsize 1024 maxelem 65536 bucketsize 12 initval 0x1
add KUBE-CLUSTER-IP 172.30.0.41,tcp:80
add KUBE-CLUSTER-IP 172.30.0.99,tcp:80
create KUBE-LOAD-BALANCER-SOURCE-CIDR hash:ip,port,net family inet hashsize 1024 maxelem 65536
add KUBE-LOAD-BALANCER-SOURCE-CIDR 1.2.3.4,tcp:80,203.0.113.0/25
create someone-else hash:ip family inet
add someone-else 192.0.2.1
`;
    const current = parseIpsetSave(saved, new Set(c.ipsets.keys()));
    assert.equal(current.has('someone-else'), false);
    const plan = planIpsets(current, c.ipsets);
    assert.ok(!plan.adds.includes('create KUBE-CLUSTER-IP hash:ip,port family inet hashsize 1024 maxelem 65536'), 'an existing set is not created again');
    assert.ok(!plan.adds.includes('add KUBE-CLUSTER-IP 172.30.0.41,tcp:80'));
    assert.ok(plan.adds.includes('add KUBE-CLUSTER-IP 172.30.0.42,tcp:80'));
    assert.ok(!plan.adds.some((l) => l.startsWith('add KUBE-LOAD-BALANCER-SOURCE-CIDR')), 'already there');
    assert.deepEqual(plan.deletions, ['del KUBE-CLUSTER-IP 172.30.0.99,tcp:80']);
  });

  it('kube-ipvs0 addresses: bind the new, unbind the gone', () => {
    assert.deepEqual(planAddresses(new Set(['10.96.0.1', '10.96.0.2']), new Set(['10.96.0.2', '10.96.0.3']), 4), { adds: ['address add 10.96.0.3/32 dev kube-ipvs0'], deletions: ['address del 10.96.0.1/32 dev kube-ipvs0'] });
    assert.deepEqual(planAddresses(new Set(), new Set(['fd00::1']), 6).adds, ['address add fd00::1/128 dev kube-ipvs0 nodad']);
  });
});

describe('IPVS holdings: a partial sync plans only the changed ports', () => {
  it('one endpoint change touches one virtual server and no set or address; a gone port takes what only it held', () => {
    const t = kubeProxyTestCluster();
    const held = new IpvsHoldings(4);
    const fs = t.state().families.get(4)!;
    const portsOf = (state: DesiredState): Map<string, HeldPort> => {
      const f = state.families.get(4)!;
      return new Map([...f.servicePorts].map(([k, sp]) => [k, { sp, port: compileIpvsPort(planServicePort(sp, f, state.config, 'ipvs'), 4, { scheduler: 'rr' }) }]));
    };
    const all = portsOf(t.state());
    const first = held.plan(all);
    held.apply(all);
    assert.equal(first.addressAdds.length, new Set([...fs.servicePorts.values()].flatMap((sp) => [sp.clusterIP, ...sp.externalIPs, ...sp.loadBalancerIPs])).size);
    assert.deepEqual([...held.virtualServers().keys()].sort(), [...compileIpvs(t.state(), 4, { scheduler: 'rr', randomFully: true }).virtualServers.keys()].sort(), 'the holdings hold what a whole compile gives');

    t.upsertSlice(slice({ ns: 'ns1', name: 'svc1-x', service: 'svc1', ports: [{ name: 'p80', port: 80 }], endpoints: [{ ip: '10.180.0.9', node: 'other' }] }));
    const changes = t.flush();
    const next = portsOf(t.state());
    const changed = new Map(changes.upserted.map((sp) => [sp.key, next.get(sp.key)!]));
    const plan = held.plan(changed);
    assert.deepEqual([...plan.virtualServers.keys()], [vsKey('TCP', '172.30.0.41', 80)]);
    assert.deepEqual([...plan.virtualServers.values()][0]!.realServers.has('10.180.0.9:80'), true);
    assert.deepEqual([plan.setAdds, plan.setDels, plan.addressAdds, plan.addressDels], [[], [], [], []]);

    // The service goes: its address, its sets' entries and its virtual server go with it.
    const gone = held.plan(new Map([[changes.upserted[0]!.key, undefined]]));
    assert.deepEqual(gone.addressDels, ['address del 172.30.0.41/32 dev kube-ipvs0']);
    assert.deepEqual([...gone.virtualServers], [[vsKey('TCP', '172.30.0.41', 80), undefined]]);
    assert.ok(gone.setDels.includes(`del ${setName('CLUSTER-IP', 4)} 172.30.0.41,tcp:80`));
  });
});

describe('IPVS adapter: a change set syncs only its ports (tools faked: this kernel has no IPVS)', () => {
  it('one endpoint change lists and rewrites one virtual server and touches no set or address', async () => {
    const calls: Array<{ file: string; args: string[]; input?: string }> = [];
    const fake = async (file: string, args: string[], input?: string): Promise<{ ok: boolean; out: string }> => {
      calls.push({ file, args, input });
      if (file === 'ip' && args.includes('-j')) return { ok: true, out: '[]' };
      if (file === 'ipvsadm' && args[0] === '-L' && args.length > 2) return { ok: true, out: `TCP  ${args[3]} rr\n  -> 10.180.0.1:80                Masq    1      0          0\n` };
      return { ok: true, out: '' };
    };
    const t = kubeProxyTestCluster();
    const b = new IpvsBackend({ families: [4], scheduler: 'rr' }, fake);
    await b.sync(t.state(), { full: true, changes: t.flush() });
    t.upsertSlice(slice({ ns: 'ns1', name: 'svc1-x', service: 'svc1', ports: [{ name: 'p80', port: 80 }], endpoints: [{ ip: '10.180.0.9', node: 'other' }] }));
    const changes = t.flush();
    calls.length = 0;
    const report = await b.sync(t.state(), { changes });
    assert.deepEqual(calls.filter((c) => c.file === 'ipvsadm' && c.args[0] === '-L').map((c) => c.args), [['-L', '-n', '-t', '172.30.0.41:80']], 'one virtual server listed, not all');
    assert.deepEqual(calls.filter((c) => c.file === 'ipvsadm' && c.args[0] === '-R').map((c) => c.input), ['-a -t 172.30.0.41:80 -r 10.180.0.9:80 -m -w 1\n-d -t 172.30.0.41:80 -r 10.180.0.1:80\n']);
    assert.deepEqual(report.sent, { ipvsadm: 2, ipset: 0, ip: 0 });
    assert.ok(!calls.some((c) => c.file === 'ipset' || c.args.includes('save')), 'no set listed or written');
  });
});
