// kube-proxy's localhostNodePorts with real packets: a process on the node connects to
// 127.0.0.1:<nodePort> and a pod answers, in iptables mode (route_localnet=1, loopback in the
// NodePort dispatch, masqueraded to the pod) and in eBPF mode (the cgroup connect hook picks the
// backend for 127.0.0.1:NodePort); with localhostNodePorts false nothing answers there. trace()
// gives the same verdicts, and says why nftables mode does not serve them.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { compileDatapath } from '../../control/backends/ebpf/compile.ts';
import { IptablesBackend, ROUTE_LOCALNET } from '../../control/backends/iptables/apply.ts';
import type { ChangeTracker } from '../../control/model/tracker.ts';
import { DEFAULT_MODEL_CONFIG, type ModelConfig } from '../../control/model/types.ts';
import { trace } from '../../control/trace/trace.ts';
import { service, slice } from '../cases/objects.ts';
import { inNetns, Lab, type LabNode } from '../lab/lab.ts';
import { programNode, type ProgrammedNode } from './ebpf-lab.ts';
import { semanticTracker } from './semantic-lab.ts';

const NODE_PORT = 30180;
const LOCAL_NODE_PORT = 30181;
const PORT = 8080;

/** Two NodePort services, eTP Cluster and eTP Local, with the node's two pods as endpoints. */
const fill = (n: LabNode) => (t: ChangeTracker): void => {
  t.upsertService(service({ name: 'lh', type: 'NodePort', clusterIPs: ['10.96.0.180'], ports: [{ port: 80, targetPort: PORT, nodePort: NODE_PORT }] }));
  t.upsertSlice(slice({ name: 'lh-x', service: 'lh', ports: [{ port: PORT }], endpoints: n.pods.map((p) => ({ ip: p.ipv4, node: n.name })) }));
  t.upsertService(service({ name: 'lhl', type: 'NodePort', clusterIPs: ['10.96.0.181'], ports: [{ port: 80, targetPort: PORT, nodePort: LOCAL_NODE_PORT }], eTP: 'Local' }));
  t.upsertSlice(slice({ name: 'lhl-x', service: 'lhl', ports: [{ port: PORT }], endpoints: n.pods.map((p) => ({ ip: p.ipv4, node: n.name })) }));
};

const model = (localhostNodePorts: boolean): ModelConfig => ({ ...DEFAULT_MODEL_CONFIG, families: [4, 6], clusterCIDRs: ['10.244.0.0/16'], detectLocalMode: 'ClusterCIDR', localhostNodePorts });

/** What the node's own process gets from 127.0.0.1 at both NodePorts (2 tries each): the pod that answered, or the error. */
async function fromLoopback(lab: Lab, n: LabNode, cgroup?: string): Promise<string[]> {
  const targets = [NODE_PORT, LOCAL_NODE_PORT].map((port) => ({ proto: 'tcp' as const, host: '127.0.0.1', port }));
  const r = await lab.probe(n.netns, { targets, count: 2, timeoutMs: 2000, cgroup });
  return r.map((x) => (x.ok ? x.reply.pod : x.error));
}

const LOOPBACK = { src: '127.0.0.1', dst: '127.0.0.1', port: NODE_PORT, protocol: 'TCP' as const };

describe('localhostNodePorts, iptables mode: 127.0.0.1:NodePort from the node', () => {
  let lab: Lab;
  before(async () => {
    lab = await Lab.create({ nodes: 1, podsPerNode: 2, ports: [PORT] });
  });
  after(async () => {
    await lab?.teardown();
  });

  it('on (the default): route_localnet is set and a pod answers, masqueraded; trace agrees', async () => {
    const n = lab.nodes[0]!;
    assert.equal((await lab.exec(n.netns, 'sysctl', ['-n', ROUTE_LOCALNET])).trim(), '0', 'a fresh netns starts without route_localnet');
    const tracker = semanticTracker(n, fill(n), model(true));
    const backend = new IptablesBackend({ families: [4, 6], commandPrefix: inNetns(n.netns) });
    await backend.sync(tracker.state(), true);
    assert.equal((await lab.exec(n.netns, 'sysctl', ['-n', ROUTE_LOCALNET])).trim(), '1');
    const answers = await fromLoopback(lab, n);
    assert.ok(answers.every((a) => n.pods.some((p) => p.name === a)), answers.join(' '));
    for (const port of [NODE_PORT, LOCAL_NODE_PORT]) {
      const t = trace(tracker.state(), { ...LOOPBACK, port }, { mode: 'iptables' });
      assert.equal(t.verdict, 'FORWARD');
      assert.ok(t.verdict === 'FORWARD' && t.endpoints.every((e) => e.sourceTranslated), 'masqueraded (the pod cannot answer 127.0.0.1), eTP Local too');
    }
    assert.equal(trace(tracker.state(), { ...LOOPBACK, dst: '127.0.0.2' }, { mode: 'iptables' }).verdict, 'FORWARD', 'all of 127.0.0.0/8, as addrtype LOCAL');
  });

  it('off: nothing of ours answers at 127.0.0.1:NodePort (the port is the host\'s own, and closed)', async () => {
    const n = lab.nodes[0]!;
    const tracker = semanticTracker(n, fill(n), model(false));
    await new IptablesBackend({ families: [4, 6], commandPrefix: inNetns(n.netns) }).sync(tracker.state(), true);
    assert.deepEqual(await fromLoopback(lab, n), ['ECONNREFUSED', 'ECONNREFUSED', 'ECONNREFUSED', 'ECONNREFUSED']);
    const t = trace(tracker.state(), LOOPBACK, { mode: 'iptables' });
    assert.ok(t.verdict === 'NO_SERVICE' && /localhost NodePorts are off/.test(t.reason), JSON.stringify(t));
  });

  it('nftables mode (trace): no localhost NodePorts, as kube-proxy\'s nftables mode, said in the reason', () => {
    const n = lab.nodes[0]!;
    const t = trace(semanticTracker(n, fill(n), model(true)).state(), LOOPBACK, { mode: 'nftables' });
    assert.ok(t.verdict === 'NO_SERVICE' && /nftables mode does not serve NodePorts on localhost/.test(t.reason), JSON.stringify(t));
  });
});

describe('localhostNodePorts, eBPF mode: 127.0.0.1:NodePort from the node\'s sockets', () => {
  let lab: Lab;
  let p: ProgrammedNode | undefined;
  before(async () => {
    lab = await Lab.create({ nodes: 1, podsPerNode: 2, ports: [PORT] });
  });
  after(async () => {
    p?.datapath.close();
    await lab?.teardown();
  });

  it('on: the connect hook sends 127.0.0.1:NodePort to a pod; trace agrees', async () => {
    const n = lab.nodes[0]!;
    p = programNode(lab, n, fill(n), undefined, { model: model(true) });
    const fe = [...compileDatapath(p.tracker.state()).frontends.values()].filter((f) => f.addr === '127.0.0.1');
    assert.deepEqual([...new Set(fe.map((f) => f.port))].sort(), [NODE_PORT, LOCAL_NODE_PORT], 'loopback frontends at each NodePort (eTP Local: both scopes)');
    const answers = await fromLoopback(lab, n, p.cgroup);
    assert.ok(answers.every((a) => n.pods.some((pod) => pod.name === a)), answers.join(' '));
    assert.equal(trace(p.tracker.state(), LOOPBACK, { mode: 'ebpf' }).verdict, 'FORWARD');
  });

  it('off: the frontend is gone and nothing answers there', async () => {
    const n = lab.nodes[0]!;
    const off = semanticTracker(n, fill(n), model(false));
    const report = p!.datapath.sync(compileDatapath(off.state()));
    assert.deepEqual(report.failed, []);
    assert.deepEqual(await fromLoopback(lab, n, p!.cgroup), ['ECONNREFUSED', 'ECONNREFUSED', 'ECONNREFUSED', 'ECONNREFUSED']);
    assert.equal(trace(off.state(), LOOPBACK, { mode: 'ebpf' }).verdict, 'NO_SERVICE');
  });
});
