// The agent's resident memory against the number of services, per proxy mode: the real agent
// executable in a lab node (as a DaemonSet pod), reading N services from a manifests directory
// (2 endpoints each, every 10th with a NodePort). Measured once its first sync is done (VmRSS),
// again 2 s later, and its peak (VmHWM); one fresh lab per mode and size.
//   npm run bench:rss   (root; 100, 1k and 10k services; BENCH_QUICK=1: 100 and 1k; BENCH_SIZES overrides)
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { startAgent } from '../test/agent/harness.ts';
import { service, slice } from '../test/cases/objects.ts';
import { node } from '../test/cases/semantics.ts';
import { Lab } from '../test/lab/lab.ts';
import { sizes, writeReport } from './report.ts';

const SIZES = sizes([100, 1000, 10_000], [100, 1000]);
const MODES = ['ebpf', 'nftables', 'iptables'] as const;
const SYNC_BOUND_MS = 600_000;
const octets = (i: number): string => `${(i >> 8) & 255}.${i & 255}`;

function manifests(n: number): string {
  const dir = mkdtempSync(join(tmpdir(), 'switchyard-bench-rss-'));
  const services: string[] = [];
  const slices: string[] = [];
  for (let i = 0; i < n; i++) {
    const nodePort = i % 10 === 0 ? 30000 + i / 10 : undefined;
    services.push(JSON.stringify(service({ ns: 'load', name: `s${i}`, type: nodePort ? 'NodePort' : 'ClusterIP', clusterIPs: [`10.${100 + (i >> 16)}.${octets(i)}`], ports: [{ name: 'http', port: 80, targetPort: 8080, nodePort }] })));
    slices.push(JSON.stringify(slice({ ns: 'load', name: `s${i}-x`, service: `s${i}`, ports: [{ name: 'http', port: 8080 }], endpoints: [{ ip: `10.${200 + (i >> 15)}.${octets(2 * i)}`, node: 'far' }, { ip: `10.${200 + (i >> 15)}.${octets(2 * i + 1)}`, node: 'far' }] })));
  }
  // JSON documents are YAML documents: the files source reads them alike.
  writeFileSync(join(dir, 'services.yaml'), services.join('\n---\n'));
  writeFileSync(join(dir, 'endpointslices.yaml'), slices.join('\n---\n'));
  writeFileSync(join(dir, 'node.json'), JSON.stringify({ apiVersion: 'v1', kind: 'Node', ...node }));
  return dir;
}

function statusKiB(pid: number, field: string): number {
  const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  if (m === null) throw new Error(`no ${field} for ${pid}`);
  return Number(m[1]);
}

const rows: Array<Record<string, string | number>> = [];
const failures: Array<Record<string, string | number>> = [];
for (const mode of MODES) {
  for (const n of SIZES) {
    const dir = manifests(n);
    const lab = await Lab.create({ nodes: 1, podsPerNode: 1 });
    try {
      const t0 = performance.now();
      const agent = startAgent(lab, lab.nodes[0]!, dir, ['--proxy-mode', mode]);
      try {
        let timer: NodeJS.Timeout | undefined;
        const synced = await Promise.race([agent.synced, new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`no first sync within ${SYNC_BOUND_MS} ms`)), SYNC_BOUND_MS)))]).finally(() => clearTimeout(timer));
        const toSyncedMs = Math.round(performance.now() - t0);
        const pid = agent.child.pid!;
        const atSync = statusKiB(pid, 'VmRSS');
        await sleep(2000);
        const settled = statusKiB(pid, 'VmRSS');
        const peak = statusKiB(pid, 'VmHWM');
        const row = { mode, services: n, rssMiB: +(atSync / 1024).toFixed(1), rssSettledMiB: +(settled / 1024).toFixed(1), peakMiB: +(peak / 1024).toFixed(1), startToSyncedMs: toSyncedMs, firstSyncMs: Number(synced.ms ?? NaN) };
        console.log(JSON.stringify(row));
        rows.push(row);
      } finally {
        agent.child.kill('SIGKILL');
        if (agent.child.exitCode === null && agent.child.signalCode === null) await new Promise((res) => agent.child.once('exit', res));
      }
    } catch (e) {
      failures.push({ mode, services: n, error: String((e as Error).message ?? e).slice(0, 300) });
      console.error(`${mode} at ${n} services: ${String(e)}`);
    } finally {
      await lab.teardown();
      rmSync(dir, { recursive: true, force: true });
    }
  }
}
console.table(rows);
console.log(`written ${writeReport('rss', { sizes: SIZES, modes: MODES, rows, failures, note: 'the agent executable (Node) in a 1-node lab reading N services from a manifests directory (2 endpoints each, every 10th a NodePort); VmRSS at its first "synced" log line and 2 s later, VmHWM its peak; the manifest parser (YAML) is part of what it holds' })}`);
