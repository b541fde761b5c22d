// IPVS mode with real packets. IPVS is not in this machine's kernel: test/vm/vm.test.ts runs
// this file inside the Debian 6.1 VM (node --test test/backends/ipvs-lab.vm-test.ts); the name
// keeps it out of the host's test glob.
// The semantic case table and its configuration variants against trace() in ipvs mode; a one-service change sends only that
// service's commands; a removed TCP backend drains (weight 0) until its connection ends; a
// restarted backend takes over the kernel's state; cleanup leaves someone else's alone.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { IpvsBackend, ipvsRunner } from '../../control/backends/ipvs/apply.ts';
import { cleanupIpvs } from '../../control/backends/ipvs/cleanup.ts';
import { cleanupIptables, defaultRunner } from '../../control/backends/iptables/cleanup.ts';
import { parseIpvsList } from '../../control/backends/ipvs/plan.ts';
import { service, slice } from '../cases/objects.ts';
import { inNetns, type Lab, type LabNode } from '../lab/lab.ts';
import { checkCase } from './case-check.ts';
import { udpFlowMovesOff } from './udp-flow.ts';
import { labCases } from './semantic-lab.ts';
import { ruleModeLab, ruleModeVariants, type RuleModeNode } from './rule-mode-lab.ts';

const HOLD = fileURLToPath(new URL('../lab/hold-connection.ts', import.meta.url));

describe('IPVS mode: semantic case table with real packets', () => {
  let lab: Lab;
  let nodes: Array<RuleModeNode<IpvsBackend>> = [];
  const prefixOf = (n: LabNode): string[] => inNetns(n.netns);

  before(async () => {
    ({ lab, nodes } = await ruleModeLab((commandPrefix) => new IpvsBackend({ families: [4, 6], scheduler: 'rr', commandPrefix }), (b, t) => b.sync(t.state())));
  });

  after(async () => {
    await lab?.teardown();
  });

  for (const c of labCases) {
    it(c.name, () => checkCase(lab, c, nodes[0]!.tracker.state(), { mode: 'ipvs' }));
  }

  ruleModeVariants(() => ({ lab, nodes }), 'ipvs', (b, s) => b.sync(s, { full: true }));

  const listed = async (n: LabNode): Promise<ReturnType<typeof parseIpvsList>> => parseIpvsList(await lab.exec(n.netns, 'ipvsadm', ['-L', '-n']));

  it('a UDP flow to a removed endpoint moves on once its stale conntrack entry is cleared', async () => {
    const n0 = nodes[0]!;
    await udpFlowMovesOff(lab, n0.tracker, () => n0.backend.sync(n0.tracker.state()), n0.cleaner, { ipvs: true });
  });

  it('a one-service change sends only that service\'s commands', async () => {
    const n0 = nodes[0]!;
    n0.tracker.upsertSlice(slice({ name: 'np-x', service: 'np', ports: [{ port: 8080 }], endpoints: [{ ip: '10.244.1.10', node: 'n1' }] }));
    n0.tracker.flush();
    const before = n0.backend.sent.total;
    const report = await n0.backend.sync(n0.tracker.state());
    const commands = n0.backend.sent.since(before).filter((s) => s.tool === 'ipvsadm').flatMap((s) => s.text.trim().split('\n'));
    // np has a ClusterIP and a NodePort on the node's IPv4 address: two virtual servers, each
    // losing n0p2: deleted, or kept at weight 0 where earlier tests left connections to it.
    assert.ok(commands.every((c) => /^-[de] -t (10\.96\.0\.13:80|10\.254\.0\.11:30080) -r 10\.244\.0\.12:8080/.test(c)), commands.join('\n'));
    assert.equal(commands.length, 2, commands.join('\n'));
    assert.deepEqual(report.sent, { ipvsadm: 2, ipset: 0, ip: 0 });
    const r = await lab.probe(lab.external.netns, { targets: [{ proto: 'tcp', host: lab.nodes[0]!.ipv4, port: 30080 }], count: 4 });
    assert.ok(r.every((x) => x.ok && x.reply.pod === 'n1p0'), 'the change took effect');
  });

  it('a removed TCP backend drains at weight 0 until its connection ends', async () => {
    const n0 = nodes[0]!;
    const vs = '-t 10.96.0.60:80';
    // A service no other test touched: the held connection is the only one its backends see.
    n0.tracker.upsertService(service({ name: 'drain', clusterIPs: ['10.96.0.60'], ports: [{ port: 80, targetPort: 8080 }] }));
    const both = slice({ name: 'drain-x', service: 'drain', ports: [{ port: 8080 }], endpoints: [{ ip: '10.244.0.11', node: 'n0' }, { ip: '10.244.1.11', node: 'n1' }] });
    n0.tracker.upsertSlice(both);
    n0.tracker.flush();
    await n0.backend.sync(n0.tracker.state());
    const [nsenter, ...inPod] = inNetns(lab.pod('n0p0').netns);
    const holder = spawn(nsenter!, [...inPod, process.execPath, HOLD, '10.96.0.60', '80'], { stdio: ['pipe', 'pipe', 'inherit'] });
    const line = await new Promise<string>((resolve) => createInterface({ input: holder.stdout! }).once('line', resolve));
    const held = (JSON.parse(line) as { server: string }).server;
    const stays = held === '10.244.0.11' ? '10.244.1.11' : '10.244.0.11';
    n0.tracker.upsertSlice({ ...both, endpoints: (both.endpoints ?? []).filter((e) => e.addresses[0] === stays) });
    n0.tracker.flush();
    const report = await n0.backend.sync(n0.tracker.state());
    assert.ok(report.draining >= 1);
    assert.equal((await listed(lab.nodes[0]!)).get(vs)!.realServers.get(`${held}:8080`)?.weight, 0, 'kept at weight 0 while the connection lives');
    const r = await lab.probe(lab.pod('n0p2').netns, { targets: [{ proto: 'tcp', host: '10.96.0.60', port: 80 }], count: 4 });
    assert.ok(r.every((x) => x.ok && x.reply.server === stays), 'new connections avoid it');
    holder.stdin!.end(); // resets the connection: IPVS forgets a reset one after 10 s
    await new Promise((res) => holder.once('exit', res));
    let present = true;
    for (let i = 0; i < 40 && present; i++) {
      await new Promise((res) => setTimeout(res, 1000));
      await n0.backend.drain();
      present = (await listed(lab.nodes[0]!)).get(vs)!.realServers.has(`${held}:8080`);
    }
    assert.equal(present, false, 'deleted once its connections are gone');
  });

  it('a restarted backend takes over what is in the kernel and removes what went away', async () => {
    const n0 = nodes[0]!;
    const fresh = new IpvsBackend({ families: [4, 6], scheduler: 'rr', commandPrefix: prefixOf(lab.nodes[0]!) });
    n0.tracker.deleteService('demo/multi');
    n0.tracker.flush();
    const report = await fresh.sync(n0.tracker.state());
    const commands = fresh.sent.since(0).filter((s) => s.tool === 'ipvsadm').flatMap((s) => s.text.trim().split('\n'));
    assert.deepEqual(commands.sort(), ['-D -t 10.96.0.11:81', '-D -t 10.96.0.11:82', '-D -u 10.96.0.11:81'], 'nothing re-added, multi deleted');
    assert.equal(report.sent.ip, 1, 'its address leaves kube-ipvs0');
    const r = await lab.probe(lab.pod('n0p0').netns, { targets: [{ proto: 'tcp', host: '10.96.0.11', port: 81 }], timeoutMs: 500 });
    assert.ok(!r[0]!.ok, 'multi is gone');
  });

  it('cleanup removes our virtual servers, device, sets and rules; someone else\'s stay', async () => {
    const n = lab.nodes[1]!;
    await lab.exec(n.netns, 'ipvsadm', ['-A', '-t', '192.0.2.10:80', '-s', 'rr']);
    await lab.exec(n.netns, 'ipset', ['create', 'someone-else', 'hash:ip']);
    await cleanupIptables(defaultRunner(prefixOf(n)));
    const report = await cleanupIpvs(ipvsRunner(prefixOf(n)));
    assert.ok(report.virtualServers > 20 && report.device && report.ipsets === 34, JSON.stringify(report));
    assert.deepEqual([...(await listed(n)).keys()], ['-t 192.0.2.10:80']);
    const sets = await lab.exec(n.netns, 'ipset', ['list', '-n']);
    assert.deepEqual(sets.trim().split('\n'), ['someone-else']);
  });
});
