// The test API server held to kube-apiserver's list/watch semantics, over plain HTTP as any
// client sees it: query parameters parsed as the real server parses them, resourceVersion and
// resourceVersionMatch rules, "Too large resource version", chunking, selectors on every path,
// bookmarks, list items without apiVersion/kind, and protobuf objects carrying the fields the
// agent's trimmed schemas do not know (which the agent's decoder must skip).
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { decodeEnvelope, decodeProtoList, decodeProtoObject, decodeProtoStatus, FrameSplitter, isTooLargeResourceVersion, jsonStatus, protoRoot } from '../../control/sources/kube/wire.ts';
import { service, slice } from '../cases/objects.ts';
import { fullProtoRoot } from './encode.ts';
import { waitFor } from './harness.ts';
import { TestApiServer } from './server.ts';

const PB = 'application/vnd.kubernetes.protobuf';

interface Listed {
  kind?: string;
  apiVersion?: string;
  metadata: { resourceVersion: string; continue?: string; remainingItemCount?: number };
  items: Array<{ apiVersion?: string; kind?: string; metadata: { name: string; namespace?: string; resourceVersion: string } }>;
}

describe('test API server: kube-apiserver list/watch semantics', () => {
  const server = new TestApiServer({ bookmarkIntervalMs: 50 });
  const get = (path: string, accept = 'application/json'): Promise<Response> => fetch(`${server.url}${path}`, { headers: { Accept: accept } });
  const list = async (query: string, path = '/api/v1/services'): Promise<Listed> => {
    const res = await get(`${path}?${query}`);
    assert.equal(res.status, 200, `${query}: ${res.status}`);
    return (await res.json()) as Listed;
  };
  const names = (l: Listed): string[] => l.items.map((i) => i.metadata.name);

  /** Reads a JSON watch until `until` holds for the events so far, then closes it. */
  async function watchEvents(query: string, until: (events: Array<{ type: string; object: { metadata?: { name?: string } } }>) => boolean, path = '/api/v1/services'): Promise<Array<{ type: string; object: { metadata?: { name?: string } } }>> {
    const abort = new AbortController();
    const res = await fetch(`${server.url}${path}?${query}`, { signal: abort.signal });
    assert.equal(res.status, 200);
    const events: Array<{ type: string; object: { metadata?: { name?: string } } }> = [];
    const decoder = new TextDecoder();
    let pending = '';
    const reader = res.body!.getReader();
    try {
      while (!until(events)) {
        const { value, done } = await reader.read();
        if (done) break;
        pending += decoder.decode(value, { stream: true });
        const lines = pending.split('\n');
        pending = lines.pop()!;
        for (const l of lines) if (l.trim() !== '') events.push(JSON.parse(l));
      }
    } finally {
      abort.abort();
    }
    return events;
  }

  before(async () => {
    await server.start();
    for (let i = 1; i <= 5; i++) server.put('Service', service({ name: `s${i}`, clusterIPs: [`10.96.0.${i}`], ports: [{ port: 80 }], labels: { app: i % 2 === 0 ? 'even' : 'odd' } }));
    server.put('Service', service({ ns: 'other', name: 'x', clusterIPs: ['10.96.0.50'], ports: [{ port: 80 }], labels: { app: 'odd' } }));
    server.put('EndpointSlice', slice({ name: 's1-abc', service: 's1', ports: [{ port: 80 }], endpoints: [{ ip: '10.244.0.1', node: 'n0' }] }));
    server.put('Node', { metadata: { name: 'n0', labels: { 'topology.kubernetes.io/zone': 'z1' } }, status: { addresses: [{ type: 'InternalIP', address: '10.254.0.1' }] } });
  });
  after(() => server.stop());

  it('accepts watch=true/True/t/1 as a watch (strconv.ParseBool), false/0 as a list, and refuses anything else with 400', async () => {
    for (const v of ['true', 'True', 't', '1', 'TRUE', 'T']) {
      const events = await watchEvents(`watch=${v}`, (e) => e.length >= 6);
      assert.equal(events.length, 6, `watch=${v}`);
      assert.ok(events.every((e) => e.type === 'ADDED'));
    }
    for (const v of ['false', 'False', '0', 'f']) assert.equal((await list(`watch=${v}`)).kind, 'ServiceList', `watch=${v}`);
    const bad = await get('/api/v1/services?watch=yes');
    assert.equal(bad.status, 400);
    assert.equal(((await bad.json()) as { reason: string }).reason, 'BadRequest');
  });

  it('a watch with no resourceVersion, or 0, starts with the current state through the label and field selectors', async () => {
    for (const rv of ['', '&resourceVersion=0']) {
      const byLabel = await watchEvents(`watch=1&labelSelector=app%3Deven${rv}`, (e) => e.length >= 2);
      assert.deepEqual(byLabel.map((e) => e.object.metadata?.name).sort(), ['s2', 's4']);
      const byField = await watchEvents(`watch=1&fieldSelector=metadata.namespace%3Dother${rv}`, (e) => e.length >= 1);
      assert.deepEqual(byField.map((e) => e.object.metadata?.name), ['x']);
      // Nothing else came before the watch went quiet: a bookmark-less watch of s-names only.
      const set = await watchEvents(`watch=1&labelSelector=app%20in%20(odd)&fieldSelector=metadata.namespace%3Ddemo${rv}`, (e) => e.length >= 3);
      assert.deepEqual(set.map((e) => e.object.metadata?.name).sort(), ['s1', 's3', 's5']);
    }
  });

  it('answers a list at a resourceVersion from the future with 504 "Too large resource version" (cause ResourceVersionTooLarge)', async () => {
    const future = server.resourceVersion + 1000;
    const res = await get(`/api/v1/services?resourceVersion=${future}`);
    assert.equal(res.status, 504);
    assert.equal(res.headers.get('retry-after'), '1');
    const body = await res.json();
    const status = jsonStatus(body);
    assert.equal(status.reason, 'Timeout');
    assert.match(status.message, new RegExp(`^Timeout: Too large resource version: ${future}, current: ${server.resourceVersion}$`));
    assert.deepEqual(status.causes, [{ reason: 'ResourceVersionTooLarge', message: 'Too large resource version' }]);
    assert.ok(isTooLargeResourceVersion(status));
    const pb = await get(`/api/v1/services?resourceVersion=${future}&limit=2`, PB);
    assert.equal(pb.status, 504);
    const u = decodeEnvelope(Buffer.from(await pb.arrayBuffer()));
    assert.equal(u.kind, 'Status');
    assert.ok(isTooLargeResourceVersion(decodeProtoStatus(u.raw)));
  });

  it('limit=0 and limit=-1 mean no limit; a limit that is not a number is 400', async () => {
    for (const limit of ['0', '-1']) {
      const l = await list(`limit=${limit}`);
      assert.equal(l.items.length, 6, `limit=${limit}`);
      assert.equal(l.metadata.continue, undefined);
    }
    assert.equal((await get('/api/v1/services?limit=abc')).status, 400);
  });

  it('a malformed continue token is 400 BadRequest, and the server goes on serving', async () => {
    for (const token of ['not-base64!!', Buffer.from('{"v":"meta.k8s.io/v1"}').toString('base64'), Buffer.from('[1,2]').toString('base64'), 'e30=']) {
      const res = await get(`/api/v1/services?limit=2&continue=${encodeURIComponent(token)}`);
      assert.equal(res.status, 400, token);
      const s = jsonStatus(await res.json());
      assert.equal(s.reason, 'BadRequest');
      assert.match(s.message, /^invalid continue token/);
    }
    assert.equal((await list('')).items.length, 6);
  });

  it('lists: items without apiVersion/kind (the list has them); a GET of one object has them', async () => {
    const l = await list('');
    assert.equal(l.kind, 'ServiceList');
    assert.equal(l.apiVersion, 'v1');
    for (const item of l.items) {
      assert.equal(item.apiVersion, undefined);
      assert.equal(item.kind, undefined);
    }
    const one = (await (await get('/api/v1/namespaces/demo/services/s1')).json()) as { apiVersion: string; kind: string };
    assert.deepEqual([one.apiVersion, one.kind], ['v1', 'Service']);
    const missing = await get('/api/v1/namespaces/demo/services/nope');
    assert.equal(missing.status, 404);
    assert.equal(jsonStatus(await missing.json()).message, 'services "nope" not found');
  });

  it('resourceVersion unset: the most recent state, paged by the limit; resourceVersion=0: the watch cache, whole', async () => {
    const unset = await list('limit=2');
    assert.equal(unset.items.length, 2);
    assert.ok(unset.metadata.continue);
    assert.equal(unset.metadata.remainingItemCount, 4);
    assert.equal(unset.metadata.resourceVersion, String(server.resourceVersion));
    const any = await list('limit=2&resourceVersion=0');
    assert.equal(any.items.length, 6, 'the watch cache ignores the limit at resourceVersion 0');
    assert.equal(any.metadata.continue, undefined);
    const notOlder = await list(`resourceVersion=${server.resourceVersion - 3}&resourceVersionMatch=NotOlderThan`);
    assert.equal(notOlder.metadata.resourceVersion, String(server.resourceVersion));
  });

  it('chunks form one consistent list at the first page\'s resourceVersion, even while objects change', async () => {
    const first = await list('limit=2');
    server.put('Service', service({ name: 's0', clusterIPs: ['10.96.0.100'], ports: [{ port: 80 }] })); // sorts first: must not appear
    server.remove('Service', 'demo/s5'); // must still appear
    const seen = [...names(first)];
    let token = first.metadata.continue;
    while (token) {
      const page = await list(`limit=2&continue=${encodeURIComponent(token)}`);
      assert.equal(page.metadata.resourceVersion, first.metadata.resourceVersion);
      seen.push(...names(page));
      token = page.metadata.continue;
    }
    assert.deepEqual(seen, ['s1', 's2', 's3', 's4', 's5', 'x']);
    assert.equal((await get(`/api/v1/services?limit=2&resourceVersion=5&continue=${encodeURIComponent(first.metadata.continue!)}`)).status, 400, 'resourceVersion beside continue');
    // An exact list at the old resourceVersion sees the old state too.
    const exact = await list(`resourceVersion=${first.metadata.resourceVersion}&resourceVersionMatch=Exact`);
    assert.deepEqual(names(exact), ['s1', 's2', 's3', 's4', 's5', 'x']);
    // Once compacted, both the continuation and the exact list are gone (410 Expired).
    server.compact();
    server.put('Service', service({ name: 's5', clusterIPs: ['10.96.0.5'], ports: [{ port: 80 }], labels: { app: 'odd' } }));
    server.remove('Service', 'demo/s0');
    server.compact();
    const expired = await get(`/api/v1/services?limit=2&continue=${encodeURIComponent(first.metadata.continue!)}`);
    assert.equal(expired.status, 410);
    assert.equal(jsonStatus(await expired.json()).reason, 'Expired');
    assert.equal((await get(`/api/v1/services?resourceVersion=${first.metadata.resourceVersion}&resourceVersionMatch=Exact`)).status, 410);
  });

  it('namespaced paths and selectors on lists', async () => {
    assert.deepEqual(names(await list('', '/api/v1/namespaces/other/services')), ['x']);
    assert.deepEqual(names(await list('labelSelector=app%3Dodd,!nothing')).sort(), ['s1', 's3', 's5', 'x']);
    assert.deepEqual(names(await list('labelSelector=app%20notin%20(odd)')).sort(), ['s2', 's4']);
    assert.deepEqual(names(await list('fieldSelector=metadata.name!%3Ds1,metadata.namespace%3Ddemo')).sort(), ['s2', 's3', 's4', 's5']);
    assert.equal((await get('/api/v1/services?fieldSelector=spec.nothing%3D1')).status, 400, 'a field the kind does not support');
    assert.equal((await get('/api/v1/services?labelSelector=%3D%3Dx')).status, 400, 'a label selector that does not parse');
    assert.deepEqual(names(await list('', '/apis/discovery.k8s.io/v1/namespaces/demo/endpointslices')), ['s1-abc']);
  });

  it('sends bookmarks only to watches that asked for them', async () => {
    const rv = server.resourceVersion;
    const withBookmarks = await watchEvents(`watch=1&resourceVersion=${rv}&allowWatchBookmarks=true`, (e) => e.some((x) => x.type === 'BOOKMARK'));
    const bookmark = withBookmarks.find((e) => e.type === 'BOOKMARK')! as { object: { kind?: string; metadata?: { resourceVersion?: string } } };
    assert.equal(bookmark.object.kind, 'Service');
    assert.equal(bookmark.object.metadata?.resourceVersion, String(rv));
    // Without: the next thing such a watch sees is a real change, not a bookmark.
    const pending = watchEvents(`watch=1&resourceVersion=${rv}`, (e) => e.length >= 1);
    await waitFor('the watch to open', () => server.openWatches >= 1);
    await new Promise((r) => setImmediate(r));
    server.put('Service', service({ name: 's9', clusterIPs: ['10.96.0.9'], ports: [{ port: 80 }] }));
    const events = await pending;
    assert.deepEqual(events.map((e) => e.type), ['ADDED']);
    server.remove('Service', 'demo/s9');
  });

  it('protobuf objects carry every field the real API has; the agent\'s trimmed decoder skips the ones it does not know', async () => {
    for (const [path, kind] of [['/api/v1/services', 'Service'], ['/apis/discovery.k8s.io/v1/endpointslices', 'EndpointSlice'], ['/api/v1/nodes', 'Node']] as const) {
      const res = await get(`${path}?limit=1`, PB);
      const body = Buffer.from(await res.arrayBuffer());
      const u = decodeEnvelope(body);
      assert.equal(u.kind, `${kind}List`);
      const full = fullProtoRoot().lookupType(`k8s.io.api.${kind === 'EndpointSlice' ? 'discovery' : 'core'}.v1.${kind}List`).decode(u.raw) as unknown as { items: Array<Record<string, unknown>> };
      const item = full.items[0]!;
      const meta = item.metadata as { managedFields?: unknown[]; uid?: string };
      assert.ok(meta.managedFields !== undefined && meta.managedFields.length > 0, `${kind}: managedFields on the wire`);
      if (kind === 'EndpointSlice') assert.ok((item.endpoints as Array<{ targetRef?: unknown }>)[0]!.targetRef, 'targetRef on the wire');
      if (kind === 'Node') assert.ok((item.status as { nodeInfo?: unknown }).nodeInfo, 'nodeInfo on the wire');
      // The agent's schema does not know these fields: the bytes it skips are really there.
      const typeName = `k8s.io.api.${kind === 'EndpointSlice' ? 'discovery' : 'core'}.v1.${kind}`;
      const wire = fullProtoRoot().lookupType(typeName).encode(item as never).finish();
      const trimmedType = protoRoot().lookupType(typeName);
      const kept = trimmedType.encode(trimmedType.decode(wire)).finish();
      assert.ok(wire.length > kept.length, `${kind}: ${wire.length - kept.length} bytes of fields the agent skips`);
      // ...and the agent decodes the list and the object regardless.
      const decoded = decodeProtoList(kind, body);
      assert.equal(decoded.items.length, 1);
      const obj = decodeProtoObject(kind, wire);
      assert.equal((obj.metadata as { managedFields?: unknown }).managedFields, undefined);
      assert.equal(obj.metadata?.uid, meta.uid);
      assert.equal((obj.metadata as { managedFields?: unknown }).managedFields, undefined);
    }
  });

  it('reads protobuf watch frames with unknown fields as the agent does', async () => {
    const abort = new AbortController();
    const res = await fetch(`${server.url}/apis/discovery.k8s.io/v1/endpointslices?watch=1`, { headers: { Accept: PB }, signal: abort.signal });
    assert.match(res.headers.get('content-type') ?? '', /stream=watch/);
    const frames = new FrameSplitter();
    const reader = res.body!.getReader();
    let got: Buffer | undefined;
    while (got === undefined) {
      const { value, done } = await reader.read();
      if (done) break;
      got = frames.push(Buffer.from(value))[0];
    }
    abort.abort();
    const ev = (await import('../../control/sources/kube/wire.ts')).decodeProtoWatchEvent('EndpointSlice', got!);
    assert.equal(ev.type, 'ADDED');
    assert.equal(ev.type === 'ADDED' && ev.object.metadata?.name, 's1-abc');
  });
});
