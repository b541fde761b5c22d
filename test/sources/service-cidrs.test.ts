// ServiceCIDR objects from the API server into the model, in both wire formats: added, modified
// and deleted objects change the service CIDRs the model carries; an API server without the
// resource (404, before Kubernetes 1.33) is said once and the configured range used, until the
// resource appears.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { ChangeTracker } from '../../control/model/tracker.ts';
import { DEFAULT_MODEL_CONFIG, type ModelConfig } from '../../control/model/types.ts';
import type { KindName } from '../../control/sources/kube/kinds.ts';
import { KubeSource } from '../../control/sources/kube/source.ts';
import type { ApiTransport } from '../../control/sources/kube/transport.ts';
import { ModelFeed } from '../../control/sources/model-feed.ts';
import { RejectionLog } from '../../control/sources/rejection-log.ts';
import { transportFor, waitFor } from '../apiserver/harness.ts';
import { TestApiServer, type ServerOptions } from '../apiserver/server.ts';
import { service } from '../cases/objects.ts';

const NODE = 'n0';

interface Pipeline {
  tracker: ChangeTracker;
  source: KubeSource;
  rejections: RejectionLog;
  missing: string[];
  /** Requests for ServiceCIDRs the source made. */
  asked: () => number;
}

function pipeline(server: TestApiServer, contentType: 'protobuf' | 'json', model: Partial<ModelConfig> = {}): Pipeline {
  const tracker = new ChangeTracker({ ...DEFAULT_MODEL_CONFIG, ...model });
  const rejections = new RejectionLog({ warn: () => undefined });
  const feed = new ModelFeed({ tracker, rejections, nodeName: NODE });
  const inner = transportFor(server);
  let asked = 0;
  // Counts what the reflector asks for, 404s included (the test server records only what it serves).
  const transport: ApiTransport = {
    server: inner.server,
    get: (path, query, accept, signal) => {
      if (path.endsWith('/servicecidrs')) asked++;
      return inner.get(path, query, accept, signal);
    },
  };
  const missing: string[] = [];
  const source = new KubeSource({
    transport,
    nodeName: NODE,
    sink: feed,
    contentType,
    inactivityTimeoutMs: 2000,
    backoff: { initialMs: 20, maxMs: 200, factor: 2, jitter: 0.5 },
    missingRetryMs: 50,
    events: { missing: (kind: KindName) => missing.push(kind) },
  });
  source.start();
  return { tracker, source, rejections, missing, asked: () => asked };
}

const cidrsOf = (p: Pipeline): string => {
  const s = p.tracker.state();
  return `${s.serviceCIDRSource}: ${[4, 6].map((f) => (s.families.get(f as 4 | 6)?.serviceCIDRs ?? []).join(',')).join(' | ')}`;
};

describe('ServiceCIDR objects -> model', () => {
  let server: TestApiServer;
  const pipelines: Pipeline[] = [];

  before(async () => {
    server = new TestApiServer({ bookmarkIntervalMs: 200 });
    await server.start();
    server.put('Service', service({ name: 'web', clusterIPs: ['10.96.0.10'], ports: [{ port: 80 }] }));
    server.put('ServiceCIDR', { metadata: { name: 'kubernetes' }, spec: { cidrs: ['10.96.0.0/16'] } });
    for (const contentType of ['protobuf', 'json'] as const) pipelines.push(pipeline(server, contentType, { serviceCIDRs: ['192.168.0.0/16'] }));
    await waitFor('both to sync', () => pipelines.every((p) => p.source.synced));
  });

  after(async () => {
    for (const p of pipelines) await p.source.stop();
    await server?.stop();
  });

  it('lists them (protobuf and JSON alike): the objects replace the configured range', async () => {
    for (const p of pipelines) {
      assert.equal(cidrsOf(p), 'ServiceCIDR: 10.96.0.0/16 | ', p === pipelines[0] ? 'protobuf' : 'json');
      assert.deepEqual(p.missing, []);
    }
    const asked = server.requests.filter((r) => r.kind === 'ServiceCIDR' && r.verb === 'list');
    assert.ok(asked.some((r) => r.accept.startsWith('application/vnd.kubernetes.protobuf')) && asked.some((r) => r.accept === 'application/json'));
  });

  it('follows added, modified and deleted objects; each change is flagged in the change set', async () => {
    const steps: Array<[string, () => void, string]> = [
      ['modified', () => server.put('ServiceCIDR', { metadata: { name: 'kubernetes' }, spec: { cidrs: ['10.96.0.0/16', 'fd00:96::/112'] } }), 'ServiceCIDR: 10.96.0.0/16 | fd00:96::/112'],
      ['added', () => server.put('ServiceCIDR', { metadata: { name: 'extra' }, spec: { cidrs: ['10.100.0.0/24', '10.96.0.0/16'] } }), 'ServiceCIDR: 10.100.0.0/24,10.96.0.0/16 | fd00:96::/112'],
      // Two objects naming one CIDR: it stays while either does (kube-proxy's set would lose it here).
      ['first deleted', () => server.remove('ServiceCIDR', 'kubernetes'), 'ServiceCIDR: 10.100.0.0/24,10.96.0.0/16 | '],
      ['last deleted', () => server.remove('ServiceCIDR', 'extra'), 'configuration: 192.168.0.0/16 | '],
    ];
    for (const [what, change, want] of steps) {
      for (const p of pipelines) p.tracker.flush();
      change();
      for (const p of pipelines) {
        await waitFor(`${what}: ${want}`, () => cidrsOf(p) === want);
        assert.ok(p.tracker.pending, `${what}: a sync is pending`);
        assert.equal(p.tracker.flush().serviceCIDRsChanged, true, what);
        assert.equal(p.tracker.flush().serviceCIDRsChanged, false, `${what}: reported once`);
      }
    }
  });

  it('an invalid CIDR is refused (and counted), the rest of the object is used', async () => {
    server.put('ServiceCIDR', { metadata: { name: 'typo' }, spec: { cidrs: ['10.97.0.0/33', '10.98.0.0/16'] } });
    for (const p of pipelines) {
      await waitFor('the valid CIDR', () => cidrsOf(p) === 'ServiceCIDR: 10.98.0.0/16 | ');
      assert.equal(p.rejections.counts().get('invalid-cidr'), 1);
    }
    server.remove('ServiceCIDR', 'typo');
  });
});

describe('ServiceCIDR on an API server that does not have them', () => {
  let server: TestApiServer;
  const options: ServerOptions = { absentKinds: ['ServiceCIDR'] };
  let p: Pipeline;

  before(async () => {
    server = new TestApiServer(options);
    await server.start();
    server.put('Service', service({ name: 'web', clusterIPs: ['10.96.0.10'], ports: [{ port: 80 }] }));
    p = pipeline(server, 'protobuf', { serviceCIDRs: ['10.96.0.0/12'] });
  });

  after(async () => {
    await p?.source.stop();
    await server?.stop();
  });

  it('syncs anyway with the configured range, says so once however often it asks, and picks the objects up once they appear', async () => {
    await waitFor('the source to sync', () => p.source.synced);
    p.tracker.flush();
    assert.ok(p.tracker.state().families.get(4)!.servicePorts.has('demo/web/TCP/v4'), 'the other kinds are served');
    assert.equal(cidrsOf(p), 'configuration: 10.96.0.0/12 | ');
    await waitFor('a few more tries', () => p.asked() >= 4);
    assert.deepEqual(p.missing, ['ServiceCIDR'], 'said once');
    // The API server is upgraded: the resource is there now.
    server.put('ServiceCIDR', { metadata: { name: 'kubernetes' }, spec: { cidrs: ['10.96.0.0/16'] } });
    options.absentKinds = [];
    await waitFor('the objects', () => cidrsOf(p) === 'ServiceCIDR: 10.96.0.0/16 | ');
    assert.deepEqual(p.missing, ['ServiceCIDR']);
  });
});

describe('ServiceCIDR not granted (a ClusterRole older than the agent)', () => {
  it('403 counts as none until the role allows it: the source syncs, says so once, then follows the objects', async () => {
    const server = new TestApiServer();
    await server.start();
    server.put('ServiceCIDR', { metadata: { name: 'kubernetes' }, spec: { cidrs: ['10.96.0.0/16'] } });
    // Forbidden twice, then granted (the ClusterRole was updated).
    server.inject({ type: 'status', code: 403 }, { kind: 'ServiceCIDR', verb: 'list' }, 2);
    const p = pipeline(server, 'json', { serviceCIDRs: ['10.96.0.0/12'] });
    try {
      await waitFor('the source to sync', () => p.source.synced);
      await waitFor('the objects once granted', () => cidrsOf(p) === 'ServiceCIDR: 10.96.0.0/16 | ');
      assert.deepEqual(p.missing, ['ServiceCIDR'], 'said once for both refusals');
    } finally {
      await p.source.stop();
      await server.stop();
    }
  });
});
