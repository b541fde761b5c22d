// Through a ClusterIP vs straight to the pod, in one run: sequential connection rate (connect,
// read, close) and bulk throughput, client pod n0p0, server pod n1p1 on the other node.
//   npm run bench:lab   (root)
import { fileURLToPath } from 'node:url';
import { compileDatapath } from '../control/backends/ebpf/compile.ts';
import { Lab } from '../test/lab/lab.ts';
import { programNode } from '../test/backends/ebpf-lab.ts';
import { writeReport } from './report.ts';

const LOAD = fileURLToPath(new URL('../test/lab/load.ts', import.meta.url));
const VIP = '10.96.0.90';
const ROUNDS = 5;

const lab = await Lab.create({ nodes: 2, podsPerNode: 3, bulkPort: 5001 });
try {
  const nodes = lab.nodes.map((n) => programNode(lab, n));
  const server = lab.pod('n1p1');
  for (const n of nodes) {
    n.tracker.upsertService({ apiVersion: 'v1', kind: 'Service', metadata: { name: 'bench', namespace: 'demo' }, spec: { clusterIP: VIP, ports: [{ name: 'echo', port: 80, targetPort: 8080 }, { name: 'bulk', port: 5001, targetPort: 5001 }] } });
    n.tracker.upsertSlice({ apiVersion: 'discovery.k8s.io/v1', kind: 'EndpointSlice', metadata: { name: 'bench-x', namespace: 'demo', labels: { 'kubernetes.io/service-name': 'bench' } }, addressType: 'IPv4', endpoints: [{ addresses: [server.ipv4], nodeName: 'n1' }], ports: [{ name: 'echo', port: 8080, protocol: 'TCP' }, { name: 'bulk', port: 5001, protocol: 'TCP' }] });
    n.tracker.flush();
    n.datapath.sync(compileDatapath(n.tracker.state()));
  }
  // Two client pods on the same node: the server closes first and keeps TIME_WAIT for 60 s, so
  // one client reusing a port towards the pod and then the VIP (same tuple at the server) would
  // measure TIME_WAIT collisions, not the datapath.
  const clients = { direct: lab.pod('n0p0').netns, vip: lab.pod('n0p2').netns };
  const loadFrom = (client: string) => async (request: object): Promise<Record<string, number>> =>
    JSON.parse(await lab.exec(client, process.execPath, [LOAD, JSON.stringify(request)])) as Record<string, number>;
  // Rounds alternate between the two paths, so that drift over the run (TIME_WAIT sockets piling
  // up at the server, a busy host) weighs on both alike. Reported: each path's best round, and
  // the median of the per-pair ratios (what a 2-core host's noise moves least).
  const loadDirect = loadFrom(clients.direct);
  const loadVip = loadFrom(clients.vip);
  const pairs = { cps: [] as Array<[number, number]>, gbps: [] as Array<[number, number]> };
  for (let i = 0; i < ROUNDS; i++) {
    pairs.cps.push([(await loadDirect({ mode: 'connections', host: server.ipv4, port: 8080, seconds: 3 })).perSecond!, (await loadVip({ mode: 'connections', host: VIP, port: 80, seconds: 3 })).perSecond!]);
  }
  for (let i = 0; i < ROUNDS; i++) {
    pairs.gbps.push([(await loadDirect({ mode: 'bulk', host: server.ipv4, port: 5001, bytes: 1 << 30 })).gbitPerSecond!, (await loadVip({ mode: 'bulk', host: VIP, port: 5001, bytes: 1 << 30 })).gbitPerSecond!]);
  }
  const best = (p: Array<[number, number]>, i: 0 | 1): number => Math.max(...p.map((x) => x[i]));
  const medianRatio = (p: Array<[number, number]>): number => +p.map(([d, v]) => v / d).sort((a, b) => a - b)[p.length >> 1]!.toFixed(3);
  const rows = [
    { path: 'pod IP (baseline)', connectionsPerSecond: Math.round(best(pairs.cps, 0)), gbitPerSecond: +best(pairs.gbps, 0).toFixed(2) },
    { path: 'ClusterIP (eBPF)', connectionsPerSecond: Math.round(best(pairs.cps, 1)), gbitPerSecond: +best(pairs.gbps, 1).toFixed(2) },
  ];
  console.table(rows);
  const ratios = {
    connections: +(best(pairs.cps, 1) / best(pairs.cps, 0)).toFixed(3),
    throughput: +(best(pairs.gbps, 1) / best(pairs.gbps, 0)).toFixed(3),
    connectionsMedianOfPairs: medianRatio(pairs.cps),
    throughputMedianOfPairs: medianRatio(pairs.gbps),
  };
  console.log(`ClusterIP / direct, best rounds: connections ${ratios.connections}x, throughput ${ratios.throughput}x; median of paired rounds: ${ratios.connectionsMedianOfPairs}x, ${ratios.throughputMedianOfPairs}x`);
  console.log(`written ${writeReport('lab', { rows, ratios, pairs, note: `${ROUNDS} rounds, the paths alternating; clients n0p0 (direct) and n0p2 (ClusterIP), server n1p1 on the other node` })}`);
  for (const n of nodes) n.datapath.close();
} finally {
  await lab.teardown();
}
