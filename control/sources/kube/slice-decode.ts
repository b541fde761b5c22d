// A direct decoder for discovery.v1.EndpointSlice, the object a large cluster's watch carries
// most (every endpoint change): one pass over the bytes with protobufjs's Reader straight into the
// JSON/client-node shape, instead of protobufjs's message objects, then toObject's copy of them,
// then the in-place fix-ups. The fields are those of proto/discovery.proto and meta.proto; what
// the trimmed schema does not name is skipped, as protobufjs skips it. Presence follows proto2:
// a field absent on the wire is absent in the object (an absent `ready` is not `false`).
// test/sources/wire.test.ts holds it to the schema-driven decoder on the Kubernetes fixtures and
// on random slices.
import protobuf from 'protobufjs';

type Obj = Record<string, unknown>;
const { Reader } = protobuf;

/** Wire types: 0 varint, 1 fixed64, 2 length-delimited, 5 fixed32. */
function tag(r: protobuf.Reader): [field: number, wire: number] {
  const t = r.uint32();
  return [t >>> 3, t & 7];
}

/** End offset of the length-delimited field the reader is at. */
function sub(r: protobuf.Reader): number {
  return r.uint32() + r.pos;
}

function int64(r: protobuf.Reader): number {
  const v = r.int64() as unknown as number | { toNumber(): number };
  return typeof v === 'number' ? v : v.toNumber();
}

function time(r: protobuf.Reader, end: number): Date {
  let seconds = 0;
  let nanos = 0;
  while (r.pos < end) {
    const [f, w] = tag(r);
    if (f === 1 && w === 0) seconds = int64(r);
    else if (f === 2 && w === 0) nanos = r.int32();
    else r.skipType(w);
  }
  return new Date(seconds * 1000 + Math.floor(nanos / 1e6));
}

function mapEntry(r: protobuf.Reader, end: number, into: Obj): void {
  let key = '';
  let value = '';
  while (r.pos < end) {
    const [f, w] = tag(r);
    if (f === 1 && w === 2) key = r.string();
    else if (f === 2 && w === 2) value = r.string();
    else r.skipType(w);
  }
  into[key] = value;
}

function objectMeta(r: protobuf.Reader, end: number, m: Obj): Obj {
  while (r.pos < end) {
    const [f, w] = tag(r);
    if (w === 2 && f === 1) m.name = r.string();
    else if (w === 2 && f === 3) m.namespace = r.string();
    else if (w === 2 && f === 5) m.uid = r.string();
    else if (w === 2 && f === 6) m.resourceVersion = r.string();
    else if (w === 0 && f === 7) m.generation = int64(r);
    else if (w === 2 && f === 8) m.creationTimestamp = time(r, sub(r));
    else if (w === 2 && f === 9) m.deletionTimestamp = time(r, sub(r));
    else if (w === 2 && f === 11) mapEntry(r, sub(r), (m.labels ??= {}) as Obj);
    else if (w === 2 && f === 12) mapEntry(r, sub(r), (m.annotations ??= {}) as Obj);
    else r.skipType(w);
  }
  return m;
}

function conditions(r: protobuf.Reader, end: number, c: Obj): Obj {
  while (r.pos < end) {
    const [f, w] = tag(r);
    if (w === 0 && f === 1) c.ready = r.bool();
    else if (w === 0 && f === 2) c.serving = r.bool();
    else if (w === 0 && f === 3) c.terminating = r.bool();
    else r.skipType(w);
  }
  return c;
}

/** ForZone and ForNode: one name each. */
function named(r: protobuf.Reader, end: number): Obj {
  const o: Obj = {};
  while (r.pos < end) {
    const [f, w] = tag(r);
    if (w === 2 && f === 1) o.name = r.string();
    else r.skipType(w);
  }
  return o;
}

function hints(r: protobuf.Reader, end: number, h: Obj): Obj {
  while (r.pos < end) {
    const [f, w] = tag(r);
    if (w === 2 && f === 1) ((h.forZones ??= []) as Obj[]).push(named(r, sub(r)));
    else if (w === 2 && f === 2) ((h.forNodes ??= []) as Obj[]).push(named(r, sub(r)));
    else r.skipType(w);
  }
  return h;
}

function endpoint(r: protobuf.Reader, end: number): Obj {
  const e: Obj = {};
  while (r.pos < end) {
    const [f, w] = tag(r);
    if (w === 2 && f === 1) ((e.addresses ??= []) as string[]).push(r.string());
    else if (w === 2 && f === 2) conditions(r, sub(r), (e.conditions ??= {}) as Obj);
    else if (w === 2 && f === 3) e.hostname = r.string();
    else if (w === 2 && f === 6) e.nodeName = r.string();
    else if (w === 2 && f === 7) e.zone = r.string();
    else if (w === 2 && f === 8) hints(r, sub(r), (e.hints ??= {}) as Obj);
    else r.skipType(w);
  }
  return e;
}

function endpointPort(r: protobuf.Reader, end: number): Obj {
  const p: Obj = {};
  while (r.pos < end) {
    const [f, w] = tag(r);
    if (w === 2 && f === 1) p.name = r.string();
    else if (w === 2 && f === 2) p.protocol = r.string();
    else if (w === 0 && f === 3) p.port = r.int32();
    else if (w === 2 && f === 4) p.appProtocol = r.string();
    else r.skipType(w);
  }
  return p;
}

/** discovery.v1.EndpointSlice message bytes (the raw inside runtime.Unknown) to its JSON shape. */
export function decodeEndpointSlice(raw: Uint8Array): Obj {
  const r = Reader.create(raw);
  const s: Obj = {};
  const end = raw.length;
  while (r.pos < end) {
    const [f, w] = tag(r);
    if (w === 2 && f === 1) objectMeta(r, sub(r), (s.metadata ??= {}) as Obj);
    else if (w === 2 && f === 2) ((s.endpoints ??= []) as Obj[]).push(endpoint(r, sub(r)));
    else if (w === 2 && f === 3) ((s.ports ??= []) as Obj[]).push(endpointPort(r, sub(r)));
    else if (w === 2 && f === 4) s.addressType = r.string();
    else r.skipType(w);
  }
  return s;
}
