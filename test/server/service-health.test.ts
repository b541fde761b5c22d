// healthCheckNodePort listeners over real HTTP on loopback: kube-proxy's per-service count (ready
// local endpoints summed over the service's ports), one listener per family with that family's
// count, and a listen that fails (the port is taken) reported and retried until it works.
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, it } from 'node:test';
import { nodeFacts } from '../../control/model/node.ts';
import { ChangeTracker } from '../../control/model/tracker.ts';
import type { DesiredState } from '../../control/model/types.ts';
import { healthCheckTargets, ServiceHealthServers, type ListenFailure } from '../../control/server/service-health.ts';
import { service, slice } from '../cases/objects.ts';
import { config, node } from '../cases/semantics.ts';
import { until } from '../wait.ts';

const LOOPBACK = { 4: '127.0.0.1', 6: '::1' } as const;

/** A port some other socket holds: the caller closes `blocker` to free it. */
async function takenPort(host: string): Promise<{ port: number; blocker: http.Server }> {
  const blocker = http.createServer();
  await new Promise<void>((resolve) => blocker.listen({ port: 0, host, ipv6Only: host.includes(':') }, resolve));
  return { port: (blocker.address() as AddressInfo).port, blocker };
}

/** Service lb: LoadBalancer, eTP Local, two ports, dual-stack; n0 is this node. */
function state(healthCheckNodePort: number, v4Local: { ready: number; notReady: number }, v6Local: number): DesiredState {
  const t = new ChangeTracker(config, nodeFacts('n0', node));
  const ports = [
    { name: 'http', port: 80, nodePort: 30080 },
    { name: 'https', port: 443, nodePort: 30443 },
  ];
  t.upsertService(service({ name: 'lb', type: 'LoadBalancer', eTP: 'Local', healthCheckNodePort, clusterIPs: ['10.96.5.1', 'fd00:96::5:1'], lbIPs: ['10.254.0.60'], ports }));
  const slicePorts = [
    { name: 'http', port: 8080 },
    { name: 'https', port: 8443 },
  ];
  const v4 = [
    ...Array.from({ length: v4Local.ready }, (_, i) => ({ ip: `10.244.0.${10 + i}`, node: 'n0' })),
    ...Array.from({ length: v4Local.notReady }, (_, i) => ({ ip: `10.244.0.${50 + i}`, node: 'n0', ready: false })),
    { ip: '10.244.1.10', node: 'n1' },
  ];
  t.upsertSlice(slice({ name: 'lb-v4', service: 'lb', ports: slicePorts, endpoints: v4 }));
  const v6 = Array.from({ length: v6Local }, (_, i) => ({ ip: `fd00:10:244::${(10 + i).toString(16)}`, node: 'n0' }));
  t.upsertSlice(slice({ name: 'lb-v6', service: 'lb', family: 6, ports: slicePorts, endpoints: [...v6, { ip: 'fd00:10:244:1::a', node: 'n1' }] }));
  t.flush();
  return t.state();
}

async function ask(host: string, port: number): Promise<{ status: number; weight: string | undefined; body: { service: unknown; localEndpoints: number; serviceProxyHealthy: boolean } }> {
  const url = `http://${host.includes(':') ? `[${host}]` : host}:${port}/`;
  const r = await fetch(url);
  return { status: r.status, weight: r.headers.get('x-load-balancing-endpoint-weight') ?? undefined, body: (await r.json()) as never };
}

describe('healthCheckNodePort listeners', () => {
  let servers: ServiceHealthServers | undefined;
  const blockers: http.Server[] = [];
  afterEach(() => {
    servers?.close();
    for (const b of blockers.splice(0)) b.close();
  });

  it('counts ready local endpoints per family, summed over the service\'s ports', () => {
    const targets = healthCheckTargets(state(32000, { ready: 2, notReady: 1 }, 1));
    assert.deepEqual([...targets.values()].map((t) => [t.family, t.port, `${t.namespace}/${t.name}`, t.localEndpoints]), [
      [4, 32000, 'demo/lb', 4], // 2 ready local endpoints x 2 ports; the unready one and n1's do not count
      [6, 32000, 'demo/lb', 2],
    ]);
  });

  it('serves each family on its own listener with its own count, 503 when none is local', async () => {
    // Free ports found by holding them, then handed over.
    const a = await takenPort(LOOPBACK[4]);
    a.blocker.close();
    const failures: ListenFailure[] = [];
    servers = new ServiceHealthServers({ proxyHealthy: () => true, onError: (f) => failures.push(f), bindHosts: LOOPBACK, retryMs: 20 });
    servers.update(state(a.port, { ready: 2, notReady: 0 }, 1));
    await until('both families listen', async () => servers!.status().listening.length === 2, 10_000, 50);
    const v4 = await ask(LOOPBACK[4], a.port);
    assert.deepEqual([v4.status, v4.weight, v4.body], [200, '4', { service: { namespace: 'demo', name: 'lb' }, localEndpoints: 4, serviceProxyHealthy: true }]);
    const v6 = await ask(LOOPBACK[6], a.port);
    assert.deepEqual([v6.status, v6.body.localEndpoints], [200, 2]);
    // The IPv6 endpoint goes: IPv6 health checks fail, IPv4 ones still pass.
    servers.update(state(a.port, { ready: 2, notReady: 0 }, 0));
    assert.deepEqual([(await ask(LOOPBACK[6], a.port)).status, (await ask(LOOPBACK[6], a.port)).body.localEndpoints], [503, 0]);
    assert.equal((await ask(LOOPBACK[4], a.port)).status, 200);
    assert.deepEqual(failures, []);
  });

  it('reports a listen that fails and retries it until the port is free', async () => {
    const taken = await takenPort(LOOPBACK[4]);
    blockers.push(taken.blocker);
    const failures: ListenFailure[] = [];
    const recovered: string[] = [];
    servers = new ServiceHealthServers({
      proxyHealthy: () => true,
      onError: (f) => failures.push(f),
      onRecovered: (family, port) => recovered.push(`${family}/${port}`),
      bindHosts: LOOPBACK,
      retryMs: 20,
      maxRetryMs: 100,
    });
    servers.update(state(taken.port, { ready: 1, notReady: 0 }, 1));
    await until('the IPv4 listen failed twice', async () => failures.length >= 2, 10_000, 50);
    assert.equal(failures[0]!.family, 4);
    assert.equal(failures[0]!.port, taken.port);
    assert.match(failures[0]!.error.message, /EADDRINUSE/);
    assert.deepEqual([failures[0]!.attempts, failures[1]!.attempts], [1, 2]);
    assert.ok(failures[1]!.retryInMs > failures[0]!.retryInMs, 'the retry backs off');
    assert.deepEqual(servers.status(), { listening: [`6/${taken.port}`], failing: [`4/${taken.port}`] });
    // The other holder lets go: the next retry takes the port.
    await new Promise((r) => taken.blocker.close(r));
    await until('the IPv4 listener is up', async () => (await ask(LOOPBACK[4], taken.port)).body.localEndpoints === 2, 10_000, 50);
    assert.deepEqual(recovered, [`4/${taken.port}`]);
    assert.deepEqual(servers.status().failing, []);
  });

  it('a service that goes stops its retries and closes its listeners', async () => {
    const taken = await takenPort(LOOPBACK[4]);
    blockers.push(taken.blocker);
    const failures: ListenFailure[] = [];
    servers = new ServiceHealthServers({ proxyHealthy: () => true, onError: (f) => failures.push(f), bindHosts: LOOPBACK, retryMs: 20 });
    servers.update(state(taken.port, { ready: 1, notReady: 0 }, 1));
    await until('the listen failed', async () => failures.length >= 1, 10_000, 50);
    servers.update(new ChangeTracker(config, nodeFacts('n0', node)).state());
    assert.deepEqual(servers.status(), { listening: [], failing: [] });
    await new Promise((r) => taken.blocker.close(r));
    await assert.rejects(ask(LOOPBACK[6], taken.port), 'the IPv6 listener closed');
  });
});
