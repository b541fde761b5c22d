// Encoding objects the way the API server does, for the test API server. (Decoding is checked
// against Kubernetes' own bytes in shared/fixtures, not against this encoder.)
import { KINDS, type KindName } from '../../control/sources/kube/kinds.ts';
import { protoRoot, type KubeStatus } from '../../control/sources/kube/wire.ts';

const MAGIC = Buffer.from([0x6b, 0x38, 0x73, 0x00]);

/** The reverse of the decoder's normalisation: IntOrString and Time into their messages. */
function toProtoShape(value: unknown, field = ''): unknown {
  if (Array.isArray(value)) return value.map((v) => toProtoShape(v, field));
  if (field === 'targetPort') {
    return typeof value === 'string' ? { type: 1, strVal: value } : { type: 0, intVal: value };
  }
  if (field === 'creationTimestamp' || field === 'deletionTimestamp') {
    const ms = value instanceof Date ? value.getTime() : Date.parse(String(value));
    return { seconds: Math.floor(ms / 1000), nanos: (ms % 1000) * 1e6 };
  }
  if (value === null || typeof value !== 'object' || value instanceof Uint8Array) return value;
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(value as Record<string, unknown>)) {
    if (v !== undefined && v !== null) out[k] = toProtoShape(v, k);
  }
  return out;
}

function message(typeName: string, value: unknown): Uint8Array {
  const t = protoRoot().lookupType(typeName);
  return t.encode(t.fromObject(toProtoShape(value) as Record<string, unknown>)).finish();
}

export function envelope(apiVersion: string, kind: string, raw: Uint8Array): Buffer {
  const unknown = message('k8s.io.apimachinery.pkg.runtime.Unknown', { typeMeta: { apiVersion, kind }, raw: Buffer.from(raw) });
  return Buffer.concat([MAGIC, unknown]);
}

export function encodeObject(kind: KindName, obj: unknown): Buffer {
  return envelope(KINDS[kind].apiVersion, kind, message(KINDS[kind].protoType, obj));
}

export function encodeList(kind: KindName, items: unknown[], resourceVersion: string, continueToken: string): Buffer {
  const raw = message(KINDS[kind].protoListType, { metadata: { resourceVersion, continue: continueToken || undefined }, items });
  return envelope(KINDS[kind].apiVersion, `${kind}List`, raw);
}

export function encodeStatus(status: KubeStatus): Buffer {
  const raw = message('k8s.io.apimachinery.pkg.apis.meta.v1.Status', {
    status: 'Failure',
    code: status.code,
    reason: status.reason,
    message: status.message,
    details: status.retryAfterSeconds === undefined ? undefined : { retryAfterSeconds: status.retryAfterSeconds },
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
