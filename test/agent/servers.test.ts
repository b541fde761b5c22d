// The running agent's servers inside a lab node: healthz after the first sync, kube-proxy's
// metrics, and a per-service packet counter that grows with real traffic.
import assert from 'node:assert/strict';
import { until } from '../wait.ts';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { slices } from '../cases/semantics.ts';
import type { Lab } from '../lab/lab.ts';
import { agentLab, SERVING_ARGS, startAgent, type AgentLab, type RunningAgent } from './harness.ts';
import { main } from '../../control/cli/main.ts';
import { LAST_CHANGE_TRIGGER_TIME } from '../../control/model/tracker.ts';

async function cli(args: string[]): Promise<unknown> {
  let out = '';
  let err = '';
  const code = await main(args, { stdout: (t) => (out += t), stderr: (t) => (err += t) });
  assert.equal(code, 0, err);
  return JSON.parse(out);
}

const MAIN = fileURLToPath(new URL('../../control/cli/main.ts', import.meta.url));
const GET = fileURLToPath(new URL('../lab/http-get.ts', import.meta.url));

describe('agent servers', () => {
  let lab: Lab;
  let manifests: string;
  let agent: RunningAgent;

  let env: AgentLab | undefined;

  before(async () => {
    env = await agentLab();
    ({ lab, manifests, agent } = env);
  });

  after(async () => {
    await env?.stop();
  });

  const get = async (url: string): Promise<{ status: number; body: string }> =>
    JSON.parse(await lab.exec(lab.nodes[0]!.netns, process.execPath, [GET, url])) as { status: number; body: string };
  const packets = (metrics: string): number => {
    const m = /^switchyard_service_packets_total\{service_port="demo\/web:http\/TCP\/v4",protocol="TCP",family="IPv4"\} (\d+)$/m.exec(metrics);
    return m === null ? 0 : Number(m[1]);
  };

  it('healthz and livez are 200 once synced', async () => {
    // The servers start right after the first sync.
    await until('healthz answers', async () => (await get('http://127.0.0.1:10256/healthz')).status === 200);
    const h = await get('http://127.0.0.1:10256/healthz');
    assert.equal(h.status, 200, h.body);
    const body = JSON.parse(h.body) as { healthy: boolean; nodeEligible: boolean; lastUpdated: string };
    assert.equal(body.healthy, true);
    assert.equal(body.nodeEligible, true);
    assert.ok(Date.parse(body.lastUpdated) > 0);
    assert.equal((await get('http://127.0.0.1:10256/livez')).status, 200);
    assert.equal((await get('http://127.0.0.1:10249/proxyMode')).body, 'ebpf');
  });

  it('metrics count syncs and the packets each service carried', async () => {
    const before = await get('http://127.0.0.1:10249/metrics');
    assert.match(before.body, /^kubeproxy_sync_proxy_rules_duration_seconds_count [1-9]/m);
    assert.match(before.body, /^switchyard_map_fill_ratio\{map="sy_frontends"\} 0\.0\d+/m);
    assert.match(before.body, /^switchyard_frontends_not_programmed\{reason="map-full"\} 0$/m);
    const results = await lab.probe(lab.pod('n0p0').netns, { targets: [{ proto: 'tcp', host: '10.96.0.10', port: 80 }], count: 5 });
    assert.ok(results.every((r) => r.ok));
    // The datapath's counters are read by a timer (every 10 s), not by the scrape: polled.
    let after = before;
    await until('the packet counter grows by the 10 packets of 5 connections', async () => packets((after = await get('http://127.0.0.1:10249/metrics')).body) >= packets(before.body) + 10);
    assert.match(after.body, /^switchyard_conntrack_entries [1-9]/m);
  });

  it('services, backends and conntrack show what the kernel holds, also after the agent stopped', async () => {
    const dir = lab.bpffsDir('agent-n0');
    await lab.probe(lab.pod('n0p0').netns, { targets: [{ proto: 'tcp', host: '10.96.0.10', port: 80 }], count: 3 });
    const check = async (): Promise<void> => {
      const services = (await cli(['services', '--bpffs-dir', dir, '-o', 'json'])) as Array<{ frontend: string; protocol: string; scope: string; backends: number[]; packets: string }>;
      const web = services.find((s) => s.frontend === '10.96.0.10:80' && s.protocol === 'TCP' && s.scope === 'external')!;
      assert.equal(web.backends.length, 2);
      assert.ok(Number(web.packets) > 0);
      const backends = (await cli(['backends', '--bpffs-dir', dir, '-o', 'json'])) as Array<{ id: number; backend: string }>;
      const ids = new Set(backends.filter((b) => b.backend === '10.244.0.11:8080' || b.backend === '10.244.1.11:8080').map((b) => b.id));
      assert.ok(web.backends.every((id) => ids.has(id)), 'the set names the web pods');
      const flows = (await cli(['conntrack', '--bpffs-dir', dir, '-o', 'json'])) as Array<{ direction: string; source: string; destination: string; frontend: string }>;
      assert.ok(flows.some((f) => f.direction === 'forward' && f.source.startsWith('10.244.0.10:') && f.destination === '10.96.0.10:80' && f.frontend === '10.96.0.10:80'));
    };
    await check();
    // Inside the node, where the agent's metrics address is: the API's view beside the kernel's.
    const joined = JSON.parse(await lab.exec(lab.nodes[0]!.netns, process.execPath, [MAIN, 'services', '--bpffs-dir', dir, '-o', 'json'])) as Array<{ frontend: string; protocol: string; scope: string; servicePort: string; api: string }>;
    const web = joined.find((s) => s.frontend === '10.96.0.10:80' && s.protocol === 'TCP' && s.scope === 'external');
    assert.equal(web?.servicePort, 'demo/web:http/TCP/v4');
    assert.deepEqual(joined.filter((s) => s.api !== 'in-sync'), [], 'the kernel holds what the API asks for');
    const withApi = await lab.exec(lab.nodes[0]!.netns, process.execPath, [MAIN, 'services', '--bpffs-dir', dir]);
    assert.match(withApi, /^FRONTEND .* SERVICE PORT +API$/m);
    assert.match(withApi, /^10\.96\.0\.10:80 +TCP +external .* demo\/web:http\/TCP\/v4 +in-sync$/m);
    let table = '';
    assert.equal(await main(['services', '--bpffs-dir', dir], { stdout: (t) => (table += t), stderr: () => undefined }), 0);
    assert.match(table, /^FRONTEND +PROTO +SCOPE +FLAGS/m);
    agent.child.kill('SIGTERM');
    await new Promise((r) => agent.child.once('exit', r));
    await check();
    agent = env!.agent = startAgent(lab, lab.nodes[0]!, manifests, SERVING_ARGS);
    await agent.synced;
  });

  it('the healthCheckNodePort answers for local endpoints, and changes when the last one goes', async () => {
    const ask = async (): Promise<{ status: number; body: { service: unknown; localEndpoints: number; serviceProxyHealthy: boolean } }> => {
      const r = JSON.parse(await lab.exec(lab.external.netns, process.execPath, [GET, 'http://10.254.0.11:32000/'])) as { status: number; body: string };
      return { status: r.status, body: JSON.parse(r.body) };
    };
    const ok = await ask();
    assert.equal(ok.status, 200);
    assert.deepEqual(ok.body, { service: { namespace: 'demo', name: 'lb' }, localEndpoints: 1, serviceProxyHealthy: true });
    // The local endpoint of service lb (n0p0) leaves its EndpointSlice.
    const edited = slices.map((s) => (s.metadata?.name === 'lb-x' ? { ...s, endpoints: (s.endpoints ?? []).filter((e) => e.nodeName !== 'n0') } : s));
    writeFileSync(join(manifests, 'endpointslices.yaml'), edited.map((s) => stringify(s)).join('---\n'));
    let last = ok;
    await until('the healthCheckNodePort turns 503', async () => (last = await ask()).status === 503);
    assert.equal(last.status, 503);
    assert.equal(last.body.localEndpoints, 0);
  });

  it('network programming latency is measured from an EndpointSlice\'s last-change-trigger-time', async () => {
    const histogram = async (): Promise<{ count: number; sum: number }> => {
      const body = (await get('http://127.0.0.1:10249/metrics')).body;
      const value = (name: string): number => Number(new RegExp(`^kubeproxy_network_programming_duration_seconds_${name} (\\S+)$`, 'm').exec(body)?.[1] ?? NaN);
      return { count: value('count'), sum: value('sum') };
    };
    const before = await histogram();
    assert.ok(Number.isFinite(before.count));
    // The EndpointSlice controller stamped the change 0.3 s before the agent hears of it.
    const trigger = new Date(Date.now() - 300).toISOString();
    const edited = slices.map((s) => (s.metadata?.name === 'web-v4' ? { ...s, metadata: { ...s.metadata, annotations: { [LAST_CHANGE_TRIGGER_TIME]: trigger } }, endpoints: (s.endpoints ?? []).slice(0, 1) } : s));
    writeFileSync(join(manifests, 'endpointslices.yaml'), edited.map((s) => stringify(s)).join('---\n'));
    let now = before;
    await until('the programming latency is observed', async () => (now = await histogram()).count !== before.count);
    const sinceTrigger = (Date.now() - Date.parse(trigger)) / 1000;
    assert.equal(now.count, before.count + 1, `one observation: one annotated slice changed; agent said ${JSON.stringify(agent.logs.filter((l) => l.msg !== "attach failed").slice(-6))}`);
    const seconds = now.sum - before.sum;
    assert.ok(seconds >= 0.3 && seconds <= sinceTrigger, `observed ${seconds} s, between the trigger's 0.3 s head start and the ${sinceTrigger} s since it`);
  });
});
