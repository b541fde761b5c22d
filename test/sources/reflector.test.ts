// The reflector against the test API server: every fault, in both wire formats. For each: no
// crash, the last good state kept during the outage, and the local view equal to the server's
// within 2 s after recovery.
import assert from 'node:assert/strict';
import { after, afterEach, beforeEach, describe, it } from 'node:test';
import { PROXY_LABEL_SELECTOR, type KindName } from '../../control/sources/kube/kinds.ts';
import { Reflector, type ReflectorOptions } from '../../control/sources/kube/reflector.ts';
import type { KubeConfigTransport } from '../../control/sources/kube/transport.ts';
import { Mirror, serverFingerprint, transportFor, waitFor } from '../apiserver/harness.ts';
import { TestApiServer, type Fault } from '../apiserver/server.ts';
import { service } from '../cases/objects.ts';

const FAST_BACKOFF = { initialMs: 20, maxMs: 200, factor: 2, jitter: 0.5 };

function svc(i: number, labels?: Record<string, string>): ReturnType<typeof service> {
  return service({ name: `s${i}`, clusterIPs: [`10.96.1.${i}`], ports: [{ port: 80 }], labels });
}

for (const contentType of ['protobuf', 'json'] as const) {
  describe(`reflector (${contentType})`, () => {
    let server: TestApiServer;
    let transport: KubeConfigTransport;
    let mirror: Mirror;
    let reflector: Reflector | undefined;
    const events = { errors: 0, relists: 0, reconnects: 0, decodeErrors: 0 };

    async function startReflector(kind: KindName = 'Service', extra: Partial<ReflectorOptions> = {}): Promise<Reflector> {
      reflector = new Reflector({
        kind,
        transport,
        handler: mirror,
        contentType,
        pageSize: 2,
        inactivityTimeoutMs: 400,
        backoff: FAST_BACKOFF,
        events: {
          error: () => events.errors++,
          relist: () => events.relists++,
          reconnect: () => events.reconnects++,
          decodeError: () => events.decodeErrors++,
        },
        ...extra,
      });
      reflector.start();
      await waitFor('first sync', () => mirror.syncedKinds.has(kind), 5000);
      return reflector;
    }

    const converged = (kind: KindName = 'Service'): Promise<number> =>
      waitFor('the local view to equal the server', () => JSON.stringify(mirror.fingerprint(kind)) === JSON.stringify(serverFingerprint(server, kind)));

    beforeEach(async () => {
      server = new TestApiServer({ bookmarkIntervalMs: 100 });
      await server.start();
      transport = transportFor(server);
      mirror = new Mirror();
      Object.assign(events, { errors: 0, relists: 0, reconnects: 0, decodeErrors: 0 });
      for (let i = 1; i <= 7; i++) server.put('Service', svc(i));
    });

    afterEach(async () => {
      await reflector?.stop();
      reflector = undefined;
      transport.close();
      await server.stop();
    });

    it('lists in pages, then follows the watch', async () => {
      await startReflector();
      const lists = server.requests.filter((r) => r.verb === 'list');
      assert.equal(lists.length, 4, '7 objects in pages of 2');
      assert.ok(lists.slice(1).every((r) => r.query.continue !== undefined));
      await converged();
      server.put('Service', svc(8));
      server.put('Service', { ...svc(3), spec: { ...svc(3).spec, ports: [{ port: 81 }] } });
      server.remove('Service', 'demo/s1');
      await converged();
      const watch = server.requests.find((r) => r.verb === 'watch')!;
      assert.equal(watch.query.allowWatchBookmarks, 'true');
      assert.equal(watch.query.resourceVersion, String(107));
      assert.match(watch.accept, contentType === 'protobuf' ? /^application\/vnd\.kubernetes\.protobuf, application\/json$/ : /^application\/json$/);
    });

    it('bookmarks advance the resourceVersion', async () => {
      const r = await startReflector();
      server.put('Node', { metadata: { name: 'elsewhere' } });
      await waitFor('a bookmark', () => r.stats.bookmarks > 0 && r.lastResourceVersion === String(server.resourceVersion));
    });

    it('applies kube-proxy\'s label selector, also when labels change', async () => {
      server.put('Service', svc(20, { 'service.kubernetes.io/service-proxy-name': 'other' }));
      server.put('Service', svc(21, { 'service.kubernetes.io/headless': '' }));
      await startReflector('Service', { labelSelector: PROXY_LABEL_SELECTOR });
      assert.equal(mirror.of('Service').has('demo/s20'), false);
      assert.equal(mirror.of('Service').has('demo/s21'), false);
      assert.equal(mirror.of('Service').size, 7);
      server.put('Service', svc(2, { 'service.kubernetes.io/service-proxy-name': 'other' }));
      await waitFor('s2 to leave', () => !mirror.of('Service').has('demo/s2'));
      server.put('Service', svc(20));
      await waitFor('s20 to arrive', () => mirror.of('Service').has('demo/s20'));
    });

    // `reopens`: the faulty watch must be abandoned and a new one opened from the last resourceVersion.
    const faults: Array<{ name: string; fault: Fault; verb: 'list' | 'watch'; reopens: boolean; check?: () => void }> = [
      { name: 'a stream dropped mid-frame', fault: { type: 'drop-mid-frame' }, verb: 'watch', reopens: true },
      { name: 'a watch that hangs without bytes', fault: { type: 'hang' }, verb: 'watch', reopens: true },
      { name: 'a garbage frame', fault: { type: 'garbage-frame' }, verb: 'watch', reopens: true, check: () => assert.ok(events.decodeErrors > 0) },
      { name: 'a slow reader cut off by the server', fault: { type: 'slow-reader', limitBytes: 300 }, verb: 'watch', reopens: true },
      { name: 'a trickling stream (one byte per write)', fault: { type: 'trickle', delayMs: 0 }, verb: 'watch', reopens: false },
      { name: '500 on the watch', fault: { type: 'status', code: 500 }, verb: 'watch', reopens: true, check: () => assert.ok(events.errors > 0) },
      { name: '429 with Retry-After on the watch', fault: { type: 'status', code: 429, retryAfterSeconds: 0 }, verb: 'watch', reopens: true, check: () => assert.ok(events.errors > 0) },
    ];
    for (const f of faults) {
      it(`recovers from ${f.name}`, async () => {
        await startReflector();
        await converged();
        // The first sync comes from the list; on a loaded machine the first watch may not have
        // reached the server yet, and would then take the fault meant for the second.
        await waitFor('the first watch', () => server.requests.some((r) => r.verb === 'watch'));
        const before = mirror.fingerprint('Service');
        server.inject(f.fault, { kind: 'Service', verb: f.verb });
        server.closeWatches(); // the next watch meets the fault
        await waitFor('the faulty watch', () => server.requests.filter((r) => r.verb === 'watch').length >= 2);
        assert.deepEqual(mirror.fingerprint('Service'), before, 'the last good state is kept');
        for (let i = 0; i < 6; i++) server.put('Service', svc(30 + i));
        server.remove('Service', 'demo/s4');
        const ms = await converged();
        assert.ok(ms <= 2000);
        const watches = server.requests.filter((r) => r.verb === 'watch');
        if (f.reopens) {
          assert.ok(watches.length >= 3, 'a new watch replaced the faulty one');
          assert.equal(watches[2]!.query.resourceVersion, watches[1]!.query.resourceVersion, 'resumed from the last resourceVersion, no relist');
          assert.equal(events.relists, 0);
        }
        f.check?.();
      });
    }

    it('retries a list that fails with 429 and 500, keeping nothing half-done', async () => {
      server.inject({ type: 'status', code: 429, retryAfterSeconds: 0 }, { verb: 'list' });
      server.inject({ type: 'status', code: 500 }, { verb: 'list' });
      await startReflector();
      await converged();
      assert.equal(events.errors, 2);
    });

    it('retries a list that hangs', async () => {
      server.inject({ type: 'hang' }, { verb: 'list' });
      await startReflector();
      await converged();
      assert.ok(events.errors >= 1);
    });

    it('relists on 410 and deletes what vanished meanwhile', async () => {
      await startReflector();
      await converged();
      server.inject({ type: 'hang' }, { verb: 'watch' }); // the outage: the reflector sees nothing...
      server.closeWatches();
      await waitFor('the outage', () => server.requests.filter((r) => r.verb === 'watch').length >= 2);
      server.removeSilently('Service', 'demo/s5'); // ...while s5 goes away and history is compacted
      server.putSilently('Service', svc(40));
      assert.ok(mirror.of('Service').has('demo/s5'), 'kept during the outage');
      await converged();
      assert.equal(mirror.of('Service').has('demo/s5'), false);
      assert.ok(events.relists >= 1);
    });

    it('restarts a list whose continuation expired (410)', async () => {
      server.inject({ type: 'trickle', delayMs: 0 }, { verb: 'list' }); // slow first page...
      const r = new Reflector({ kind: 'Service', transport, handler: mirror, contentType, pageSize: 2, backoff: FAST_BACKOFF });
      reflector = r;
      r.start();
      await waitFor('the first page', () => server.requests.some((q) => q.verb === 'list'));
      server.compact(); // ...and the snapshot behind its continue token is gone
      await waitFor('sync', () => mirror.syncedKinds.has('Service'), 5000);
      await converged();
      assert.ok(server.requests.filter((q) => q.verb === 'list' && q.query.continue === undefined).length >= 2);
    });

    it('stops cleanly with a watch open', async () => {
      const r = await startReflector();
      await waitFor('an open watch', () => server.openWatches === 1);
      const t = Date.now();
      await r.stop();
      assert.ok(Date.now() - t < 200);
      await waitFor('the server to see it closed', () => server.openWatches === 0);
    });
  });
}

describe('reflector wire negotiation', () => {
  let server: TestApiServer;
  after(async () => server?.stop());

  it('decodes JSON when the server answers JSON to a protobuf request', async () => {
    server = new TestApiServer({ forceJson: true });
    await server.start();
    server.put('Service', svc(1));
    const mirror = new Mirror();
    const transport = transportFor(server);
    const r = new Reflector({ kind: 'Service', transport, handler: mirror, contentType: 'protobuf', backoff: FAST_BACKOFF });
    r.start();
    await waitFor('sync', () => mirror.syncedKinds.has('Service'));
    server.put('Service', svc(2));
    await waitFor('the watch', () => mirror.of('Service').size === 2);
    await r.stop();
    transport.close();
  });
});
