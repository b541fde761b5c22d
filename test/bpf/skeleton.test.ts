// The walking skeleton end to end: load, pin, map operations, tc + XDP attach in the lab,
// real TCP and UDP packets translated VIP -> backend and back, detach, unpin, adoption.
import assert from 'node:assert/strict';
import { existsSync, readdirSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { tcAttach, tcDetach, tcQuery, xdpAttach, xdpDetach, xdpQuery, progTestRun } from '../../control/bpf/attach.ts';
import { encode, perCpu, u32 } from '../../control/bpf/codec.ts';
import { native } from '../../control/bpf/native.ts';
import { LoadedObject } from '../../control/bpf/object.ts';
import {
  IPPROTO,
  SKEL_STAT,
  skelCounter,
  skelFrontend,
  skelService,
  type SkelFrontend,
  type SkelService,
} from '../../control/bpf/layout.ts';
import { Lab, netnsPath } from '../lab/lab.ts';
import { buildPacket, parsePacket } from '../packet.ts';
import { skeletonObject } from './objects.ts';

const VIP = '10.96.0.10';

function statSum(obj: LoadedObject, stat: number): bigint {
  const stats = obj.map('skel_stats', u32, perCpu(skelCounter, native().numPossibleCpus()));
  return (stats.get(stat) ?? []).reduce((sum, c) => sum + c.packets, 0n);
}

describe('skeleton: load, pin and map operations', () => {
  let lab: Lab;
  let obj: LoadedObject;
  let pinDir: string;

  before(async () => {
    lab = await Lab.create({ nodes: 2, podsPerNode: 3 });
    pinDir = lab.bpffsDir('skel');
    obj = LoadedObject.load(skeletonObject, { pinDir });
  });

  after(async () => {
    obj?.close();
    await lab?.teardown();
  });

  it('pins every map under the chosen directory', () => {
    assert.deepEqual(readdirSync(pinDir).sort(), ['skel_frontends', 'skel_revnat', 'skel_stats']);
    assert.deepEqual(obj.programNames().sort(), ['sy_skel_tc_egress', 'sy_skel_tc_ingress', 'sy_skel_xdp']);
  });

  it('writes, reads, iterates and deletes entries, singly and in batches', () => {
    const revnat = obj.map('skel_revnat', skelFrontend, skelFrontend);
    const a: SkelFrontend = { addr: '10.1.0.1', port: 80, proto: IPPROTO.TCP };
    const b: SkelFrontend = { addr: '10.1.0.2', port: 53, proto: IPPROTO.UDP };
    revnat.set(a, b);
    assert.deepEqual(revnat.get(a), b);
    assert.equal(revnat.get(b), undefined);
    assert.deepEqual([...revnat.keys()], [a]);

    const many = Array.from({ length: 300 }, (_, i): [SkelFrontend, SkelFrontend] => [
      { addr: `10.2.${i >> 8}.${i & 255}`, port: 1000 + i, proto: IPPROTO.TCP },
      { addr: '10.96.0.1', port: i, proto: IPPROTO.TCP },
    ]);
    assert.equal(revnat.setMany(many), 300);
    const all = revnat.entries();
    assert.equal(all.length, 301);
    const byAddr = new Map(all.map(([k, v]) => [`${k.addr}:${k.port}`, v]));
    assert.deepEqual(byAddr.get('10.2.1.43:1299'), { addr: '10.96.0.1', port: 299, proto: IPPROTO.TCP });
    assert.equal(revnat.deleteMany(many.map(([k]) => k)), 300);
    assert.equal(revnat.delete(a), true);
    assert.equal(revnat.delete(a), false);
    assert.deepEqual(revnat.entries(), []);
  });

  it('the mirror encodes exactly the bytes the program reads (BPF_PROG_TEST_RUN)', () => {
    const frontends = obj.map('skel_frontends', skelFrontend, skelService);
    const fe: SkelFrontend = { addr: VIP, port: 80, proto: IPPROTO.TCP };
    frontends.set(fe, { count: 1, backends: [{ addr: '10.244.1.11', port: 8080 }] });
    const packet = buildPacket({ src: '10.244.0.10', dst: VIP, proto: 'tcp', sport: 40000, dport: 80 });
    const run = progTestRun(obj.programFd('sy_skel_tc_ingress'), packet);
    const out = parsePacket(run.data);
    assert.equal(run.retval, 0); // TC_ACT_OK
    assert.equal(out.dst, '10.244.1.11');
    assert.equal(out.dport, 8080);
    assert.equal(out.src, '10.244.0.10');
    assert.ok(out.ipChecksumOk, 'IPv4 header checksum');
    assert.ok(out.l4ChecksumOk, 'TCP checksum');
    frontends.delete(fe);
  });

  it('a second load with the same pin directory adopts the pinned maps and their entries', () => {
    const revnat = obj.map('skel_revnat', skelFrontend, skelFrontend);
    const key: SkelFrontend = { addr: '10.9.9.9', port: 9, proto: IPPROTO.UDP };
    revnat.set(key, key);
    const again = LoadedObject.load(skeletonObject, { pinDir });
    try {
      assert.deepEqual(again.map('skel_revnat', skelFrontend, skelFrontend).get(key), key);
    } finally {
      again.close();
      revnat.delete(key);
    }
  });
});

describe('skeleton: real packets through tc and XDP in the lab', () => {
  let lab: Lab;
  let obj: LoadedObject;

  before(async () => {
    lab = await Lab.create({ nodes: 2, podsPerNode: 3 });
    obj = LoadedObject.load(skeletonObject, { pinDir: lab.bpffsDir('skel') });
  });

  after(async () => {
    obj?.close();
    await lab?.teardown();
  });

  it('attaches, translates TCP and UDP both ways, counts, detaches and unpins', async () => {
    const client = lab.pod('n0p0');
    const remote = lab.pod('n1p1');
    const local = lab.pod('n0p2');
    const node0 = client.node.netns;
    const node1 = remote.node.netns;
    const frontends = obj.map('skel_frontends', skelFrontend, skelService);
    const revnat = obj.map('skel_revnat', skelFrontend, skelFrontend);
    const service = (addr: string): SkelService => ({ count: 1, backends: [{ addr, port: 8080 }] });
    for (const proto of [IPPROTO.TCP, IPPROTO.UDP]) {
      frontends.set({ addr: VIP, port: 80, proto }, service(remote.ipv4));
      frontends.set({ addr: VIP, port: 81, proto }, service(local.ipv4));
      revnat.set({ addr: remote.ipv4, port: 8080, proto }, { addr: VIP, port: 80, proto });
      revnat.set({ addr: local.ipv4, port: 8080, proto }, { addr: VIP, port: 81, proto });
    }

    const tcIn = { ifname: client.hostIf, netns: netnsPath(node0), direction: 'ingress' as const };
    const tcOut = { ...tcIn, direction: 'egress' as const };
    const ingress = tcAttach({ ...tcIn, progFd: obj.programFd('sy_skel_tc_ingress') });
    const egress = tcAttach({ ...tcOut, progFd: obj.programFd('sy_skel_tc_egress') });
    assert.equal(tcQuery(tcIn), ingress.progId);
    assert.equal(tcQuery(tcOut), egress.progId);
    const xdpTarget = { ifname: 'eth0', netns: netnsPath(node1) };
    // Named: the agent's auto leaves XDP off veths (it costs their GSO), and this tests XDP itself.
    const xdp = xdpAttach({ ...xdpTarget, progFd: obj.programFd('sy_skel_xdp'), mode: 'native' });
    assert.equal(xdp.mode, 'native');
    assert.ok(xdpQuery(xdpTarget).progId > 0);

    const results = await lab.probe(client.netns, {
      targets: [
        { proto: 'tcp', host: VIP, port: 80 },
        { proto: 'udp', host: VIP, port: 80 },
        { proto: 'tcp', host: VIP, port: 81 },
        { proto: 'udp', host: VIP, port: 81 },
      ],
      count: 3,
    });
    for (const r of results) {
      assert.ok(r.ok, `${r.target.proto} ${r.target.host}:${r.target.port}: ${r.ok ? '' : r.error}`);
      const expected = r.target.port === 80 ? remote : local;
      assert.equal(r.reply.pod, expected.name, 'the backend answered');
      assert.equal(r.reply.client, client.ipv4, 'the source was not translated');
      assert.equal(r.reply.port, 8080, 'the destination port was translated');
    }
    assert.ok(statSum(obj, SKEL_STAT.FORWARD) >= 12n, 'forward translations counted');
    assert.ok(statSum(obj, SKEL_STAT.REVERSE) >= 12n, 'reverse translations counted');
    assert.ok(statSum(obj, SKEL_STAT.XDP) > 0n, 'XDP saw the packets that crossed to node 1');

    assert.equal(tcDetach(tcIn), true);
    assert.equal(tcDetach(tcOut), true);
    assert.equal(tcQuery(tcIn), null);
    assert.equal(tcDetach(tcIn), false, 'detaching twice finds nothing');
    assert.equal(xdpDetach(xdpTarget), true);
    assert.equal(xdpQuery(xdpTarget).progId, 0);
    const unrouted = await lab.probe(client.netns, { targets: [{ proto: 'tcp', host: VIP, port: 80 }], timeoutMs: 500 });
    assert.equal(unrouted[0]?.ok, false, 'without the program the VIP leads nowhere');

    const pinDir = lab.bpffsDir('skel');
    obj.unpinMaps();
    assert.equal(existsSync(pinDir), false, 'pins and their directory are gone');
    assert.deepEqual(encode(u32, 1), Buffer.from([1, 0, 0, 0]));
  });
});
