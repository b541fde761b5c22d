// SNAT through a NodePort against the pod directly, in one run: the external client opens
// sequential connections (connect, read, close) to a NodePort with eTP Cluster on n0 (every one
// masqueraded) served by one pod on n1, and the same number straight to that pod, routed through
// n0 untranslated; then a bulk download each way. Rounds alternate between the two paths.
//   npm run bench:snat   (root; BENCH_SNAT_XDP=native|off: XDP on the wire device as that
//   xdpMode would have it; default auto, the agent's, which leaves it off the lab's veths)
import { fileURLToPath } from 'node:url';
import { compileDatapath } from '../control/backends/ebpf/compile.ts';
import { programNode } from '../test/backends/ebpf-lab.ts';
import { service, slice } from '../test/cases/objects.ts';
import { Lab } from '../test/lab/lab.ts';
import { writeReport } from './report.ts';

const LOAD = fileURLToPath(new URL('../test/lab/load.ts', import.meta.url));
const ROUNDS = 3;
const CONNECTIONS = Number(process.env.BENCH_SNAT_CONNECTIONS ?? 10_000);
const xdpModeOf = (v: string | undefined): 'auto' | 'native' | 'off' => (v === 'native' || v === 'off' ? v : 'auto');

const lab = await Lab.create({ nodes: 2, podsPerNode: 2, ports: [8080], bulkPort: 5001 });
try {
  const server = lab.pod('n1p1');
  const n0 = lab.nodes[0]!;
  const nodes = lab.nodes.map((n) =>
    programNode(lab, n, (t) => {
      t.upsertService(service({ name: 'snat', type: 'NodePort', clusterIPs: ['10.96.6.1'], ports: [{ name: 'echo', port: 80, targetPort: 8080, nodePort: 30097 }, { name: 'bulk', port: 5001, targetPort: 5001, nodePort: 30098 }] }));
      t.upsertSlice(slice({ name: 'snat-x', service: 'snat', ports: [{ name: 'echo', port: 8080 }, { name: 'bulk', port: 5001 }], endpoints: [{ ip: server.ipv4, node: 'n1' }] }));
    }, undefined, { xdpMode: xdpModeOf(process.env.BENCH_SNAT_XDP) }),
  );
  for (const n of nodes) n.datapath.sync(compileDatapath(n.tracker.state()));
  // The direct path goes through n0 as well, untranslated.
  await lab.exec(lab.external.netns, 'ip', ['route', 'replace', `${server.ipv4}/32`, 'via', n0.ipv4]);
  const load = async (request: object): Promise<Record<string, number>> => JSON.parse(await lab.exec(lab.external.netns, process.execPath, [LOAD, JSON.stringify(request)])) as Record<string, number>;
  const cps: Array<[number, number]> = [];
  const gbps: Array<[number, number]> = [];
  const failures = { direct: 0, nodePort: 0 };
  for (let i = 0; i < ROUNDS; i++) {
    const d = await load({ mode: 'connections', host: server.ipv4, port: 8080, count: CONNECTIONS });
    const v = await load({ mode: 'connections', host: n0.ipv4, port: 30097, count: CONNECTIONS });
    failures.direct += d.failures!;
    failures.nodePort += v.failures!;
    cps.push([d.perSecond!, v.perSecond!]);
  }
  for (let i = 0; i < ROUNDS; i++) {
    gbps.push([(await load({ mode: 'bulk', host: server.ipv4, port: 5001, bytes: 1 << 29 })).gbitPerSecond!, (await load({ mode: 'bulk', host: n0.ipv4, port: 30098, bytes: 1 << 29 })).gbitPerSecond!]);
  }
  const median = (p: Array<[number, number]>): number => +p.map(([d, v]) => v / d).sort((a, b) => a - b)[p.length >> 1]!.toFixed(3);
  const best = (p: Array<[number, number]>, i: 0 | 1): number => Math.max(...p.map((x) => x[i]));
  const rows = [
    { path: 'pod IP through n0 (baseline)', connectionsPerSecond: Math.round(best(cps, 0)), gbitPerSecond: +best(gbps, 0).toFixed(2), failures: failures.direct },
    { path: 'NodePort, eTP Cluster (SNAT)', connectionsPerSecond: Math.round(best(cps, 1)), gbitPerSecond: +best(gbps, 1).toFixed(2), failures: failures.nodePort },
  ];
  console.table(rows);
  const ratios = { connectionsMedianOfPairs: median(cps), throughputMedianOfPairs: median(gbps) };
  console.log(`NodePort (SNAT) / direct, median of paired rounds: connections ${ratios.connectionsMedianOfPairs}x, throughput ${ratios.throughputMedianOfPairs}x`);
  console.log(`written ${writeReport('snat', { rows, ratios, cps, gbps, conntrackEntries: nodes[0]!.datapath.conntrackEntries(), note: `${ROUNDS} rounds of ${CONNECTIONS} sequential connections per path, alternating; external client -> n0 -> pod n1p1; tx offloads as the lab sets them (on)` })}`);
  for (const n of nodes) n.datapath.close();
} finally {
  await lab.teardown();
}
