// Connection tracking, SNAT ports, the id lifecycle and drop counters, through BPF_PROG_TEST_RUN:
// each test drives the real programs with real packets and reads the maps they wrote.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { progTestRun } from '../../control/bpf/attach.ts';
import { u32 } from '../../control/bpf/codec.ts';
import { affinityKey, affinityValue, backend, ctKey, ctValue, CT, revNat, type CtKey } from '../../control/bpf/layout.ts';
import { compileDatapath } from '../../control/backends/ebpf/compile.ts';
import { EbpfDatapath, monotonicCoarseNs } from '../../control/backends/ebpf/datapath.ts';
import { datapathObjectPath } from '../../control/backends/ebpf/object-path.ts';
import { nodeFacts } from '../../control/model/node.ts';
import { ChangeTracker } from '../../control/model/tracker.ts';
import { config, node } from '../cases/semantics.ts';
import { service, slice } from '../cases/objects.ts';
import { runPrefix } from '../lab/names.ts';
import { ProxyMetrics } from '../../control/server/metrics.ts';
import { inspectCommand } from '../../control/cli/inspect.ts';
import { teardownNamesSync } from '../lab/sweep.ts';
import { buildPacket, parsePacket, PROTO, TCP_FLAGS } from '../packet.ts';

const TC_ACT_SHOT = 2;
const prefix = `${runPrefix()}-ct`;
const CLIENT = '10.244.0.10';
const EXTERNAL = '10.254.0.200';
const NODE = '10.254.0.11';
const S = 1_000_000_000n;

describe('connection tracking and the id lifecycle (BPF_PROG_TEST_RUN)', () => {
  let dp: EbpfDatapath;
  let tracker: ChangeTracker;
  const run = (prog: string, packet: Buffer): { retval: number; out: Buffer } => {
    const r = progTestRun(dp.programFd(prog), packet);
    return { retval: r.retval, out: r.data };
  };
  const tcp = (src: string, dst: string, sport: number, dport: number, tcpFlags: number): Buffer => buildPacket({ src, dst, proto: 'tcp', sport, dport, tcpFlags });
  const ct = (k: CtKey) => dp.conntrackEntry(k)?.value;
  const sync = (): void => {
    tracker.flush();
    assert.deepEqual(dp.sync(compileDatapath(tracker.state())).failed, []);
  };
  const configure = (snat: { min: number; max: number } = { min: 61000, max: 65535 }): void =>
    dp.configure({ nodeIp4: NODE, nodeIp6: 'fd00:254::b', snatPortMin: snat.min, snatPortMax: snat.max, flags: 0, ctTimeoutTcpNs: 3_600n * S, ctTimeoutUdpNs: 30n * S, hostNetnsCookie: 0n });

  before(() => {
    tracker = new ChangeTracker(config, nodeFacts('n0', node, ['10.244.0.1']));
    tracker.upsertService(service({ name: 'tcp', clusterIPs: ['10.96.1.1'], ports: [{ port: 80, targetPort: 8080 }] }));
    tracker.upsertSlice(slice({ name: 'tcp-x', service: 'tcp', ports: [{ port: 8080 }], endpoints: [{ ip: '10.244.1.50', node: 'n1' }] }));
    tracker.upsertService(service({ name: 'dns', clusterIPs: ['10.96.1.2'], ports: [{ port: 53, protocol: 'UDP', targetPort: 5353 }] }));
    tracker.upsertSlice(slice({ name: 'dns-x', service: 'dns', ports: [{ port: 5353, protocol: 'UDP' }], endpoints: [{ ip: '10.244.1.51', node: 'n1' }] }));
    tracker.upsertService(service({ name: 'np', type: 'NodePort', clusterIPs: ['10.96.1.3'], ports: [{ port: 80, targetPort: 8080, nodePort: 30090 }] }));
    tracker.upsertSlice(slice({ name: 'np-x', service: 'np', ports: [{ port: 8080 }], endpoints: [{ ip: '10.244.1.52', node: 'n1' }] }));
    // Small tables, so that churn certainly turns the UDP one over.
    dp = EbpfDatapath.open({ object: datapathObjectPath('portable'), pinDir: `/sys/fs/bpf/${prefix}`, maxEntries: { sy_ct: 8192, sy_ct_any: 4096, sy_ct_syn: 4096 } });
    configure();
    sync();
  });

  after(() => {
    dp?.close();
    teardownNamesSync(prefix);
  });

  it('an idle TCP connection survives 200,000 UDP flows through the same node', () => {
    const syn = parsePacket(run('sy_from_pod', tcp(CLIENT, '10.96.1.1', 40000, 80, TCP_FLAGS.SYN)).out);
    assert.equal(syn.dst, '10.244.1.50');
    run('sy_to_pod', tcp('10.244.1.50', CLIENT, 8080, 40000, TCP_FLAGS.SYN | TCP_FLAGS.ACK));
    run('sy_from_pod', tcp(CLIENT, '10.96.1.1', 40000, 80, TCP_FLAGS.ACK)); // the handshake completes: established
    for (let i = 0; i < 200_000; i++) {
      const sport = 1024 + (i % 60000);
      const src = `10.244.0.${20 + Math.floor(i / 60000)}`;
      run('sy_from_pod', buildPacket({ src, dst: '10.96.1.2', proto: 'udp', sport, dport: 53 }));
    }
    const udpEntries = dp.object.map('sy_ct_any', ctKey, ctValue).entries().length;
    assert.ok(udpEntries <= 4096, `the UDP table stays within its size (${udpEntries})`);
    const back = parsePacket(run('sy_to_pod', tcp('10.244.1.50', CLIENT, 8080, 40000, TCP_FLAGS.ACK)).out);
    assert.deepEqual([back.src, back.sport], ['10.96.1.1', 80], 'the answer is still translated back');
    const forward = ct({ saddr: CLIENT, daddr: '10.96.1.1', sport: 40000, dport: 80, proto: PROTO.TCP, family: 4 });
    assert.ok(forward && forward.flags & CT.ESTABLISHED, 'the forward entry lives, marked answered by the reply');
  });

  it('a 1M-source SYN flood churns the handshake table only: established flows keep working, a new connection completes', () => {
    tracker.upsertService(service({ name: 'flood', clusterIPs: ['10.96.1.9'], ports: [{ port: 80, targetPort: 8080 }] }));
    tracker.upsertSlice(slice({ name: 'flood-x', service: 'flood', ports: [{ port: 8080 }], endpoints: ['10.244.1.53', '10.244.1.54', '10.244.1.55'].map((ip) => ({ ip, node: 'n1' })) }));
    sync();
    const open = (sport: number): string => {
      const backend = parsePacket(run('sy_from_pod', tcp(CLIENT, '10.96.1.9', sport, 80, TCP_FLAGS.SYN)).out).dst;
      run('sy_to_pod', tcp(backend, CLIENT, 8080, sport, TCP_FLAGS.SYN | TCP_FLAGS.ACK));
      run('sy_from_pod', tcp(CLIENT, '10.96.1.9', sport, 80, TCP_FLAGS.ACK));
      return backend;
    };
    const established = Array.from({ length: 20 }, (_, i) => ({ sport: 45000 + i, backend: open(45000 + i) }));
    const frame = tcp('10.1.0.0', '10.96.1.9', 1024, 80, TCP_FLAGS.SYN);
    for (let i = 0; i < 1_000_000; i++) {
      // A distinct source per SYN, written into the frame in place (IPv4 source at 26; checksums do not matter here).
      frame.writeUInt32BE(0x0a000000 + (i % 0x00ffffff) + 1, 26);
      frame.writeUInt16BE(1024 + (i % 60000), 34);
      run('sy_from_pod', frame);
    }
    const synEntries = dp.object.map('sy_ct_syn', ctKey, ctValue).entries().length;
    assert.ok(synEntries <= 4096, `the handshake table stays within its size (${synEntries})`);
    for (const f of established) {
      const p = parsePacket(run('sy_from_pod', tcp(CLIENT, '10.96.1.9', f.sport, 80, TCP_FLAGS.ACK)).out);
      assert.equal(p.dst, f.backend, `flow ${f.sport} keeps its backend`);
      const back = parsePacket(run('sy_to_pod', tcp(f.backend, CLIENT, 8080, f.sport, TCP_FLAGS.ACK)).out);
      assert.deepEqual([back.src, back.sport], ['10.96.1.9', 80], `flow ${f.sport}'s answers are translated`);
    }
    const fresh = open(45100);
    assert.equal(dp.conntrackEntry({ saddr: CLIENT, daddr: '10.96.1.9', sport: 45100, dport: 80, proto: PROTO.TCP, family: 4 })?.table, 'sy_ct', 'a connection made after the flood is established');
    assert.equal(parsePacket(run('sy_from_pod', tcp(CLIENT, '10.96.1.9', 45100, 80, TCP_FLAGS.ACK)).out).dst, fresh);
  });

  it('a client RST closes both directions; so do FIN and FIN', () => {
    const reply = (sport: number): CtKey => ({ saddr: '10.244.1.50', daddr: CLIENT, sport: 8080, dport: sport, proto: PROTO.TCP, family: 4 });
    const fwd = (sport: number): CtKey => ({ saddr: CLIENT, daddr: '10.96.1.1', sport, dport: 80, proto: PROTO.TCP, family: 4 });
    run('sy_from_pod', tcp(CLIENT, '10.96.1.1', 40100, 80, TCP_FLAGS.SYN));
    run('sy_to_pod', tcp('10.244.1.50', CLIENT, 8080, 40100, TCP_FLAGS.SYN | TCP_FLAGS.ACK));
    run('sy_from_pod', tcp(CLIENT, '10.96.1.1', 40100, 80, TCP_FLAGS.RST));
    assert.ok(ct(fwd(40100))!.flags & CT.CLOSED, 'forward closed');
    assert.ok(ct(reply(40100))!.flags & CT.CLOSED, 'reply closed too');

    run('sy_from_pod', tcp(CLIENT, '10.96.1.1', 40101, 80, TCP_FLAGS.SYN));
    run('sy_to_pod', tcp('10.244.1.50', CLIENT, 8080, 40101, TCP_FLAGS.SYN | TCP_FLAGS.ACK));
    run('sy_from_pod', tcp(CLIENT, '10.96.1.1', 40101, 80, TCP_FLAGS.FIN | TCP_FLAGS.ACK));
    assert.ok(ct(reply(40101))!.flags & CT.CLOSING, 'one FIN: half closed, both entries know');
    assert.equal(ct(reply(40101))!.flags & CT.CLOSED, 0);
    run('sy_to_pod', tcp('10.244.1.50', CLIENT, 8080, 40101, TCP_FLAGS.FIN | TCP_FLAGS.ACK));
    assert.ok(ct(fwd(40101))!.flags & CT.CLOSED, 'both FINs: closed');
    assert.ok(ct(reply(40101))!.flags & CT.CLOSED);
  });

  it('garbage collection removes expired flows, both directions, and keeps live ones', async () => {
    for (let i = 0; i < 50; i++) run('sy_from_pod', buildPacket({ src: CLIENT, dst: '10.96.1.2', proto: 'udp', sport: 50000 + i, dport: 53 }));
    run('sy_from_pod', tcp(CLIENT, '10.96.1.1', 40200, 80, TCP_FLAGS.SYN));
    run('sy_to_pod', tcp('10.244.1.50', CLIENT, 8080, 40200, TCP_FLAGS.SYN | TCP_FLAGS.ACK));
    run('sy_from_pod', tcp(CLIENT, '10.96.1.1', 40200, 80, TCP_FLAGS.ACK)); // the handshake completes: established
    const count = (): number => dp.conntrackEntries();
    const before = count();
    // 5 minutes from now: UDP (30 s) and closed TCP (120 s) expired, established TCP (1 h) not.
    const r = await dp.gc(monotonicCoarseNs() + 300n * S);
    assert.ok(r.deleted >= 100, `deleted ${r.deleted}`);
    assert.equal(count(), before - r.deleted);
    assert.equal(dp.object.map('sy_ct_any', ctKey, ctValue).entries().length, 0, 'every UDP flow expired');
    assert.ok(ct({ saddr: CLIENT, daddr: '10.96.1.1', sport: 40200, dport: 80, proto: PROTO.TCP, family: 4 }), 'the established flow stays');
    assert.ok(ct({ saddr: '10.244.1.50', daddr: CLIENT, sport: 8080, dport: 40200, proto: PROTO.TCP, family: 4 }), 'both of its directions');
  });

  it('a quiet direction lives while its flow does: one-way UDP keeps its reply entry', async () => {
    const reply: CtKey = { saddr: '10.244.1.51', daddr: CLIENT, sport: 5353, dport: 51000, proto: PROTO.UDP, family: 4 };
    run('sy_from_pod', buildPacket({ src: CLIENT, dst: '10.96.1.2', proto: 'udp', sport: 51000, dport: 53 }));
    const cache = dp.object.map('sy_ct_any', ctKey, ctValue);
    const r = ct(reply)!;
    cache.set(reply, { ...r, lastSeen: r.lastSeen - 40n * S }); // the answers stopped 40 s ago; the client still sends
    const done = await dp.gc();
    assert.ok(done.refreshed >= 1);
    assert.ok(ct(reply)!.lastSeen >= r.lastSeen, 'refreshed from its partner');
  });

  it('SNAT: the client port is kept while free; when taken, another is claimed; none left is dropped and counted', () => {
    const first = parsePacket(run('sy_from_external', tcp(EXTERNAL, NODE, 42000, 30090, TCP_FLAGS.SYN)).out);
    assert.deepEqual([first.src, first.sport], [NODE, 42000]);
    // Another client with the same port towards the same backend: that reply tuple is taken.
    const second = parsePacket(run('sy_from_external', tcp('10.254.0.201', NODE, 42000, 30090, TCP_FLAGS.SYN)).out);
    assert.equal(second.src, NODE);
    assert.ok(second.sport >= 61000 && second.sport <= 65535, `port ${second.sport} from the range`);
    // A range of one port, already taken: the next flow finds none.
    configure({ min: second.sport, max: second.sport });
    const dropsBefore = dp.drops()['snat-exhausted'];
    assert.equal(run('sy_from_external', tcp('10.254.0.202', NODE, 42000, 30090, TCP_FLAGS.SYN)).retval, TC_ACT_SHOT);
    assert.equal(dp.drops()['snat-exhausted'], dropsBefore + 1n);
    // A closed flow's port stays taken for TIME_WAIT; an expired one's is taken over.
    run('sy_to_pod', tcp('10.244.1.52', NODE, 8080, second.sport, TCP_FLAGS.RST));
    assert.equal(run('sy_from_external', tcp('10.254.0.202', NODE, 42000, 30090, TCP_FLAGS.SYN)).retval, TC_ACT_SHOT, 'closed: still in TIME_WAIT');
    const held: CtKey = { saddr: '10.244.1.52', daddr: NODE, sport: 8080, dport: second.sport, proto: PROTO.TCP, family: 4 };
    const found = dp.conntrackEntry(held)!;
    dp.object.map(found.table, ctKey, ctValue).set(held, { ...found.value, lastSeen: monotonicCoarseNs() - 200n * S });
    const third = parsePacket(run('sy_from_external', tcp('10.254.0.202', NODE, 42000, 30090, TCP_FLAGS.SYN)).out);
    assert.deepEqual([third.src, third.sport], [NODE, second.sport], 'the expired flow\'s tuple is taken over');
    configure();
  });

  it('id reuse: a flow and an affinity client of service A never reach the pod that takes A\'s freed backend id in service B', () => {
    tracker.upsertService(service({ name: 'a', clusterIPs: ['10.96.2.1'], ports: [{ port: 53, protocol: 'UDP' }], affinity: 600 }));
    tracker.upsertSlice(slice({ name: 'a-x', service: 'a', ports: [{ port: 53, protocol: 'UDP' }], endpoints: [{ ip: '10.244.1.60', node: 'n1' }, { ip: '10.244.1.61', node: 'n1' }] }));
    tracker.upsertService(service({ ns: 'other', name: 'b', clusterIPs: ['10.96.2.2'], ports: [{ port: 53, protocol: 'UDP' }] }));
    tracker.upsertSlice(slice({ ns: 'other', name: 'b-x', service: 'b', ports: [{ port: 53, protocol: 'UDP' }], endpoints: [{ ip: '10.244.1.70', node: 'n1' }] }));
    sync();
    const backends = dp.object.map('sy_backends', u32, backend);
    const idOf = (ip: string): number => backends.entries().find(([, b]) => b.addr === ip && b.family !== 0)![0];
    // The flow (and with it the affinity client) lands on one of A's backends; that one leaves A.
    const chosen = parsePacket(run('sy_from_pod', buildPacket({ src: CLIENT, dst: '10.96.2.1', proto: 'udp', sport: 52000, dport: 53 })).out).dst;
    const survivor = chosen === '10.244.1.60' ? '10.244.1.61' : '10.244.1.60';
    const freedId = idOf(chosen);
    tracker.upsertSlice(slice({ name: 'a-x', service: 'a', ports: [{ port: 53, protocol: 'UDP' }], endpoints: [{ ip: survivor, node: 'n1' }] }));
    sync();
    tracker.upsertSlice(slice({ ns: 'other', name: 'b-x', service: 'b', ports: [{ port: 53, protocol: 'UDP' }], endpoints: [{ ip: '10.244.1.70', node: 'n1' }, { ip: '10.244.1.71', node: 'n1' }] }));
    sync();
    assert.equal(idOf('10.244.1.71'), freedId, 'B\'s new backend took A\'s freed id (the case this test is about)');
    for (let i = 0; i < 20; i++) {
      const again = parsePacket(run('sy_from_pod', buildPacket({ src: CLIENT, dst: '10.96.2.1', proto: 'udp', sport: 52000, dport: 53 })).out).dst;
      assert.equal(again, survivor, 'the flow moves to A\'s live backend, never to B\'s pod');
      const fresh = parsePacket(run('sy_from_pod', buildPacket({ src: CLIENT, dst: '10.96.2.1', proto: 'udp', sport: 52100 + i, dport: 53 })).out).dst;
      assert.equal(fresh, survivor, 'the affinity client too');
    }
    const aff = dp.object.map('sy_affinity', affinityKey, affinityValue);
    assert.ok(aff.entries().every(([, v]) => v.backendId !== freedId), 'no affinity entry names the reused id');
  });

  it('a deleted service\'s open connection keeps its answers translated; its rev-NAT id is held until no flow names it', async () => {
    tracker.upsertService(service({ name: 'gone', clusterIPs: ['10.96.3.1'], ports: [{ port: 80, targetPort: 8080 }] }));
    tracker.upsertSlice(slice({ name: 'gone-x', service: 'gone', ports: [{ port: 8080 }], endpoints: [{ ip: '10.244.1.80', node: 'n1' }] }));
    sync();
    run('sy_from_pod', tcp(CLIENT, '10.96.3.1', 43000, 80, TCP_FLAGS.SYN));
    run('sy_to_pod', tcp('10.244.1.80', CLIENT, 8080, 43000, TCP_FLAGS.SYN | TCP_FLAGS.ACK));
    run('sy_from_pod', tcp(CLIENT, '10.96.3.1', 43000, 80, TCP_FLAGS.ACK)); // the handshake completes: established
    const revNatId = ct({ saddr: '10.244.1.80', daddr: CLIENT, sport: 8080, dport: 43000, proto: PROTO.TCP, family: 4 })!.revNatId;
    tracker.deleteService('demo/gone');
    tracker.deleteSlice('demo/gone-x');
    sync();
    const back = parsePacket(run('sy_to_pod', tcp('10.244.1.80', CLIENT, 8080, 43000, TCP_FLAGS.ACK)).out);
    assert.deepEqual([back.src, back.sport], ['10.96.3.1', 80], 'answers still come from the service address');
    const rn = dp.object.map('sy_revnat', u32, revNat);
    await dp.gc();
    assert.equal(rn.get(revNatId)!.family, 4, 'held while the flow lives');
    await dp.gc(monotonicCoarseNs() + 7_200n * S); // past the established timeout (1 h)
    assert.equal(rn.get(revNatId)!.family, 0, 'freed once no flow names it');
    // New connections to the address get kube-proxy's answer for an unknown address: none (untouched).
    const syn = tcp(CLIENT, '10.96.3.1', 43001, 80, TCP_FLAGS.SYN);
    const r = run('sy_from_pod', syn);
    assert.equal(parsePacket(r.out).dst, '10.96.3.1', 'passed on untranslated');
  });

  it('drops are counted by reason, in switchyard_datapath_drops_total and `switchyard drops`', async () => {
    tracker.upsertService(service({ name: 'local', type: 'NodePort', clusterIPs: ['10.96.4.1'], eTP: 'Local', ports: [{ port: 80, nodePort: 30091 }] }));
    tracker.upsertSlice(slice({ name: 'local-x', service: 'local', ports: [{ port: 80 }], endpoints: [{ ip: '10.244.1.90', node: 'n1' }] }));
    tracker.upsertService(service({ name: 'lb', type: 'LoadBalancer', clusterIPs: ['10.96.4.2'], lbIPs: ['10.254.0.60'], sourceRanges: ['192.0.2.0/24'], ports: [{ port: 80, nodePort: 30092 }] }));
    tracker.upsertSlice(slice({ name: 'lb-x', service: 'lb', ports: [{ port: 80 }], endpoints: [{ ip: '10.244.1.91', node: 'n1' }] }));
    sync();
    const before = dp.drops();
    assert.equal(run('sy_from_external', tcp(EXTERNAL, NODE, 44000, 30091, TCP_FLAGS.SYN)).retval, TC_ACT_SHOT);
    assert.equal(run('sy_from_external', tcp(EXTERNAL, '10.254.0.60', 44001, 80, TCP_FLAGS.SYN)).retval, TC_ACT_SHOT);
    const after = dp.drops();
    assert.equal(after['local-no-endpoint'], before['local-no-endpoint'] + 1n);
    assert.equal(after['source-range'], before['source-range'] + 1n);
    // The metric and `switchyard drops` read the same counters (snat-exhausted came from the SNAT test above).
    const metrics = new ProxyMetrics(() => new Map(), () => ({ services: () => [], maps: () => [], conntrackEntries: () => 0, drops: () => dp.drops() }));
    const text = await metrics.registry.metrics();
    for (const reason of ['local-no-endpoint', 'source-range', 'snat-exhausted'] as const) {
      assert.match(text, new RegExp(`^switchyard_datapath_drops_total\\{reason="${reason}"\\} ${after[reason]}$`, 'm'));
      assert.ok(after[reason] > 0n, reason);
    }
    let out = '';
    assert.equal(await inspectCommand('drops', ['--bpffs-dir', `/sys/fs/bpf/${prefix}`, '-o', 'json'], { stdout: (x: string) => (out += x), stderr: () => undefined }), 0);
    const rows = JSON.parse(out) as Array<{ reason: string; packets: string }>;
    assert.equal(rows.find((r) => r.reason === 'source-range')?.packets, String(after['source-range']));
  });
});
