// TCP/UDP checksums after translation, proven by receivers that verify them. Between veths a
// packet keeps CHECKSUM_PARTIAL: its checksum field holds only the pseudo-header seed and no
// receiver checks it, so a wrong seed would pass every other lab test and break on the first
// real NIC. Here every device that leaves a node (pod veths, the wire) has tx checksumming off,
// so the kernel completes each checksum in software after our programs, and pods and the
// external client drop any segment whose seed we got wrong. Both builds of the datapath: the
// kern-ctx one updates checksums inline by ip_summed, the portable one through helpers.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { datapathObjectPath, loadableBuilds } from '../../control/backends/ebpf/object-path.ts';
import { service, slice } from '../cases/objects.ts';
import { Lab } from '../lab/lab.ts';
import type { ProbeResult, ProbeTarget } from '../lab/probe.ts';
import { programNode, type ProgrammedNode } from './ebpf-lab.ts';

const VIP = '10.96.0.70';
const NODE_PORT = 30070;
const BUILDS = loadableBuilds();

for (const build of BUILDS) {
  describe(`eBPF datapath (${build} build): checksums a receiver verifies`, () => {
    let lab: Lab;
    let n0: ProgrammedNode;
    const backends = ['n0p1', 'n1p1'];

    const answered = (results: ProbeResult[]): string[] =>
      results.map((r) => {
        assert.ok(r.ok, r.ok ? '' : `${r.target.proto} ${r.target.host}:${r.target.port}: ${r.error}`);
        return r.reply.pod;
      });

    before(async () => {
      lab = await Lab.create({ nodes: 2, podsPerNode: 2 });
      for (const n of lab.nodes) {
        for (const ifname of [...n.pods.map((p) => p.hostIf), n.wireIf]) await lab.exec(n.netns, 'ethtool', ['-K', ifname, 'tx', 'off']);
      }
      n0 = programNode(
        lab,
        lab.nodes[0]!,
        (t) => {
          t.upsertService(service({ name: 'csum', type: 'NodePort', clusterIPs: [VIP], ports: [{ name: 'tcp', port: 80, targetPort: 8080, nodePort: NODE_PORT }, { name: 'udp', port: 53, protocol: 'UDP', targetPort: 8080, nodePort: NODE_PORT }] }));
          t.upsertSlice(slice({ name: 'csum-x', service: 'csum', ports: [{ name: 'tcp', port: 8080 }, { name: 'udp', port: 8080, protocol: 'UDP' }], endpoints: backends.map((name) => ({ ip: lab.pod(name).ipv4, node: lab.pod(name).node.name })) }));
        },
        datapathObjectPath(build),
      );
    });

    after(async () => {
      n0?.datapath.close();
      await lab?.teardown();
    });

    it('the devices complete checksums in software (else this test proves nothing)', async () => {
      const features = await lab.exec(lab.nodes[1]!.netns, 'ethtool', ['-k', lab.pod('n1p1').hostIf]);
      assert.match(features, /^tx-checksumming: off/m);
    });

    it('pod -> ClusterIP, TCP and UDP, backends on both nodes', async () => {
      const targets: ProbeTarget[] = [
        { proto: 'tcp', host: VIP, port: 80 },
        { proto: 'udp', host: VIP, port: 53 },
      ];
      const pods = answered(await lab.probe(lab.pod('n0p0').netns, { targets, count: 12, timeoutMs: 2000 }));
      assert.equal(pods.length, 24);
      for (const p of pods) assert.ok(backends.includes(p), p);
    });

    it('external -> NodePort with SNAT (eTP Cluster) and its reverse path, TCP and UDP', async () => {
      const node = lab.nodes[0]!.ipv4;
      const targets: ProbeTarget[] = [
        { proto: 'tcp', host: node, port: NODE_PORT },
        { proto: 'udp', host: node, port: NODE_PORT },
      ];
      const pods = answered(await lab.probe(lab.external.netns, { targets, count: 12, timeoutMs: 2000 }));
      assert.equal(pods.length, 24);
      for (const p of pods) assert.ok(backends.includes(p), p);
    });
  });
}
