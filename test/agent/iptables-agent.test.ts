// The agent in iptables mode inside a lab node: it programs kube-proxy's rules from manifests,
// traffic flows through them, /proxyMode says so, and SIGTERM leaves the rules in place.
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import type { Lab } from '../lab/lab.ts';
import { agentLab, type AgentLab, type RunningAgent } from './harness.ts';

const GET = fileURLToPath(new URL('../lab/http-get.ts', import.meta.url));

describe('agent in iptables mode', () => {
  let lab: Lab;
  let agent: RunningAgent;

  let env: AgentLab | undefined;

  before(async () => {
    env = await agentLab(['--proxy-mode', 'iptables']);
    ({ lab, agent } = env);
  });

  after(async () => {
    await env?.stop();
  });

  it('programs the rules, serves traffic and reports its mode; SIGTERM leaves the rules', async () => {
    const synced = agent.logs.find((l) => l.msg === 'synced')!;
    assert.equal(synced.mode, 'iptables');
    const rules = await lab.exec(lab.nodes[0]!.netns, 'iptables-save', ['-t', 'nat']);
    assert.match(rules, /^-A KUBE-SERVICES .*"demo\/web:http cluster IP".* -j KUBE-SVC-/m);
    const r = await lab.probe(lab.pod('n0p0').netns, { targets: [{ proto: 'tcp', host: '10.96.0.10', port: 80 }], count: 4 });
    assert.ok(r.every((x) => x.ok && ['n0p1', 'n1p1'].includes(x.reply.pod)));
    await new Promise((res) => setTimeout(res, 200));
    const mode = JSON.parse(await lab.exec(lab.nodes[0]!.netns, process.execPath, [GET, 'http://127.0.0.1:10249/proxyMode'])) as { body: string };
    assert.equal(mode.body, 'iptables');
    assert.equal(synced.variant, 'nft', 'a node without legacy rules uses iptables-nft');
    const metrics = JSON.parse(await lab.exec(lab.nodes[0]!.netns, process.execPath, [GET, 'http://127.0.0.1:10249/metrics'])) as { body: string };
    const natRules = Number(/^kubeproxy_sync_proxy_rules_iptables_total\{table="nat"\} (\d+)$/m.exec(metrics.body)?.[1]);
    assert.ok(natRules > 50, `nat rules counted: ${natRules}`);
    assert.match(metrics.body, /^kubeproxy_sync_proxy_rules_iptables_restore_failures_total 0$/m);
    agent.child.kill('SIGTERM');
    await new Promise((res) => agent.child.once('exit', res));
    const after = await lab.probe(lab.pod('n0p0').netns, { targets: [{ proto: 'tcp', host: '10.96.0.10', port: 80 }] });
    assert.ok(after[0]!.ok, 'the rules stay after the agent stopped');
  });
});
