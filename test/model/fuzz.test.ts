// Property-based fuzzing of the model's input: 100k malformed Services and EndpointSlices (half
// as JSON text, half as protobuf bytes, a share of those corrupted byte-wise), interleaved with
// valid objects. Nothing may throw out of the model, every valid object must end up
// programmed, and every malformed one must be rejected with a counted reason.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { ChangeTracker } from '../../control/model/tracker.ts';
import { DEFAULT_MODEL_CONFIG } from '../../control/model/types.ts';
import type { RejectionReason } from '../../control/model/rejections.ts';
import { ModelFeed } from '../../control/sources/model-feed.ts';
import { RejectionLog } from '../../control/sources/rejection-log.ts';
import { decodeEnvelope, decodeJsonObject, decodeProtoObject } from '../../control/sources/kube/wire.ts';
import type { KindName, KubeObject } from '../../control/sources/kube/kinds.ts';
import { encodeObject } from '../apiserver/encode.ts';
import { service, slice } from '../cases/objects.ts';

const MALFORMED = 100_000;
const SEED = 20261122;

/** A small seeded PRNG so the stream is reproducible from SEED. */
function prng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const junkStrings = fc.sample(fc.oneof(fc.string(), fc.string({ unit: 'binary' }), fc.constantFrom('', ' ', '1.2.3', '::g', '10.0.0.01', '300.1.1.1', '1.2.3.4/33', 'fe80::1%eth0', '::ffff:1.2.3.4')), { seed: SEED, numRuns: 4000 });
const junkValues = fc.sample(fc.anything({ withBigInt: false, withMap: false, withSet: false, withTypedArray: false, withDate: false }), { seed: SEED + 1, numRuns: 4000 });
const badPorts: Record<Wire, unknown[]> = { json: [0, -1, 65536, 1e6, 1.5, '80', true], protobuf: [0, -1, 65536, 1e6, -65536] };
const badTimeouts: Record<Wire, unknown[]> = { json: [0, -5, 86401, 'x', 2.5], protobuf: [0, -5, 86401, 1e6] };

type Wire = 'json' | 'protobuf';
/** `wire` matters: protobuf cannot carry a string in an int32 or bool field, so its junk is of the field's type. */
type Mutation = { kind: KindName; reason: RejectionReason | 'any'; make: (i: number, r: () => number, wire: Wire) => unknown };

const pick = <T>(pool: readonly T[], r: () => number): T => pool[Math.floor(r() * pool.length)]!;
const notIp = (r: () => number): string => {
  for (;;) {
    const s = pick(junkStrings, r);
    if (!/^[\d.:a-fA-F]+$/.test(s) || s.includes(':::') || s === '' || s === '1.2.3' || s === '10.0.0.01' || s === '300.1.1.1' || s === '::g') return s === '' ? 'x' : s;
  }
};

const baseService = (i: number): ReturnType<typeof service> =>
  service({ ns: 'fz', name: `svc-${i}`, clusterIPs: [`10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`], ports: [{ name: 'a', port: 80 }, { name: 'b', port: 53, protocol: 'UDP' }] });
const baseSlice = (i: number): ReturnType<typeof slice> =>
  slice({ ns: 'fz', name: `svc-${i}-x`, service: `svc-${i}`, ports: [{ name: 'a', port: 8080 }], endpoints: [{ ip: '10.244.0.10', node: 'n0' }] });

function edit<T>(obj: T, f: (o: T) => void): T {
  const copy = structuredClone(obj);
  f(copy);
  return copy;
}

/* eslint-disable @typescript-eslint/no-explicit-any -- mutations poke arbitrary junk into typed objects */
const MUTATIONS: Mutation[] = [
  { kind: 'Service', reason: 'invalid-ip', make: (i, r) => edit(baseService(i), (o: any) => { const bad = notIp(r); o.spec.clusterIP = bad; o.spec.clusterIPs = [bad]; }) },
  { kind: 'Service', reason: 'port-out-of-range', make: (i, r, w) => edit(baseService(i), (o: any) => (o.spec.ports[0].port = pick(badPorts[w], r))) },
  { kind: 'Service', reason: 'port-out-of-range', make: (i, r, w) => edit(baseService(i), (o: any) => ((o.spec.type = 'NodePort'), (o.spec.ports[0].nodePort = pick(badPorts[w].filter((p) => p !== 0), r)))) },
  { kind: 'Service', reason: 'unknown-protocol', make: (i, r) => edit(baseService(i), (o: any) => (o.spec.ports[1].protocol = `${pick(junkStrings, r)}!`)) },
  { kind: 'Service', reason: 'duplicate-port', make: (i) => edit(baseService(i), (o: any) => o.spec.ports.push({ ...o.spec.ports[0] })) },
  { kind: 'Service', reason: 'invalid-ip', make: (i, r) => edit(baseService(i), (o: any) => (o.spec.externalIPs = ['10.1.1.1', notIp(r)])) },
  { kind: 'Service', reason: 'invalid-cidr', make: (i, r) => edit(baseService(i), (o: any) => (o.spec.loadBalancerSourceRanges = [`${pick(junkStrings, r)}/x`])) },
  { kind: 'Service', reason: 'family-mismatch', make: (i) => edit(baseService(i), (o: any) => (o.spec.clusterIPs = [o.spec.clusterIP, '10.200.0.1'])) },
  { kind: 'Service', reason: 'missing-field', make: (i) => edit(baseService(i), (o: any) => delete o.metadata.name) },
  { kind: 'Service', reason: 'invalid-field', make: (i, r) => edit(baseService(i), (o: any) => (o.spec.type = `${pick(junkStrings, r)}?`)) },
  { kind: 'Service', reason: 'invalid-field', make: (i, r, w) => edit(baseService(i), (o: any) => ((o.spec.sessionAffinity = 'ClientIP'), (o.spec.sessionAffinityConfig = { clientIP: { timeoutSeconds: pick(badTimeouts[w], r) } }))) },
  { kind: 'Service', reason: 'any', make: (i, r) => edit(baseService(i), (o: any) => (o.spec = pick(junkValues.filter((v) => v === null || typeof v !== 'object' || Array.isArray(v)), r))) },
  { kind: 'Service', reason: 'any', make: (_i, r) => pick(junkValues, r) },
  { kind: 'EndpointSlice', reason: 'invalid-ip', make: (i, r) => edit(baseSlice(i), (o: any) => (o.endpoints[0].addresses = [notIp(r)])) },
  { kind: 'EndpointSlice', reason: 'family-mismatch', make: (i) => edit(baseSlice(i), (o: any) => (o.endpoints[0].addresses = ['fd00::1'])) },
  { kind: 'EndpointSlice', reason: 'missing-service-name', make: (i) => edit(baseSlice(i), (o: any) => (o.metadata.labels = {})) },
  { kind: 'EndpointSlice', reason: 'port-out-of-range', make: (i, r, w) => edit(baseSlice(i), (o: any) => (o.ports[0].port = pick(badPorts[w], r))) },
  { kind: 'EndpointSlice', reason: 'unknown-protocol', make: (i, r) => edit(baseSlice(i), (o: any) => (o.ports[0].protocol = `${pick(junkStrings, r)}#`)) },
  { kind: 'EndpointSlice', reason: 'invalid-field', make: (i, r) => edit(baseSlice(i), (o: any) => (o.addressType = `${pick(junkStrings, r)}%`)) },
  { kind: 'EndpointSlice', reason: 'invalid-field', make: (i, r, w) =>
      // A bool on the wire is always a bool: protobuf gets a bad hint list instead.
      edit(baseSlice(i), (o: any) => (w === 'json' ? (o.endpoints[0].conditions.ready = pick(['yes', 1, [], {}], r)) : (o.addressType = 'IPv5'))) },
  { kind: 'EndpointSlice', reason: 'any', make: (_i, r) => pick(junkValues, r) },
];
/* eslint-enable @typescript-eslint/no-explicit-any */

/** Flips bytes of an encoded object; returns undefined if it still decodes (then it is not counted as malformed). */
function corrupt(bytes: Buffer, r: () => number): Buffer {
  const out = Buffer.from(bytes);
  const mode = r();
  if (mode < 0.4) return out.subarray(0, Math.floor(r() * out.length)); // truncated
  const flips = 1 + Math.floor(r() * 8);
  for (let k = 0; k < flips; k++) out[4 + Math.floor(r() * (out.length - 4))] = Math.floor(r() * 256);
  return out;
}

describe('model fuzz', () => {
  it(`${MALFORMED} malformed objects in JSON and protobuf: never thrown on, all counted, valid ones programmed`, () => {
    const r = prng(SEED);
    const tracker = new ChangeTracker({ ...DEFAULT_MODEL_CONFIG, families: [4, 6] });
    const log = new RejectionLog({ warn: () => undefined });
    const feed = new ModelFeed({ tracker, rejections: log, nodeName: 'n0' });
    const expectedReasons = new Map<RejectionReason, number>();
    let rejectedObjects = 0;
    let decodeErrors = 0;
    let corruptedButDecodable = 0;
    const valid: string[] = [];

    const deliver = (kind: KindName, obj: unknown): number => {
      const before = log.total();
      try {
        feed.upsert(kind, obj as KubeObject);
      } catch (e) {
        assert.fail(`the model threw on ${JSON.stringify(obj)?.slice(0, 200)}: ${(e as Error).stack}`);
      }
      return log.total() - before;
    };

    for (let i = 0; i < MALFORMED; i++) {
      const m = MUTATIONS[i % MUTATIONS.length]!;
      const wire: Wire = i % 2 === 1 ? 'protobuf' : 'json';
      const obj = m.make(i, r, wire);
      const asProtobuf = wire === 'protobuf' && obj !== null && typeof obj === 'object' && !Array.isArray(obj);
      let decoded: unknown;
      if (asProtobuf) {
        let bytes: Buffer;
        try {
          bytes = encodeObject(m.kind, obj);
        } catch {
          // Junk the protobuf encoder cannot even represent (a string where a message goes):
          // on the wire that is undecodable bytes.
          bytes = Buffer.from([0x6b, 0x38, 0x73, 0x00, 0xff, 0xff]);
        }
        const damaged = i % 10 === 1;
        if (damaged) bytes = corrupt(bytes, r);
        try {
          decoded = decodeProtoObject(m.kind, decodeEnvelope(bytes).raw);
        } catch (e) {
          const before = log.total();
          feed.decodeError(m.kind, `fuzz #${i}`, (e as Error).message);
          assert.equal(log.total() - before, 1, 'a decode error is counted');
          decodeErrors++;
          continue;
        }
        if (damaged) {
          // Still decodable after damage: it may or may not be valid now; it must not throw.
          deliver(m.kind, decoded);
          corruptedButDecodable++;
          continue;
        }
      } else {
        decoded = decodeJsonObjectSafe(m.kind, JSON.parse(JSON.stringify(obj) ?? 'null'));
      }
      const counted = deliver(m.kind, decoded);
      assert.ok(counted >= 1, `malformed object #${i} (${m.kind}, ${m.reason}) was not counted: ${JSON.stringify(decoded)?.slice(0, 300)}`);
      rejectedObjects++;
      if (m.reason !== 'any') expectedReasons.set(m.reason, (expectedReasons.get(m.reason) ?? 0) + 1);

      // Every 10th step a valid pair goes in between, and must come out programmed.
      if (i % 10 === 0) {
        const n = 1_000_000 + i;
        assert.equal(deliver('Service', baseService(n)), 0);
        assert.equal(deliver('EndpointSlice', baseSlice(n)), 0);
        valid.push(`fz/svc-${n}:a/TCP/v4`);
      }
    }

    const changes = tracker.flush();
    const ports = tracker.state().families.get(4)!.servicePorts;
    for (const key of valid) {
      const sp = ports.get(key);
      assert.ok(sp !== undefined, `valid ${key} is programmed`);
      assert.equal(sp.clusterEndpoints.length, 1, `valid ${key} has its endpoint`);
    }
    assert.ok(changes.upserted.length >= valid.length);
    const counts = log.counts();
    for (const [reason, n] of expectedReasons) assert.ok((counts.get(reason) ?? 0) >= n, `${reason}: counted ${counts.get(reason)}, expected at least ${n}`);
    assert.equal(rejectedObjects + decodeErrors + corruptedButDecodable, MALFORMED);
    assert.ok(decodeErrors > 1000, `byte-level corruption produced decode errors (${decodeErrors})`);
  });

  it('any JSON value at all is taken without throwing (fast-check property)', () => {
    const tracker = new ChangeTracker(DEFAULT_MODEL_CONFIG);
    fc.assert(
      fc.property(fc.jsonValue(), fc.jsonValue(), (a, b) => {
        tracker.upsertService(a);
        tracker.upsertSlice(b);
        tracker.upsertService({ metadata: { name: 'n', namespace: 'ns' }, spec: a });
        tracker.upsertSlice({ metadata: { name: 'n', namespace: 'ns', labels: { 'kubernetes.io/service-name': 'n' } }, addressType: 'IPv4', endpoints: b, ports: a });
        tracker.flush();
      }),
      { seed: SEED, numRuns: 5000 },
    );
  });
});

function decodeJsonObjectSafe(kind: KindName, value: unknown): unknown {
  try {
    return decodeJsonObject(kind, value);
  } catch {
    return value; // not an object: validation names it
  }
}
