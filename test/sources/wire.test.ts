// Decoding against Kubernetes' own serializer: the fixtures in shared/fixtures/k8s are bytes
// the real API machinery produced, with their JSON twins. Every field the model reads must
// decode to the same value from both; the placeholder values must then be rejected with reasons.
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, it } from 'node:test';
import { validateService, validateSlice } from '../../control/model/validate.ts';
import {
  FrameSplitter,
  LineSplitter,
  decodeEnvelope,
  decodeJsonWatchEvent,
  decodeJsonObject,
  decodeProtoObject,
  decodeProtoWatchEvent,
  decodeBySchema,
  decodeProtoList,
  WireError,
} from '../../control/sources/kube/wire.ts';
import { encodeList, encodeObject, encodeObjectRaw, encodeWatchFrame } from '../apiserver/encode.ts';
import { environmentMissing } from '../ci.ts';

const fixtures = fileURLToPath(new URL('../../../shared/fixtures/k8s/', import.meta.url));

/** The paths the model reads, per kind. */
const SERVICE_FIELDS = [
  'metadata.name', 'metadata.namespace', 'metadata.uid', 'metadata.resourceVersion', 'metadata.labels', 'metadata.annotations', 'metadata.deletionTimestamp',
  'spec.type', 'spec.clusterIP', 'spec.clusterIPs', 'spec.ports', 'spec.externalIPs', 'spec.sessionAffinity', 'spec.sessionAffinityConfig',
  'spec.loadBalancerSourceRanges', 'spec.externalTrafficPolicy', 'spec.internalTrafficPolicy', 'spec.healthCheckNodePort', 'spec.ipFamilies',
  'spec.ipFamilyPolicy', 'spec.trafficDistribution', 'spec.externalName', 'status.loadBalancer.ingress',
];
const SLICE_FIELDS = ['metadata.name', 'metadata.namespace', 'metadata.labels', 'addressType', 'ports', 'endpoints'];

function at(obj: unknown, path: string): unknown {
  return path.split('.').reduce<unknown>((o, k) => (o === null || typeof o !== 'object' ? undefined : (o as Record<string, unknown>)[k]), obj);
}

/** JSON has fields the trimmed schema deliberately skips (targetRef, deprecatedTopology, LB ports); compare what we keep. */
function prune(value: unknown, like: unknown): unknown {
  if (Array.isArray(value) && Array.isArray(like)) return value.map((v, i) => prune(v, like[i]));
  if (value instanceof Date || like instanceof Date) return value;
  if (value !== null && typeof value === 'object' && like !== null && typeof like === 'object') {
    const out: Record<string, unknown> = {};
    for (const k of Object.keys(like as object)) out[k] = prune((value as Record<string, unknown>)[k], (like as Record<string, unknown>)[k]);
    return out;
  }
  return value;
}

describe('wire: Kubernetes fixtures', () => {
  if (!existsSync(fixtures)) {
    // The decoder exists; only the fixture bytes (beside the checkout, in ../shared) are missing.
    it('the fixtures are present', (t) => environmentMissing(t, `${fixtures} is missing (Kubernetes' own bytes, kept in shared/ beside the checkout)`));
    return;
  }
  for (const [file, kind, fields] of [
    ['core.v1.Service', 'Service', SERVICE_FIELDS],
    ['discovery.v1.EndpointSlice', 'EndpointSlice', SLICE_FIELDS],
  ] as const) {
    it(`${file}: protobuf and JSON agree on every field the model reads`, () => {
      const unknown = decodeEnvelope(readFileSync(`${fixtures}${file}.pb`));
      assert.equal(unknown.kind, kind);
      const fromProto = decodeProtoObject(kind, unknown.raw);
      const fromJson = decodeJsonObject(kind, JSON.parse(readFileSync(`${fixtures}${file}.json`, 'utf8')));
      for (const path of fields) {
        const p = at(fromProto, path);
        const j = at(fromJson, path);
        assert.notEqual(j, undefined, `${path} is set in the fixture`);
        assert.deepEqual(p, prune(j, p), path);
      }
    });
  }

  it('presence: the fixture sets every condition true; absent conditions default as kube-proxy does', () => {
    const unknown = decodeEnvelope(readFileSync(`${fixtures}discovery.v1.EndpointSlice.pb`));
    const slice = decodeProtoObject('EndpointSlice', unknown.raw) as { endpoints: Array<{ conditions: Record<string, boolean> }> };
    assert.deepEqual(slice.endpoints[0]!.conditions, { ready: true, serving: true, terminating: true });
    const env = decodeEnvelope(encodeObject('EndpointSlice', {
      metadata: { name: 'x', namespace: 'y', labels: { 'kubernetes.io/service-name': 's' } },
      addressType: 'IPv4',
      endpoints: [{ addresses: ['10.0.0.1'], conditions: {} }],
      ports: [{ port: 80 }],
    }));
    const decoded = decodeProtoObject('EndpointSlice', env.raw);
    const verdict = validateSlice(decoded);
    assert.ok('slice' in verdict);
    assert.deepEqual(
      { ready: verdict.slice.endpoints[0]!.ready, serving: verdict.slice.endpoints[0]!.serving, terminating: verdict.slice.endpoints[0]!.terminating },
      { ready: true, serving: true, terminating: false },
    );
  });

  it('the placeholder objects are rejected with reasons, not thrown on', () => {
    const svc = decodeJsonObject('Service', JSON.parse(readFileSync(`${fixtures}core.v1.Service.json`, 'utf8')));
    const sv = validateService(svc);
    assert.ok('rejected' in sv);
    assert.deepEqual(sv.rejections.map((r) => r.reason), ['invalid-field', 'invalid-field']);
    assert.match(sv.rejections[0]!.detail, /spec\.type "typeValue"/);
    assert.match(sv.rejections[1]!.detail, /spec\.clusterIP "clusterIPValue" differs from spec\.clusterIPs\[0\] "clusterIPsValue"/);
    assert.equal(sv.rejections[1]!.dropped, 'object');
    assert.equal(sv.rejections[1]!.object, 'Service namespaceValue/nameValue');
    const es = validateSlice(decodeJsonObject('EndpointSlice', JSON.parse(readFileSync(`${fixtures}discovery.v1.EndpointSlice.json`, 'utf8'))));
    assert.ok('rejected' in es);
    assert.equal(es.rejections[0]!.reason, 'missing-service-name');
  });
});

/** A deterministic pseudo-random slice with every field the trimmed schema keeps, each present or not. */
function randomSlice(seed: number): Record<string, unknown> {
  let x = seed * 2654435761 + 1;
  const rnd = (n: number): number => ((x = (x * 1103515245 + 12345) >>> 0) >>> 8) % n;
  const maybe = <T>(v: T): T | undefined => (rnd(3) === 0 ? undefined : v);
  const names = ['a', 'zone-1', 'node-ä', 'x'.repeat(200), ''];
  const endpoints = Array.from({ length: rnd(12) }, (_, i) => ({
    addresses: Array.from({ length: 1 + rnd(2) }, (_, j) => `10.${i}.${j}.${rnd(255)}`),
    conditions: maybe({ ready: maybe(rnd(2) === 0), serving: maybe(rnd(2) === 0), terminating: maybe(rnd(2) === 0) }),
    hostname: maybe(names[rnd(names.length)]),
    nodeName: maybe(`node-${rnd(50)}`),
    zone: maybe(`zone-${rnd(3)}`),
    hints: maybe({ forZones: maybe([{ name: `zone-${rnd(3)}` }]), forNodes: maybe([{ name: `node-${rnd(9)}` }]) }),
    targetRef: maybe({ kind: 'Pod', name: `p${i}`, namespace: 'ns' }), // not in the trimmed schema: skipped
  }));
  return {
    metadata: {
      name: `s${seed}`, namespace: 'ns', uid: maybe('6f1c2b7e'), resourceVersion: maybe(String(rnd(1e9))), generation: maybe(rnd(1e6)),
      creationTimestamp: maybe(new Date(Date.UTC(2026, 0, 1 + rnd(300)))), deletionTimestamp: maybe(new Date(Date.UTC(2026, 5, 1))),
      labels: maybe({ 'kubernetes.io/service-name': 'svc', other: names[rnd(names.length)] }), annotations: maybe({ 'endpoints.kubernetes.io/last-change-trigger-time': '2026-01-01T00:00:00Z' }),
    },
    addressType: maybe(rnd(2) === 0 ? 'IPv4' : 'IPv6'),
    endpoints: endpoints.length > 0 ? endpoints : undefined,
    ports: maybe(Array.from({ length: 1 + rnd(3) }, (_, i) => ({ name: maybe(`p${i}`), protocol: maybe('TCP'), port: maybe(rnd(65536)), appProtocol: maybe('http') }))),
  };
}

describe('wire: the direct EndpointSlice decoder', () => {
  it('decodes 500 random slices (unknown fields included) exactly as the schema-driven decoder does', () => {
    for (let seed = 1; seed <= 500; seed++) {
      const raw = encodeObjectRaw('EndpointSlice', randomSlice(seed));
      const direct = decodeProtoObject('EndpointSlice', raw) as unknown as Record<string, unknown>;
      delete direct.apiVersion;
      delete direct.kind;
      assert.deepEqual(direct, decodeBySchema('EndpointSlice', raw), `seed ${seed}`);
    }
  });

  it('decodes a list: metadata and every item', () => {
    const items = [randomSlice(7), randomSlice(8), randomSlice(9)];
    const list = decodeProtoList('EndpointSlice', encodeList('EndpointSlice', items, '4711', 'next-token'));
    assert.equal(list.resourceVersion, '4711');
    assert.equal(list.continue, 'next-token');
    assert.deepEqual(list.items.map((o) => (o as { metadata: { name: string } }).metadata.name), ['s7', 's8', 's9']);
    for (const [i, item] of list.items.entries()) {
      const { apiVersion, kind, ...rest } = item as Record<string, unknown>;
      assert.deepEqual([apiVersion, kind], ['discovery.k8s.io/v1', 'EndpointSlice']);
      assert.deepEqual(rest, decodeBySchema('EndpointSlice', encodeObjectRaw('EndpointSlice', items[i])));
    }
  });

  it('the Kubernetes fixture decodes the same both ways', (t) => {
    if (!existsSync(fixtures)) return environmentMissing(t, `${fixtures} is missing`);
    const unknown = decodeEnvelope(readFileSync(`${fixtures}discovery.v1.EndpointSlice.pb`));
    const direct = decodeProtoObject('EndpointSlice', unknown.raw) as unknown as Record<string, unknown>;
    delete direct.apiVersion;
    delete direct.kind;
    assert.deepEqual(direct, decodeBySchema('EndpointSlice', unknown.raw));
  });
});

describe('wire: framing', () => {
  it('splits watch frames however the bytes are chunked', () => {
    const obj = { metadata: { name: 'a', namespace: 'b', resourceVersion: '7' }, spec: { clusterIP: '10.0.0.1', ports: [{ port: 80, targetPort: 'http' }] } };
    const frames = Buffer.concat([encodeWatchFrame('ADDED', encodeObject('Service', obj)), encodeWatchFrame('DELETED', encodeObject('Service', obj))]);
    for (const size of [1, 3, 7, frames.length]) {
      const splitter = new FrameSplitter();
      const out = [];
      for (let i = 0; i < frames.length; i += size) out.push(...splitter.push(frames.subarray(i, i + size)));
      assert.deepEqual(out.map((f) => decodeProtoWatchEvent('Service', f).type), ['ADDED', 'DELETED']);
      const first = decodeProtoWatchEvent('Service', out[0]!);
      assert.ok(first.type === 'ADDED' && (first.object as import('@kubernetes/client-node').V1Service).spec?.ports?.[0]?.targetPort === 'http');
      assert.equal(splitter.buffered, 0);
    }
  });

  it('refuses an absurd frame length instead of buffering it', () => {
    assert.throws(() => new FrameSplitter().push(Buffer.from([0xff, 0xff, 0xff, 0xff])), WireError);
  });
});

describe('wire: JSON watch lines', () => {
  it('decodes a multi-byte UTF-8 character cut between two chunks', () => {
    const line = Buffer.from('{"type":"ADDED","object":{"metadata":{"name":"s","annotations":{"note":"café ☃ 🚀"}}}}\n', 'utf8');
    // Cut inside every multi-byte character: é (2 bytes), ☃ (3), 🚀 (4).
    for (const ch of ['é', '☃', '🚀']) {
      const at = line.indexOf(Buffer.from(ch, 'utf8')) + 1;
      const splitter = new LineSplitter();
      assert.deepEqual(splitter.push(line.subarray(0, at)), []);
      const [text] = splitter.push(line.subarray(at));
      const ev = decodeJsonWatchEvent('Service', text!);
      assert.equal(ev.type === 'ADDED' && ev.object.metadata?.annotations?.note, 'café ☃ 🚀', `cut inside ${ch}`);
    }
  });

  it('decodes a stream fed one byte at a time', () => {
    const text = '{"type":"ADDED","object":{"metadata":{"name":"日本"}}}\n{"type":"DELETED","object":{"metadata":{"name":"ü"}}}\n';
    const splitter = new LineSplitter();
    const lines: string[] = [];
    for (const byte of Buffer.from(text, 'utf8')) lines.push(...splitter.push(Buffer.from([byte])));
    assert.deepEqual(lines.map((l) => (decodeJsonWatchEvent('Service', l) as { object: { metadata?: { name?: string } } }).object.metadata?.name), ['日本', 'ü']);
  });
});
