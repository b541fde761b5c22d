// BPF_PROG_TEST_RUN: IPv6 packets with extension headers before TCP/UDP (hop-by-hop, routing,
// destination options) are translated like plain ones; the walk over them is bounded.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { progTestRun } from '../../control/bpf/attach.ts';
import { compileDatapath } from '../../control/backends/ebpf/compile.ts';
import { EbpfDatapath } from '../../control/backends/ebpf/datapath.ts';
import { datapathObjectPath, loadableBuilds } from '../../control/backends/ebpf/object-path.ts';
import { formatIpv6 } from '../../control/bpf/codec.ts';
import { nodeFacts } from '../../control/model/node.ts';
import { ChangeTracker } from '../../control/model/tracker.ts';
import { config, node, podOf, services, slices } from '../cases/semantics.ts';
import { runPrefix } from '../lab/names.ts';
import { teardownNamesSync } from '../lab/sweep.ts';
import { buildPacket, csumAdd, csumFinish, PROTO, TCP_FLAGS } from '../packet.ts';

const TC_ACT_OK = 0;
const prefix = `${runPrefix()}-ext6`;
const CLIENT6 = 'fd00:10:244::a';

/** The frame with `headers` (each [next header it names is filled in], 8-byte multiples) inserted after the IPv6 header. */
function withExtensionHeaders(frame: Buffer, types: number[]): Buffer {
  const upper = frame[14 + 6]!;
  const headers = types.map((type, i) => {
    const h = Buffer.alloc(8);
    h[0] = i + 1 < types.length ? types[i + 1]! : upper;
    h[1] = 0; // 8 bytes
    h[2] = 1; // PadN option over the rest
    h[3] = 4;
    return { type, h };
  });
  const out = Buffer.concat([frame.subarray(0, 54), ...headers.map((x) => x.h), frame.subarray(54)]);
  out[14 + 6] = types[0]!;
  out.writeUInt16BE(frame.readUInt16BE(14 + 4) + 8 * types.length, 14 + 4);
  return out;
}

function upperLayer(frame: Buffer, extLen: number): { src: string; dst: string; sport: number; dport: number; checksumOk: boolean } {
  const seg = frame.subarray(54 + extLen);
  const pseudo = Buffer.alloc(40);
  frame.copy(pseudo, 0, 22, 54);
  pseudo.writeUInt32BE(seg.length, 32);
  pseudo[39] = PROTO.TCP;
  return {
    src: formatIpv6(frame.subarray(22, 38)),
    dst: formatIpv6(frame.subarray(38, 54)),
    sport: seg.readUInt16BE(0),
    dport: seg.readUInt16BE(2),
    checksumOk: csumFinish(csumAdd(seg, csumAdd(pseudo))) === 0,
  };
}

for (const build of loadableBuilds()) describe(`IPv6 extension headers, ${build} build (BPF_PROG_TEST_RUN)`, () => {
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
    dp.configure({ nodeIp4: '10.254.0.11', nodeIp6: 'fd00:254::b', snatPortMin: 61000, snatPortMax: 65535, flags: 0, ctTimeoutTcpNs: 3_600_000_000_000n, ctTimeoutUdpNs: 60_000_000_000n, hostNetnsCookie: 0n });
    assert.deepEqual(dp.sync(compileDatapath(tracker.state())).failed, []);
  });

  after(() => {
    dp?.close();
    teardownNamesSync(`${prefix}-${build}`);
  });

  it('a destination-options header: DNAT to a backend and reverse NAT of the answer, checksums valid', () => {
    const DSTOPTS = 60;
    const HOPOPTS = 0;
    const out = run('sy_from_pod', withExtensionHeaders(buildPacket({ src: CLIENT6, dst: 'fd00:96::10', proto: 'tcp', sport: 43500, dport: 80 }), [DSTOPTS]));
    assert.equal(out.retval, TC_ACT_OK);
    const fwd = upperLayer(out.out, 8);
    assert.ok(['n0p1', 'n1p1'].includes(podOf(fwd.dst)), fwd.dst);
    assert.deepEqual([fwd.src, fwd.sport, fwd.dport, fwd.checksumOk], [CLIENT6, 43500, 8080, true]);
    const back = run('sy_to_pod', withExtensionHeaders(buildPacket({ src: fwd.dst, dst: CLIENT6, proto: 'tcp', sport: 8080, dport: 43500, tcpFlags: TCP_FLAGS.SYN | TCP_FLAGS.ACK }), [HOPOPTS, DSTOPTS]));
    assert.equal(back.retval, TC_ACT_OK);
    assert.deepEqual(upperLayer(back.out, 16), { src: 'fd00:96::10', dst: CLIENT6, sport: 80, dport: 43500, checksumOk: true });
  });
});
