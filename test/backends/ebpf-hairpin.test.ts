// Hairpin with real packets: a pod reaching itself through its service is masqueraded to the
// node (as kube-proxy's iptables does it), and with sy_from_veth on its device (the agent's pick
// for the host end of a veth pair) both directions go straight back into the pod by
// bpf_redirect_peer: none of the flow's packets leaves by the host end (its tx counter stays),
// while with sy_from_pod they do (bpf_redirect to the host end's egress). A bulk transfer arrives
// whole on both. IPv4 and IPv6.
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { progInfo, tcAttach, tcQuery } from '../../control/bpf/attach.ts';
import { compileDatapath } from '../../control/backends/ebpf/compile.ts';
import { Lab, netnsPath, type LabPod } from '../lab/lab.ts';
import { service, slice } from '../cases/objects.ts';
import { programNode, type ProgrammedNode } from './ebpf-lab.ts';

const LOAD = fileURLToPath(new URL('../lab/load.ts', import.meta.url));
const VIP = '10.96.0.62';
const VIP6 = 'fd00:96::62';
const BULK = 5001;
const BYTES = 8 << 20;

describe('eBPF datapath: hairpin', () => {
  let lab: Lab;
  let n0: ProgrammedNode;
  let pod: LabPod;

  /** Packets the host end of the pod's pair sent (into the pod) and received (from it). */
  const hostEnd = async (): Promise<{ tx: number; rx: number }> => {
    const [l] = JSON.parse(await lab.exec(lab.nodes[0]!.netns, 'ip', ['-s', '-j', 'link', 'show', 'dev', pod.hostIf])) as Array<{ stats64: { rx: { packets: number }; tx: { packets: number } } }>;
    return { tx: l!.stats64.tx.packets, rx: l!.stats64.rx.packets };
  };
  const bulk = async (host: string): Promise<number> =>
    (JSON.parse(await lab.exec(pod.netns, process.execPath, [LOAD, JSON.stringify({ mode: 'bulk', host, port: BULK, bytes: BYTES, idleMs: 10_000 })])) as { bytes: number }).bytes;
  const families = (): Array<{ vip: string; node: string }> => [{ vip: VIP, node: lab.nodes[0]!.ipv4 }, { vip: VIP6, node: lab.nodes[0]!.ipv6 }];
  const ingress = (prog: 'sy_from_veth' | 'sy_from_pod'): void =>
    void tcAttach({ ifname: pod.hostIf, netns: netnsPath(lab.nodes[0]!.netns), direction: 'ingress', progFd: n0.datapath.programFd(prog) });

  before(async () => {
    lab = await Lab.create({ nodes: 1, podsPerNode: 2, bulkPort: BULK });
    pod = lab.pod('n0p0');
    n0 = programNode(lab, lab.nodes[0]!);
    n0.tracker.upsertService(service({ name: 'hairpin', clusterIPs: [VIP, VIP6], ports: [{ name: 'http', port: 80, targetPort: 8080 }, { name: 'bulk', port: BULK }] }));
    const ports = [{ name: 'http', port: 8080 }, { name: 'bulk', port: BULK }];
    n0.tracker.upsertSlice(slice({ name: 'hairpin-4', service: 'hairpin', ports, endpoints: [{ ip: pod.ipv4, node: 'n0' }] }));
    n0.tracker.upsertSlice(slice({ name: 'hairpin-6', service: 'hairpin', family: 6, ports, endpoints: [{ ip: pod.ipv6, node: 'n0' }] }));
    n0.tracker.flush();
    assert.deepEqual(n0.datapath.sync(compileDatapath(n0.tracker.state())).failed, []);
  });

  after(async () => {
    n0?.datapath.close();
    await lab?.teardown();
  });

  it('the lab, as the agent, puts sy_from_veth on a pod\'s veth (its peer is in the pod\'s namespace)', () => {
    const attached = tcQuery({ ifname: pod.hostIf, netns: netnsPath(lab.nodes[0]!.netns), direction: 'ingress' });
    assert.equal(attached, progInfo(n0.datapath.programFd('sy_from_veth')).id);
  });

  it('sy_from_veth: masqueraded to the node, and no packet of the flow leaves by the host end (IPv4, IPv6)', async () => {
    ingress('sy_from_veth');
    for (const f of families()) {
      const results = await lab.probe(pod.netns, { targets: [{ proto: 'tcp', host: f.vip, port: 80 }], count: 3 });
      for (const r of results) {
        assert.ok(r.ok, JSON.stringify(r));
        assert.equal(r.reply.pod, pod.name);
        assert.equal(r.reply.client, f.node, 'the pod sees the node as the client');
      }
      const before = await hostEnd();
      assert.equal(await bulk(f.vip), BYTES, f.vip);
      const sent = await hostEnd();
      assert.ok(sent.rx - before.rx > 100, `${f.vip}: the host end received ${sent.rx - before.rx} packets`);
      // The first packets of a flow may go through the neighbour path (bpf_redirect_neigh) while
      // the host has no neighbour entry for the pod yet; the rest are handed to the pod's end.
      assert.ok(sent.tx - before.tx < 10, `${f.vip}: the host end sent ${sent.tx - before.tx} of ${sent.rx - before.rx}`);
    }
  });

  it('sy_from_pod: the same hairpin crosses the host end\'s egress, masqueraded alike', async () => {
    ingress('sy_from_pod');
    try {
      for (const f of families()) {
        const results = await lab.probe(pod.netns, { targets: [{ proto: 'tcp', host: f.vip, port: 80 }], count: 2 });
        for (const r of results) assert.ok(r.ok && r.reply.client === f.node, JSON.stringify(r));
        const before = await hostEnd();
        assert.equal(await bulk(f.vip), BYTES, f.vip);
        const sent = await hostEnd();
        assert.ok(sent.tx - before.tx >= sent.rx - before.rx - 10, `${f.vip}: the host end sent ${sent.tx - before.tx} of ${sent.rx - before.rx}`);
      }
    } finally {
      ingress('sy_from_veth');
    }
  });
});
