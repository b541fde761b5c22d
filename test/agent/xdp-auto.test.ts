// xdpMode auto (the default) on a veth external device: no XDP program is attached, since native
// XDP on a veth turns TSO off on its peer; the agent says so once per device, and tc alone serves
// NodePort traffic arriving there (real packets from the lab's external client).
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { tcQuery, xdpQuery } from '../../control/bpf/attach.ts';
import { writeManifests } from '../cases/manifests.ts';
import { run } from '../lab/exec.ts';
import { Lab, netnsPath } from '../lab/lab.ts';
import { until } from '../wait.ts';
import { startAgent, type RunningAgent } from './harness.ts';

describe('xdpMode auto on a veth external device', () => {
  let lab: Lab;
  let manifests: string;
  let configDir: string | undefined;
  let agent: RunningAgent | undefined;

  before(async () => {
    lab = await Lab.create({ nodes: 2, podsPerNode: 3 });
    manifests = writeManifests();
  });
  after(async () => {
    agent?.child.kill('SIGKILL');
    await lab?.teardown();
    rmSync(manifests, { recursive: true, force: true });
    if (configDir !== undefined) rmSync(configDir, { recursive: true, force: true });
  });

  const stop = async (): Promise<void> => {
    agent!.child.kill('SIGTERM');
    await new Promise((r) => agent!.child.once('exit', r));
    agent = undefined;
  };

  it('attaches no XDP, says why once, and tc serves the NodePort', async () => {
    const n0 = lab.nodes[0]!;
    const wire = { ifname: n0.wireIf, netns: netnsPath(n0.netns) };
    agent = startAgent(lab, n0, manifests);
    await agent.synced;
    const skipped = (): Array<Record<string, unknown>> => agent!.logs.filter((l) => l.device === n0.wireIf && l.xdp === 'skipped');
    // The devices are attached after the first sync.
    await until(`the agent attaches to ${n0.wireIf}`, () => agent!.logs.some((l) => l.msg === `attached to ${n0.wireIf}`));
    assert.equal(skipped().length, 1, JSON.stringify(agent.logs.filter((l) => l.device === n0.wireIf)));
    assert.equal(skipped()[0]!.kind, 'veth');
    assert.match(String(skipped()[0]!.msg), new RegExp(`^no XDP on ${n0.wireIf} \\(xdpMode auto\\): native XDP on a veth turns TSO off on its peer`));
    assert.equal(xdpQuery(wire).progId, 0, 'no XDP program on the wire device');
    assert.notEqual(tcQuery({ ...wire, direction: 'ingress' }), null, 'sy_from_external on the wire device');
    assert.notEqual(tcQuery({ ...wire, direction: 'egress' }), null, 'sy_to_external on the wire device');

    // NodePort np (eTP Cluster, endpoints n0p2 and n1p0) from outside the cluster.
    const results = await lab.probe(lab.external.netns, { targets: [{ proto: 'tcp', host: n0.ipv4, port: 30080 }], count: 6 });
    for (const r of results) {
      assert.ok(r.ok, `${r.target.proto} ${r.target.host}:${r.target.port}: ${r.ok ? '' : r.error}`);
      assert.ok(['n0p2', 'n1p0'].includes(r.reply.pod), `answered by ${r.reply.pod}`);
    }

    // A link event makes the agent look at every device again: the reason is not said twice.
    const podNs = `${lab.prefix}-n0p8`; // named like the lab's, so the lab's teardown removes it
    await run('ip', ['netns', 'add', podNs]);
    await run('ip', ['-n', n0.netns, 'link', 'add', 'veth8', 'type', 'veth', 'peer', 'name', 'eth0', 'netns', podNs]);
    await run('ip', ['-n', n0.netns, 'link', 'set', 'veth8', 'up']);
    await until('the agent attaches to veth8', () => agent!.logs.some((l) => l.msg === 'attached to veth8'));
    assert.equal(skipped().length, 1, 'said once per device');
    assert.equal(xdpQuery(wire).progId, 0);
    await stop();
  });

  it('an earlier agent\'s XDP program (xdpMode native) is taken off the veth by auto', async () => {
    const n1 = lab.nodes[1]!;
    const wire = { ifname: n1.wireIf, netns: netnsPath(n1.netns) };
    configDir = mkdtempSync(join(tmpdir(), 'switchyard-config-'));
    const config = join(configDir, 'config.yaml');
    writeFileSync(config, 'apiVersion: kubeproxy.config.k8s.io/v1alpha1\nkind: KubeProxyConfiguration\n---\napiVersion: switchyard.io/v1alpha1\nkind: SwitchyardConfiguration\nxdpMode: native\n');
    agent = startAgent(lab, n1, manifests, ['--config', config]);
    await until('native XDP on the wire device', () => agent!.logs.some((l) => l.device === n1.wireIf && l.xdp === 'native'));
    assert.notEqual(xdpQuery(wire).progId, 0, 'xdpMode native attaches XDP on a veth');
    await stop();
    agent = startAgent(lab, n1, manifests);
    await until(`the agent attaches to ${n1.wireIf}`, () => agent!.logs.some((l) => l.msg === `attached to ${n1.wireIf}`));
    assert.ok(agent.logs.some((l) => l.msg === `removed our earlier XDP program from ${n1.wireIf}`), JSON.stringify(agent.logs.filter((l) => l.device === n1.wireIf)));
    assert.equal(xdpQuery(wire).progId, 0);
    const [r] = await lab.probe(lab.external.netns, { targets: [{ proto: 'tcp', host: n1.ipv4, port: 30080 }] });
    assert.ok(r!.ok, r!.ok ? '' : r!.error);
    await stop();
  });
});
