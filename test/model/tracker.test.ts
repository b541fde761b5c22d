// Change tracking: per-object diffs, only what an event touched is recomputed and reported.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { categorizeEndpoints } from '../../control/model/categorize.ts';
import { nodeFacts } from '../../control/model/node.ts';
import { ChangeTracker, LAST_CHANGE_TRIGGER_TIME, lastChangeTriggerTime } from '../../control/model/tracker.ts';
import type { EndpointState } from '../../control/model/types.ts';
import { service, slice } from '../cases/objects.ts';
import { config, node } from '../cases/semantics.ts';

function fresh(): ChangeTracker {
  const t = new ChangeTracker(config, nodeFacts('n0', node));
  for (let i = 0; i < 50; i++) {
    t.upsertService(service({ name: `s${i}`, clusterIPs: [`10.96.2.${i}`, `fd00:96::2:${i}`], ports: [{ name: 'http', port: 80 }] }));
    t.upsertSlice(slice({ name: `s${i}-a`, service: `s${i}`, ports: [{ name: 'http', port: 8080 }], endpoints: [{ ip: `10.244.0.${10 + (i % 3)}`, node: 'n0' }] }));
  }
  t.flush();
  return t;
}

describe('change tracker', () => {
  it('reports only the service ports an event changed', () => {
    const t = fresh();
    t.upsertSlice(slice({ name: 's7-a', service: 's7', ports: [{ name: 'http', port: 8080 }], endpoints: [{ ip: '10.244.1.10', node: 'n1' }] }));
    const c = t.flush();
    assert.deepEqual(c.upserted.map((s) => s.key), ['demo/s7:http/TCP/v4'], 'the v6 port has no v6 endpoints either way: unchanged');
    assert.deepEqual(c.removed, []);
    assert.equal(c.endpointChanges, 1);
    assert.equal(c.serviceChanges, 0);
  });

  it('reports nothing for an update that changes nothing the proxy reads', () => {
    const t = fresh();
    const s = service({ name: 's3', clusterIPs: ['10.96.2.3', 'fd00:96::2:3'], ports: [{ name: 'http', port: 80 }] });
    t.upsertService({ ...s, metadata: { ...s.metadata, resourceVersion: '99', annotations: { unrelated: 'x' } } });
    const c = t.flush();
    assert.deepEqual([c.upserted.length, c.removed.length, c.serviceChanges], [0, 0, 1]);
  });

  it('removes every port of a deleted service, in both families', () => {
    const t = fresh();
    t.deleteService('demo/s9');
    const c = t.flush();
    assert.deepEqual(c.removed.map((s) => s.key).sort(), ['demo/s9:http/TCP/v4', 'demo/s9:http/TCP/v6']);
    assert.equal(t.state().families.get(4)!.servicePorts.has('demo/s9:http/TCP/v4'), false);
  });

  it('a service turned invalid is dropped; its slice waits as an orphan until it returns', () => {
    const t = fresh();
    const rejections = t.upsertService(service({ name: 's4', clusterIPs: ['not-an-ip'], ports: [{ port: 80 }] }));
    assert.equal(rejections[0]?.reason, 'invalid-ip');
    const c = t.flush();
    assert.equal(c.removed.length, 2);
    assert.deepEqual(t.orphanSlices().map((r) => r.object), ['EndpointSlice demo/s4-a']);
    t.upsertService(service({ name: 's4', clusterIPs: ['10.96.2.4'], ports: [{ name: 'http', port: 80 }] }));
    assert.equal(t.flush().upserted[0]?.clusterEndpoints.length, 1);
    assert.deepEqual(t.orphanSlices(), []);
  });

  it('a node change recomputes locality', () => {
    const t = fresh();
    t.setNode(nodeFacts('n1', node));
    const c = t.flush();
    assert.ok(c.nodeChanged);
    assert.ok(c.upserted.length >= 50);
    assert.equal(c.upserted.find((s) => s.key === 'demo/s1:http/TCP/v4')?.endpoints[0]?.local, false);
  });

  it('duplicate endpoints across slices keep their ready copy', () => {
    const t = new ChangeTracker(config, nodeFacts('n0', node));
    t.upsertService(service({ name: 'd', clusterIPs: ['10.96.3.1'], ports: [{ port: 80 }] }));
    t.upsertSlice(slice({ name: 'd-a', service: 'd', ports: [{ port: 8080 }], endpoints: [{ ip: '10.244.0.10', node: 'n0', ready: false, serving: false }] }));
    t.upsertSlice(slice({ name: 'd-b', service: 'd', ports: [{ port: 8080 }], endpoints: [{ ip: '10.244.0.10', node: 'n0' }] }));
    const [sp] = t.flush().upserted;
    assert.equal(sp?.endpoints.length, 1);
    assert.equal(sp?.endpoints[0]?.ready, true);
  });

  it('hands out the slices\' last-change-trigger-times once, newer than the tracker, not for deletions', () => {
    const t = new ChangeTracker(config, nodeFacts('n0', node), { triggerTimesAfter: Date.parse('2026-01-01T00:00:00Z') });
    const annotated = (name: string, when: string): unknown => {
      const s = slice({ name, service: 'd', ports: [{ port: 8080 }], endpoints: [{ ip: '10.244.0.10', node: 'n0' }] });
      return { ...s, metadata: { ...s.metadata, annotations: { [LAST_CHANGE_TRIGGER_TIME]: when } } };
    };
    t.upsertService(service({ name: 'd', clusterIPs: ['10.96.3.1'], ports: [{ port: 80 }] }));
    t.upsertSlice(annotated('d-a', '2026-03-01T10:00:00.250000000Z'));
    t.upsertSlice(annotated('d-b', '2025-12-31T23:59:59Z')); // before the tracker started: the initial list
    t.upsertSlice(annotated('d-c', 'yesterday')); // not RFC 3339: ignored
    assert.deepEqual(t.flush().lastChangeTriggerTimes, [Date.parse('2026-03-01T10:00:00.250Z')]);
    t.deleteSlice('demo/d-a');
    assert.deepEqual(t.flush().lastChangeTriggerTimes, []);
    assert.equal(lastChangeTriggerTime({ metadata: { annotations: { [LAST_CHANGE_TRIGGER_TIME]: '2026-03-01T11:00:00+01:00' } } }), Date.parse('2026-03-01T10:00:00Z'));
  });
});

describe('categorize endpoints (kube-proxy topology.go)', () => {
  const ep = (ip: string, o: Partial<EndpointState>): EndpointState => ({
    ip, port: 80, nodeName: 'x', zone: '', ready: true, serving: true, terminating: false, local: false, zoneHints: [], nodeHints: [], ...o,
  });
  const both = { usesClusterEndpoints: true, usesLocalEndpoints: true };

  it('falls back to serving+terminating endpoints, separately for cluster and local', () => {
    const eps = [ep('1', { ready: false, terminating: true }), ep('2', { ready: false, terminating: true, local: true }), ep('3', { ready: false, serving: false, terminating: true })];
    const c = categorizeEndpoints(eps, both, 'n0', 'z');
    assert.deepEqual(c.clusterEndpoints.map((e) => e.ip), ['1', '2']);
    assert.deepEqual(c.localEndpoints.map((e) => e.ip), ['2']);
    assert.equal(c.hasAnyEndpoints, true);
  });

  it('prefers ready local endpoints over terminating ones, and ready cluster ones over local terminating', () => {
    const eps = [ep('1', {}), ep('2', { ready: false, terminating: true, local: true })];
    const c = categorizeEndpoints(eps, both, 'n0', 'z');
    assert.deepEqual(c.clusterEndpoints.map((e) => e.ip), ['1']);
    assert.deepEqual(c.localEndpoints.map((e) => e.ip), ['2']);
  });

  it('ignores hints unless every ready endpoint has one and one is for us', () => {
    const eps = [ep('1', { zoneHints: ['a'] }), ep('2', { zoneHints: ['b'] })];
    assert.deepEqual(categorizeEndpoints(eps, both, 'n0', 'a').clusterEndpoints.map((e) => e.ip), ['1']);
    assert.equal(categorizeEndpoints(eps, both, 'n0', 'c').clusterEndpoints.length, 2, 'no hint for zone c: all');
    assert.equal(categorizeEndpoints(eps, both, 'n0', '').topologyMode, '', 'node without a zone label');
    const notReadyWithoutHint = [...eps, ep('3', { ready: false })];
    assert.equal(categorizeEndpoints(notReadyWithoutHint, both, 'n0', 'a').topologyMode, 'PreferSameZone', 'only ready endpoints count');
  });

  it('no usable endpoint anywhere means hasAnyEndpoints false (REJECT, not DROP)', () => {
    const c = categorizeEndpoints([ep('1', { ready: false, serving: false })], both, 'n0', 'z');
    assert.equal(c.hasAnyEndpoints, false);
  });
});
