// Decoding what the API server sends, in both of its wire formats, into client-node's typed
// shapes. Protobuf: "k8s\0" + runtime.Unknown wrapping the object; watch streams are frames
// of a 4-byte big-endian length + metav1.WatchEvent whose object.raw is again "k8s\0" + Unknown.
// JSON: the usual objects; watch streams are one JSON WatchEvent per line.
import { StringDecoder } from 'node:string_decoder';
import { fileURLToPath } from 'node:url';
import protobuf from 'protobufjs';
import { decodeEndpointSlice } from './slice-decode.ts';
import { KINDS, type KindName, type KubeObject } from './kinds.ts';

export const PROTOBUF = 'application/vnd.kubernetes.protobuf';
export const JSON_TYPE = 'application/json';
const MAGIC = Buffer.from([0x6b, 0x38, 0x73, 0x00]); // "k8s\0"

export class WireError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'WireError';
  }
}

const protoDir = fileURLToPath(new URL('../../../proto/', import.meta.url));

let rootCache: protobuf.Root | undefined;

/** The trimmed schemas of proto/, loaded once. */
export function protoRoot(): protobuf.Root {
  if (rootCache === undefined) {
    const root = new protobuf.Root();
    root.resolvePath = (_origin, target) => `${protoDir}${target.replace(/^.*\//, '')}`;
    root.loadSync(['runtime.proto', 'meta.proto', 'core.proto', 'discovery.proto', 'networking.proto'], { keepCase: true });
    root.resolveAll();
    rootCache = root;
  }
  return rootCache;
}

const types = new Map<string, protobuf.Type>();
/** A message type, looked up once (lookupType walks the namespaces on every call). */
function type(name: string): protobuf.Type {
  let t = types.get(name);
  if (t === undefined) types.set(name, (t = protoRoot().lookupType(name)));
  return t;
}

export interface Unknown {
  apiVersion: string;
  kind: string;
  raw: Buffer;
}

/** Unwraps "k8s\0" + runtime.Unknown. */
export function decodeEnvelope(bytes: Uint8Array): Unknown {
  if (bytes.length < 4 || !MAGIC.equals(Buffer.from(bytes.subarray(0, 4)))) {
    throw new WireError('protobuf envelope: missing "k8s\\0" prefix');
  }
  const msg = type('k8s.io.apimachinery.pkg.runtime.Unknown').decode(bytes.subarray(4)) as unknown as {
    typeMeta?: { apiVersion?: string; kind?: string };
    raw?: Uint8Array;
  };
  return {
    apiVersion: msg.typeMeta?.apiVersion ?? '',
    kind: msg.typeMeta?.kind ?? '',
    // A view of the bytes, not a copy.
    raw: msg.raw === undefined ? Buffer.alloc(0) : Buffer.from(msg.raw.buffer, msg.raw.byteOffset, msg.raw.byteLength),
  };
}

const TO_OBJECT: protobuf.IConversionOptions = { longs: Number, bytes: Buffer, defaults: false, arrays: false, objects: false };

/**
 * Turns protobufjs's plain object into the JSON/client-node shape, in place: IntOrString becomes a
 * number or a string, Time becomes a Date. Only the fields of those types are visited (a full
 * recursive copy doubled the decode cost).
 */
function toTime(t: unknown): Date | undefined {
  if (t === null || typeof t !== 'object') return undefined;
  const { seconds, nanos } = t as { seconds?: number; nanos?: number };
  return new Date(Number(seconds ?? 0) * 1000 + Math.floor(Number(nanos ?? 0) / 1e6));
}

function normalizeProto(obj: Record<string, unknown>): Record<string, unknown> {
  const meta = obj.metadata as Record<string, unknown> | undefined;
  if (meta !== undefined) {
    if (meta.creationTimestamp !== undefined) meta.creationTimestamp = toTime(meta.creationTimestamp);
    if (meta.deletionTimestamp !== undefined) meta.deletionTimestamp = toTime(meta.deletionTimestamp);
  }
  const ports = (obj.spec as { ports?: Array<Record<string, unknown>> } | undefined)?.ports;
  if (Array.isArray(ports)) {
    for (const p of ports) {
      const t = p.targetPort as { type?: number; intVal?: number; strVal?: string } | undefined;
      if (t !== undefined && t !== null && typeof t === 'object') p.targetPort = t.type === 1 ? (t.strVal ?? '') : (t.intVal ?? 0);
    }
  }
  return obj;
}

/** protobufjs's schema-driven decode of one object (the direct EndpointSlice decoder is tested against it). */
export function decodeBySchema(kind: KindName, raw: Uint8Array): KubeObject {
  const t = type(KINDS[kind].protoType);
  return normalizeProto(t.toObject(t.decode(raw), TO_OBJECT)) as unknown as KubeObject;
}

/** Decodes one object's protobuf message bytes (the raw inside Unknown). */
export function decodeProtoObject<K extends KindName>(kind: K, raw: Uint8Array): KubeObject {
  const obj = kind === 'EndpointSlice' ? (decodeEndpointSlice(raw) as unknown as KubeObject) : decodeBySchema(kind, raw);
  obj.apiVersion = KINDS[kind].apiVersion;
  obj.kind = kind;
  return obj;
}

export interface DecodedList {
  resourceVersion: string;
  continue: string;
  items: unknown[];
}

/** Decodes a list response body ("k8s\0" + Unknown wrapping a *List). */
export function decodeProtoList(kind: KindName, body: Uint8Array): DecodedList {
  const unknown = decodeEnvelope(body);
  if (unknown.kind === 'Status') throw statusError(decodeProtoStatus(unknown.raw));
  if (kind === 'EndpointSlice') return decodeEndpointSliceList(unknown.raw);
  const t = type(KINDS[kind].protoListType);
  const list = t.toObject(t.decode(unknown.raw), TO_OBJECT) as {
    metadata?: { resourceVersion?: string; continue?: string };
    items?: unknown[];
  };
  const items = (list.items ?? []).map((item) => {
    const obj = normalizeProto(item as Record<string, unknown>) as unknown as KubeObject;
    obj.apiVersion = KINDS[kind].apiVersion;
    obj.kind = kind;
    return obj;
  });
  return { resourceVersion: list.metadata?.resourceVersion ?? '', continue: list.metadata?.continue ?? '', items };
}

/** discovery.v1.EndpointSliceList: ListMeta (1) and the items (2), each by the direct decoder. */
function decodeEndpointSliceList(raw: Uint8Array): DecodedList {
  const r = protobuf.Reader.create(raw);
  const out: DecodedList = { resourceVersion: '', continue: '', items: [] };
  while (r.pos < raw.length) {
    const t = r.uint32();
    const field = t >>> 3;
    if ((t & 7) !== 2 || (field !== 1 && field !== 2)) {
      r.skipType(t & 7);
      continue;
    }
    const len = r.uint32();
    const bytes = raw.subarray(r.pos, r.pos + len);
    r.skip(len);
    if (field === 2) {
      const obj = decodeEndpointSlice(bytes);
      obj.apiVersion = KINDS.EndpointSlice.apiVersion;
      obj.kind = 'EndpointSlice';
      out.items.push(obj);
    } else {
      const meta = type('k8s.io.apimachinery.pkg.apis.meta.v1.ListMeta').decode(bytes) as unknown as { resourceVersion?: string; continue?: string };
      if (meta.resourceVersion) out.resourceVersion = meta.resourceVersion;
      if (meta.continue) out.continue = meta.continue;
    }
  }
  return out;
}

/** metav1.StatusCause; Go calls `reason` Type (CauseType), the wire says "reason". */
export interface KubeStatusCause {
  reason: string;
  message: string;
  field?: string;
}

export interface KubeStatus {
  code: number;
  reason: string;
  message: string;
  retryAfterSeconds?: number;
  /** details.causes: how the server says "ResourceVersionTooLarge", among others. */
  causes?: KubeStatusCause[];
}

function causesOf(value: unknown): KubeStatusCause[] | undefined {
  if (!Array.isArray(value) || value.length === 0) return undefined;
  return value.map((c: { reason?: unknown; message?: unknown; field?: unknown }) => ({
    reason: typeof c?.reason === 'string' ? c.reason : '',
    message: typeof c?.message === 'string' ? c.message : '',
    ...(typeof c?.field === 'string' ? { field: c.field } : {}),
  }));
}

/** 410 Gone: a resourceVersion or continue token older than the server keeps (reason Expired, or Gone before 1.18). */
export function isExpired(status: KubeStatus): boolean {
  return status.code === 410 || status.reason === 'Expired' || status.reason === 'Gone';
}

/**
 * "Too large resource version": the server has not seen the resourceVersion asked for yet (a
 * restored etcd, a lagging watch cache). kube-apiserver answers 504 Timeout with the cause
 * ResourceVersionTooLarge; 1.17.0-1.18.5 set only the cause's message, so that is read too.
 */
export function isTooLargeResourceVersion(status: KubeStatus): boolean {
  const causes = status.causes ?? [];
  if (causes.some((c) => c.reason === 'ResourceVersionTooLarge')) return true;
  return status.reason === 'Timeout' && causes.some((c) => c.message === 'Too large resource version');
}

export function decodeProtoStatus(raw: Uint8Array): KubeStatus {
  const t = type('k8s.io.apimachinery.pkg.apis.meta.v1.Status');
  const s = t.toObject(t.decode(raw), TO_OBJECT) as { code?: number; reason?: string; message?: string; details?: { retryAfterSeconds?: number; causes?: unknown } };
  const causes = causesOf(s.details?.causes);
  return { code: s.code ?? 0, reason: s.reason ?? '', message: s.message ?? '', retryAfterSeconds: s.details?.retryAfterSeconds, ...(causes ? { causes } : {}) };
}

export function jsonStatus(value: unknown): KubeStatus {
  const s = (value ?? {}) as { code?: unknown; reason?: unknown; message?: unknown; details?: { retryAfterSeconds?: unknown; causes?: unknown } };
  const causes = causesOf(s.details?.causes);
  return {
    ...(causes ? { causes } : {}),
    code: typeof s.code === 'number' ? s.code : 0,
    reason: typeof s.reason === 'string' ? s.reason : '',
    message: typeof s.message === 'string' ? s.message : '',
    retryAfterSeconds: typeof s.details?.retryAfterSeconds === 'number' ? s.details.retryAfterSeconds : undefined,
  };
}

/** The error a Status stands for; `status` is kept so callers can look at the code. */
export class StatusError extends Error {
  readonly status: KubeStatus;

  constructor(status: KubeStatus) {
    super(`API status ${status.code} ${status.reason}: ${status.message}`);
    this.name = 'StatusError';
    this.status = status;
  }
}

function statusError(status: KubeStatus): StatusError {
  return new StatusError(status);
}

export type WatchEventType = 'ADDED' | 'MODIFIED' | 'DELETED' | 'BOOKMARK' | 'ERROR';

/** One decoded watch event; `object` is the typed object, or the Status for ERROR. */
export type WatchEvent =
  | { type: 'ADDED' | 'MODIFIED' | 'DELETED' | 'BOOKMARK'; object: KubeObject }
  | { type: 'ERROR'; status: KubeStatus };

const EVENT_TYPES = new Set(['ADDED', 'MODIFIED', 'DELETED', 'BOOKMARK', 'ERROR']);

/** Decodes one protobuf watch frame's payload (metav1.WatchEvent). */
export function decodeProtoWatchEvent(kind: KindName, frame: Uint8Array): WatchEvent {
  const t = type('k8s.io.apimachinery.pkg.apis.meta.v1.WatchEvent');
  const ev = t.decode(frame) as unknown as { type?: string; object?: { raw?: Uint8Array } };
  const eventType = ev.type ?? '';
  if (!EVENT_TYPES.has(eventType)) throw new WireError(`watch event: unknown type "${eventType}"`);
  const unknown = decodeEnvelope(ev.object?.raw ?? new Uint8Array());
  if (eventType === 'ERROR' || unknown.kind === 'Status') return { type: 'ERROR', status: decodeProtoStatus(unknown.raw) };
  return { type: eventType as 'ADDED', object: decodeProtoObject(kind, unknown.raw) };
}

/** Dates in JSON are RFC 3339 strings; client-node's types (and the model) use Date. */
function normalizeJsonObject(kind: KindName, value: unknown): KubeObject {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) throw new WireError(`${kind}: not an object`);
  const obj = value as KubeObject & { metadata?: Record<string, unknown> };
  const meta = obj.metadata;
  if (meta !== undefined && meta !== null && typeof meta === 'object') {
    for (const field of ['creationTimestamp', 'deletionTimestamp']) {
      if (typeof meta[field] === 'string') meta[field] = new Date(meta[field]);
    }
  }
  return obj;
}

export function decodeJsonObject(kind: KindName, value: unknown): KubeObject {
  return normalizeJsonObject(kind, value);
}

export function decodeJsonList(kind: KindName, body: string): DecodedList {
  const parsed = JSON.parse(body) as { kind?: string; metadata?: { resourceVersion?: string; continue?: string }; items?: unknown[] };
  if (parsed.kind === 'Status') throw statusError(jsonStatus(parsed));
  if (!Array.isArray(parsed.items)) throw new WireError(`${kind} list: no items array`);
  return {
    resourceVersion: parsed.metadata?.resourceVersion ?? '',
    continue: parsed.metadata?.continue ?? '',
    items: parsed.items.map((item) => {
      try {
        // The server strips apiVersion/kind from list items; the protobuf path sets them, so does this one.
        const obj = normalizeJsonObject(kind, item);
        obj.apiVersion ??= KINDS[kind].apiVersion;
        obj.kind ??= kind;
        return obj;
      } catch {
        return item; // left for validation to reject with the object's name
      }
    }),
  };
}

/** Decodes one line of a JSON watch stream. */
export function decodeJsonWatchEvent(kind: KindName, line: string): WatchEvent {
  const ev = JSON.parse(line) as { type?: unknown; object?: unknown };
  const eventType = typeof ev.type === 'string' ? ev.type : '';
  if (!EVENT_TYPES.has(eventType)) throw new WireError(`watch event: unknown type "${eventType}"`);
  if (eventType === 'ERROR') return { type: 'ERROR', status: jsonStatus(ev.object) };
  return { type: eventType as 'ADDED', object: normalizeJsonObject(kind, ev.object) };
}

/** Splits a protobuf watch stream into frames as bytes arrive. */
export class FrameSplitter {
  private pending: Buffer = Buffer.alloc(0);
  /** Frames larger than this are treated as corruption rather than buffered forever. */
  static readonly MAX_FRAME = 64 * 1024 * 1024;

  push(chunk: Buffer): Buffer[] {
    this.pending = this.pending.length === 0 ? chunk : Buffer.concat([this.pending, chunk]);
    const frames: Buffer[] = [];
    for (;;) {
      if (this.pending.length < 4) break;
      const length = this.pending.readUInt32BE(0);
      if (length > FrameSplitter.MAX_FRAME) throw new WireError(`watch frame of ${length} bytes`);
      if (this.pending.length < 4 + length) break;
      frames.push(this.pending.subarray(4, 4 + length));
      this.pending = this.pending.subarray(4 + length);
    }
    return frames;
  }

  /** Bytes of an unfinished frame (non-zero when a stream ends mid-frame). */
  get buffered(): number {
    return this.pending.length;
  }
}

/**
 * Splits a JSON watch stream into lines as bytes arrive. A multi-byte UTF-8 character may be cut
 * between two chunks: the StringDecoder holds its first bytes until the rest arrives.
 */
export class LineSplitter {
  private pending = '';
  private readonly decoder = new StringDecoder('utf8');

  push(chunk: Buffer): string[] {
    this.pending += this.decoder.write(chunk);
    const lines = this.pending.split('\n');
    this.pending = lines.pop() ?? '';
    return lines.filter((l) => l.trim() !== '');
  }

  get buffered(): number {
    return this.pending.length;
  }
}
