// A real Prometheus (Debian's package) scrapes the agent inside a lab node; PromQL through its
// HTTP API sees kube-proxy's sync histogram and a per-service packet counter grow with traffic.
import assert from 'node:assert/strict';
import { until } from '../wait.ts';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { netnsPath, type Lab } from '../lab/lab.ts';
import { agentLab, type AgentLab, type RunningAgent } from './harness.ts';

const GET = fileURLToPath(new URL('../lab/http-get.ts', import.meta.url));
const PROMETHEUS = '/usr/bin/prometheus';

describe('Prometheus scrapes the agent', () => {
  let lab: Lab;
  let env: AgentLab | undefined;
  let agent: RunningAgent;
  let prometheus: ChildProcess;
  let data: string;

  before(async () => {
    assert.ok(existsSync(PROMETHEUS), 'needs Debian\'s prometheus package (.ci/setup installs it)');
    env = await agentLab();
    ({ lab, agent } = env);
    const n0 = lab.nodes[0]!;
    data = mkdtempSync(join(tmpdir(), 'switchyard-prometheus-'));
    writeFileSync(join(data, 'prometheus.yml'), 'global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: switchyard\n    static_configs:\n      - targets: ["127.0.0.1:10249"]\n');
    prometheus = spawn('nsenter', [`--net=${netnsPath(n0.netns)}`, '--', PROMETHEUS, `--config.file=${join(data, 'prometheus.yml')}`, `--storage.tsdb.path=${join(data, 'tsdb')}`, '--web.listen-address=127.0.0.1:9090'], { stdio: 'ignore' });
    writeFileSync(`${lab.cgroup(n0)}/cgroup.procs`, String(prometheus.pid)); // swept with the lab if we die
  });

  after(async () => {
    prometheus?.kill('SIGKILL');
    await env?.stop();
    if (data) rmSync(data, { recursive: true, force: true });
  });

  const query = async (promql: string): Promise<number | undefined> => {
    const out = await lab.exec(lab.nodes[0]!.netns, process.execPath, [GET, `http://127.0.0.1:9090/api/v1/query?query=${encodeURIComponent(promql)}`]).catch(() => '');
    if (out === '') return undefined;
    const r = JSON.parse(out) as { status: number; body: string };
    if (r.status !== 200) return undefined;
    const body = JSON.parse(r.body) as { data: { result: Array<{ value: [number, string] }> } };
    const v = body.data.result[0]?.value[1];
    return v === undefined ? undefined : Number(v);
  };
  // Prometheus scrapes every second or so; polled, bounded generously.
  const eventually = (what: string, f: () => Promise<boolean>): Promise<void> => until(what, f, 60_000, 500);

  it('kubeproxy_sync_proxy_rules_duration_seconds_count > 0, and a per-service packet counter grows', async () => {
    await eventually('the sync histogram in Prometheus', async () => ((await query('kubeproxy_sync_proxy_rules_duration_seconds_count > 0')) ?? 0) > 0);
    const series = 'switchyard_service_packets_total{service_port="demo/web:http/TCP/v4"}';
    await eventually('the packet counter series', async () => (await query(series)) !== undefined);
    const before = (await query(series))!;
    const results = await lab.probe(lab.pod('n0p0').netns, { targets: [{ proto: 'tcp', host: '10.96.0.10', port: 80 }], count: 10 });
    assert.ok(results.every((r) => r.ok));
    await eventually('the counter to grow', async () => ((await query(series)) ?? 0) >= before + 20);
  });
});
