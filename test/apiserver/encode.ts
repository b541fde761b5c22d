// Encoding objects the way the API server does, for the test API server, from the fuller
// schemas of ./proto (not the agent's trimmed proto/): every field the real API sends reaches
// the agent's decoder, which must skip what it does not read. (Decoding is checked against
// Kubernetes' own bytes in shared/fixtures, not against this encoder.)
import { fileURLToPath } from 'node:url';
import protobuf from 'protobufjs';
import { KINDS, type KindName } from '../../control/sources/kube/kinds.ts';
import type { KubeStatus } from '../../control/sources/kube/wire.ts';

const MAGIC = Buffer.from([0x6b, 0x38, 0x73, 0x00]);
const protoDir = fileURLToPath(new URL('./proto/', import.meta.url));

let rootCache: protobuf.Root | undefined;

/** The test server's full schemas, loaded once. */
export function fullProtoRoot(): protobuf.Root {
  if (rootCache === undefined) {
    const root = new protobuf.Root();
    root.resolvePath = (_origin, target) => `${protoDir}${target.replace(/^.*\//, '')}`;
    root.loadSync(['runtime.proto', 'meta.proto', 'core.proto', 'discovery.proto', 'networking.proto'], { keepCase: true });
    root.resolveAll();
    rootCache = root;
  }
  return rootCache;
}

const TIME_FIELDS = new Set(['creationTimestamp', 'deletionTimestamp', 'time', 'lastTransitionTime', 'lastHeartbeatTime', 'timeAdded']);

/** The reverse of the decoder's normalisation: IntOrString, Time, FieldsV1 and Quantity into their messages. */
function toProtoShape(value: unknown, field = ''): unknown {
  if (Array.isArray(value)) return value.map((v) => toProtoShape(v, field));
  if (field === 'targetPort') {
    return typeof value === 'string' ? { type: 1, strVal: value } : { type: 0, intVal: value };
  }
  if (TIME_FIELDS.has(field)) {
    const ms = value instanceof Date ? value.getTime() : Date.parse(String(value));
    return { seconds: Math.floor(ms / 1000), nanos: (ms % 1000) * 1e6 };
  }
  // FieldsV1 travels as the raw JSON of the field set.
  if (field === 'fieldsV1') return { Raw: Buffer.from(JSON.stringify(value)) };
  if ((field === 'capacity' || field === 'allocatable') && value !== null && typeof value === 'object') {
    return Object.fromEntries(Object.entries(value as Record<string, unknown>).map(([k, v]) => [k, { string: String(v) }]));
  }
  if (field === 'kubeletEndpoint' && value !== null && typeof value === 'object') return { Port: (value as { Port?: number }).Port };
  if (value === null || typeof value !== 'object' || value instanceof Uint8Array) return value;
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(value as Record<string, unknown>)) {
    if (v !== undefined && v !== null) out[k] = toProtoShape(v, k);
  }
  return out;
}

function message(typeName: string, value: unknown): Uint8Array {
  const t = fullProtoRoot().lookupType(typeName);
  return t.encode(t.fromObject(toProtoShape(value) as Record<string, unknown>)).finish();
}

export function envelope(apiVersion: string, kind: string, raw: Uint8Array): Buffer {
  const unknown = message('k8s.io.apimachinery.pkg.runtime.Unknown', { typeMeta: { apiVersion, kind }, raw: Buffer.from(raw) });
  return Buffer.concat([MAGIC, unknown]);
}

/** One object's message bytes (the raw inside the envelope). */
export function encodeObjectRaw(kind: KindName, obj: unknown): Uint8Array {
  return message(KINDS[kind].protoType, obj);
}

export function encodeObject(kind: KindName, obj: unknown): Buffer {
  return envelope(KINDS[kind].apiVersion, kind, encodeObjectRaw(kind, obj));
}

export function encodeList(kind: KindName, items: unknown[], resourceVersion: string, continueToken: string, remainingItemCount?: number): Buffer {
  const raw = message(KINDS[kind].protoListType, { metadata: { resourceVersion, continue: continueToken || undefined, remainingItemCount }, items });
  return envelope(KINDS[kind].apiVersion, `${kind}List`, raw);
}

export function encodeStatus(status: KubeStatus & { details?: { name?: string; kind?: string } }): Buffer {
  const details = { ...status.details, causes: status.causes, retryAfterSeconds: status.retryAfterSeconds };
  const raw = message('k8s.io.apimachinery.pkg.apis.meta.v1.Status', {
    status: 'Failure',
    code: status.code,
    reason: status.reason,
    message: status.message,
    details: Object.values(details).some((v) => v !== undefined) ? details : undefined,
  });
  return envelope('v1', 'Status', raw);
}

/** A protobuf watch frame: 4-byte big-endian length + metav1.WatchEvent. */
export function encodeWatchFrame(type: string, objectBytes: Buffer): Buffer {
  const ev = message('k8s.io.apimachinery.pkg.apis.meta.v1.WatchEvent', { type, object: { raw: objectBytes } });
  const len = Buffer.alloc(4);
  len.writeUInt32BE(ev.length);
  return Buffer.concat([len, Buffer.from(ev)]);
}
