// Good neighbours: another agent's tc filter behind ours and its XDP program on a device we
// serve. With real packets in the lab: a counting tc filter at a later priority on a pod's
// device still sees that pod's traffic that is not for a service (ours return TC_ACT_UNSPEC for
// it) and none of the packets we translated (those end the chain, as a redirect would); a
// foreign XDP program on an external device stays attached, named in the refusal, while tc
// still serves the device; our own previous XDP program is replaced in place.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { ipv4, u64, bytes } from '../../control/bpf/codec.ts';
import { ForeignXdpProgramError, progInfo, tcAttach, xdpAttach, xdpQuery } from '../../control/bpf/attach.ts';
import { LoadedObject } from '../../control/bpf/object.ts';
import { EbpfDatapath } from '../../control/backends/ebpf/datapath.ts';
import { netnsPath, type Lab } from '../lab/lab.ts';
import { buildDir } from '../bpf/objects.ts';
import { labCases, semanticLab } from './semantic-lab.ts';
import { checkCase } from './case-check.ts';
import { datapathObject, programNode, type ProgrammedNode } from './ebpf-lab.ts';

const FOREIGN_PRIORITY = 20; // behind ours (priority 1), as a CNI's filter would be
const FOREIGN_HANDLE = 0x77;

describe('eBPF datapath next to another agent\'s tc filters and XDP programs', () => {
  let lab: Lab;
  let foreign: LoadedObject;
  let nodes: ProgrammedNode[] = [];
  let seen: (ifindex: number, addr: string, port: number) => bigint;
  let ifindexOf: (netns: string, ifname: string) => Promise<number>;

  before(async () => {
    lab = await semanticLab();
    foreign = LoadedObject.load(`${buildDir}fixtures/neighbour.o`);
    const counts = foreign.map('neighbour_seen', bytes(12), u64);
    seen = (ifindex, addr, port) => {
      const k = Buffer.alloc(12);
      k.writeUInt32LE(ifindex, 0);
      ipv4.encodeInto(addr, k, 4);
      k.writeUInt16BE(port, 8);
      return counts.get(k) ?? 0n;
    };
    ifindexOf = async (netns, ifname) => (JSON.parse(await lab.exec(netns, 'ip', ['-j', 'link', 'show', 'dev', ifname])) as Array<{ ifindex: number }>)[0]!.ifindex;
    const n0 = lab.nodes[0]!;
    const ns = netnsPath(n0.netns);
    // The other agent was there first: its XDP program on n0's external device, its tc filter
    // on the devices of pods n0p0 (from the pod) and n0p1 (to the pod).
    xdpAttach({ ifname: n0.wireIf, netns: ns, progFd: foreign.programFd('neighbour_xdp'), mode: 'native' });
    tcAttach({ ifname: n0.pods[0]!.hostIf, netns: ns, direction: 'ingress', handle: FOREIGN_HANDLE, priority: FOREIGN_PRIORITY, progFd: foreign.programFd('neighbour_tc') });
    tcAttach({ ifname: n0.pods[1]!.hostIf, netns: ns, direction: 'egress', handle: FOREIGN_HANDLE, priority: FOREIGN_PRIORITY, progFd: foreign.programFd('neighbour_tc') });
    nodes = lab.nodes.map((n) => programNode(lab, n, undefined, datapathObject, { xdpMode: n.index !== 0 ? 'native' : 'off' }));
  });

  after(async () => {
    for (const n of nodes) n.datapath.close();
    foreign?.close();
    await lab?.teardown();
  });

  it('a foreign filter at a later priority still sees a pod\'s traffic that is not for a service, in and out', async () => {
    const n0 = lab.nodes[0]!;
    const [p0, p1] = [n0.pods[0]!, n0.pods[1]!];
    const results = await lab.probe(p0.netns, { targets: [{ proto: 'tcp', host: p1.ipv4, port: 8081 }, { proto: 'udp', host: p1.ipv4, port: 8081 }], count: 3 });
    assert.ok(results.every((r) => r.ok && r.reply.pod === p1.name), JSON.stringify(results));
    // Each TCP connection sends at least SYN, ACK and FIN; each UDP probe one datagram.
    const from = seen(await ifindexOf(n0.netns, p0.hostIf), p1.ipv4, 8081);
    const to = seen(await ifindexOf(n0.netns, p1.hostIf), p1.ipv4, 8081);
    assert.ok(from >= 3n * 3n + 3n, `the filter behind sy_from_pod saw ${from} packets`);
    assert.ok(to >= 3n * 3n + 3n, `the filter behind sy_to_pod saw ${to} packets`);
  });

  it('packets we translated end the chain: the foreign filter sees none of a ClusterIP flow', async () => {
    const n0 = lab.nodes[0]!;
    const p0 = n0.pods[0]!;
    const results = await lab.probe(p0.netns, { targets: [{ proto: 'tcp', host: '10.96.0.10', port: 80 }], count: 4 });
    assert.ok(results.every((r) => r.ok), JSON.stringify(results));
    const ifindex = await ifindexOf(n0.netns, p0.hostIf);
    const backends = new Set(results.map((r) => (r.ok ? r.reply.pod : '')));
    for (const pod of lab.nodes.flatMap((n) => n.pods).filter((p) => backends.has(p.name))) assert.equal(seen(ifindex, pod.ipv4, 8080), 0n, `translated packets to ${pod.name}`);
    assert.equal(seen(ifindex, '10.96.0.10', 80), 0n);
  });

  it('a foreign XDP program is not replaced: the refusal names it, and tc still serves the device', async () => {
    const n0 = lab.nodes[0]!;
    const target = { ifname: n0.wireIf, netns: netnsPath(n0.netns) };
    const theirs = progInfo(foreign.programFd('neighbour_xdp'));
    assert.throws(
      () => xdpAttach({ ...target, progFd: nodes[0]!.datapath.programFd('sy_xdp_external'), mode: 'native' }),
      (e: unknown) => e instanceof ForeignXdpProgramError && e.progId === theirs.id && e.progName === 'neighbour_xdp' && e.message.includes(`XDP program ${theirs.id} "neighbour_xdp"`) && e.message.includes(n0.wireIf),
    );
    assert.equal(xdpQuery(target).progId, theirs.id, 'their program is still attached');
    const nodePort = labCases.find((c) => c.name === 'external -> NodePort, eTP Cluster: SNAT, all endpoints');
    assert.ok(nodePort);
    await checkCase(lab, nodePort, nodes[0]!.tracker.state());
  });

  it('our own previous XDP program (an earlier agent\'s) is replaced in place', () => {
    const n1 = lab.nodes[1]!;
    const target = { ifname: n1.wireIf, netns: netnsPath(n1.netns) };
    const before = xdpQuery(target).progId;
    assert.equal(before, progInfo(nodes[1]!.datapath.programFd('sy_xdp_external')).id);
    // A restarted agent: the same object loaded again over the same pins.
    const again = EbpfDatapath.open({ object: datapathObject, pinDir: lab.bpffsDir(`dp-${n1.name}`) });
    try {
      const mine = progInfo(again.programFd('sy_xdp_external')).id;
      xdpAttach({ ...target, progFd: again.programFd('sy_xdp_external'), mode: 'native' });
      assert.equal(xdpQuery(target).progId, mine);
    } finally {
      again.close();
    }
  });
});
