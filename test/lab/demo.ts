// `npm run demo`: the main job on an embedded default. Builds a 2-node lab, runs the Switchyard
// agent on node n0 in its default (eBPF) mode from a manifests directory, sends connections to a
// ClusterIP (from a pod) and a NodePort (from outside), prints how they spread over the pods and
// what the agent's metrics counted, then cleans everything up on Ctrl-C or after --duration.
//   npm run demo -- [--duration SECONDS] [--connections N]
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { FlagError, parseFlags, renderFlagHelp, type FlagSpec } from '../../control/cli/flags.ts';
import { startAgent } from '../agent/harness.ts';
import { Lab, type LabPod } from './lab.ts';
import type { ProbeResult } from './probe.ts';
import { sweepStale } from './sweep.ts';
import { until } from '../wait.ts';

const GET = fileURLToPath(new URL('./http-get.ts', import.meta.url));
const VIP = '10.96.0.10';
const NODE_PORT = 30080;

function manifests(backends: LabPod[]): string {
  const dir = mkdtempSync(join(tmpdir(), 'switchyard-demo-'));
  writeFileSync(
    join(dir, 'echo.yaml'),
    `apiVersion: v1
kind: Service
metadata: {name: echo, namespace: demo}
spec:
  type: NodePort
  clusterIP: ${VIP}
  ports: [{name: http, port: 80, targetPort: 8080, nodePort: ${NODE_PORT}, protocol: TCP}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: echo-1
  namespace: demo
  labels: {kubernetes.io/service-name: echo}
addressType: IPv4
ports: [{name: http, port: 8080, protocol: TCP}]
endpoints:
${backends.map((b) => `  - addresses: ["${b.ipv4}"]\n    nodeName: ${b.node.name}`).join('\n')}
`,
  );
  return dir;
}

function spread(title: string, results: ProbeResult[], pods: string[]): string {
  const rows = pods.map((pod) => {
    const n = results.filter((r) => r.ok && r.reply.pod === pod).length;
    return `  ${pod.padEnd(6)} ${String(n).padStart(4)}  ${'#'.repeat(n)}`;
  });
  const seen = [...new Set(results.filter((r) => r.ok).map((r) => (r.ok ? r.reply.client : '')))].join(', ');
  return `${title}\n${rows.join('\n')}\n  failed ${results.filter((r) => !r.ok).length}; the pods saw the client as ${seen}`;
}

const USAGE = 'usage: npm run demo -- [--duration SECONDS] [--connections N]';
const DEMO_FLAGS: readonly FlagSpec[] = [
  { name: 'duration', type: 'float', placeholder: 'seconds', help: 'Stop after this many seconds (default: run until Ctrl-C).', origin: 'switchyard' },
  { name: 'connections', type: 'int', default: '30', help: 'Connections per round to each frontend.', origin: 'switchyard' },
  { name: 'help', short: 'h', type: 'bool', help: 'Print this help and exit.', origin: 'switchyard' },
];

/** The demo's options, or the exit code when there is nothing to run (help, a bad flag). */
function options(argv: string[]): { durationMs: number; connections: number } | number {
  try {
    const { values, args } = parseFlags(argv, DEMO_FLAGS);
    if (values.get('help') === true) {
      process.stdout.write(`${USAGE}\n\nBuilds a 2-node lab, runs the agent on n0 and sends connections to a ClusterIP and a NodePort.\n\n${renderFlagHelp(DEMO_FLAGS)}\n`);
      return 0;
    }
    if (args.length > 0) throw new FlagError(`unexpected argument "${args[0]}"`);
    const duration = values.get('duration') as number | undefined;
    if (duration !== undefined && !(duration > 0)) throw new FlagError(`--duration: want a number of seconds > 0, got ${duration}`);
    const connections = (values.get('connections') as number | undefined) ?? 30;
    if (connections < 1) throw new FlagError(`--connections: want at least 1, got ${connections}`);
    return { durationMs: duration === undefined ? Infinity : duration * 1000, connections };
  } catch (e) {
    if (!(e instanceof FlagError)) throw e;
    process.stderr.write(`demo: ${e.message}\n${USAGE}\n`);
    return 2;
  }
}

async function main(): Promise<void> {
  const parsed = options(process.argv.slice(2));
  if (typeof parsed === 'number') {
    process.exitCode = parsed;
    return;
  }
  const { durationMs, connections } = parsed;
  let stopping = false;
  // First Ctrl-C: finish the round and clean up; a second one exits at once (the lab's exit
  // handler still tears everything down).
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.on(signal, () => {
      if (stopping) process.exit(130);
      stopping = true;
    });
  }
  const swept = sweepStale();
  if (swept.length > 0) console.log(`swept ${swept.length} leftovers of earlier runs`);
  const lab = await Lab.create({ nodes: 2, podsPerNode: 3 });
  const node = lab.nodes[0]!;
  const client = lab.pod('n0p0');
  const backends = lab.pods.filter((p) => p !== client);
  const dir = manifests(backends);
  console.log(`lab ${lab.prefix}: nodes ${lab.nodes.map((n) => `${n.name} ${n.ipv4}`).join(', ')}; external client ${lab.external.ipv4}`);
  const agent = startAgent(lab, node, dir, ['--healthz-bind-address', '127.0.0.1:10256', '--metrics-bind-address', '127.0.0.1:10249']);
  try {
    const synced = await agent.synced;
    console.log(`switchyard agent on ${node.name} (eBPF mode, manifests ${dir}): programmed ${synced.frontendsWritten} frontends and ${synced.backendsWritten} backends`);
    console.log(`service demo/echo: ClusterIP ${VIP}:80 and NodePort ${node.ipv4}:${NODE_PORT} -> ${backends.map((b) => b.name).join(', ')}`);
    console.log(`metrics: http://127.0.0.1:10249/metrics inside ${node.name}  (nsenter --net=/run/netns/${node.netns} curl -s http://127.0.0.1:10249/metrics)`);
    const started = Date.now();
    let seenPackets = 0;
    for (let round = 1; !stopping && Date.now() - started < durationMs; round++) {
      const viaVip = await lab.probe(client.netns, { targets: [{ proto: 'tcp', host: VIP, port: 80 }], count: connections });
      const viaNodePort = await lab.probe(lab.external.netns, { targets: [{ proto: 'tcp', host: node.ipv4, port: NODE_PORT }], count: connections });
      console.log(`\nround ${round}`);
      console.log(spread(`  ${connections} connections from pod ${client.name} to ClusterIP ${VIP}:80`, viaVip, backends.map((b) => b.name)));
      console.log(spread(`  ${connections} connections from outside to NodePort ${node.ipv4}:${NODE_PORT}`, viaNodePort, backends.map((b) => b.name)));
      // The agent re-reads the datapath's counters every 10 s (never per scrape): this round's
      // packets show once that snapshot was taken, so ask until it has (bounded).
      const total = (lines: string[]): number => lines.reduce((n, l) => n + Number(l.trim().split(' ').at(-1) ?? 0), 0);
      let packets: string[] = [];
      await until('the agent\'s counters to show this round', async () => {
        const metrics = JSON.parse(await lab.exec(node.netns, process.execPath, [GET, 'http://127.0.0.1:10249/metrics'])) as { body: string };
        packets = metrics.body.split('\n').filter((l) => l.startsWith('switchyard_service_packets_total{service_port="demo/echo')).map((l) => `  ${l}`);
        return total(packets) > seenPackets || stopping;
      }, 15_000, 500).catch(() => undefined); // a demo prints what it has rather than stop
      seenPackets = total(packets);
      console.log(`  agent metrics:\n${packets.join('\n')}`);
      const left = durationMs - (Date.now() - started);
      if (left > 0) await new Promise((r) => setTimeout(r, Math.min(1000, left)));
    }
  } finally {
    agent.child.kill('SIGTERM');
    await lab.teardown();
    rmSync(dir, { recursive: true, force: true });
    console.log(`\ncleaned up lab ${lab.prefix}`);
  }
}

await main();
