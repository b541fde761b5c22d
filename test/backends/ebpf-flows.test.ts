// Flows under change, with real packets: a removed UDP backend's flows move at once (Cilium
// #12859 is the known failure), a terminating backend keeps its flows but gets no new ones, and
// an established flow keeps its backend when the service changes.
import { DEFAULT_SNAT_PORTS } from '../../control/backends/ebpf/backend.ts';
import { CT_TABLES } from '../../control/backends/ebpf/datapath.ts';
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { u32 } from '../../control/bpf/codec.ts';
import { affinityKey, affinityValue, backend, ctKey, ctValue } from '../../control/bpf/layout.ts';
import { compileDatapath } from '../../control/backends/ebpf/compile.ts';
import { slice } from '../cases/objects.ts';
import { Lab } from '../lab/lab.ts';
import type { ProbeResult } from '../lab/probe.ts';
import { programNode, type ProgrammedNode } from './ebpf-lab.ts';

const VIP = '10.96.0.60';

/** How long a probe waits for an answer that must come (a bound for failures, not a claim of speed). */
const ANSWER_MS = 5000;

/** ClientIP affinity's timeout in the stickiness test: long beside a probe's start on a loaded machine. */
const AFFINITY_S = 30;

describe('eBPF datapath: flows under change', () => {
  let lab: Lab;
  let n0: ProgrammedNode;

  const setEndpoints = (eps: Array<{ pod: string; terminating?: boolean }>): void => {
    n0.tracker.upsertSlice(
      slice({
        name: 'flows-x',
        service: 'flows',
        ports: [{ port: 8080, protocol: 'UDP' }],
        endpoints: eps.map((e) => ({ ip: lab.pod(e.pod).ipv4, node: lab.pod(e.pod).node.name, ready: !e.terminating, serving: true, terminating: e.terminating ?? false })),
      }),
    );
    n0.tracker.flush();
    const report = n0.datapath.sync(compileDatapath(n0.tracker.state()));
    assert.deepEqual(report.failed, []);
  };
  const send = async (sourcePort?: number, count = 1): Promise<ProbeResult[]> =>
    lab.probe(lab.pod('n0p0').netns, { targets: [{ proto: 'udp', host: VIP, port: 53 }], count, sourcePort, timeoutMs: ANSWER_MS });
  const podOf = (r: ProbeResult): string => {
    assert.ok(r.ok, r.ok ? '' : r.error);
    return r.reply.pod;
  };

  before(async () => {
    lab = await Lab.create({ nodes: 2, podsPerNode: 3 });
    n0 = programNode(lab, lab.nodes[0]!);
    n0.tracker.upsertService({
      apiVersion: 'v1',
      kind: 'Service',
      metadata: { name: 'flows', namespace: 'demo' },
      spec: { clusterIP: VIP, ports: [{ port: 53, protocol: 'UDP', targetPort: 8080 }] },
    });
  });

  after(async () => {
    n0?.datapath.close();
    await lab?.teardown();
  });

  it('a removed UDP backend: the same flow\'s very next datagram is answered by another', async () => {
    setEndpoints([{ pod: 'n0p1' }, { pod: 'n1p1' }]);
    const first = podOf((await send(50001))[0]!);
    const other = first === 'n0p1' ? 'n1p1' : 'n0p1';
    setEndpoints([{ pod: other }]);
    // One datagram, no retry: answered at all means the flow moved at once, without waiting for
    // its CT entry to time out (what a wall-clock bound here would claim, and fail under load).
    const after = podOf((await send(50001))[0]!);
    assert.equal(after, other);
  });

  it('a terminating backend keeps its flow and gets no new ones', async () => {
    setEndpoints([{ pod: 'n0p2' }, { pod: 'n1p2' }]);
    // Find a flow on n1p2, then make n1p2 terminating.
    let port = 50100;
    while (podOf((await send(port))[0]!) !== 'n1p2') port++;
    setEndpoints([{ pod: 'n0p2' }, { pod: 'n1p2', terminating: true }]);
    for (let i = 0; i < 5; i++) assert.equal(podOf((await send(port))[0]!), 'n1p2', 'the existing flow stays');
    const fresh = await send(undefined, 20);
    assert.deepEqual([...new Set(fresh.map(podOf))], ['n0p2'], 'new flows avoid the terminating backend');
  });

  it('Maglev: adding a backend moves flows only to the new backend, and most stay', async () => {
    n0.tracker.upsertService({
      apiVersion: 'v1',
      kind: 'Service',
      metadata: { name: 'mag', namespace: 'demo', annotations: { 'switchyard.io/lb-algorithm': 'maglev' } },
      spec: { clusterIP: '10.96.0.61', ports: [{ port: 53, protocol: 'UDP', targetPort: 8080 }] },
    });
    const magEndpoints = (pods: string[]): void => {
      n0.tracker.upsertSlice(slice({ name: 'mag-x', service: 'mag', ports: [{ port: 8080, protocol: 'UDP' }], endpoints: pods.map((p) => ({ ip: lab.pod(p).ipv4, node: lab.pod(p).node.name })) }));
      n0.tracker.flush();
      assert.deepEqual(n0.datapath.sync(compileDatapath(n0.tracker.state())).failed, []);
    };
    const ports = Array.from({ length: 40 }, (_, i) => 51000 + i);
    const round = async (): Promise<string[]> =>
      (await lab.probe(lab.pod('n0p0').netns, { targets: [{ proto: 'udp', host: '10.96.0.61', port: 53 }], count: ports.length, sourcePorts: ports, timeoutMs: ANSWER_MS })).map(podOf);
    magEndpoints(['n0p1', 'n0p2', 'n1p0']);
    const before = await round();
    magEndpoints(['n0p1', 'n0p2', 'n1p0', 'n1p1']);
    // Forget the flows, so every packet is a new flow chosen by the table alone.
    for (const name of CT_TABLES) {
      const ct = n0.datapath.object.map(name, ctKey, ctValue);
      ct.deleteMany(ct.entries().map(([k]) => k));
    }
    const after = await round();
    const moved = after.filter((pod, i) => pod !== before[i]);
    assert.ok(moved.every((pod) => pod === 'n1p1'), `flows moved to ${[...new Set(moved)].join(', ')}`);
    assert.ok(moved.length <= ports.length / 2, `${moved.length} of ${ports.length} flows moved`);
    assert.ok(moved.length > 0, 'the new backend got some flows');
  });

  it('ClientIP affinity: connections stick to one backend, and the choice expires after timeoutSeconds', async () => {
    n0.tracker.upsertService({
      apiVersion: 'v1',
      kind: 'Service',
      metadata: { name: 'sticky2', namespace: 'demo' },
      spec: { clusterIP: '10.96.0.62', ports: [{ port: 80, targetPort: 8080 }], sessionAffinity: 'ClientIP', sessionAffinityConfig: { clientIP: { timeoutSeconds: AFFINITY_S } } },
    });
    n0.tracker.upsertSlice(slice({ name: 'sticky2-x', service: 'sticky2', ports: [{ port: 8080 }], endpoints: ['n0p1', 'n0p2', 'n1p0', 'n1p1'].map((p) => ({ ip: lab.pod(p).ipv4, node: lab.pod(p).node.name })) }));
    n0.tracker.flush();
    n0.datapath.sync(compileDatapath(n0.tracker.state()));
    const connect = async (count: number): Promise<string[]> =>
      (await lab.probe(lab.pod('n0p0').netns, { targets: [{ proto: 'tcp', host: '10.96.0.62', port: 80 }], count })).map(podOf);
    const first = await connect(12);
    assert.equal(new Set(first).size, 1, `12 connections, one backend: ${first.join(' ')}`);
    // Point the client's affinity entry at another of this service's backends: fresh, it must be
    // honoured; stale, it must be ignored. One of another service (n1p2) is never honoured.
    // "Fresh" is a last use ahead of now (age 0 however long the probe takes to start on a loaded
    // machine); "stale" is one twice the timeout ago; between connections the entry is refreshed.
    const now = process.hrtime.bigint();
    const timeoutNs = BigInt(AFFINITY_S) * 1_000_000_000n;
    assert.ok(now > 2n * timeoutNs, 'CLOCK_MONOTONIC is younger than two affinity timeouts: no stale entry can be written');
    const serviceId = n0.datapath.serviceIdOf('demo/sticky2/TCP/v4')!;
    const aff = n0.datapath.object.map('sy_affinity', affinityKey, affinityValue);
    const other = ['n0p1', 'n0p2', 'n1p0', 'n1p1'].find((p) => p !== first[0])!;
    const idOf = (pod: string, sid: number): number => n0.datapath.object.map('sy_backends', u32, backend).entries().find(([, b]) => b.addr === lab.pod(pod).ipv4 && b.port === 8080 && b.proto === 6 && b.serviceId === sid)![0];
    const key = { serviceId, client: lab.pod('n0p0').ipv4 };
    aff.set(key, { backendId: idOf(other, serviceId), lastSeen: now + timeoutNs });
    assert.deepEqual(await connect(3), [other, other, other], 'a live affinity entry decides');
    aff.set(key, { backendId: idOf(other, serviceId), lastSeen: process.hrtime.bigint() - 2n * timeoutNs });
    const afterExpiry = await connect(6);
    assert.equal(new Set(afterExpiry).size, 1, `an expired entry is ignored and the fresh choice sticks: ${afterExpiry.join(' ')}`);
    const outsider = n0.datapath.object.map('sy_backends', u32, backend).entries().find(([, b]) => b.addr === lab.pod('n1p2').ipv4 && b.port === 8080 && b.proto === 6 && b.serviceId !== serviceId)![0];
    aff.set(key, { backendId: outsider, lastSeen: process.hrtime.bigint() + timeoutNs });
    assert.ok(!(await connect(3)).includes('n1p2'), 'a backend of another service is never reached through affinity');
  });

  it('an established flow keeps its backend when the service gains backends', async () => {
    setEndpoints([{ pod: 'n0p1' }]);
    assert.equal(podOf((await send(50200))[0]!), 'n0p1');
    setEndpoints([{ pod: 'n0p1' }, { pod: 'n0p2' }, { pod: 'n1p0' }, { pod: 'n1p1' }]);
    for (let i = 0; i < 5; i++) assert.equal(podOf((await send(50200))[0]!), 'n0p1');
  });
  it('one client port to one backend through two frontends: both flows work, the second on a port of its own', async () => {
    for (const [name, ip] of [['clash-a', '10.96.0.63'], ['clash-b', '10.96.0.64']] as const) {
      n0.tracker.upsertService({
        apiVersion: 'v1',
        kind: 'Service',
        metadata: { name, namespace: 'demo' },
        spec: { clusterIP: ip, ports: [{ name: 'tcp', port: 80, targetPort: 8080 }, { name: 'udp', port: 53, protocol: 'UDP', targetPort: 8080 }] },
      });
      n0.tracker.upsertSlice(slice({ name: `${name}-x`, service: name, ports: [{ name: 'tcp', port: 8080 }, { name: 'udp', port: 8080, protocol: 'UDP' }], endpoints: [{ ip: lab.pod('n1p0').ipv4, node: 'n1' }] }));
    }
    n0.tracker.flush();
    assert.deepEqual(n0.datapath.sync(compileDatapath(n0.tracker.state())).failed, []);
    const ok = (r: ProbeResult): { pod: string; clientPort: number } => {
      assert.ok(r.ok, r.ok ? '' : `${r.target.proto} ${r.target.host}: ${r.error}`);
      return { pod: r.reply.pod, clientPort: r.reply.clientPort };
    };
    // UDP, interleaved: a, b, then a again; without its own port b's answers would take a's.
    const udp = (await lab.probe(lab.pod('n0p0').netns, { targets: ['10.96.0.63', '10.96.0.64', '10.96.0.63'].map((host) => ({ proto: 'udp' as const, host, port: 53 })), sourcePort: 50300, timeoutMs: ANSWER_MS })).map(ok);
    assert.deepEqual(udp.map((r) => r.pod), ['n1p0', 'n1p0', 'n1p0']);
    assert.deepEqual([udp[0]!.clientPort, udp[2]!.clientPort], [50300, 50300]);
    assert.ok(udp[1]!.clientPort !== 50300 && udp[1]!.clientPort >= DEFAULT_SNAT_PORTS.min, `b's flow seen from port ${udp[1]!.clientPort}, one of its own`);
    // TCP: the server closes first, so the tuple of a's connection is in TIME_WAIT at the
    // backend when b's opens from the same port.
    const tcp = (await lab.probe(lab.pod('n0p0').netns, { targets: ['10.96.0.63', '10.96.0.64'].map((host) => ({ proto: 'tcp' as const, host, port: 80 })), sourcePort: 50301, timeoutMs: 3000 })).map(ok);
    assert.deepEqual(tcp.map((r) => r.pod), ['n1p0', 'n1p0']);
    assert.equal(tcp[0]!.clientPort, 50301);
    assert.ok(tcp[1]!.clientPort !== 50301 && tcp[1]!.clientPort >= DEFAULT_SNAT_PORTS.min, `b's connection seen from port ${tcp[1]!.clientPort}, one of its own`);
  });
});
