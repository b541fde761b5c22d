// The reflector against the test API server: client-go's list semantics (resourceVersion=0
// first, pages only without a watch cache, the full-list fallback, the consistent relist),
// Retry-After and backoff against a fake clock, and every fault, in both wire formats. For each
// fault: no crash, the last good state kept during the outage, and the local view equal to the
// server's after recovery.
import assert from 'node:assert/strict';
import { after, afterEach, beforeEach, describe, it } from 'node:test';
import { PROXY_LABEL_SELECTOR, type KindName } from '../../control/sources/kube/kinds.ts';
import { Reflector, type ReflectorOptions } from '../../control/sources/kube/reflector.ts';
import type { KubeConfigTransport } from '../../control/sources/kube/transport.ts';
import { FakeClock, Mirror, serverFingerprint, transportFor, waitFor } from '../apiserver/harness.ts';
import { TestApiServer, type Fault, type ServerOptions } from '../apiserver/server.ts';
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
      await waitFor('first sync', () => mirror.syncedKinds.has(kind));
      return reflector;
    }

    const converged = (kind: KindName = 'Service'): Promise<number> =>
      // A generous bound: the trickle fault writes events one byte per timer tick.
      waitFor('the local view to equal the server', () => JSON.stringify(mirror.fingerprint(kind)) === JSON.stringify(serverFingerprint(server, kind)), 20_000);

    async function useServer(options: ServerOptions = {}): Promise<void> {
      server = new TestApiServer({ bookmarkIntervalMs: 100, ...options });
      await server.start();
      transport = transportFor(server);
      for (let i = 1; i <= 7; i++) server.put('Service', svc(i));
    }

    /** A server without a watch cache, in place of the default one: every limited list is paged. */
    async function withoutWatchCache(): Promise<void> {
      transport.close();
      await server.stop();
      await useServer({ watchCache: false });
    }

    const lists = (): Array<Record<string, string>> => server.requests.filter((r) => r.verb === 'list').map((r) => r.query);
    const watchCount = (): number => server.requests.filter((r) => r.verb === 'watch').length;

    beforeEach(async () => {
      mirror = new Mirror();
      Object.assign(events, { errors: 0, relists: 0, reconnects: 0, decodeErrors: 0 });
      await useServer();
    });

    afterEach(async () => {
      await reflector?.stop();
      reflector = undefined;
      transport.close();
      await server.stop();
    });

    it('lists first at resourceVersion=0, which the watch cache answers whole, then follows the watch', async () => {
      await startReflector();
      assert.deepEqual(lists(), [{ limit: '2', resourceVersion: '0' }], 'one request: the cache ignores the limit at resourceVersion 0');
      assert.equal(mirror.of('Service').size, 7);
      // The server strips apiVersion/kind from list items; the reflector hands over typed objects.
      assert.ok([...mirror.of('Service').values()].every((o) => o.kind === 'Service' && o.apiVersion === 'v1'));
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

    it('pages without a watch cache: the resourceVersion on the first page only, then follows the watch', async () => {
      await withoutWatchCache();
      await startReflector();
      const pages = lists();
      assert.equal(pages.length, 4, '7 objects in pages of 2');
      assert.deepEqual(pages[0], { limit: '2', resourceVersion: '0' });
      for (const p of pages.slice(1)) {
        assert.ok(p.continue !== undefined && p.resourceVersion === undefined, 'a continuation carries its token, never a resourceVersion');
      }
      await converged();
      server.put('Service', svc(8));
      await converged();
    });

    it('relists at the last resourceVersion seen, unpaged when the watch cache answered the first list', async () => {
      const r = await startReflector();
      await waitFor('the first watch', () => watchCount() >= 1);
      server.inject({ type: 'gone-event' }, { kind: 'Service', verb: 'watch' });
      server.closeWatches();
      await waitFor('the relist', () => lists().length >= 2);
      const relist = lists()[1]!;
      assert.equal(relist.limit, undefined, 'no limit: the watch cache can serve it');
      assert.ok(Number(relist.resourceVersion) >= 107, `at least as fresh as what was seen (${relist.resourceVersion})`);
      await waitFor('the relist to finish', () => r.stats.relists >= 1);
      await converged();
    });

    it('a relist the server cannot serve at that resourceVersion (410) is asked again as a consistent read', async () => {
      await withoutWatchCache(); // pages: the relist at a resourceVersion is then an exact read, which compaction expires
      await startReflector();
      await waitFor('the first watch', () => watchCount() >= 1);
      server.inject({ type: 'hang' }, { kind: 'Service', verb: 'watch' });
      server.closeWatches();
      await waitFor('the outage', () => watchCount() >= 2);
      server.removeSilently('Service', 'demo/s6'); // compacts: the last resourceVersion seen is gone
      await converged();
      const after = lists().slice(4);
      assert.ok(after.length >= 2, JSON.stringify(after));
      assert.ok(after[0]!.resourceVersion !== undefined && after[0]!.resourceVersion !== '0', 'first at the last resourceVersion seen');
      assert.ok(after.some((q) => q.resourceVersion === undefined && q.continue === undefined), 'then with no resourceVersion: a quorum read');
    });

    it('"Too large resource version" on a list makes it ask again with no resourceVersion', async () => {
      await startReflector();
      await waitFor('the first watch', () => watchCount() >= 1);
      server.inject({ type: 'too-large' }, { kind: 'Service', verb: 'list' });
      server.inject({ type: 'gone-event' }, { kind: 'Service', verb: 'watch' });
      server.closeWatches();
      await waitFor('the lists', () => lists().length >= 3);
      const [, tooLarge, consistent] = lists();
      assert.ok(tooLarge!.resourceVersion !== undefined && tooLarge!.resourceVersion !== '');
      assert.equal(consistent!.resourceVersion, undefined);
      assert.equal(events.errors, 0, 'no backoff: the fallback is immediate');
      server.put('Service', svc(9));
      await converged();
    });

    it('"Too large resource version" on a watch: after its Retry-After, a list with no resourceVersion', async () => {
      const clock = new FakeClock();
      server.inject({ type: 'too-large' }, { kind: 'Service', verb: 'watch' });
      await startReflector('Service', { clock });
      await waitFor('the wait', () => clock.pending.length === 1);
      assert.deepEqual(clock.pending, [1000], 'the Retry-After of the 504');
      clock.advance(1000);
      await waitFor('the relist', () => lists().length >= 2);
      assert.deepEqual(lists()[1], { limit: '2' }, 'a consistent read: no resourceVersion');
      server.put('Service', svc(9));
      await converged();
    });

    it('waits exactly the Retry-After of a 429 (2 s on the fake clock) before asking again', async () => {
      const clock = new FakeClock();
      server.inject({ type: 'status', code: 429, retryAfterSeconds: 2 }, { kind: 'Service', verb: 'watch' });
      await startReflector('Service', { clock });
      await waitFor('the 429 and its wait', () => clock.pending.length === 1);
      // The backoff alone would wait 10-20 ms here (FAST_BACKOFF): only the header says 2000.
      assert.deepEqual(clock.pending, [2000]);
      assert.equal(watchCount(), 1);
      clock.advance(1999);
      await new Promise((r) => setImmediate(r));
      assert.equal(watchCount(), 1, 'no request before the Retry-After is over');
      assert.deepEqual(clock.pending, [2000]);
      clock.advance(1);
      await waitFor('the watch after the wait', () => watchCount() === 2);
      server.put('Service', svc(9));
      await converged();
    });

    it('backoff grows while failures go on and starts again after a healthy period', async () => {
      const clock = new FakeClock();
      server.inject({ type: 'status', code: 500 }, { kind: 'Service', verb: 'list' }, 3);
      const backoff = { initialMs: 100, maxMs: 10_000, factor: 2, jitter: 0, resetAfterMs: 60_000 };
      reflector = new Reflector({ kind: 'Service', transport, handler: mirror, contentType, backoff, clock, events: { error: () => events.errors++ } });
      reflector.start();
      for (const expected of [100, 200, 400]) {
        await waitFor(`a wait of ${expected} ms`, () => clock.pending.length === 1);
        assert.deepEqual(clock.pending, [expected]);
        clock.advance(expected);
      }
      await waitFor('sync', () => mirror.syncedKinds.has('Service'));
      await waitFor('the first watch', () => watchCount() >= 1);
      clock.advance(60_000); // a minute of health
      server.inject({ type: 'status', code: 500 }, { kind: 'Service', verb: 'watch' });
      server.closeWatches();
      await waitFor('the next wait', () => clock.pending.length === 1);
      assert.deepEqual(clock.pending, [100], 'not 800: the healthy minute reset the backoff');
      clock.advance(100);
      await waitFor('the watch again', () => watchCount() >= 3);
    });

    it('decodes a UTF-8 character cut between two chunks of the stream', async () => {
      await startReflector();
      await waitFor('the first watch', () => watchCount() >= 1);
      server.inject({ type: 'trickle', delayMs: 0 }, { kind: 'Service', verb: 'watch' }); // one byte per chunk
      server.closeWatches();
      await waitFor('the trickling watch', () => watchCount() >= 2);
      const note = 'café ☃ 日本 🚀';
      server.put('Service', { ...svc(50), metadata: { ...svc(50).metadata, annotations: { note } } });
      await waitFor('s50', () => mirror.of('Service').has('demo/s50'), 10_000);
      assert.equal(mirror.of('Service').get('demo/s50')!.metadata?.annotations?.note, note);
      assert.equal(events.decodeErrors, 0);
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
      { name: '429 on the watch', fault: { type: 'status', code: 429 }, verb: 'watch', reopens: true, check: () => assert.ok(events.errors > 0) },
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
        await converged();
        const watches = server.requests.filter((r) => r.verb === 'watch');
        if (f.reopens) {
          assert.ok(watches.length >= 3, 'a new watch replaced the faulty one');
          assert.equal(watches[2]!.query.resourceVersion, watches[1]!.query.resourceVersion, 'resumed from the last resourceVersion, no relist');
          assert.equal(events.relists, 0);
        }
        f.check?.();
      });
    }

    it('retries a list that fails with 429 (after its Retry-After) and 500 (after the backoff), keeping nothing half-done', async () => {
      const clock = new FakeClock();
      server.inject({ type: 'status', code: 429, retryAfterSeconds: 1 }, { verb: 'list' });
      server.inject({ type: 'status', code: 500 }, { verb: 'list' });
      reflector = new Reflector({ kind: 'Service', transport, handler: mirror, contentType, backoff: FAST_BACKOFF, clock, events: { error: () => events.errors++ } });
      reflector.start();
      await waitFor('the 429', () => clock.pending.length === 1);
      assert.deepEqual(clock.pending, [1000]);
      assert.equal(mirror.upserts, 0);
      clock.advance(1000);
      await waitFor('the 500', () => clock.pending.length === 1);
      const backoff = clock.pending[0]!;
      assert.ok(backoff >= 10 && backoff <= 20, `the backoff's first step (${backoff} ms)`);
      clock.advance(backoff);
      await waitFor('sync', () => mirror.syncedKinds.has('Service'));
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
      await waitFor('the first watch', () => watchCount() >= 1);
      server.inject({ type: 'hang' }, { verb: 'watch' }); // the outage: the reflector sees nothing...
      server.closeWatches();
      await waitFor('the outage', () => watchCount() >= 2);
      server.removeSilently('Service', 'demo/s5'); // ...while s5 goes away and history is compacted
      server.putSilently('Service', svc(40));
      assert.ok(mirror.of('Service').has('demo/s5'), 'kept during the outage');
      await converged();
      assert.equal(mirror.of('Service').has('demo/s5'), false);
      assert.ok(events.relists >= 1);
    });

    it('falls back to one full list when a continuation expired (410)', async () => {
      await withoutWatchCache();
      server.inject({ type: 'trickle', delayMs: 0 }, { verb: 'list' }); // slow first page...
      const r = new Reflector({ kind: 'Service', transport, handler: mirror, contentType, pageSize: 2, backoff: FAST_BACKOFF });
      reflector = r;
      r.start();
      await waitFor('the first page', () => lists().length >= 1);
      server.putSilently('Service', svc(41)); // ...and the revision behind its continue token is compacted away
      await waitFor('sync', () => mirror.syncedKinds.has('Service'), 10_000);
      await converged();
      const [first, continuation, full] = lists();
      assert.deepEqual(first, { limit: '2', resourceVersion: '0' });
      assert.ok(continuation!.continue !== undefined);
      assert.deepEqual(full, { resourceVersion: '0' }, 'the full list: no limit, no continue, the resourceVersion first asked');
      assert.equal(r.stats.fullListFallbacks, 1);
      assert.equal(lists().length, 3);
    });

    it('stops cleanly with a watch open', async () => {
      const r = await startReflector();
      await waitFor('an open watch', () => server.openWatches === 1);
      // The test server never ends a watch: stop() returning at all means the client ended it.
      await r.stop();
      await waitFor('the watch closed by the client', () => server.openWatches === 0);
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
