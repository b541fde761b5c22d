// BPF_PROG_TEST_RUN, inside a network namespace of the test's own whose routes the datapath's FIB
// lookups see: a translated packet sent on past the stack (SNAT to the node) that is too big for
// its route is answered as the kernel's forwarding would answer it, with frag-needed (IPv4 with
// DF) / packet too big (IPv6) carrying the route's MTU, from the node to the sender, quoting the
// packet as the sender sent it; a GSO packet whose segments fit is sent on to be segmented.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { progTestRun } from '../../control/bpf/attach.ts';
import { compileDatapath } from '../../control/backends/ebpf/compile.ts';
import { EbpfDatapath } from '../../control/backends/ebpf/datapath.ts';
import { datapathObjectPath, loadableBuilds } from '../../control/backends/ebpf/object-path.ts';
import { nodeFacts } from '../../control/model/node.ts';
import { ChangeTracker } from '../../control/model/tracker.ts';
import { service, slice } from '../cases/objects.ts';
import { config, node } from '../cases/semantics.ts';
import { runSync } from '../lab/exec.ts';
import { netnsPath } from '../lab/lab.ts';
import { runPrefix } from '../lab/names.ts';
import { teardownNamesSync } from '../lab/sweep.ts';
import { buildPacket, csumAdd, csumFinish, parsePacket, PROTO, TCP_FLAGS } from '../packet.ts';

const TC_ACT_SHOT = 2;
const TC_ACT_REDIRECT = 7;
const prefix = `${runPrefix()}-fib`;
const NODE4 = '10.254.0.11';
const NODE6 = 'fd00:254::b';
const EXTERNAL4 = '10.254.0.200';
const EXTERNAL6 = 'fd00:254::c8';
const BACKEND4 = '10.244.1.10';
const BACKEND6 = 'fd00:10:244:1::a';
const NODE_PORT = 30100;
const MTU = 1280;
const QUOTE = 128;
const MAC_IN = { srcMac: '02:00:00:00:00:aa', dstMac: '02:00:00:00:00:bb' };

/** __sk_buff with gso_size set (offset 176 of 192, include/uapi/linux/bpf.h). */
function gsoCtx(gsoSize: number): Buffer {
  const ctx = Buffer.alloc(192);
  ctx.writeUInt32LE(gsoSize, 176);
  return ctx;
}

function withoutDf(frame: Buffer): Buffer {
  const f = Buffer.from(frame);
  f.writeUInt16BE(0, 14 + 6);
  f.writeUInt16BE(0, 14 + 10);
  f.writeUInt16BE(csumFinish(csumAdd(f.subarray(14, 34))), 14 + 10);
  return f;
}

interface TooBig {
  src: string;
  dst: string;
  type: number;
  code: number;
  mtu: number;
  checksumsOk: boolean;
  quote: Buffer;
  macs: string;
}

/** Reads an ICMP(v6) error the datapath built, verifying its checksums. */
function tooBig(frame: Buffer): TooBig {
  const p = parsePacket(frame);
  const icmp = p.l4;
  let ok: boolean;
  if (p.family === 4) {
    ok = p.ipChecksumOk && csumFinish(csumAdd(icmp)) === 0;
  } else {
    const pseudo = Buffer.alloc(40);
    frame.copy(pseudo, 0, 14 + 8, 14 + 40);
    pseudo.writeUInt32BE(icmp.length, 32);
    pseudo[39] = PROTO.ICMPV6;
    ok = csumFinish(csumAdd(icmp, csumAdd(pseudo))) === 0;
  }
  return {
    src: p.src,
    dst: p.dst,
    type: icmp[0]!,
    code: icmp[1]!,
    mtu: p.family === 4 ? icmp.readUInt16BE(6) : icmp.readUInt32BE(4),
    checksumsOk: ok,
    quote: icmp.subarray(8),
    macs: frame.subarray(0, 12).toString('hex'),
  };
}

/** The input's MACs swapped: the error goes back to where the packet came from. */
const swappedMacs = (frame: Buffer): string => Buffer.concat([frame.subarray(6, 12), frame.subarray(0, 6)]).toString('hex');

for (const build of loadableBuilds()) describe(`redirects too big for their route, ${build} build (BPF_PROG_TEST_RUN in a netns)`, () => {
  const netns = `${prefix}-${build}`;
  let dp: EbpfDatapath;
  let port = 42000;
  const run = (prog: string, packet: Buffer, ctxIn?: Buffer): { retval: number; out: Buffer } => {
    const r = progTestRun(dp.programFd(prog), packet, { netns: netnsPath(netns), ctxIn });
    return { retval: r.retval, out: r.data };
  };
  const fragNeeded = (): bigint => dp.drops()['frag-needed'];

  before(() => {
    // Every route of the namespace leaves by a device of MTU 1280 (one end of a veth pair; no
    // neighbours: the lookup's MTU check comes first, and a packet that fits goes to
    // bpf_redirect_neigh).
    runSync('ip', ['netns', 'add', netns]);
    runSync('ip', ['-n', netns, '-batch', '-'], [
      'link set lo up',
      `link add d0 mtu ${MTU} type veth peer name d1 mtu ${MTU}`,
      'link set d1 up',
      'link set d0 up',
      'route add 10.244.0.0/16 dev d0',
      'route add 10.254.0.0/24 dev d0',
      'route add fd00:10:244::/48 dev d0',
      'route add fd00:254::/64 dev d0',
      '',
    ].join('\n'));
    runSync('ip', ['netns', 'exec', netns, 'sysctl', '-q', '-w', 'net.ipv4.ip_forward=1', 'net.ipv6.conf.all.forwarding=1']);
    const tracker = new ChangeTracker(config, nodeFacts('n0', node, ['10.244.0.1']));
    tracker.upsertService(service({ name: 'big', type: 'NodePort', clusterIPs: ['10.96.0.200', 'fd00:96::200'], ports: [{ port: 80, nodePort: NODE_PORT, targetPort: 8080 }] }));
    tracker.upsertSlice(slice({ name: 'big-4', service: 'big', family: 4, ports: [{ port: 8080 }], endpoints: [{ ip: BACKEND4, node: 'n1' }] }));
    tracker.upsertSlice(slice({ name: 'big-6', service: 'big', family: 6, ports: [{ port: 8080 }], endpoints: [{ ip: BACKEND6, node: 'n1' }] }));
    tracker.flush();
    dp = EbpfDatapath.open({ object: datapathObjectPath(build), pinDir: `/sys/fs/bpf/${prefix}-${build}` });
    dp.configure({ nodeIp4: NODE4, nodeIp6: NODE6, snatPortMin: 61000, snatPortMax: 65535, flags: 0, ctTimeoutTcpNs: 3_600_000_000_000n, ctTimeoutUdpNs: 60_000_000_000n, hostNetnsCookie: 0n });
    assert.deepEqual(dp.sync(compileDatapath(tracker.state())).failed, []);
  });

  after(() => {
    dp?.close();
    teardownNamesSync(prefix, [netns]);
  });

  /** Opens a NodePort flow from `client` (SYN, SYN-ACK, ACK); returns the client port and the backend's view. */
  const open = (client: string, nodeAddr: string): { sport: number; backend: string; snatPort: number } => {
    const sport = port++;
    const syn = run('sy_from_external', buildPacket({ src: client, dst: nodeAddr, proto: 'tcp', sport, dport: NODE_PORT, tcpFlags: TCP_FLAGS.SYN, ...MAC_IN }));
    assert.equal(syn.retval, TC_ACT_REDIRECT, 'a SYN fits: sent on');
    const s = parsePacket(syn.out);
    assert.deepEqual([s.src, s.dport], [nodeAddr, 8080]);
    const synAck = run('sy_from_external', buildPacket({ src: s.dst, dst: nodeAddr, proto: 'tcp', sport: 8080, dport: s.sport, tcpFlags: TCP_FLAGS.SYN | TCP_FLAGS.ACK, ...MAC_IN }));
    assert.equal(synAck.retval, TC_ACT_REDIRECT);
    const ack = run('sy_from_external', buildPacket({ src: client, dst: nodeAddr, proto: 'tcp', sport, dport: NODE_PORT, tcpFlags: TCP_FLAGS.ACK, ...MAC_IN }));
    assert.equal(ack.retval, TC_ACT_REDIRECT);
    return { sport, backend: s.dst, snatPort: s.sport };
  };

  it('IPv4: a client\'s packet too big for the route to the backend gets frag-needed from the node with the route\'s MTU, quoting it as sent to the NodePort', () => {
    const flow = open(EXTERNAL4, NODE4);
    const sent = buildPacket({ src: EXTERNAL4, dst: NODE4, proto: 'tcp', sport: flow.sport, dport: NODE_PORT, tcpFlags: TCP_FLAGS.ACK, payload: Buffer.alloc(1400, 3), ...MAC_IN });
    const before = fragNeeded();
    const { retval, out } = run('sy_from_external', sent);
    assert.equal(retval, TC_ACT_REDIRECT, 'the error goes back out of the device the packet came in by');
    const e = tooBig(out);
    assert.deepEqual([e.src, e.dst, e.type, e.code, e.mtu, e.checksumsOk, e.macs], [NODE4, EXTERNAL4, 3, 4, MTU, true, swappedMacs(sent)]);
    assert.equal(e.quote.toString('hex'), sent.subarray(14, 14 + QUOTE).toString('hex'), 'the quote is the packet as the client sent it');
    assert.equal(fragNeeded(), before + 1n, 'counted');
  });

  it('IPv4 without DF: dropped and counted (the datapath does not fragment)', () => {
    const flow = open(EXTERNAL4, NODE4);
    const before = fragNeeded();
    const r = run('sy_from_external', withoutDf(buildPacket({ src: EXTERNAL4, dst: NODE4, proto: 'tcp', sport: flow.sport, dport: NODE_PORT, tcpFlags: TCP_FLAGS.ACK, payload: Buffer.alloc(1400, 3), ...MAC_IN })));
    assert.equal(r.retval, TC_ACT_SHOT);
    assert.equal(fragNeeded(), before + 1n);
  });

  it('IPv4: a backend\'s answer too big for the route to the client gets frag-needed quoting the answer as the backend sent it (to the SNAT address)', () => {
    const flow = open(EXTERNAL4, NODE4);
    const answer = buildPacket({ src: flow.backend, dst: NODE4, proto: 'tcp', sport: 8080, dport: flow.snatPort, tcpFlags: TCP_FLAGS.ACK, payload: Buffer.alloc(1400, 5), ...MAC_IN });
    const { retval, out } = run('sy_from_external', answer);
    assert.equal(retval, TC_ACT_REDIRECT);
    const e = tooBig(out);
    assert.deepEqual([e.src, e.dst, e.type, e.code, e.mtu, e.checksumsOk], [NODE4, flow.backend, 3, 4, MTU, true]);
    assert.equal(e.quote.toString('hex'), answer.subarray(14, 14 + QUOTE).toString('hex'));
  });

  it('IPv6: packet too big from the node with the route\'s MTU, both directions', () => {
    const flow = open(EXTERNAL6, NODE6);
    const sent = buildPacket({ src: EXTERNAL6, dst: NODE6, proto: 'tcp', sport: flow.sport, dport: NODE_PORT, tcpFlags: TCP_FLAGS.ACK, payload: Buffer.alloc(1300, 3), ...MAC_IN });
    const c = run('sy_from_external', sent);
    assert.equal(c.retval, TC_ACT_REDIRECT);
    const e = tooBig(c.out);
    assert.deepEqual([e.src, e.dst, e.type, e.code, e.mtu, e.checksumsOk, e.macs], [NODE6, EXTERNAL6, 2, 0, MTU, true, swappedMacs(sent)]);
    assert.equal(e.quote.toString('hex'), sent.subarray(14, 14 + QUOTE).toString('hex'));
    const answer = buildPacket({ src: flow.backend, dst: NODE6, proto: 'tcp', sport: 8080, dport: flow.snatPort, tcpFlags: TCP_FLAGS.ACK, payload: Buffer.alloc(1300, 5), ...MAC_IN });
    const b = run('sy_from_external', answer);
    assert.equal(b.retval, TC_ACT_REDIRECT);
    const eb = tooBig(b.out);
    assert.deepEqual([eb.src, eb.dst, eb.type, eb.mtu, eb.checksumsOk], [NODE6, flow.backend, 2, MTU, true]);
    assert.equal(eb.quote.toString('hex'), answer.subarray(14, 14 + QUOTE).toString('hex'));
  });

  it('a GSO packet is held against its segments: segments that fit are sent on (translated), segments that do not get frag-needed', () => {
    const flow = open(EXTERNAL4, NODE4);
    const big = buildPacket({ src: flow.backend, dst: NODE4, proto: 'tcp', sport: 8080, dport: flow.snatPort, tcpFlags: TCP_FLAGS.ACK, payload: Buffer.alloc(3000, 9), ...MAC_IN });
    const fits = run('sy_from_external', big, gsoCtx(1000)); // segments of 20 + 20 + 1000 bytes
    assert.equal(fits.retval, TC_ACT_REDIRECT);
    const p = parsePacket(fits.out);
    assert.deepEqual([p.src, p.dst, p.sport, p.dport, p.proto], [NODE4, EXTERNAL4, NODE_PORT, flow.sport, PROTO.TCP], 'translated and sent on whole');
    const tooLarge = run('sy_from_external', big, gsoCtx(1400)); // segments of 1440 bytes
    assert.equal(tooLarge.retval, TC_ACT_REDIRECT);
    const e = tooBig(tooLarge.out);
    assert.deepEqual([e.src, e.dst, e.type, e.code, e.mtu, e.checksumsOk], [NODE4, flow.backend, 3, 4, MTU, true]);
  });
});
