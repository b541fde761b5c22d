// BPF_PROG_TEST_RUN: packet in, verdict and packet out, for each branch of the datapath.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { progTestRun } from '../../control/bpf/attach.ts';
import { u32 } from '../../control/bpf/codec.ts';
import { affinityKey, affinityValue, backend, clock, CT, type CtKey } from '../../control/bpf/layout.ts';
import { compileDatapath } from '../../control/backends/ebpf/compile.ts';
import { EbpfDatapath } from '../../control/backends/ebpf/datapath.ts';
import { nodeFacts } from '../../control/model/node.ts';
import { ChangeTracker } from '../../control/model/tracker.ts';
import { config, node, podOf, services, slices } from '../cases/semantics.ts';
import { runPrefix } from '../lab/names.ts';
import { teardownNamesSync } from '../lab/sweep.ts';
import { buildPacket, csumAdd, csumFinish, parsePacket, PROTO, TCP_FLAGS } from '../packet.ts';
import { service, slice } from '../cases/objects.ts';
import { flowHash } from '../../control/backends/ebpf/flow-hash.ts';
import { MAGLEV_M, maglevTable } from '../../control/backends/ebpf/maglev.ts';
import { datapathObjectPath, loadableBuilds } from '../../control/backends/ebpf/object-path.ts';

const TC_ACT_OK = 0;
const TC_ACT_UNSPEC = 0xffffffff; // -1, as BPF_PROG_TEST_RUN's u32 retval carries it
const TC_ACT_SHOT = 2;
const TC_ACT_REDIRECT = 7;
const prefix = `${runPrefix()}-dp`;
// Both builds where the kernel loads both: they differ in how L4 checksums are updated.
const BUILDS = loadableBuilds();
const CLIENT = '10.244.0.10';
const CLIENT_MAC = '02:00:00:00:00:01';
const NODE_MAC = '02:00:00:00:00:02';

for (const build of BUILDS) describe(`datapath programs, ${build} build (BPF_PROG_TEST_RUN)`, () => {
  let dp: EbpfDatapath;
  let tracker: ChangeTracker;
  const run = (prog: string, packet: Buffer): { retval: number; out: Buffer } => {
    const r = progTestRun(dp.programFd(prog), packet);
    return { retval: r.retval, out: r.data };
  };

  before(() => {
    tracker = new ChangeTracker(config, nodeFacts('n0', node, ['10.244.0.1']));
    for (const s of services) tracker.upsertService(s);
    for (const s of slices) tracker.upsertSlice(s);
    tracker.upsertService(service({ name: 'mag', clusterIPs: ['10.96.0.70'], ports: [{ port: 80 }], annotations: { 'switchyard.io/lb-algorithm': 'maglev' } }));
    tracker.upsertSlice(slice({ name: 'mag-x', service: 'mag', ports: [{ port: 8080 }], endpoints: ['10.244.0.11', '10.244.0.12', '10.244.1.10', '10.244.1.11'].map((ip) => ({ ip, node: 'n1' })) }));
    // Two frontends with one backend: a client port reaching it through both clashes.
    for (const [name, ip] of [['clash-a', '10.96.0.80'], ['clash-b', '10.96.0.81']] as const) {
      tracker.upsertService(service({ name, clusterIPs: [ip], ports: [{ port: 80 }] }));
      tracker.upsertSlice(slice({ name: `${name}-x`, service: name, ports: [{ port: 8080 }], endpoints: [{ ip: '10.244.1.20', node: 'n1' }] }));
    }
    // SCTP: a ClusterIP whose port is its target port (served), one whose target port differs (left
    // to the rule modes), and a NodePort equal to its target port (served, SNAT keeping the port).
    tracker.upsertService(service({ name: 'sctp', clusterIPs: ['10.96.0.90', 'fd00:96::90'], ports: [{ name: 'same', port: 7000, protocol: 'SCTP' }, { name: 'other', port: 7001, targetPort: 7002, protocol: 'SCTP' }] }));
    tracker.upsertSlice(slice({ name: 'sctp-x', service: 'sctp', ports: [{ name: 'same', port: 7000, protocol: 'SCTP' }, { name: 'other', port: 7002, protocol: 'SCTP' }], endpoints: [{ ip: '10.244.1.40', node: 'n1' }] }));
    tracker.upsertSlice(slice({ name: 'sctp-y', service: 'sctp', family: 6, ports: [{ name: 'same', port: 7000, protocol: 'SCTP' }], endpoints: [{ ip: 'fd00:10:244:1::40', node: 'n1' }] }));
    tracker.upsertService(service({ name: 'sctp-np', type: 'NodePort', clusterIPs: ['10.96.0.91'], ports: [{ port: 30950, nodePort: 30950, protocol: 'SCTP' }] }));
    tracker.upsertSlice(slice({ name: 'sctp-np-x', service: 'sctp-np', ports: [{ port: 30950, protocol: 'SCTP' }], endpoints: [{ ip: '10.244.1.41', node: 'n1' }] }));
    tracker.flush();
    dp = EbpfDatapath.open({ object: datapathObjectPath(build), pinDir: `/sys/fs/bpf/${prefix}-${build}` });
    dp.configure({ nodeIp4: '10.254.0.11', nodeIp6: 'fd00:254::b', snatPortMin: 61000, snatPortMax: 65535, flags: 0, ctTimeoutTcpNs: 3_600_000_000_000n, ctTimeoutUdpNs: 60_000_000_000n, hostNetnsCookie: 0n });
    assert.deepEqual(dp.sync(compileDatapath(tracker.state())).failed, []);
  });

  after(() => {
    dp?.close();
    teardownNamesSync(`${prefix}-${build}`);
  });

  it('new flow: DNAT to a backend with valid checksums, tracked both ways', () => {
    const { retval, out } = run('sy_from_pod', buildPacket({ src: CLIENT, dst: '10.96.0.10', proto: 'tcp', sport: 40000, dport: 80 }));
    assert.equal(retval, TC_ACT_OK);
    const p = parsePacket(out);
    assert.ok(['n0p1', 'n1p1'].includes(podOf(p.dst)), p.dst);
    assert.deepEqual([p.dport, p.src, p.sport, p.ipChecksumOk, p.l4ChecksumOk], [8080, CLIENT, 40000, true, true]);
    // One entry per direction, keyed by the tuple as it arrives; the reply entry says so.
    const ct = { get: (k: CtKey) => dp.conntrackEntry(k)?.value };
    const forward = ct.get({ saddr: CLIENT, daddr: '10.96.0.10', sport: 40000, dport: 80, proto: PROTO.TCP, family: 4 });
    const reply = ct.get({ saddr: p.dst, daddr: CLIENT, sport: 8080, dport: 40000, proto: PROTO.TCP, family: 4 });
    assert.ok(forward && reply);
    assert.equal(forward.flags & CT.REPLY, 0);
    assert.equal(reply.flags & CT.REPLY, CT.REPLY);
  });

  it('not ours: passed on untouched to the next filter of the chain (TC_ACT_UNSPEC), not ended with TC_ACT_OK', () => {
    const arp = Buffer.concat([buildPacket({ src: CLIENT, dst: '10.244.1.10', proto: 'udp', sport: 1, dport: 2 }).subarray(0, 14), Buffer.alloc(28)]);
    arp.writeUInt16BE(0x0806, 12);
    const notOurs: Array<[string, Buffer]> = [
      ['sy_from_pod', buildPacket({ src: CLIENT, dst: '10.244.1.10', proto: 'tcp', sport: 40100, dport: 8080 })], // pod -> pod
      ['sy_from_pod', arp],
      ['sy_from_external', buildPacket({ src: '10.254.0.200', dst: '10.254.0.11', proto: 'tcp', sport: 40101, dport: 22 })], // to the node itself
      ['sy_to_pod', buildPacket({ src: '10.244.1.10', dst: CLIENT, proto: 'udp', sport: 8080, dport: 40102 })], // no tracked flow's answer
    ];
    for (const [prog, packet] of notOurs) {
      const { retval, out } = run(prog, packet);
      assert.equal(retval, TC_ACT_UNSPEC, prog);
      assert.deepEqual(out, packet, `${prog} left the packet as it was`);
    }
  });

  it('established flow: every packet goes to the same backend', () => {
    const first = parsePacket(run('sy_from_pod', buildPacket({ src: CLIENT, dst: '10.96.0.10', proto: 'tcp', sport: 40001, dport: 80 })).out).dst;
    for (let i = 0; i < 30; i++) {
      const p = parsePacket(run('sy_from_pod', buildPacket({ src: CLIENT, dst: '10.96.0.10', proto: 'tcp', sport: 40001, dport: 80, tcpFlags: TCP_FLAGS.ACK })).out);
      assert.deepEqual([p.dst, p.ipChecksumOk, p.l4ChecksumOk], [first, true, true]);
    }
  });

  it('reply: reverse NAT restores the frontend as the source', () => {
    const backend = parsePacket(run('sy_from_pod', buildPacket({ src: CLIENT, dst: '10.96.0.10', proto: 'udp', sport: 40002, dport: 53 })).out).dst;
    const { retval, out } = run('sy_to_pod', buildPacket({ src: backend, dst: CLIENT, proto: 'udp', sport: 8080, dport: 40002 }));
    const p = parsePacket(out);
    assert.equal(retval, TC_ACT_OK);
    assert.deepEqual([p.src, p.sport, p.dst, p.dport, p.ipChecksumOk, p.l4ChecksumOk], ['10.96.0.10', 53, CLIENT, 40002, true, true]);
  });

  it('a clash (one client port to one backend through two frontends): the second flow gets a port of its own', () => {
    const sport = 40200;
    const a = run('sy_from_pod', buildPacket({ src: CLIENT, dst: '10.96.0.80', proto: 'tcp', sport, dport: 80, tcpFlags: TCP_FLAGS.SYN }));
    const b = run('sy_from_pod', buildPacket({ src: CLIENT, dst: '10.96.0.81', proto: 'tcp', sport, dport: 80, tcpFlags: TCP_FLAGS.SYN }));
    const pa = parsePacket(a.out);
    const pb = parsePacket(b.out);
    assert.deepEqual([a.retval, pa.src, pa.sport, pa.dst, pa.dport], [TC_ACT_OK, CLIENT, sport, '10.244.1.20', 8080]);
    assert.deepEqual([b.retval, pb.src, pb.dst, pb.dport, pb.l4ChecksumOk], [TC_ACT_OK, CLIENT, '10.244.1.20', 8080, true], 'the client address is kept, no redirect');
    assert.ok(pb.sport >= 61000 && pb.sport <= 65535, `port ${pb.sport}`);
    const again = parsePacket(run('sy_from_pod', buildPacket({ src: CLIENT, dst: '10.96.0.81', proto: 'tcp', sport, dport: 80, tcpFlags: TCP_FLAGS.ACK })).out);
    assert.equal(again.sport, pb.sport, 'the flow keeps its port');
    // Each flow's answers go back to its own frontend and the client's own port.
    const backA = parsePacket(run('sy_to_pod', buildPacket({ src: '10.244.1.20', dst: CLIENT, proto: 'tcp', sport: 8080, dport: sport, tcpFlags: TCP_FLAGS.SYN | TCP_FLAGS.ACK })).out);
    const backB = parsePacket(run('sy_to_pod', buildPacket({ src: '10.244.1.20', dst: CLIENT, proto: 'tcp', sport: 8080, dport: pb.sport, tcpFlags: TCP_FLAGS.SYN | TCP_FLAGS.ACK })).out);
    assert.deepEqual([backA.src, backA.sport, backA.dport, backA.l4ChecksumOk], ['10.96.0.80', 80, sport, true]);
    assert.deepEqual([backB.src, backB.sport, backB.dport, backB.l4ChecksumOk], ['10.96.0.81', 80, sport, true]);
  });

  it('UDP over IPv4 without a checksum keeps none, both ways', () => {
    const noChecksum = (frame: Buffer): Buffer => {
      frame.writeUInt16BE(0, 14 + 20 + 6);
      return frame;
    };
    const out = run('sy_from_pod', noChecksum(buildPacket({ src: CLIENT, dst: '10.96.0.10', proto: 'udp', sport: 40003, dport: 53 }))).out;
    const p = parsePacket(out);
    assert.deepEqual([p.dport, p.ipChecksumOk, out.readUInt16BE(14 + 20 + 6)], [8080, true, 0]);
    const back = run('sy_to_pod', noChecksum(buildPacket({ src: p.dst, dst: CLIENT, proto: 'udp', sport: 8080, dport: 40003 }))).out;
    assert.deepEqual([parsePacket(back).src, back.readUInt16BE(14 + 20 + 6)], ['10.96.0.10', 0]);
  });

  it('SCTP INIT to a ClusterIP whose port is its target port: addresses translated, checksum bytes untouched; its answer translated back', () => {
    const sctpSum = (frame: Buffer): string => frame.subarray(14 + 20 + 8, 14 + 20 + 12).toString('hex');
    const init = buildPacket({ src: CLIENT, dst: '10.96.0.90', proto: 'sctp', sport: 40300, dport: 7000 });
    const { retval, out } = run('sy_from_pod', init);
    const p = parsePacket(out);
    assert.equal(retval, TC_ACT_OK);
    assert.deepEqual([p.proto, p.src, p.sport, p.dst, p.dport, p.ipChecksumOk, p.l4ChecksumOk], [PROTO.SCTP, CLIENT, 40300, '10.244.1.40', 7000, true, true]);
    assert.equal(sctpSum(out), sctpSum(init), 'the CRC32c is never rewritten');
    assert.deepEqual(out.subarray(14 + 20), init.subarray(14 + 20), 'nothing past the IP header changes');
    const ct = { get: (k: CtKey) => dp.conntrackEntry(k)?.value };
    assert.ok(ct.get({ saddr: CLIENT, daddr: '10.96.0.90', sport: 40300, dport: 7000, proto: PROTO.SCTP, family: 4 }), 'forward entry');
    assert.ok(ct.get({ saddr: '10.244.1.40', daddr: CLIENT, sport: 7000, dport: 40300, proto: PROTO.SCTP, family: 4 }), 'reply entry');
    const answer = buildPacket({ src: '10.244.1.40', dst: CLIENT, proto: 'sctp', sport: 7000, dport: 40300 });
    const back = run('sy_to_pod', answer);
    const b = parsePacket(back.out);
    assert.equal(back.retval, TC_ACT_OK);
    assert.deepEqual([b.src, b.sport, b.dst, b.dport, b.ipChecksumOk, b.l4ChecksumOk], ['10.96.0.90', 7000, CLIENT, 40300, true, true]);
    assert.equal(sctpSum(back.out), sctpSum(answer));
    // The flow's next packets keep their backend.
    assert.equal(parsePacket(run('sy_from_pod', init).out).dst, '10.244.1.40');
  });

  it('SCTP over IPv6: addresses translated both ways, the CRC32c untouched and still valid', () => {
    const client6 = 'fd00:10:244::a';
    const init = buildPacket({ src: client6, dst: 'fd00:96::90', proto: 'sctp', sport: 43300, dport: 7000 });
    const { retval, out } = run('sy_from_pod', init);
    const p = parsePacket(out);
    assert.deepEqual([retval, p.src, p.sport, p.dst, p.dport, p.l4ChecksumOk], [TC_ACT_OK, client6, 43300, 'fd00:10:244:1::40', 7000, true]);
    assert.deepEqual(out.subarray(14 + 40), init.subarray(14 + 40), 'nothing past the IPv6 header changes');
    const r = parsePacket(run('sy_to_pod', buildPacket({ src: 'fd00:10:244:1::40', dst: client6, proto: 'sctp', sport: 7000, dport: 43300 })).out);
    assert.deepEqual([r.src, r.sport, r.dst, r.dport, r.l4ChecksumOk], ['fd00:96::90', 7000, client6, 43300, true]);
  });

  it('SCTP to a port whose target port differs: not ours, passed on untouched', () => {
    const packet = buildPacket({ src: CLIENT, dst: '10.96.0.90', proto: 'sctp', sport: 40301, dport: 7001 });
    const { retval, out } = run('sy_from_pod', packet);
    assert.equal(retval, TC_ACT_UNSPEC);
    assert.deepEqual(out, packet);
  });

  it('SCTP NodePort equal to its target port: SNAT of the address alone, the client\'s port kept; no other port is ever taken', () => {
    const inbound = buildPacket({ src: '10.254.0.200', dst: '10.254.0.11', proto: 'sctp', sport: 42100, dport: 30950 });
    const p = parsePacket(run('sy_from_external', inbound).out);
    assert.deepEqual([p.src, p.sport, p.dst, p.dport, p.ipChecksumOk, p.l4ChecksumOk], ['10.254.0.11', 42100, '10.244.1.41', 30950, true, true]);
    const reply = parsePacket(run('sy_from_external', buildPacket({ src: '10.244.1.41', dst: '10.254.0.11', proto: 'sctp', sport: 30950, dport: 42100 })).out);
    assert.deepEqual([reply.src, reply.sport, reply.dst, reply.dport, reply.ipChecksumOk, reply.l4ChecksumOk], ['10.254.0.11', 30950, '10.254.0.200', 42100, true, true]);
    // Another client with the same port: its reply tuple is taken, and SCTP cannot move to another port.
    const clash = run('sy_from_external', buildPacket({ src: '10.254.0.201', dst: '10.254.0.11', proto: 'sctp', sport: 42100, dport: 30950 }));
    assert.equal(clash.retval, TC_ACT_SHOT);
  });

  it('the clock: read once per jiffy into sy_clock; CT timestamps are CLOCK_MONOTONIC to a tick', () => {
    const cache = dp.object.map('sy_clock', u32, clock);
    cache.set(0, { jiffies: 1n, ns: 5n }); // a jiffy long past: the next packet must read the clock
    const before = process.hrtime.bigint();
    const out = parsePacket(run('sy_from_pod', buildPacket({ src: CLIENT, dst: '10.96.0.10', proto: 'tcp', sport: 40004, dport: 80 })).out);
    const after = process.hrtime.bigint();
    const c = cache.get(0)!;
    assert.ok(c.jiffies > 1n);
    const entry = dp.conntrackEntry({ saddr: out.dst, daddr: CLIENT, sport: 8080, dport: 40004, proto: PROTO.TCP, family: 4 })!.value;
    assert.equal(entry.created, c.ns);
    // The coarse clock lags the fine one by up to a tick (10 ms at HZ=100).
    assert.ok(entry.created >= before - 10_000_000n && entry.created <= after, `${entry.created} not in [${before}, ${after}]`);
  });

  it('ClientIP affinity: a live entry decides; an expired one does not', () => {
    const serviceId = dp.serviceIdOf('demo/sticky/TCP/v4')!;
    const aff = dp.object.map('sy_affinity', affinityKey, affinityValue);
    const now = process.hrtime.bigint(); // CLOCK_MONOTONIC, the clock of bpf_ktime_get_ns
    const backendIdOf = (ip: string): number => dp.object.map('sy_backends', u32, backend).entries().find(([, b]) => b.addr === ip)![0];
    const target = '10.244.1.12';
    aff.set({ serviceId, client: CLIENT }, { backendId: backendIdOf(target), lastSeen: now });
    for (let port = 41000; port < 41010; port++) {
      assert.equal(parsePacket(run('sy_from_pod', buildPacket({ src: CLIENT, dst: '10.96.0.12', proto: 'tcp', sport: port, dport: 80 })).out).dst, target);
    }
    aff.set({ serviceId, client: CLIENT }, { backendId: backendIdOf(target), lastSeen: now - 61n * 1_000_000_000n });
    run('sy_from_pod', buildPacket({ src: CLIENT, dst: '10.96.0.12', proto: 'tcp', sport: 41010, dport: 80 }));
    assert.ok(aff.get({ serviceId, client: CLIENT })!.lastSeen >= now - 1_000_000_000n, 'the expired entry was replaced by a new choice (the datapath\'s clock is the coarse one)');
  });

  it('source ranges: outside is dropped, inside is served', () => {
    assert.equal(run('sy_from_pod', buildPacket({ src: '10.244.0.12', dst: '10.254.0.50', proto: 'tcp', sport: 42000, dport: 80 })).retval, TC_ACT_SHOT);
    const { retval, out } = run('sy_from_external', buildPacket({ src: '10.254.0.200', dst: '10.254.0.50', proto: 'tcp', sport: 42000, dport: 80 }));
    assert.equal(retval, TC_ACT_OK);
    assert.equal(podOf(parsePacket(out).dst), 'n0p0');
  });

  it('local-only scope without a local endpoint: dropped', () => {
    assert.equal(run('sy_from_external', buildPacket({ src: '10.254.0.200', dst: '10.254.0.11', proto: 'tcp', sport: 42001, dport: 30081 })).retval, TC_ACT_SHOT);
  });

  it('SNAT for eTP Cluster NodePort, and its reverse; the client\'s port is kept while its tuple is free', () => {
    const inbound = buildPacket({ src: '10.254.0.200', dst: '10.254.0.11', proto: 'tcp', sport: 42002, dport: 30080 });
    const p = parsePacket(run('sy_from_external', inbound).out);
    assert.equal(p.src, '10.254.0.11');
    assert.equal(p.sport, 42002, 'the client port, as netfilter NAT keeps it');
    assert.ok(['n0p2', 'n1p0'].includes(podOf(p.dst)));
    assert.ok(p.ipChecksumOk && p.l4ChecksumOk);
    const reply = parsePacket(run('sy_from_external', buildPacket({ src: p.dst, dst: '10.254.0.11', proto: 'tcp', sport: 8080, dport: p.sport, tcpFlags: TCP_FLAGS.SYN | TCP_FLAGS.ACK })).out);
    assert.deepEqual([reply.src, reply.sport, reply.dst, reply.dport, reply.ipChecksumOk, reply.l4ChecksumOk], ['10.254.0.11', 30080, '10.254.0.200', 42002, true, true]);
  });

  it('IPv6: DNAT and reverse NAT', () => {
    const client6 = 'fd00:10:244::a';
    const p = parsePacket(run('sy_from_pod', buildPacket({ src: client6, dst: 'fd00:96::10', proto: 'tcp', sport: 43000, dport: 80 })).out);
    assert.ok(['n0p1', 'n1p1'].includes(podOf(p.dst)));
    assert.ok(p.l4ChecksumOk);
    const r = parsePacket(run('sy_to_pod', buildPacket({ src: p.dst, dst: client6, proto: 'tcp', sport: 8080, dport: 43000, tcpFlags: TCP_FLAGS.SYN | TCP_FLAGS.ACK })).out);
    assert.deepEqual([r.src, r.sport, r.l4ChecksumOk], ['fd00:96::10', 80, true]);
  });

  it('Maglev: the backend of every new flow is the one the table and flow hash predict', () => {
    const sp = tracker.state().families.get(4)!.servicePorts.get('demo/mag/TCP/v4')!;
    assert.equal(sp.algorithm, 'maglev');
    const names = sp.clusterEndpoints.map((e) => `${e.ip}|${e.port}`);
    const table = maglevTable(names);
    const seen = new Set<string>();
    for (let sport = 46000; sport < 46060; sport++) {
      const predicted = names[table[flowHash({ saddr: CLIENT, daddr: '10.96.0.70', sport, dport: 80, proto: PROTO.TCP }) % MAGLEV_M]!]!.split('|')[0]!;
      const got = parsePacket(run('sy_from_pod', buildPacket({ src: CLIENT, dst: '10.96.0.70', proto: 'tcp', sport, dport: 80 })).out).dst;
      assert.equal(got, predicted, `flow from port ${sport}`);
      seen.add(got);
    }
    assert.equal(seen.size, 4, 'flows spread over all four backends');
  });

  it('XDP: eTP Local traffic is translated in place; denied sources and empty local sets are dropped; the rest passes untouched', () => {
    const XDP_DROP = 1;
    const XDP_PASS = 2;
    const xdp = (packet: Buffer): { retval: number; out: Buffer } => {
      const r = progTestRun(dp.programFd('sy_xdp_external'), packet);
      return { retval: r.retval, out: r.data };
    };
    const lb = xdp(buildPacket({ src: '10.254.0.200', dst: '10.254.0.50', proto: 'tcp', sport: 47000, dport: 80 }));
    assert.equal(lb.retval, XDP_PASS);
    const p = parsePacket(lb.out);
    assert.deepEqual([podOf(p.dst), p.dport, p.src, p.ipChecksumOk, p.l4ChecksumOk], ['n0p0', 8080, '10.254.0.200', true, true]);
    const again = parsePacket(xdp(buildPacket({ src: '10.254.0.200', dst: '10.254.0.50', proto: 'tcp', sport: 47000, dport: 80, tcpFlags: TCP_FLAGS.ACK })).out);
    assert.equal(again.dst, p.dst, 'the established flow keeps its backend');
    const udp = parsePacket(xdp(buildPacket({ src: '10.254.0.200', dst: '10.254.0.11', proto: 'udp', sport: 47001, dport: 30084 })).out);
    assert.ok(udp.l4ChecksumOk, 'UDP checksum updated');
    assert.equal(xdp(buildPacket({ src: '10.254.0.200', dst: '10.254.0.51', proto: 'tcp', sport: 47002, dport: 80 })).retval, XDP_DROP, 'outside the source ranges');
    assert.equal(xdp(buildPacket({ src: '10.254.0.200', dst: '10.254.0.11', proto: 'tcp', sport: 47003, dport: 30081 })).retval, XDP_DROP, 'Local policy, no local endpoint');
    for (const [dst, dport] of [['10.254.0.11', 30080], ['10.96.0.10', 80], ['10.96.0.40', 80]] as const) {
      const packet = buildPacket({ src: '10.254.0.200', dst, proto: 'tcp', sport: 47004, dport });
      const r = xdp(packet);
      assert.equal(r.retval, XDP_PASS, `${dst}:${dport}`);
      assert.equal(r.out.toString('hex'), packet.toString('hex'), `${dst}:${dport} is left to tc`);
    }
  });

  it('no endpoints, TCP: a RST|ACK back to the client, byte by byte', () => {
    const syn = buildPacket({ src: CLIENT, dst: '10.96.0.40', proto: 'tcp', sport: 44000, dport: 80, srcMac: CLIENT_MAC, dstMac: NODE_MAC });
    const { retval, out } = run('sy_from_pod', syn);
    assert.equal(retval, TC_ACT_REDIRECT);
    const expected = Buffer.alloc(54);
    Buffer.from(CLIENT_MAC.split(':').map((h) => parseInt(h, 16))).copy(expected, 0);
    Buffer.from(NODE_MAC.split(':').map((h) => parseInt(h, 16))).copy(expected, 6);
    expected.writeUInt16BE(0x0800, 12);
    const ip = expected.subarray(14, 34);
    ip[0] = 0x45;
    ip.writeUInt16BE(40, 2);
    ip[8] = 64;
    ip[9] = PROTO.TCP;
    Buffer.from([10, 96, 0, 40]).copy(ip, 12);
    Buffer.from([10, 244, 0, 10]).copy(ip, 16);
    ip.writeUInt16BE(csumFinish(csumAdd(ip)), 10);
    const tcp = expected.subarray(34, 54);
    tcp.writeUInt16BE(80, 0);
    tcp.writeUInt16BE(44000, 2);
    tcp.writeUInt32BE(0, 4);
    tcp.writeUInt32BE(1001, 8); // the SYN's seq (1000) + 1
    tcp[12] = 5 << 4;
    tcp[13] = TCP_FLAGS.RST | TCP_FLAGS.ACK;
    const pseudo = Buffer.concat([ip.subarray(12, 20), Buffer.from([0, PROTO.TCP, 0, 20])]);
    tcp.writeUInt16BE(csumFinish(csumAdd(tcp, csumAdd(pseudo))), 16);
    assert.deepEqual(out.toString('hex'), expected.toString('hex'));
  });

  it('no endpoints, UDP: ICMP port unreachable quoting the datagram, byte by byte', () => {
    const dgram = buildPacket({ src: CLIENT, dst: '10.96.0.40', proto: 'udp', sport: 44001, dport: 53, payload: Buffer.from('query-bytes-beyond-the-quote'), srcMac: CLIENT_MAC, dstMac: NODE_MAC });
    const { retval, out } = run('sy_from_pod', dgram);
    assert.equal(retval, TC_ACT_REDIRECT);
    assert.equal(out.length, 14 + 20 + 8 + 28);
    assert.equal(out.subarray(0, 12).toString('hex'), Buffer.concat([dgram.subarray(6, 12), dgram.subarray(0, 6)]).toString('hex'), 'MACs swapped');
    const ip = out.subarray(14, 34);
    assert.deepEqual([ip[0], ip.readUInt16BE(2), ip[8], ip[9]], [0x45, 56, 64, PROTO.ICMP]);
    assert.deepEqual([...ip.subarray(12, 16)], [10, 96, 0, 40]);
    assert.deepEqual([...ip.subarray(16, 20)], [10, 244, 0, 10]);
    assert.equal(csumFinish(csumAdd(ip)), 0, 'IP checksum');
    const icmp = out.subarray(34);
    assert.deepEqual([icmp[0], icmp[1]], [3, 3], 'destination unreachable / port unreachable');
    assert.equal(csumFinish(csumAdd(icmp)), 0, 'ICMP checksum');
    assert.equal(icmp.subarray(8).toString('hex'), dgram.subarray(14, 14 + 28).toString('hex'), 'quotes the IP header and 8 bytes');
  });

  it('no endpoints over IPv6: RST and ICMPv6 port unreachable with valid checksums', () => {
    tracker.upsertService({ ...services.find((s) => s.metadata?.name === 'empty')!, spec: { ...services.find((s) => s.metadata?.name === 'empty')!.spec, clusterIPs: ['10.96.0.40', 'fd00:96::40'], ipFamilies: ['IPv4', 'IPv6'] } });
    tracker.flush();
    dp.sync(compileDatapath(tracker.state()));
    const c6 = 'fd00:10:244::a';
    const rst = run('sy_from_pod', buildPacket({ src: c6, dst: 'fd00:96::40', proto: 'tcp', sport: 45000, dport: 80 }));
    assert.equal(rst.retval, TC_ACT_REDIRECT);
    const p = parsePacket(rst.out);
    assert.deepEqual([p.src, p.dst, p.sport, p.dport, p.tcpFlags, p.l4ChecksumOk], ['fd00:96::40', c6, 80, 45000, TCP_FLAGS.RST | TCP_FLAGS.ACK, true]);
    const icmp = run('sy_from_pod', buildPacket({ src: c6, dst: 'fd00:96::40', proto: 'udp', sport: 45001, dport: 53 }));
    assert.equal(icmp.retval, TC_ACT_REDIRECT);
    const out = icmp.out;
    assert.equal(out.readUInt16BE(12), 0x86dd);
    assert.equal(out[14 + 6], PROTO.ICMPV6);
    const body = out.subarray(54);
    assert.deepEqual([body[0], body[1]], [1, 4], 'ICMPv6 destination unreachable / port unreachable');
    const pseudo = Buffer.concat([out.subarray(22, 54), Buffer.from([0, 0, 0, body.length, 0, 0, 0, PROTO.ICMPV6])]);
    assert.equal(csumFinish(csumAdd(body, csumAdd(pseudo))), 0, 'ICMPv6 checksum');
  });
});
