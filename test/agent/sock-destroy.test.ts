// The agent resets a node process's sockets once the backend they were balanced to leaves the
// service: a real agent in a lab node, its manifests directory edited to move the endpoint, and a
// process in the node's cgroup holding a TCP connection and a connected UDP socket through
// ClusterIPs (cgroup socket hooks). On kernels without bpf_sock_destroy (6.5) it says so once.
import assert from 'node:assert/strict';
import { mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { stringify } from 'yaml';
import { kernelFunctionExists } from '../../control/bpf/kernel.ts';
import { SOCK_DESTROY_KFUNC } from '../../control/backends/ebpf/sockets.ts';
import { service, slice } from '../cases/objects.ts';
import { node } from '../cases/semantics.ts';
import { Lab, netnsPath } from '../lab/lab.ts';
import { SockClient } from '../lab/sock-client.ts';
import { until } from '../wait.ts';
import { startAgent, type RunningAgent } from './harness.ts';

const BULK = 9000;
const TCP_IP = '10.96.8.1';
const UDP_IP = '10.96.8.2';

function writeCluster(dir: string, pod: number): void {
  const ep = [{ ip: `10.244.0.${10 + pod}`, node: 'n0' }];
  const services = [
    service({ name: 'hold', clusterIPs: [TCP_IP], ports: [{ name: 'p', port: 80, targetPort: BULK }] }),
    service({ name: 'dns', clusterIPs: [UDP_IP], ports: [{ name: 'p', port: 53, protocol: 'UDP', targetPort: 8080 }] }),
  ];
  const slices = [
    slice({ name: 'hold-1', service: 'hold', ports: [{ name: 'p', port: BULK }], endpoints: ep }),
    slice({ name: 'dns-1', service: 'dns', ports: [{ name: 'p', port: 8080, protocol: 'UDP' }], endpoints: ep }),
  ];
  writeFileSync(join(dir, 'services.yaml'), services.map((s) => stringify(s)).join('---\n'));
  // Written whole to a new name, then renamed: the agent never reads half a file.
  writeFileSync(join(dir, '.endpointslices.tmp'), slices.map((s) => stringify(s)).join('---\n'));
  renameSync(join(dir, '.endpointslices.tmp'), join(dir, 'endpointslices.yaml'));
}

describe('agent: sockets of node processes connected to a removed backend', () => {
  let lab: Lab;
  let manifests: string;
  let agent: RunningAgent | undefined;
  let client: SockClient | undefined;

  before(async () => {
    lab = await Lab.create({ nodes: 1, podsPerNode: 2, ports: [8080], bulkPort: BULK, tag: 'sockd' });
    manifests = mkdtempSync(join(tmpdir(), 'switchyard-manifests-'));
    writeFileSync(join(manifests, 'node.json'), JSON.stringify({ apiVersion: 'v1', kind: 'Node', ...node }));
    writeCluster(manifests, 0);
  });
  after(async () => {
    client?.stop();
    agent?.child.kill('SIGKILL');
    await lab?.teardown();
    rmSync(manifests, { recursive: true, force: true });
  });

  it('are reset after the sync that removed it', async (t) => {
    const n0 = lab.nodes[0]!;
    agent = startAgent(lab, n0, manifests);
    await agent.synced;
    const said = (re: RegExp): Array<Record<string, unknown>> => agent!.logs.filter((l) => typeof l.msg === 'string' && re.test(l.msg));
    if (!kernelFunctionExists(SOCK_DESTROY_KFUNC)) {
      assert.equal(said(new RegExp(`no ${SOCK_DESTROY_KFUNC}`)).length, 1, 'said once');
      return t.skip(`the kernel has no ${SOCK_DESTROY_KFUNC} (Linux 6.5): the agent said so and runs without`);
    }
    client = new SockClient(netnsPath(n0.netns), lab.cgroup(n0));
    await client.ready();
    await client.ask({ op: 'tcp', id: 'tcp', host: TCP_IP, port: 80 }, 'connected');
    assert.equal((await client.ask({ op: 'udp', id: 'udp', host: UDP_IP, port: 53 }, 'reply')).pod, 'n0p0');
    const t0 = performance.now();
    writeCluster(manifests, 1);
    await until('both sockets reset', () => client!.errors().length === 2);
    const ms = performance.now() - t0;
    assert.deepEqual(client.errors().map((e) => `${String(e.id)} ${String(e.code)}`).sort(), ['tcp ECONNABORTED', 'udp ECONNABORTED']);
    const reset = said(/sockets connected to removed backends reset/);
    assert.equal(reset.length, 1, JSON.stringify(agent.logs.slice(-5)));
    assert.deepEqual(reset[0]!.sockets, ['tcp 10.244.0.10:9000', 'udp 10.244.0.10:8080']);
    t.diagnostic(`reset ${ms.toFixed(0)} ms after the endpoint moved in the manifests (file watch, sync, iterators)`);
    // A new connection reaches the endpoint now in the service.
    await client.ask({ op: 'tcp', id: 'tcp2', host: TCP_IP, port: 80 }, 'connected');
    assert.equal((await client.ask({ op: 'udp', id: 'udp2', host: UDP_IP, port: 53 }, 'reply')).pod, 'n0p1');
  });
});
