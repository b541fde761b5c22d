// Programs the eBPF datapath on every node of a lab from the semantic cluster, as an agent
// would: one model per node (its own node facts), compiled, synced into pinned maps, attached.
import { execFileSync } from 'node:child_process';
import { cgroupAttach, netnsCookie, tcAttach, xdpAttach, type CgroupAttachType, type XdpMode } from '../../control/bpf/attach.ts';
import { parseLinks, podIngressProgram, xdpChoice } from '../../control/backends/ebpf/devices.ts';
import { DEFAULT_SNAT_PORTS } from '../../control/backends/ebpf/backend.ts';
import { compileDatapath } from '../../control/backends/ebpf/compile.ts';
import { EbpfDatapath } from '../../control/backends/ebpf/datapath.ts';
import { datapathObjectPath } from '../../control/backends/ebpf/object-path.ts';
import type { ChangeTracker } from '../../control/model/tracker.ts';
import type { ModelConfig } from '../../control/model/types.ts';
import { netnsPath, type Lab, type LabNode } from '../lab/lab.ts';
import { semanticTracker } from './semantic-lab.ts';

/** The build this kernel loads, as the agent picks it. */
export const datapathObject = datapathObjectPath();

export interface ProgrammedNode {
  node: LabNode;
  tracker: ChangeTracker;
  datapath: EbpfDatapath;
  /** The node's cgroup: its processes get socket-level load balancing. */
  cgroup: string;
}

/**
 * The semantic cluster, unless `fill` loads another one into the node's model. xdpMode on the
 * wire device decides as the agent's does (auto, the default: none on the lab's veths; native
 * to attach XDP anyway; off leaves XDP to the test); model replaces the semantic configuration;
 * podIngress overrides the program the agent would pick for the pods' devices (benchmarks).
 */
export function programNode(lab: Lab, n: LabNode, fill?: (tracker: ChangeTracker) => void, object = datapathObject, options: { xdpMode?: XdpMode | 'off'; model?: ModelConfig; podIngress?: 'sy_from_pod' | 'sy_from_veth' } = {}): ProgrammedNode {
  const tracker = semanticTracker(n, fill, options.model);
  const datapath = EbpfDatapath.open({ object, pinDir: lab.bpffsDir(`dp-${n.name}`) });
  datapath.configure({
    nodeIp4: n.ipv4,
    nodeIp6: n.ipv6,
    snatPortMin: DEFAULT_SNAT_PORTS.min,
    snatPortMax: DEFAULT_SNAT_PORTS.max,
    flags: 0,
    ctTimeoutTcpNs: 86_400n * 1_000_000_000n,
    ctTimeoutUdpNs: 60n * 1_000_000_000n,
    hostNetnsCookie: netnsCookie(netnsPath(n.netns)),
  });
  const report = datapath.sync(compileDatapath(tracker.state()));
  if (report.failed.length > 0) throw new Error(`sync failed: ${JSON.stringify(report.failed)}`);
  const ns = netnsPath(n.netns);
  for (const pod of n.pods) {
    // As the agent picks it by device kind (the lab's pod devices are veths: sy_from_veth).
    const [link] = parseLinks(execFileSync('ip', ['-n', n.netns, '-d', '-j', 'link', 'show', 'dev', pod.hostIf], { timeout: 10_000 }).toString());
    tcAttach({ ifname: pod.hostIf, netns: ns, direction: 'ingress', progFd: datapath.programFd(options.podIngress ?? podIngressProgram(link!)) });
    tcAttach({ ifname: pod.hostIf, netns: ns, direction: 'egress', progFd: datapath.programFd('sy_to_pod') });
  }
  tcAttach({ ifname: n.wireIf, netns: ns, direction: 'ingress', progFd: datapath.programFd('sy_from_external') });
  tcAttach({ ifname: n.wireIf, netns: ns, direction: 'egress', progFd: datapath.programFd('sy_to_external') });
  const [wire] = parseLinks(execFileSync('ip', ['-n', n.netns, '-d', '-j', 'link', 'show', 'dev', n.wireIf], { timeout: 10_000 }).toString());
  const xdp = xdpChoice(wire!, options.xdpMode ?? 'auto');
  if ('mode' in xdp) xdpAttach({ ifname: n.wireIf, netns: ns, progFd: datapath.programFd('sy_xdp_external'), mode: xdp.mode });
  const cgroup = lab.cgroup(n);
  for (const hook of ['connect', 'sendmsg', 'recvmsg', 'getpeername']) {
    for (const v of ['4', '6']) cgroupAttach(cgroup, `${hook}${v}` as CgroupAttachType, datapath.programFd(`sy_sock_${hook}${v}`));
  }
  return { node: n, tracker, datapath, cgroup };
}
