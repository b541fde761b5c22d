// Through a ClusterIP vs straight to the pod, per proxy mode, in one run: sequential connection
// rate (connect, read, close) and bulk throughput, client pods on n0, server pod n1p1 on the
// other node. The modes take turns on n0 (iptables, nftables, then eBPF without and with XDP,
// whose programs stay attached until the lab goes); within a mode, rounds alternate between the direct path and
// the ClusterIP, and the ratio reported is the median of the per-pair ratios.
//   npm run bench:lab   (root; BENCH_QUICK=1: 3 rounds of 2 s and 256 MiB instead of 5, 3 s, 1 GiB)
import { fileURLToPath } from 'node:url';
import { IptablesBackend } from '../control/backends/iptables/apply.ts';
import { cleanupIptables, defaultRunner } from '../control/backends/iptables/cleanup.ts';
import { NftablesBackend, nftRunner } from '../control/backends/nftables/apply.ts';
import { cleanupNftables } from '../control/backends/nftables/cleanup.ts';
import { nodeFacts } from '../control/model/node.ts';
import { ChangeTracker } from '../control/model/tracker.ts';
import { xdpAttach } from '../control/bpf/attach.ts';
import { programNode } from '../test/backends/ebpf-lab.ts';
import { config } from '../test/cases/semantics.ts';
import { inNetns, Lab, netnsPath } from '../test/lab/lab.ts';
import { QUICK, writeReport } from './report.ts';

const LOAD = fileURLToPath(new URL('../test/lab/load.ts', import.meta.url));
const VIP = '10.96.0.90';
const ROUNDS = QUICK ? 3 : 5;
const SECONDS = QUICK ? 2 : 3;
const BYTES = QUICK ? 1 << 28 : 1 << 30;
// eBPF twice: first with tc and socket programs only, then with XDP added on the wire device
// (native XDP on a veth changes how it batches: GRO), the same datapath both times.
const MODES = ['iptables', 'nftables', 'ebpf, no XDP', 'ebpf'] as const;

const lab = await Lab.create({ nodes: 2, podsPerNode: 5, bulkPort: 5001 });
try {
  const server = lab.pod('n1p1');
  const n0 = lab.nodes[0]!;
  const prefix = inNetns(n0.netns);
  const fill = (t: ChangeTracker): void => {
    t.upsertService({ apiVersion: 'v1', kind: 'Service', metadata: { name: 'bench', namespace: 'demo' }, spec: { clusterIP: VIP, ports: [{ name: 'echo', port: 80, targetPort: 8080 }, { name: 'bulk', port: 5001, targetPort: 5001 }] } });
    t.upsertSlice({ apiVersion: 'discovery.k8s.io/v1', kind: 'EndpointSlice', metadata: { name: 'bench-x', namespace: 'demo', labels: { 'kubernetes.io/service-name': 'bench' } }, addressType: 'IPv4', endpoints: [{ addresses: [server.ipv4], nodeName: 'n1' }], ports: [{ name: 'echo', port: 8080, protocol: 'TCP' }, { name: 'bulk', port: 5001, protocol: 'TCP' }] });
  };
  const tracker = new ChangeTracker(config, nodeFacts(n0.name, { metadata: { name: n0.name }, spec: { podCIDRs: [n0.podCidrV4] }, status: { addresses: [{ type: 'InternalIP', address: n0.ipv4 }] } }));
  fill(tracker);
  tracker.flush();
  // One client pod per path: the server closes first and keeps TIME_WAIT for 60 s, so one client
  // reusing a port towards the pod and then the VIP (same tuple at the server) would measure
  // TIME_WAIT collisions, not the datapath.
  const clients = { direct: 'n0p0', iptables: 'n0p1', nftables: 'n0p2', 'ebpf, no XDP': 'n0p3', ebpf: 'n0p4' };
  const load = (client: string) => async (request: object): Promise<Record<string, number>> =>
    JSON.parse(await lab.exec(lab.pod(client).netns, process.execPath, [LOAD, JSON.stringify(request)])) as Record<string, number>;
  const loadDirect = load(clients.direct);
  const best = (p: Array<[number, number]>, i: 0 | 1): number => Math.max(...p.map((x) => x[i]));
  const medianRatio = (p: Array<[number, number]>): number => +p.map(([d, v]) => v / d).sort((a, b) => a - b)[p.length >> 1]!.toFixed(3);
  // The direct path with nothing programmed, before any mode: what each mode's own direct
  // rounds (taken with its rules or programs in place) are compared against as well.
  const unproxied = { cps: 0, gbps: 0 };
  for (let i = 0; i < ROUNDS; i++) unproxied.cps = Math.max(unproxied.cps, (await loadDirect({ mode: 'connections', host: server.ipv4, port: 8080, seconds: SECONDS })).perSecond!);
  for (let i = 0; i < ROUNDS; i++) unproxied.gbps = Math.max(unproxied.gbps, (await loadDirect({ mode: 'bulk', host: server.ipv4, port: 5001, bytes: BYTES })).gbitPerSecond!);
  console.log(`nothing programmed, pod directly: ${Math.round(unproxied.cps)} connections/s, ${unproxied.gbps.toFixed(2)} Gbit/s`);
  const modes: Array<Record<string, unknown>> = [];
  let ebpf: ReturnType<typeof programNode> | undefined;
  for (const mode of MODES) {
    if (mode === 'iptables') await new IptablesBackend({ families: [4], commandPrefix: prefix }).sync(tracker.state(), true);
    if (mode === 'nftables') await new NftablesBackend({ families: [4], commandPrefix: prefix }).sync(tracker.state(), true);
    if (mode === 'ebpf, no XDP') ebpf = programNode(lab, n0, fill, undefined, { xdpMode: 'off' });
    if (mode === 'ebpf') xdpAttach({ ifname: n0.wireIf, netns: netnsPath(n0.netns), progFd: ebpf!.datapath.programFd('sy_xdp_external'), mode: 'auto' });
    const loadVip = load(clients[mode]);
    // Rounds alternate between the two paths, so that drift over the run (TIME_WAIT sockets piling
    // up at the server, a busy host) weighs on both alike.
    const pairs = { cps: [] as Array<[number, number]>, gbps: [] as Array<[number, number]> };
    for (let i = 0; i < ROUNDS; i++) {
      pairs.cps.push([(await loadDirect({ mode: 'connections', host: server.ipv4, port: 8080, seconds: SECONDS })).perSecond!, (await loadVip({ mode: 'connections', host: VIP, port: 80, seconds: SECONDS })).perSecond!]);
    }
    for (let i = 0; i < ROUNDS; i++) {
      pairs.gbps.push([(await loadDirect({ mode: 'bulk', host: server.ipv4, port: 5001, bytes: BYTES })).gbitPerSecond!, (await loadVip({ mode: 'bulk', host: VIP, port: 5001, bytes: BYTES })).gbitPerSecond!]);
    }
    if (mode === 'iptables') await cleanupIptables(defaultRunner(prefix));
    if (mode === 'nftables') await cleanupNftables(nftRunner(prefix));
    const row = {
      mode,
      directConnectionsPerSecond: Math.round(best(pairs.cps, 0)),
      clusterIpConnectionsPerSecond: Math.round(best(pairs.cps, 1)),
      directGbitPerSecond: +best(pairs.gbps, 0).toFixed(2),
      clusterIpGbitPerSecond: +best(pairs.gbps, 1).toFixed(2),
      connectionsRatio: medianRatio(pairs.cps),
      throughputRatio: medianRatio(pairs.gbps),
      clusterIpConnectionsVsUnproxied: +(best(pairs.cps, 1) / unproxied.cps).toFixed(3),
      clusterIpThroughputVsUnproxied: +(best(pairs.gbps, 1) / unproxied.gbps).toFixed(3),
      pairs,
    };
    console.log(`${mode}: ClusterIP / direct, median of paired rounds: connections ${row.connectionsRatio}x, throughput ${row.throughputRatio}x`);
    modes.push(row);
  }
  ebpf?.datapath.close();
  console.table(modes.map(({ pairs: _, ...r }) => r));
  console.log(`written ${writeReport('lab', { rounds: ROUNDS, seconds: SECONDS, bulkBytes: BYTES, unproxied: { connectionsPerSecond: Math.round(unproxied.cps), gbitPerSecond: +unproxied.gbps.toFixed(2) }, modes, note: `per mode ${ROUNDS} rounds of ${SECONDS} s sequential connections and ${ROUNDS} bulk downloads of ${BYTES / 2 ** 20} MiB, the two paths alternating (ratio: median of the paired rounds' ratios; the direct rounds run with that mode's rules or programs in place, which for eBPF includes XDP and tc on every device of n0); before any mode, the direct path with nothing programmed (best of ${ROUNDS}); direct client n0p0, ClusterIP clients n0p1 (iptables), n0p2 (nftables), n0p3 (eBPF, tc and socket programs), n0p4 (the same with XDP on n0's wire device); server n1p1 on the other node; one ClusterIP programmed; IPVS not run (no ip_vs in this kernel; its lab runs in the VM tests)` })}`);
} finally {
  await lab.teardown();
}
