// Fragmented datagrams through the eBPF datapath, with real packets: 8,000-byte UDP datagrams
// (the sender's kernel fragments them at the lab's 1,500-byte MTU) to a ClusterIP and to a
// NodePort, IPv4 and IPv6, reach one backend whole, and its 8,000-byte answers reach the client
// whole. Any fragment sent elsewhere than its first, or left untranslated, and the receiver's
// reassembly never completes: the probe times out. Transmit offloads are on everywhere.
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { compileDatapath } from '../../control/backends/ebpf/compile.ts';
import { fragKey, fragValue } from '../../control/bpf/layout.ts';
import { service, slice } from '../cases/objects.ts';
import { Lab } from '../lab/lab.ts';
import type { ProbeResult } from '../lab/probe.ts';
import { programNode, type ProgrammedNode } from './ebpf-lab.ts';

const VIP = { 4: '10.96.0.97', 6: 'fd00:96::97' } as const;
const NODE_PORT = 30097;
const SIZE = 8000;
const BACKENDS = ['n0p1', 'n1p0', 'n1p1'];
// Sends over IPv6 with a destination-options header (built by bpf/build.sh from test/tools).
const DSTOPTS = fileURLToPath(new URL('../../build/tools/udp6-dstopts', import.meta.url));
// Several flows (source ports), so that backends on both nodes are reached.
const PORTS = [52001, 52002, 52003, 52004, 52005, 52006];

describe('eBPF datapath: fragmented UDP datagrams (lab)', () => {
  let lab: Lab;
  let n0: ProgrammedNode;

  const whole = (results: ProbeResult[], what: string): string[] =>
    results.map((r) => {
      assert.ok(r.ok, `${what}: ${r.ok ? '' : r.error}`);
      assert.deepEqual([r.reply.received, r.reply.replyBytes], [SIZE, SIZE], `${what}: the datagram and its answer arrived whole`);
      return r.reply.pod;
    });

  before(async () => {
    lab = await Lab.create({ nodes: 2, podsPerNode: 2 });
    // Transmit offloads on (checksum, segmentation) on every device of the path.
    for (const n of lab.nodes) {
      for (const ifname of [...n.pods.map((p) => p.hostIf), n.wireIf]) await lab.exec(n.netns, 'ethtool', ['-K', ifname, 'tx', 'on', 'sg', 'on', 'tso', 'on', 'gso', 'on']);
    }
    for (const netns of [...lab.pods.map((p) => p.netns), lab.external.netns]) await lab.exec(netns, 'ethtool', ['-K', 'eth0', 'tx', 'on', 'sg', 'on', 'tso', 'on', 'gso', 'on']);
    n0 = programNode(lab, lab.nodes[0]!, (t) => {
      t.upsertService(service({ name: 'frag', type: 'NodePort', clusterIPs: [VIP[4], VIP[6]], ports: [{ port: 53, protocol: 'UDP', targetPort: 8080, nodePort: NODE_PORT }] }));
      for (const family of [4, 6] as const) {
        t.upsertSlice(
          slice({
            name: `frag-${family}`,
            service: 'frag',
            family,
            ports: [{ port: 8080, protocol: 'UDP' }],
            endpoints: BACKENDS.map((name) => ({ ip: family === 4 ? lab.pod(name).ipv4 : lab.pod(name).ipv6, node: lab.pod(name).node.name })),
          }),
        );
      }
    });
    assert.deepEqual(n0.datapath.sync(compileDatapath(n0.tracker.state())).failed, []);
  });

  after(async () => {
    n0?.datapath.close();
    await lab?.teardown();
  });

  it('transmit offloads are on, and the MTU is 1,500 (so the datagrams are fragmented)', async () => {
    const features = await lab.exec(lab.nodes[0]!.netns, 'ethtool', ['-k', lab.pod('n0p0').hostIf]);
    assert.match(features, /^tx-checksumming: on/m);
    assert.match(await lab.exec(lab.pod('n0p0').netns, 'ip', ['link', 'show', 'eth0']), / mtu 1500 /);
  });

  for (const family of [4, 6] as const) {
    it(`pod -> ClusterIP, IPv${family}: ${SIZE}-byte datagrams reach one backend whole, and their ${SIZE}-byte answers the client`, async () => {
      const results = await lab.probe(lab.pod('n0p0').netns, { targets: [{ proto: 'udp', host: VIP[family], port: 53 }], count: PORTS.length, sourcePorts: PORTS, size: SIZE, timeoutMs: 3000 });
      const pods = whole(results, `ClusterIP IPv${family}`);
      assert.ok(pods.every((p) => BACKENDS.includes(p)), pods.join(' '));
    });

    it(`external client -> NodePort, IPv${family}: the same, through SNAT`, async () => {
      const host = family === 4 ? lab.nodes[0]!.ipv4 : lab.nodes[0]!.ipv6;
      const results = await lab.probe(lab.external.netns, { targets: [{ proto: 'udp', host, port: NODE_PORT }], count: PORTS.length, sourcePorts: PORTS, size: SIZE, timeoutMs: 3000 });
      const pods = whole(results, `NodePort IPv${family}`);
      assert.ok(pods.every((p) => BACKENDS.includes(p)), pods.join(' '));
    });
  }

  it('IPv6 with a destination-options header, alone and in a fragmented datagram: translated both ways', async () => {
    for (const size of [200, SIZE]) {
      const out = await lab.exec(lab.pod('n0p0').netns, DSTOPTS, [VIP[6], '53', String(size), '3000']);
      const [bytes, line] = out.trim().split('\t');
      const reply = JSON.parse(line!) as { pod: string; received: number };
      assert.ok(BACKENDS.includes(reply.pod), out);
      assert.deepEqual([reply.received, Number(bytes)], [size, size], `${size} bytes each way`);
    }
  });

  it('the datapath kept first fragments for their followers, and dropped none as without its first', () => {
    const kept = n0.datapath.object.map('sy_frags', fragKey, fragValue).entries();
    assert.ok(kept.some(([k]) => k.family === 4) && kept.some(([k]) => k.family === 6), `${kept.length} datagrams`);
    assert.equal(n0.datapath.drops()['frag-no-first'], 0n);
  });
});
