// Through a service vs straight to the pod, in one run, with TSO, GSO and GRO on for every veth
// of the lab and XDP as the agent's xdpMode decides (auto by default: none on veths).
//   - ClusterIP: sequential connection rate (connect, read, close) and bulk throughput, client
//     pod n0p2 (n0p0 for the direct path), server pod n1p1 on the other node;
//   - NodePort with SNAT (eTP Cluster): bulk from the external client through n0 to n1p1,
//     against the same transfer to n1p1 routed through n0 untranslated;
//   - hairpin ClusterIP: n1p1 reaching itself through the ClusterIP (masqueraded), against the
//     same transfer to the pod directly: to its own pod IP, which for a pod reaching itself never
//     leaves the pod (loopback, MTU 65536: the acceptance baseline); the same at the MTU of the
//     pod's eth0, the path MTU a hairpin has (the local route given that mtu and advmss, so TCP
//     uses the hairpin's MSS: what the MTU alone costs); and, for the cost of the veth crossings
//     any real path takes, against n1p0 -> n1p1 on the same node. Two hairpin paths, alternating in
//     the same rounds: as the agent attaches it (sy_from_veth: bpf_redirect_peer back into the pod)
//     and through the host end's egress (sy_from_pod: bpf_redirect, crossing the pair again).
//     For reference, before any eBPF program is attached: kube-proxy's own iptables hairpin (DNAT
//     and MASQUERADE through n1's stack) against the same own pod IP, in rounds of its own.
//   npm run bench:paths   (root; BENCH_LAB_XDP=native|off overrides xdpMode auto)
import { fileURLToPath } from 'node:url';
import { compileDatapath } from '../control/backends/ebpf/compile.ts';
import { IptablesBackend } from '../control/backends/iptables/apply.ts';
import { cleanupIptables, defaultRunner } from '../control/backends/iptables/cleanup.ts';
import { nodeFacts } from '../control/model/node.ts';
import { ChangeTracker } from '../control/model/tracker.ts';
import { config } from '../test/cases/semantics.ts';
import { tcAttach, xdpQuery } from '../control/bpf/attach.ts';
import { inNetns, Lab, netnsPath } from '../test/lab/lab.ts';
import { programNode } from '../test/backends/ebpf-lab.ts';
import { writeReport } from './report.ts';

const LOAD = fileURLToPath(new URL('../test/lab/load.ts', import.meta.url));
const VIP = '10.96.0.90';
const NODE_PORT = 30098;
const ROUNDS = Number(process.env.BENCH_LAB_ROUNDS ?? 5);
const BULK_BYTES = 1 << 30;
const XDP_MODE = ((v) => (v === 'native' || v === 'off' ? v : 'auto'))(process.env.BENCH_LAB_XDP);

const lab = await Lab.create({ nodes: 2, podsPerNode: 3, bulkPort: 5001 });
try {
  const offloads = await offloadsOn(lab);
  const iptablesHairpinGbps = await iptablesHairpin(lab);
  const nodes = lab.nodes.map((n) => programNode(lab, n, undefined, undefined, { xdpMode: XDP_MODE }));
  const server = lab.pod('n1p1');
  const n0 = lab.nodes[0]!;
  for (const n of nodes) {
    n.tracker.upsertService({ apiVersion: 'v1', kind: 'Service', metadata: { name: 'bench', namespace: 'demo' }, spec: { type: 'NodePort', clusterIP: VIP, ports: [{ name: 'echo', port: 80, targetPort: 8080 }, { name: 'bulk', port: 5001, targetPort: 5001, nodePort: NODE_PORT }] } });
    n.tracker.upsertSlice({ apiVersion: 'discovery.k8s.io/v1', kind: 'EndpointSlice', metadata: { name: 'bench-x', namespace: 'demo', labels: { 'kubernetes.io/service-name': 'bench' } }, addressType: 'IPv4', endpoints: [{ addresses: [server.ipv4], nodeName: 'n1' }], ports: [{ name: 'echo', port: 8080, protocol: 'TCP' }, { name: 'bulk', port: 5001, protocol: 'TCP' }] });
    n.tracker.flush();
    n.datapath.sync(compileDatapath(n.tracker.state()));
  }
  const xdp = Object.fromEntries(lab.nodes.map((n) => [n.name, xdpQuery({ ifname: n.wireIf, netns: netnsPath(n.netns) }).progId === 0 ? 'none' : 'attached']));
  // The external client's direct path goes through n0 as well, untranslated.
  await lab.exec(lab.external.netns, 'ip', ['route', 'replace', `${server.ipv4}/32`, 'via', n0.ipv4]);
  const loadFrom = (netns: string) => async (request: object): Promise<Record<string, number>> =>
    JSON.parse(await lab.exec(netns, process.execPath, [LOAD, JSON.stringify(request)])) as Record<string, number>;
  // Two client pods on the same node: the server closes first and keeps TIME_WAIT for 60 s, so
  // one client reusing a port towards the pod and then the VIP (same tuple at the server) would
  // measure TIME_WAIT collisions, not the datapath.
  const fromDirect = loadFrom(lab.pod('n0p0').netns);
  const fromVip = loadFrom(lab.pod('n0p2').netns);
  const fromExternal = loadFrom(lab.external.netns);
  const fromServer = loadFrom(server.netns);
  const fromNeighbour = loadFrom(lab.pod('n1p0').netns);
  // The local route of the server's own address (iproute2 shows it as the kernel made it), and
  // that route with the MTU of its eth0 for the rounds at the hairpin's MTU.
  const podMtu = (JSON.parse(await lab.exec(server.netns, 'ip', ['-j', 'link', 'show', 'dev', 'eth0'])) as Array<{ mtu: number }>)[0]!.mtu;
  const localRoute = (metrics: string[]): Promise<string> => lab.exec(server.netns, 'ip', ['route', 'replace', 'local', server.ipv4, 'dev', 'eth0', 'table', 'local', 'proto', 'kernel', 'scope', 'host', 'src', server.ipv4, ...metrics]);
  // The server pod's device gets one or the other program for a hairpin round (a tc replace; both
  // share the node's maps, and each transfer is a connection of its own).
  const serverIngress = (prog: 'sy_from_veth' | 'sy_from_pod'): void => void tcAttach({ ifname: server.hostIf, netns: netnsPath(lab.nodes[1]!.netns), direction: 'ingress', progFd: nodes[1]!.datapath.programFd(prog) });
  const bulk = (host: string, port: number) => ({ mode: 'bulk', host, port, bytes: BULK_BYTES });
  // Rounds alternate between the two paths of a row, so that drift over the run (TIME_WAIT
  // sockets piling up at the server, a busy host) weighs on both alike. Reported: each path's best
  // round, and the median of the per-pair ratios (what a 2-core host's noise moves least).
  const pairs = { cps: [] as Array<[number, number]>, gbps: [] as Array<[number, number]>, nodePortGbps: [] as Array<[number, number]>, hairpinGbps: [] as Array<[number, number]>, hairpinEgressGbps: [] as Array<[number, number]>, ownMtuGbps: [] as Array<[number, number]>, sameNodeGbps: [] as Array<[number, number]>, peerVsEgressGbps: [] as Array<[number, number]> };
  for (let i = 0; i < ROUNDS; i++) {
    pairs.cps.push([(await fromDirect({ mode: 'connections', host: server.ipv4, port: 8080, seconds: 3 })).perSecond!, (await fromVip({ mode: 'connections', host: VIP, port: 80, seconds: 3 })).perSecond!]);
  }
  for (let i = 0; i < ROUNDS; i++) {
    pairs.gbps.push([(await fromDirect(bulk(server.ipv4, 5001))).gbitPerSecond!, (await fromVip(bulk(VIP, 5001))).gbitPerSecond!]);
    pairs.nodePortGbps.push([(await fromExternal(bulk(server.ipv4, 5001))).gbitPerSecond!, (await fromExternal(bulk(n0.ipv4, NODE_PORT))).gbitPerSecond!]);
    const own = (await fromServer(bulk(server.ipv4, 5001))).gbitPerSecond!;
    await localRoute(['mtu', String(podMtu), 'advmss', String(podMtu - 40)]);
    const ownAtMtu = (await fromServer(bulk(server.ipv4, 5001))).gbitPerSecond!;
    await localRoute([]);
    const hairpin = (await fromServer(bulk(VIP, 5001))).gbitPerSecond!;
    serverIngress('sy_from_pod');
    const hairpinEgress = (await fromServer(bulk(VIP, 5001))).gbitPerSecond!;
    serverIngress('sy_from_veth');
    const neighbour = (await fromNeighbour(bulk(server.ipv4, 5001))).gbitPerSecond!;
    pairs.hairpinGbps.push([own, hairpin]);
    pairs.hairpinEgressGbps.push([own, hairpinEgress]);
    pairs.ownMtuGbps.push([ownAtMtu, hairpin]);
    pairs.sameNodeGbps.push([neighbour, hairpin]);
    pairs.peerVsEgressGbps.push([hairpinEgress, hairpin]);
  }
  const best = (p: Array<[number, number]>, i: 0 | 1): number => Math.max(...p.map((x) => x[i]));
  const medianRatio = (p: Array<[number, number]>): number => +p.map(([d, v]) => v / d).sort((a, b) => a - b)[p.length >> 1]!.toFixed(3);
  const gbit = (p: Array<[number, number]>, i: 0 | 1): number => +best(p, i).toFixed(2);
  const rows = [
    { path: 'pod IP, n0p0 -> n1p1 (baseline)', connectionsPerSecond: Math.round(best(pairs.cps, 0)), gbitPerSecond: gbit(pairs.gbps, 0) },
    { path: 'ClusterIP, n0p2 -> n1p1', connectionsPerSecond: Math.round(best(pairs.cps, 1)), gbitPerSecond: gbit(pairs.gbps, 1), ratioMedianOfPairs: medianRatio(pairs.gbps) },
    { path: 'pod IP, external -> n0 -> n1p1 (baseline)', gbitPerSecond: gbit(pairs.nodePortGbps, 0) },
    { path: 'NodePort, eTP Cluster (SNAT), external -> n0 -> n1p1', gbitPerSecond: gbit(pairs.nodePortGbps, 1), ratioMedianOfPairs: medianRatio(pairs.nodePortGbps) },
    { path: 'pod directly: own pod IP, n1p1 -> n1p1, loopback in the pod (baseline)', gbitPerSecond: gbit(pairs.hairpinGbps, 0) },
    { path: 'hairpin ClusterIP, n1p1 -> VIP -> n1p1, bpf_redirect_peer (sy_from_veth) / own pod IP', gbitPerSecond: gbit(pairs.hairpinGbps, 1), ratioMedianOfPairs: medianRatio(pairs.hairpinGbps) },
    { path: 'hairpin ClusterIP via the host end\'s egress (sy_from_pod, before) / own pod IP', gbitPerSecond: gbit(pairs.hairpinEgressGbps, 1), ratioMedianOfPairs: medianRatio(pairs.hairpinEgressGbps) },
    { path: `pod directly at the hairpin's MTU: own pod IP, lo with the local route at mtu ${podMtu} (baseline 2; ratio: hairpin, redirect_peer / this)`, gbitPerSecond: gbit(pairs.ownMtuGbps, 0), ratioMedianOfPairs: medianRatio(pairs.ownMtuGbps) },
    { path: 'kube-proxy iptables mode, rounds of its own before eBPF: own pod IP (baseline)', gbitPerSecond: gbit(iptablesHairpinGbps, 0) },
    { path: 'kube-proxy iptables mode: hairpin ClusterIP (DNAT, MASQUERADE in the stack) / own pod IP', gbitPerSecond: gbit(iptablesHairpinGbps, 1), ratioMedianOfPairs: medianRatio(iptablesHairpinGbps) },
    { path: 'same-node pod: pod IP, n1p0 -> n1p1 (baseline 3; ratio: hairpin, redirect_peer / this)', gbitPerSecond: gbit(pairs.sameNodeGbps, 0), ratioMedianOfPairs: medianRatio(pairs.sameNodeGbps) },
  ];
  console.table(rows);
  const ratios = {
    connections: +(best(pairs.cps, 1) / best(pairs.cps, 0)).toFixed(3),
    throughput: +(best(pairs.gbps, 1) / best(pairs.gbps, 0)).toFixed(3),
    connectionsMedianOfPairs: medianRatio(pairs.cps),
    throughputMedianOfPairs: medianRatio(pairs.gbps),
    nodePortSnatThroughputMedianOfPairs: medianRatio(pairs.nodePortGbps),
    hairpinThroughputMedianOfPairs: medianRatio(pairs.hairpinGbps),
    hairpinEgressThroughputMedianOfPairs: medianRatio(pairs.hairpinEgressGbps),
    hairpinVsOwnPodIpAtPodMtuMedianOfPairs: medianRatio(pairs.ownMtuGbps),
    ownPodIpAtPodMtuVsLoopbackMedianOfPairs: medianRatio(pairs.hairpinGbps.map(([own], i) => [own, pairs.ownMtuGbps[i]![0]] as [number, number])),
    hairpinVsSameNodePodMedianOfPairs: medianRatio(pairs.sameNodeGbps),
    hairpinPeerVsEgressMedianOfPairs: medianRatio(pairs.peerVsEgressGbps),
    iptablesHairpinVsOwnPodIpMedianOfPairs: medianRatio(iptablesHairpinGbps),
  };
  console.log(`ClusterIP / direct, best rounds: connections ${ratios.connections}x, throughput ${ratios.throughput}x; median of paired rounds: ${ratios.connectionsMedianOfPairs}x, ${ratios.throughputMedianOfPairs}x`);
  console.log(`bulk, median of paired rounds: NodePort (SNAT) / direct ${ratios.nodePortSnatThroughputMedianOfPairs}x, hairpin ClusterIP / own pod IP ${ratios.hairpinThroughputMedianOfPairs}x (through the host end's egress: ${ratios.hairpinEgressThroughputMedianOfPairs}x; own pod IP at mtu ${podMtu} / at 65536: ${ratios.ownPodIpAtPodMtuVsLoopbackMedianOfPairs}x), / own pod IP at mtu ${podMtu} ${ratios.hairpinVsOwnPodIpAtPodMtuMedianOfPairs}x, / same-node pod ${ratios.hairpinVsSameNodePodMedianOfPairs}x, redirect_peer / host egress ${ratios.hairpinPeerVsEgressMedianOfPairs}x; iptables mode's hairpin / own pod IP ${ratios.iptablesHairpinVsOwnPodIpMedianOfPairs}x (xdpMode ${XDP_MODE}: ${JSON.stringify(xdp)})`);
  console.log(`written ${writeReport('paths', { rows, ratios, pairs: { ...pairs, iptablesHairpinGbps }, xdpMode: XDP_MODE, xdp, offloads, note: `${ROUNDS} rounds, the paths of each row alternating; ClusterIP clients n0p0 (direct) and n0p2; NodePort from the external client through n0; hairpin from n1p1 to itself (own pod IP also with its local route at the MTU of its eth0), with sy_from_veth (bpf_redirect_peer) and sy_from_pod (through the host end's egress) on its device in turn; ${BULK_BYTES} bytes per bulk transfer` })}`);
  for (const n of nodes) n.datapath.close();
} finally {
  await lab.teardown();
}

/**
 * kube-proxy's iptables mode on n1 alone (the hairpin never leaves it), the bench service only:
 * ROUNDS pairs of n1p1 to its own pod IP and to the ClusterIP; the rules are removed after.
 */
async function iptablesHairpin(l: Lab): Promise<Array<[number, number]>> {
  const n1 = l.nodes[1]!;
  const server = l.pod('n1p1');
  const prefix = inNetns(n1.netns);
  const tracker = new ChangeTracker(config, nodeFacts(n1.name, { metadata: { name: n1.name }, spec: { podCIDRs: [n1.podCidrV4] }, status: { addresses: [{ type: 'InternalIP', address: n1.ipv4 }] } }));
  tracker.upsertService({ apiVersion: 'v1', kind: 'Service', metadata: { name: 'bench', namespace: 'demo' }, spec: { clusterIP: VIP, ports: [{ name: 'bulk', port: 5001, targetPort: 5001 }] } });
  tracker.upsertSlice({ apiVersion: 'discovery.k8s.io/v1', kind: 'EndpointSlice', metadata: { name: 'bench-x', namespace: 'demo', labels: { 'kubernetes.io/service-name': 'bench' } }, addressType: 'IPv4', endpoints: [{ addresses: [server.ipv4], nodeName: 'n1' }], ports: [{ name: 'bulk', port: 5001, protocol: 'TCP' }] });
  tracker.flush();
  await new IptablesBackend({ families: [4], commandPrefix: prefix }).sync(tracker.state(), true);
  const load = async (host: string): Promise<number> => (JSON.parse(await l.exec(server.netns, process.execPath, [LOAD, JSON.stringify({ mode: 'bulk', host, port: 5001, bytes: BULK_BYTES })])) as { gbitPerSecond: number }).gbitPerSecond;
  const pairs: Array<[number, number]> = [];
  try {
    for (let i = 0; i < ROUNDS; i++) pairs.push([await load(server.ipv4), await load(VIP)]);
  } finally {
    await cleanupIptables(defaultRunner(prefix));
  }
  return pairs;
}

/** TSO, GSO and GRO on for every veth in the lab's namespaces; returns the devices per namespace. */
async function offloadsOn(l: Lab): Promise<Record<string, string[]>> {
  const namespaces = [l.fabric, l.external.netns, ...l.nodes.map((n) => n.netns), ...l.pods.map((p) => p.netns)];
  const done: Record<string, string[]> = {};
  for (const ns of namespaces) {
    const links = JSON.parse(await l.exec(ns, 'ip', ['-d', '-j', 'link', 'show', 'type', 'veth'])) as Array<{ ifname: string }>;
    for (const { ifname } of links) await l.exec(ns, 'ethtool', ['-K', ifname, 'tso', 'on', 'gso', 'on', 'gro', 'on']);
    done[ns] = links.map((x) => x.ifname);
  }
  return done;
}
