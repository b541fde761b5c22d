// The agent in nftables mode inside a lab node: it programs kube-proxy's nftables table from
// manifests, traffic flows through it, /proxyMode and the metrics say so, a change goes out as a
// partial sync, and SIGTERM leaves the table in place.
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { stringify } from 'yaml';
import { slice } from '../cases/objects.ts';
import { slices } from '../cases/semantics.ts';
import type { Lab } from '../lab/lab.ts';
import { agentLab, type AgentLab, type RunningAgent } from './harness.ts';

const GET = fileURLToPath(new URL('../lab/http-get.ts', import.meta.url));

describe('agent in nftables mode', () => {
  let lab: Lab;
  let manifests: string;
  let agent: RunningAgent;

  let env: AgentLab | undefined;

  before(async () => {
    env = await agentLab(['--proxy-mode', 'nftables']);
    ({ lab, manifests, agent } = env);
  });

  after(async () => {
    await env?.stop();
  });

  const get = async (path: string): Promise<string> => (JSON.parse(await lab.exec(lab.nodes[0]!.netns, process.execPath, [GET, `http://127.0.0.1:10249${path}`])) as { body: string }).body;

  it('programs the table, serves traffic, syncs changes partially; SIGTERM leaves the table', async () => {
    const synced = agent.logs.find((l) => l.msg === 'synced')!;
    assert.equal(synced.mode, 'nftables');
    assert.equal(synced.full, true, 'the first sync writes the whole table');
    const table = await lab.exec(lab.nodes[0]!.netns, 'nft', ['list', 'table', 'ip', 'kube-proxy']);
    assert.match(table, /10\.96\.0\.10 \. tcp \. 80 : goto service-[A-Z2-7]{8}-demo\/web\/tcp\/http/);
    const r = await lab.probe(lab.pod('n0p0').netns, { targets: [{ proto: 'tcp', host: '10.96.0.10', port: 80 }], count: 4 });
    assert.ok(r.every((x) => x.ok && ['n0p1', 'n1p1'].includes(x.reply.pod)));
    assert.equal(await get('/proxyMode'), 'nftables');

    // np's endpoints move to n1p0 only: a partial sync.
    const count = agent.logs.filter((l) => l.msg === 'synced').length;
    const edited = slices.map((s) => (s.metadata?.name === 'np-x' ? slice({ name: 'np-x', service: 'np', ports: [{ port: 8080 }], endpoints: [{ ip: '10.244.1.10', node: 'n1' }] }) : s));
    writeFileSync(join(manifests, 'endpointslices.yaml'), edited.map((s) => stringify(s)).join('---\n'));
    for (let i = 0; i < 50 && agent.logs.filter((l) => l.msg === 'synced').length === count; i++) await new Promise((res) => setTimeout(res, 100));
    const partial = agent.logs.filter((l) => l.msg === 'synced').at(-1)!;
    assert.equal(partial.full, false, JSON.stringify(partial));
    const np = await lab.probe(lab.external.netns, { targets: [{ proto: 'tcp', host: lab.nodes[0]!.ipv4, port: 30080 }], count: 3 });
    assert.ok(np.every((x) => x.ok && x.reply.pod === 'n1p0'));

    const metrics = await get('/metrics');
    assert.match(metrics, /^kubeproxy_sync_proxy_rules_nftables_sync_failures_total 0$/m);
    assert.match(metrics, /^kubeproxy_sync_full_proxy_rules_duration_seconds_count 1$/m);
    assert.match(metrics, /^kubeproxy_sync_partial_proxy_rules_duration_seconds_count [1-9]/m);
    agent.child.kill('SIGTERM');
    await new Promise((res) => agent.child.once('exit', res));
    const after = await lab.probe(lab.pod('n0p0').netns, { targets: [{ proto: 'tcp', host: '10.96.0.10', port: 80 }] });
    assert.ok(after[0]!.ok, 'the table stays after the agent stopped');
  });
});
