// The Kubernetes source end to end: reflectors -> model feed -> change tracker. Protobuf and
// JSON give identical models, equal to a model built from the server's objects, also after
// faults.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { ChangeTracker } from '../../control/model/tracker.ts';
import { KubeSource } from '../../control/sources/kube/source.ts';
import { ModelFeed } from '../../control/sources/model-feed.ts';
import { RejectionLog } from '../../control/sources/rejection-log.ts';
import { transportFor, waitFor } from '../apiserver/harness.ts';
import { TestApiServer } from '../apiserver/server.ts';
import { service, slice } from '../cases/objects.ts';
import { config, node, services, slices, THIS_NODE } from '../cases/semantics.ts';
import { referenceState, stateText } from '../model/reference.ts';

interface Pipeline {
  tracker: ChangeTracker;
  source: KubeSource;
  rejections: RejectionLog;
  warnings: string[];
}

function pipeline(server: TestApiServer, contentType: 'protobuf' | 'json'): Pipeline {
  const tracker = new ChangeTracker(config);
  const warnings: string[] = [];
  const rejections = new RejectionLog({ warn: (_f, m) => warnings.push(m) });
  const feed = new ModelFeed({ tracker, rejections, nodeName: THIS_NODE });
  const source = new KubeSource({
    transport: transportFor(server),
    nodeName: THIS_NODE,
    sink: feed,
    contentType,
    inactivityTimeoutMs: 400,
    backoff: { initialMs: 20, maxMs: 200, factor: 2, jitter: 0.5 },
    pageSize: 5,
  });
  source.start();
  return { tracker, source, rejections, warnings };
}

function reference(server: TestApiServer): string {
  const nodeObj = server.list('Node').find((n) => n.metadata?.name === THIS_NODE);
  const visible = (o: { metadata?: { labels?: Record<string, string> } }): boolean =>
    !('service.kubernetes.io/service-proxy-name' in (o.metadata?.labels ?? {})) && !('service.kubernetes.io/headless' in (o.metadata?.labels ?? {}));
  return stateText(referenceState(config, THIS_NODE, server.list('Service').filter(visible), server.list('EndpointSlice').filter(visible), nodeObj as never));
}

async function converge(p: Pipeline, server: TestApiServer): Promise<number> {
  return waitFor('the model to equal the server', () => {
    p.tracker.flush();
    return stateText(p.tracker.state()) === reference(server);
  });
}

describe('kube source -> model', () => {
  let server: TestApiServer;
  let proto: Pipeline;
  let json: Pipeline;

  before(async () => {
    server = new TestApiServer({ bookmarkIntervalMs: 200 });
    await server.start();
    for (const s of services) server.put('Service', s);
    for (const s of slices) server.put('EndpointSlice', s);
    server.put('Node', node);
    server.put('Node', { metadata: { name: 'n1' } });
    proto = pipeline(server, 'protobuf');
    json = pipeline(server, 'json');
    await waitFor('both to sync', () => proto.source.synced && json.source.synced);
  });

  after(async () => {
    await proto?.source.stop();
    await json?.source.stop();
    await server?.stop();
  });

  it('protobuf and JSON produce identical models, equal to the server\'s objects', async () => {
    await converge(proto, server);
    await converge(json, server);
    assert.equal(stateText(proto.tracker.state()), stateText(json.tracker.state()));
    assert.equal(proto.tracker.state().node.zone, 'zone-a', 'the node came through its field selector');
    assert.ok(proto.tracker.state().families.get(4)!.servicePorts.size > 15);
  });

  it('follows changes through faults and converges within 2 s', async () => {
    server.inject({ type: 'drop-mid-frame' }, { kind: 'EndpointSlice', verb: 'watch' }, 2);
    server.closeWatches();
    server.put('Service', service({ name: 'late', clusterIPs: ['10.96.0.77'], ports: [{ port: 80 }] }));
    server.put('EndpointSlice', slice({ name: 'late-x', service: 'late', ports: [{ port: 8080 }], endpoints: [{ ip: '10.244.1.12', node: 'n1' }] }));
    server.remove('EndpointSlice', 'demo/web-v4');
    server.put('Node', { ...node, metadata: { ...node.metadata, labels: { 'topology.kubernetes.io/zone': 'zone-b' } } });
    for (const p of [proto, json]) assert.ok((await converge(p, server)) <= 2000);
    assert.equal(proto.tracker.state().node.zone, 'zone-b');
  });

  it('a bad object is rejected, logged once and counted, and the rest stays programmed', async () => {
    const bad = service({ name: 'bad', clusterIPs: ['10.96.0.88'], ports: [{ port: 80 }], externalIPs: ['300.1.1.1'] });
    server.put('Service', bad);
    server.put('Service', { ...bad, metadata: { ...bad.metadata, annotations: { touched: 'again' } } });
    for (const p of [proto, json]) {
      await converge(p, server);
      assert.equal(p.rejections.counts().get('invalid-ip'), 1, 'counted once, not per event');
      assert.equal(p.warnings.filter((w) => w.includes('demo/bad')).length, 1);
      assert.ok(p.tracker.state().families.get(4)!.servicePorts.has('demo/bad/TCP/v4'), 'the valid part is programmed');
    }
  });
});
