// --cleanup removes every program, filter and pin Switchyard made, and leaves everyone else's.
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { cgroupQuery, tcAttach, tcQuery, xdpQuery } from '../../control/bpf/attach.ts';
import { LoadedObject } from '../../control/bpf/object.ts';
import { buildDir } from '../bpf/objects.ts';
import { writeManifests } from '../cases/manifests.ts';
import { Lab, netnsPath } from '../lab/lab.ts';
import { startAgent } from './harness.ts';

const MAIN = fileURLToPath(new URL('../../control/cli/main.ts', import.meta.url));

describe('cleanup', () => {
  let lab: Lab;
  let manifests: string;
  let configDir: string;
  let config: string;

  before(async () => {
    lab = await Lab.create({ nodes: 2, podsPerNode: 3 });
    manifests = writeManifests();
    // XDP by name: auto leaves it off the lab's veths (it costs their GSO), and cleanup must find it.
    configDir = mkdtempSync(join(tmpdir(), 'switchyard-config-'));
    config = join(configDir, 'config.yaml');
    writeFileSync(config, 'apiVersion: kubeproxy.config.k8s.io/v1alpha1\nkind: KubeProxyConfiguration\n---\napiVersion: switchyard.io/v1alpha1\nkind: SwitchyardConfiguration\nxdpMode: native\n');
  });
  after(async () => {
    await lab?.teardown();
    rmSync(manifests, { recursive: true, force: true });
    if (configDir !== undefined) rmSync(configDir, { recursive: true, force: true });
  });

  it('removes our filters, socket hooks and pins; a foreign filter stays', async () => {
    const n0 = lab.nodes[0]!;
    const agent = startAgent(lab, n0, manifests, ['--config', config]);
    await agent.synced;
    assert.ok((await lab.probe(lab.pod('n0p0').netns, { targets: [{ proto: 'tcp', host: '10.96.0.10', port: 80 }] }))[0]!.ok);
    // Someone else's BPF filter in another slot of the same hook.
    const foreign = LoadedObject.load(`${buildDir}fixtures/foreign.o`);
    const foreignSlot = { ifname: 'veth0', netns: netnsPath(n0.netns), direction: 'ingress' as const, handle: 1, priority: 50 };
    const foreignId = tcAttach({ ...foreignSlot, progFd: foreign.programFd('other_tc') }).progId;
    foreign.close();
    agent.child.kill('SIGTERM');
    await new Promise((r) => agent.child.once('exit', r));

    const pinDir = lab.bpffsDir(`agent-${n0.name}`);
    const cgroup = lab.cgroup(n0);
    const out = await lab.exec(n0.netns, process.execPath, [MAIN, 'cleanup', '--bpffs-dir', pinDir, '--cgroup-root', cgroup]);
    const report = JSON.parse(out) as { tcFilters: string[]; xdp: string[]; cgroupPrograms: number; pinsRemoved: boolean };
    assert.deepEqual(report.xdp, ['eth0'], 'the XDP program on the external device');
    assert.equal(xdpQuery({ ifname: 'eth0', netns: netnsPath(n0.netns) }).progId, 0);
    assert.deepEqual(report.tcFilters.sort(), ['eth0/egress', 'eth0/ingress', 'veth0/egress', 'veth0/ingress', 'veth1/egress', 'veth1/ingress', 'veth2/egress', 'veth2/ingress']);
    assert.equal(report.cgroupPrograms, 8);
    assert.equal(report.pinsRemoved, true);

    assert.equal(tcQuery(foreignSlot), foreignId, 'the foreign filter survives');
    for (const dev of ['veth0', 'eth0']) assert.equal(tcQuery({ ifname: dev, netns: netnsPath(n0.netns), direction: 'ingress' }), null, `nothing of ours on ${dev}`);
    assert.deepEqual(cgroupQuery(cgroup, 'connect4'), []);
    assert.equal(existsSync(pinDir), false);
    const after = await lab.probe(lab.pod('n0p0').netns, { targets: [{ proto: 'tcp', host: '10.96.0.10', port: 80 }], timeoutMs: 500 });
    assert.equal(after[0]!.ok, false, 'the service datapath is gone');
  });
});
