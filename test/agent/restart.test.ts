// Hitless restart: connections keep flowing through a ClusterIP while the agent is killed with
// SIGKILL and started again, and the new agent adopts the pinned datapath instead of rebuilding it.
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { writeManifests } from '../cases/manifests.ts';
import { tcQuery } from '../../control/bpf/attach.ts';
import { run } from '../lab/exec.ts';
import { Lab, netnsPath } from '../lab/lab.ts';
import { until } from '../wait.ts';
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

    // Connections run the whole time; each step waits until more of them have completed, so the
    // datapath is seen serving before, while no agent runs, and after the new agent took over.
    const scratch = mkdtempSync(join(tmpdir(), 'switchyard-restart-'));
    const progress = join(scratch, 'progress');
    const stop = join(scratch, 'stop');
    const done = (): number => (existsSync(progress) ? Number(readFileSync(progress, 'utf8') || 0) : 0);
    const moreThan = async (what: string): Promise<void> => {
      const from = done();
      await until(`${what}: 40 more connections than ${from}`, () => done() >= from + 40, 60_000);
    };
    const load = lab.exec(lab.pod('n0p0').netns, process.execPath, [LOAD, JSON.stringify({ mode: 'connections', host: '10.96.0.10', port: 80, stopFile: stop, progressFile: progress })]);
    let result: { connections: number; failures: number; errors: string[] };
    let resync: Record<string, unknown>;
    let second: RunningAgent;
    try {
      await moreThan('with the first agent');
      first.child.kill('SIGKILL');
      await new Promise((r) => first.child.once('exit', r));
      await moreThan('with no agent running');
      second = startAgent(lab, n0, manifests);
      agents.push(second);
      resync = await second.synced;
      await moreThan('after the second agent synced');
    } finally {
      writeFileSync(stop, '');
      result = JSON.parse(await load) as typeof result;
      rmSync(scratch, { recursive: true, force: true });
    }

    assert.equal(result.failures, 0, `failed connections: ${result.errors.join(', ')}`);
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
    await until('sy_from_pod on veth9', () => tcQuery({ ...target, direction: 'ingress' }) !== null, 30_000).catch(() => undefined);
    assert.notEqual(tcQuery({ ...target, direction: 'ingress' }), null, `sy_from_pod on the new device; agent said: ${JSON.stringify(agent.logs.slice(-6))}`);
    assert.notEqual(tcQuery({ ...target, direction: 'egress' }), null, 'sy_to_pod on the new device');
    await until('the agent says it attached', () => agent.logs.some((l) => l.msg === 'attached to veth9'));
    agent.child.kill('SIGTERM');
    await new Promise((r) => agent.child.once('exit', r));
  });

  it('a killed device monitor is restarted, and a pod device created while it was down is attached', async () => {
    const n0 = lab.nodes[0]!;
    const agent = startAgent(lab, n0, manifests);
    agents.push(agent);
    await agent.synced;
    const monitors = async (): Promise<number[]> => {
      const out = await run('pgrep', ['-P', String(agent.child.pid), '-f', 'monitor link']).catch(() => '');
      return out.split('\n').filter((l) => l.trim() !== '').map(Number);
    };
    await until('the agent runs ip monitor link', async () => (await monitors()).length === 1);
    const [pid] = await monitors();
    process.kill(pid!, 'SIGKILL');
    const podNs = `${lab.prefix}-n0p8`;
    await run('ip', ['netns', 'add', podNs]);
    await run('ip', ['-n', n0.netns, 'link', 'add', 'veth8', 'type', 'veth', 'peer', 'name', 'eth0', 'netns', podNs]);
    await run('ip', ['-n', n0.netns, 'link', 'set', 'veth8', 'up']);
    await until('the agent says the monitor died', () => agent.logs.some((l) => typeof l.msg === 'string' && l.msg.startsWith('ip monitor exited')));
    const target = { ifname: 'veth8', netns: netnsPath(n0.netns) };
    await until('sy_from_pod on veth8 after the restart', () => tcQuery({ ...target, direction: 'ingress' }) !== null, 30_000);
    await until('a new monitor runs', async () => { const now = await monitors(); return now.length === 1 && now[0] !== pid; });
    agent.child.kill('SIGTERM');
    await new Promise((r) => agent.child.once('exit', r));
  });

  it('an address added to the node after start gets its NodePorts', async () => {
    const n0 = lab.nodes[0]!;
    const agent = startAgent(lab, n0, manifests);
    agents.push(agent);
    await agent.synced;
    const added = '10.254.0.77';
    await lab.exec(lab.external.netns, 'ip', ['route', 'add', `${added}/32`, 'via', n0.ipv4]);
    await run('ip', ['-n', n0.netns, 'addr', 'add', `${added}/32`, 'dev', n0.wireIf]);
    await until('the agent re-read the addresses', () => agent.logs.some((l) => l.msg === 'host addresses changed' && Array.isArray(l.after) && l.after.includes(added)));
    let answered = false;
    await until(`NodePort 30080 answers on ${added}`, async () => {
      const [r] = await lab.probe(lab.external.netns, { targets: [{ proto: 'tcp', host: added, port: 30080 }], timeoutMs: 2000 });
      answered = r!.ok;
      return answered;
    }, 30_000);
    assert.ok(answered);
    agent.child.kill('SIGTERM');
    await new Promise((r) => agent.child.once('exit', r));
  });
});
