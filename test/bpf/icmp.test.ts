// BPF_PROG_TEST_RUN: ICMP and ICMPv6 errors about translated flows are matched by their quoted
// tuple and translated both ways (outer and quoted headers, every checksum), as netfilter NAT does.
import assert from 'node:assert/strict';
import { isIPv4 } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { progTestRun } from '../../control/bpf/attach.ts';
import { ipv6Bytes } from '../../control/bpf/codec.ts';
import { compileDatapath } from '../../control/backends/ebpf/compile.ts';
import { EbpfDatapath } from '../../control/backends/ebpf/datapath.ts';
import { datapathObjectPath, loadableBuilds } from '../../control/backends/ebpf/object-path.ts';
import { nodeFacts } from '../../control/model/node.ts';
import { ChangeTracker } from '../../control/model/tracker.ts';
import { config, node, services, slices } from '../cases/semantics.ts';
import { runPrefix } from '../lab/names.ts';
import { teardownNamesSync } from '../lab/sweep.ts';
import { buildPacket, csumAdd, csumFinish, parsePacket, PROTO, TCP_FLAGS, type ParsedPacket } from '../packet.ts';

const TC_ACT_UNSPEC = 0xffffffff; // -1, as the run reports it (unsigned)
const TC_ACT_OK = 0;
const prefix = `${runPrefix()}-icmp`;
const CLIENT = '10.244.0.10';
const CLIENT6 = 'fd00:10:244::a';
const EXTERNAL = '10.254.0.200';
const NODE = '10.254.0.11';
const ROUTER = '10.254.0.1';

const addrBytes = (a: string): Buffer => (isIPv4(a) ? Buffer.from(a.split('.').map(Number)) : ipv6Bytes(a));

/** An ICMP(v6) error from `src` to `dst` quoting `quote` (an IP packet, cut as a router would). */
function icmpError(src: string, dst: string, type: number, code: number, quote: Buffer, mtu = 0): Buffer {
  const v4 = isIPv4(src);
  const icmp = Buffer.concat([Buffer.alloc(8), quote]);
  icmp[0] = type;
  icmp[1] = code;
  if (v4) icmp.writeUInt16BE(mtu, 6);
  else icmp.writeUInt32BE(mtu, 4);
  const eth = Buffer.alloc(14);
  eth.writeUInt16BE(v4 ? 0x0800 : 0x86dd, 12);
  if (v4) {
    icmp.writeUInt16BE(csumFinish(csumAdd(icmp)), 2);
    const ip = Buffer.alloc(20);
    ip[0] = 0x45;
    ip.writeUInt16BE(20 + icmp.length, 2);
    ip[8] = 64;
    ip[9] = PROTO.ICMP;
    addrBytes(src).copy(ip, 12);
    addrBytes(dst).copy(ip, 16);
    ip.writeUInt16BE(csumFinish(csumAdd(ip)), 10);
    return Buffer.concat([eth, ip, icmp]);
  }
  const ip = Buffer.alloc(40);
  ip.writeUInt32BE(0x60000000, 0);
  ip.writeUInt16BE(icmp.length, 4);
  ip[6] = PROTO.ICMPV6;
  ip[7] = 64;
  addrBytes(src).copy(ip, 8);
  addrBytes(dst).copy(ip, 24);
  icmp.writeUInt16BE(csumFinish(csumAdd(icmp, csumAdd(icmp6Pseudo(ip, icmp.length)))), 2);
  return Buffer.concat([eth, ip, icmp]);
}

function icmp6Pseudo(ip: Buffer, length: number): Buffer {
  const p = Buffer.alloc(40);
  ip.copy(p, 0, 8, 40);
  p.writeUInt32BE(length, 32);
  p[39] = PROTO.ICMPV6;
  return p;
}

interface IcmpSeen {
  outer: ParsedPacket;
  /** The quoted packet, parsed as a frame of its own (its checksums verified where quoted whole). */
  quote: ParsedPacket;
  icmpChecksumOk: boolean;
}

function parseIcmpError(frame: Buffer): IcmpSeen {
  const outer = parsePacket(frame);
  const v4 = outer.family === 4;
  const icmp = outer.l4;
  const icmpChecksumOk = v4 ? csumFinish(csumAdd(icmp)) === 0 : csumFinish(csumAdd(icmp, csumAdd(icmp6Pseudo(frame.subarray(14, 54), icmp.length)))) === 0;
  const quote = parsePacket(Buffer.concat([frame.subarray(0, 14), icmp.subarray(8)]));
  return { outer, quote, icmpChecksumOk };
}

for (const build of loadableBuilds()) describe(`ICMP errors of translated flows, ${build} build (BPF_PROG_TEST_RUN)`, () => {
  let dp: EbpfDatapath;
  const run = (prog: string, packet: Buffer): { retval: number; out: Buffer } => {
    const r = progTestRun(dp.programFd(prog), packet);
    return { retval: r.retval, out: r.data };
  };

  before(() => {
    const tracker = new ChangeTracker(config, nodeFacts('n0', node, ['10.244.0.1']));
    for (const s of services) tracker.upsertService(s);
    for (const s of slices) tracker.upsertSlice(s);
    tracker.flush();
    dp = EbpfDatapath.open({ object: datapathObjectPath(build), pinDir: `/sys/fs/bpf/${prefix}-${build}` });
    dp.configure({ nodeIp4: NODE, nodeIp6: 'fd00:254::b', snatPortMin: 61000, snatPortMax: 65535, flags: 0, ctTimeoutTcpNs: 3_600_000_000_000n, ctTimeoutUdpNs: 60_000_000_000n, hostNetnsCookie: 0n });
    assert.deepEqual(dp.sync(compileDatapath(tracker.state())).failed, []);
  });

  after(() => {
    dp?.close();
    teardownNamesSync(`${prefix}-${build}`);
  });

  it('port unreachable from a UDP backend reaches the client as from the ClusterIP, quoting what the client sent', () => {
    const sent = buildPacket({ src: CLIENT, dst: '10.96.0.10', proto: 'udp', sport: 40500, dport: 53, payload: Buffer.from('question') });
    const toBackend = run('sy_from_pod', sent).out;
    const backend = parsePacket(toBackend).dst;
    // The backend's kernel quotes the whole datagram it got.
    const err = icmpError(backend, CLIENT, 3, 3, toBackend.subarray(14));
    const { retval, out } = run('sy_to_pod', err);
    assert.equal(retval, TC_ACT_OK);
    const seen = parseIcmpError(out);
    assert.deepEqual([seen.outer.src, seen.outer.dst, seen.outer.ipChecksumOk, seen.icmpChecksumOk], ['10.96.0.10', CLIENT, true, true]);
    assert.equal(out.subarray(14 + 28).toString('hex'), sent.subarray(14).toString('hex'), 'the quote is the datagram as the client sent it, checksums included');
  });

  it('fragmentation needed on the client\'s path of a NodePort (SNAT) answer reaches the backend, quoting what it sent', () => {
    const syn = parsePacket(run('sy_from_external', buildPacket({ src: EXTERNAL, dst: NODE, proto: 'tcp', sport: 42100, dport: 30080 })).out);
    assert.equal(syn.src, NODE);
    const answer = buildPacket({ src: syn.dst, dst: NODE, proto: 'tcp', sport: 8080, dport: syn.sport, tcpFlags: TCP_FLAGS.SYN | TCP_FLAGS.ACK, payload: Buffer.alloc(64, 7) });
    const restored = run('sy_from_external', answer).out;
    assert.deepEqual([parsePacket(restored).src, parsePacket(restored).dst], [NODE, EXTERNAL]);
    // A router quotes the IP header and the start of the segment (here the whole TCP header).
    const err = icmpError(ROUTER, NODE, 3, 4, restored.subarray(14, 14 + 20 + 24), 1280);
    const { retval, out } = run('sy_from_external', err);
    assert.equal(retval, TC_ACT_OK, 'from a router: routed as any packet to the pod');
    const seen = parseIcmpError(out);
    assert.deepEqual([seen.outer.src, seen.outer.dst, seen.outer.ipChecksumOk, seen.icmpChecksumOk], [ROUTER, syn.dst, true, true]);
    assert.equal(out.readUInt16BE(14 + 20 + 6), 1280, 'the MTU is kept');
    assert.deepEqual([seen.quote.src, seen.quote.sport, seen.quote.dst, seen.quote.dport, seen.quote.ipChecksumOk], [syn.dst, 8080, NODE, syn.sport, true]);
    assert.equal(out.readUInt16BE(14 + 28 + 20 + 16), answer.readUInt16BE(14 + 20 + 16), 'the quoted TCP checksum is the backend\'s own again');
  });

  it('IPv6: packet too big from the client about an answer reaches the backend; port unreachable from the backend reaches the client', () => {
    const toBackend = run('sy_from_pod', buildPacket({ src: CLIENT6, dst: 'fd00:96::10', proto: 'tcp', sport: 43100, dport: 80 })).out;
    const backend = parsePacket(toBackend).dst;
    const answer = buildPacket({ src: backend, dst: CLIENT6, proto: 'tcp', sport: 8080, dport: 43100, tcpFlags: TCP_FLAGS.SYN | TCP_FLAGS.ACK, payload: Buffer.alloc(100, 1) });
    const restored = run('sy_to_pod', answer).out;
    assert.equal(parsePacket(restored).src, 'fd00:96::10');
    const ptb = run('sy_from_pod', icmpError(CLIENT6, 'fd00:96::10', 2, 0, restored.subarray(14), 1280));
    assert.equal(ptb.retval, TC_ACT_OK);
    const seen = parseIcmpError(ptb.out);
    assert.deepEqual([seen.outer.src, seen.outer.dst, seen.icmpChecksumOk], [CLIENT6, backend, true]);
    assert.equal(ptb.out.subarray(14 + 48).toString('hex'), answer.subarray(14).toString('hex'), 'the quote is the answer as the backend sent it');
    const unreach = run('sy_to_pod', icmpError(backend, CLIENT6, 1, 4, toBackend.subarray(14)));
    assert.equal(unreach.retval, TC_ACT_OK);
    const back = parseIcmpError(unreach.out);
    assert.deepEqual([back.outer.src, back.outer.dst, back.icmpChecksumOk], ['fd00:96::10', CLIENT6, true]);
    assert.deepEqual([back.quote.src, back.quote.dst, back.quote.sport, back.quote.dport, back.quote.l4ChecksumOk], [CLIENT6, 'fd00:96::10', 43100, 80, true]);
  });

  it('an error about no tracked flow, or an ICMP that is no error, passes untouched', () => {
    const stranger = buildPacket({ src: CLIENT, dst: '10.244.1.99', proto: 'udp', sport: 40999, dport: 9 });
    const err = icmpError('10.244.1.99', CLIENT, 3, 3, stranger.subarray(14));
    const r = run('sy_to_pod', err);
    assert.deepEqual([r.retval, r.out.toString('hex')], [TC_ACT_UNSPEC, err.toString('hex')]);
    const echo = icmpError(CLIENT, '10.96.0.10', 8, 0, Buffer.alloc(28));
    const e = run('sy_from_pod', echo);
    assert.deepEqual([e.retval, e.out.toString('hex')], [TC_ACT_UNSPEC, echo.toString('hex')]);
  });
});
