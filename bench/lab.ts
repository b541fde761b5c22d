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
const ROUNDS = 3;

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
  const best = async (f: () => Promise<number>): Promise<number> => {
    let b = 0;
    for (let i = 0; i < ROUNDS; i++) b = Math.max(b, await f());
    return b;
  };
  let load = loadFrom(clients.direct);
  const direct = { cps: await best(async () => (await load({ mode: 'connections', host: server.ipv4, port: 8080, seconds: 3 })).perSecond!), gbps: await best(async () => (await load({ mode: 'bulk', host: server.ipv4, port: 5001, bytes: 1 << 30 })).gbitPerSecond!) };
  load = loadFrom(clients.vip);
  const viaVip = { cps: await best(async () => (await load({ mode: 'connections', host: VIP, port: 80, seconds: 3 })).perSecond!), gbps: await best(async () => (await load({ mode: 'bulk', host: VIP, port: 5001, bytes: 1 << 30 })).gbitPerSecond!) };
  const rows = [
    { path: 'pod IP (baseline)', connectionsPerSecond: Math.round(direct.cps), gbitPerSecond: +direct.gbps.toFixed(2) },
    { path: 'ClusterIP (eBPF)', connectionsPerSecond: Math.round(viaVip.cps), gbitPerSecond: +viaVip.gbps.toFixed(2) },
  ];
  console.table(rows);
  const ratios = { connections: +(viaVip.cps / direct.cps).toFixed(3), throughput: +(viaVip.gbps / direct.gbps).toFixed(3) };
  console.log(`ClusterIP / direct: connections ${ratios.connections}x, throughput ${ratios.throughput}x`);
  console.log(`written ${writeReport('lab', { rows, ratios, note: 'best of 3 rounds; clients n0p0 (direct) and n0p2 (ClusterIP), server n1p1 on the other node' })}`);
  for (const n of nodes) n.datapath.close();
} finally {
  await lab.teardown();
}
