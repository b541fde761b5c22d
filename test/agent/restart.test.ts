// Hitless restart: connections keep flowing through a ClusterIP while the agent is killed with
// SIGKILL and started again, and the new agent adopts the pinned datapath instead of rebuilding it.
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { writeManifests } from '../cases/manifests.ts';
import { tcQuery } from '../../control/bpf/attach.ts';
import { run } from '../lab/exec.ts';
import { Lab, netnsPath } from '../lab/lab.ts';
import { startAgent, type RunningAgent } from './harness.ts';

const LOAD = fileURLToPath(new URL('../lab/load.ts', import.meta.url));

describe('agent restart', () => {
  let lab: Lab;
  let manifests: string;
  const agents: RunningAgent[] = [];

  before(async () => {
    lab = await Lab.create({ nodes: 2, podsPerNode: 3 });
    manifests = writeManifests();
  });

  after(async () => {
    for (const a of agents) a.child.kill('SIGKILL');
    await lab?.teardown();
    rmSync(manifests, { recursive: true, force: true });
  });

  it('SIGKILL and restart: zero failed connections, pinned state adopted', async () => {
    const n0 = lab.nodes[0]!;
    const first = startAgent(lab, n0, manifests);
    agents.push(first);
    const initial = await first.synced;
    assert.ok(Number(initial.frontendsWritten) > 40, 'the first agent programs the datapath');

    const load = lab.exec(lab.pod('n0p0').netns, process.execPath, [LOAD, JSON.stringify({ mode: 'connections', host: '10.96.0.10', port: 80, seconds: 6 })]);
    await new Promise((r) => setTimeout(r, 1500));
    first.child.kill('SIGKILL');
    await new Promise((r) => first.child.once('exit', r));
    await new Promise((r) => setTimeout(r, 1000));
    const second = startAgent(lab, n0, manifests);
    agents.push(second);
    const resync = await second.synced;
    const result = JSON.parse(await load) as { connections: number; failures: number; errors: string[] };

    assert.equal(result.failures, 0, `failed connections: ${result.errors.join(', ')}`);
    assert.ok(result.connections > 500, `${result.connections} connections in 6 s`);
    const adopted = second.logs.find((l) => typeof l.msg === 'string' && l.msg.startsWith('datapath loaded'));
    assert.equal(adopted?.frontends, initial.frontendsWritten, 'every frontend was adopted from the pins');
    assert.deepEqual([resync.frontendsWritten, resync.frontendsRemoved, resync.backendsWritten, resync.backendsRemoved], [0, 0, 0, 0], 'the restart reconciled by diff: nothing rewritten');
    second.child.kill('SIGTERM');
    await new Promise((r) => second.child.once('exit', r));
  });

  it('attaches to a pod device that appears while it runs', async () => {
    const n0 = lab.nodes[0]!;
    const agent = startAgent(lab, n0, manifests);
    agents.push(agent);
    await agent.synced;
    const podNs = `${lab.prefix}-n0p9`; // named like the lab's, so the lab's teardown removes it
    await run('ip', ['netns', 'add', podNs]);
    await run('ip', ['-n', n0.netns, 'link', 'add', 'veth9', 'type', 'veth', 'peer', 'name', 'eth0', 'netns', podNs]);
    await run('ip', ['-n', n0.netns, 'link', 'set', 'veth9', 'up']);
    const target = { ifname: 'veth9', netns: netnsPath(n0.netns) };
    for (let i = 0; i < 40 && tcQuery({ ...target, direction: 'ingress' }) === null; i++) await new Promise((r) => setTimeout(r, 50));
    assert.notEqual(tcQuery({ ...target, direction: 'ingress' }), null, `sy_from_pod on the new device; agent said: ${JSON.stringify(agent.logs.slice(-6))}`);
    assert.notEqual(tcQuery({ ...target, direction: 'egress' }), null, 'sy_to_pod on the new device');
    assert.ok(agent.logs.some((l) => l.msg === 'attached to veth9'));
    agent.child.kill('SIGTERM');
    await new Promise((r) => agent.child.once('exit', r));
  });
});
