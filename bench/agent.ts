// The whole agent as its users run it: the real executable in a lab node's netns, against the
// test API server (protobuf, kube-proxy's client rate limit qps 5 / burst 10) holding N services x
// 10 endpoints. Reports time to the first complete sync, peak and settled RSS, network
// programming latency under churn (20 EndpointSlice changes/s), failed /healthz and /livez probes
// (every 200 ms, 1 s timeout), event-loop lag during the churn, and SIGTERM exit time.
//   npm run bench:agent                       (eBPF mode at 1k and 10k services)
//   BENCH_AGENT_SERVICES=10000,100000 BENCH_AGENT_MODES=ebpf,iptables,nftables BENCH_AGENT_CHURN_S=60 npm run bench:agent
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { Lab, netnsPath } from '../test/lab/lab.ts';
import { writeReport } from './report.ts';

const MAIN = fileURLToPath(new URL('../control/cli/main.ts', import.meta.url));
const CLUSTER = fileURLToPath(new URL('./agent-cluster.ts', import.meta.url));
const SIZES = (process.env.BENCH_AGENT_SERVICES ?? '1000,10000').split(',').map(Number);
const MODES = (process.env.BENCH_AGENT_MODES ?? 'ebpf').split(',');
const CHURN_S = Number(process.env.BENCH_AGENT_CHURN_S ?? 30);
const CHURN_PER_S = 20;
const FIRST_SYNC_S = Number(process.env.BENCH_AGENT_FIRST_SYNC_S ?? 600);

function rssMiB(pid: number): number {
  try {
    const m = /^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m === null ? 0 : Number(m[1]) / 1024;
  } catch {
    return 0;
  }
}

/** RSS of a process and its children (iptables-restore, nft, ip monitor). */
function treeRssMiB(pid: number): number {
  let total = rssMiB(pid);
  try {
    for (const c of readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean)) total += treeRssMiB(Number(c));
  } catch {
    // gone meanwhile
  }
  return total;
}

/** A quantile of a Prometheus histogram, interpolated within its bucket as histogram_quantile does. */
function histogramQuantile(text: string, name: string, q: number): number | undefined {
  const buckets = [...text.matchAll(new RegExp(`^${name}_bucket\\{le="([^"]+)"\\} (\\S+)$`, 'gm'))].map((m) => ({ le: m[1] === '+Inf' ? Infinity : Number(m[1]), n: Number(m[2]) }));
  const total = buckets.at(-1)?.n ?? 0;
  if (total === 0) return undefined;
  const rank = q * total;
  let prevLe = 0;
  let prevN = 0;
  for (const b of buckets) {
    if (b.n >= rank) {
      if (b.le === Infinity) return prevLe;
      return prevLe + ((b.le - prevLe) * (rank - prevN)) / Math.max(1, b.n - prevN);
    }
    prevLe = b.le;
    prevN = b.n;
  }
  return undefined;
}

const metric = (text: string, name: string): number | undefined => {
  const m = new RegExp(`^${name}(?:\\{[^}]*\\})? (\\S+)$`, 'm').exec(text);
  return m === null ? undefined : Number(m[1]);
};

class Cluster {
  readonly child: ChildProcess;
  private readonly waiting: Array<(o: Record<string, unknown>) => void> = [];

  constructor(netns: string, services: number) {
    this.child = spawn('nsenter', [`--net=${netnsPath(netns)}`, '--', process.execPath, '--max-old-space-size=8192', CLUSTER, String(services), '10', 'n0'], { stdio: ['pipe', 'pipe', 'inherit'] });
    createInterface({ input: this.child.stdout! }).on('line', (l) => this.waiting.shift()?.(JSON.parse(l) as Record<string, unknown>));
  }

  next(): Promise<Record<string, unknown>> {
    return new Promise((r) => this.waiting.push(r));
  }

  async ask(cmd: object, answers = true): Promise<Record<string, unknown> | undefined> {
    const p = answers ? this.next() : undefined;
    this.child.stdin!.write(`${JSON.stringify(cmd)}\n`);
    return p;
  }
}

const rows: Array<Record<string, unknown>> = [];
for (const mode of MODES) {
  for (const services of SIZES) {
    const lab = await Lab.create({ nodes: 1, podsPerNode: 1, ports: [8080] });
    const n0 = lab.nodes[0]!;
    const cluster = new Cluster(n0.netns, services);
    let agent: ChildProcess | undefined;
    try {
      const { url } = (await cluster.next()) as { url: string };
      const kubeconfig = join(mkdtempSync(join(tmpdir(), 'switchyard-bench-agent-')), 'kubeconfig.yaml');
      writeFileSync(kubeconfig, `apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: "${url}", insecure-skip-tls-verify: true}}]\nusers: [{name: u, user: {}}]\ncontexts: [{name: x, context: {cluster: c, user: u}}]\ncurrent-context: x\n`);
      const t0 = performance.now();
      agent = spawn('nsenter', [
        `--net=${netnsPath(n0.netns)}`, '--', process.execPath, MAIN,
        '--kubeconfig', kubeconfig, '--hostname-override', 'n0', '--proxy-mode', mode,
        '--bpffs-dir', lab.bpffsDir('agent-n0'), '--cgroup-root', lab.cgroup(n0), '--external-devices', n0.wireIf,
        '--cluster-cidr', '10.244.0.0/16', '--healthz-bind-address', '127.0.0.1:10256', '--metrics-bind-address', '127.0.0.1:10249',
        '--kube-api-content-type', 'application/vnd.kubernetes.protobuf', '--logging-format=json',
      ], { stdio: ['ignore', 'ignore', 'pipe'] });
      writeFileSync(`${lab.cgroup(n0)}/cgroup.procs`, String(agent.pid));
      const pid = agent.pid!;
      let peak = 0;
      const sampler = setInterval(() => (peak = Math.max(peak, treeRssMiB(pid))), 100);
      let syncs = 0;
      let firstSyncS: number | undefined;
      const firstSync = new Promise<void>((resolve, reject) => {
        createInterface({ input: agent!.stderr! }).on('line', (l) => {
          if (!l.startsWith('{')) return void process.stderr.write(`agent: ${l}\n`);
          const e = JSON.parse(l) as { msg?: string; level?: string | number };
          if (process.env.BENCH_AGENT_VERBOSE || /^(error|warning|fatal)$/.test(String((e as { severity?: string }).severity))) process.stderr.write(`agent: ${l.slice(0, 400)}\n`);
          if (e.msg === 'synced') {
            syncs++;
            if (firstSyncS === undefined) {
              firstSyncS = (performance.now() - t0) / 1000;
              resolve();
            }
          }
        });
        agent!.once('exit', (code) => reject(new Error(`agent exited (${code}) before its first sync`)));
      });
      await Promise.race([firstSync, new Promise((_, rej) => setTimeout(() => rej(new Error(`no first sync within ${FIRST_SYNC_S} s`)), FIRST_SYNC_S * 1000))]);
      const idleRss = treeRssMiB(pid);
      await cluster.ask({ cmd: 'probe', start: true }, false);
      await cluster.ask({ cmd: 'metrics' }); // resets the event-loop lag histogram (prom-client resets it per scrape)
      const churned = (await cluster.ask({ cmd: 'churn', perSecond: CHURN_PER_S, seconds: CHURN_S })) as { churned: number };
      // Let the last changes be programmed before reading the histograms.
      await new Promise((r) => setTimeout(r, 3000));
      const { metrics } = (await cluster.ask({ cmd: 'metrics' })) as { metrics: string };
      const probes = (await cluster.ask({ cmd: 'probe', stop: true })) as { probes: number; failed: number };
      const settled = treeRssMiB(pid);
      clearInterval(sampler);
      const t1 = performance.now();
      agent.kill('SIGTERM');
      await new Promise((r) => agent!.once('exit', r));
      const exitMs = performance.now() - t1;
      const fine = 'switchyard_network_programming_duration_seconds';
      const row = {
        mode,
        services,
        endpointsPerService: 10,
        firstSyncS: +(firstSyncS ?? 0).toFixed(2),
        peakRssMiB: Math.round(peak),
        afterFirstSyncRssMiB: Math.round(idleRss),
        settledRssMiB: Math.round(settled),
        changes: churned.churned,
        programmed: metric(metrics, `${fine}_count`),
        programmingP50ms: +((histogramQuantile(metrics, fine, 0.5) ?? NaN) * 1000).toFixed(2),
        programmingP99ms: +((histogramQuantile(metrics, fine, 0.99) ?? NaN) * 1000).toFixed(2),
        probes: probes.probes,
        failedProbes: probes.failed,
        eventLoopLagP99ms: +((metric(metrics, 'nodejs_eventloop_lag_p99_seconds') ?? NaN) * 1000).toFixed(1),
        eventLoopLagMaxMs: +((metric(metrics, 'nodejs_eventloop_lag_max_seconds') ?? NaN) * 1000).toFixed(1),
        syncs,
        sigtermExitMs: Math.round(exitMs),
      };
      rows.push(row);
      console.log(JSON.stringify(row));
    } finally {
      agent?.kill('SIGKILL');
      await cluster.ask({ cmd: 'exit' }, false).catch(() => undefined);
      cluster.child.kill('SIGKILL');
      await lab.teardown();
    }
  }
}
console.table(rows);
console.log(`written ${writeReport('agent', { rows, churn: { perSecond: CHURN_PER_S, seconds: CHURN_S }, note: 'the real agent in a lab netns against the test API server (protobuf, qps 5 / burst 10), 10 endpoints per service; RSS includes child processes' })}`);
