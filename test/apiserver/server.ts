// A test API server that speaks the real protocol for Services, EndpointSlices and Nodes: list
// with pagination and resourceVersion, watch from a resourceVersion with replay, 410 when too
// old, bookmarks, JSON and protobuf (framed), label/field selectors — and fault injection:
// dropped streams mid-frame, 410s, hangs without bytes, 429/500, garbage frames, trickled bytes
// and slow readers cut off as the real watch cache does.
import http from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { KINDS, objectKey, type KindName } from '../../control/sources/kube/kinds.ts';
import type { KubeStatus } from '../../control/sources/kube/wire.ts';
import { encodeList, encodeObject, encodeStatus, encodeWatchFrame } from './encode.ts';
import { matchesFields, matchesLabels } from './selectors.ts';

// Objects are kept in their JSON shape; only metadata is looked at.
type Obj = { metadata?: { name?: string; namespace?: string; resourceVersion?: string; labels?: Record<string, string> }; [field: string]: unknown };

export type Fault =
  | { type: 'status'; code: number; retryAfterSeconds?: number }
  /** HTTP 410 Gone (an expired list continuation or watch resourceVersion). */
  | { type: 'gone' }
  /** 200, then an ERROR event with a 410 Status, as the real server says "too old resource version". */
  | { type: 'gone-event' }
  /** list: never answer; watch: answer the headers, then send nothing at all. */
  | { type: 'hang' }
  /** watch: the next event is cut after half its bytes and the connection is destroyed. */
  | { type: 'drop-mid-frame' }
  /** watch: a frame (or JSON line) of garbage. */
  | { type: 'garbage-frame' }
  /** Every byte of the response is written separately, with a pause. */
  | { type: 'trickle'; delayMs?: number }
  /**
   * watch: the reader stops reading; the server holds its events as backlog and cuts the watch
   * off once the backlog passes limitBytes, as the watch cache does with slow watchers.
   */
  | { type: 'slow-reader'; limitBytes: number };

export interface FaultRule {
  fault: Fault;
  kind?: KindName;
  verb?: 'list' | 'watch';
  remaining: number;
}

export interface ServerOptions {
  /** Send a BOOKMARK to watchers that asked for them this often (0: never). */
  bookmarkIntervalMs?: number;
  /** Answer JSON even when protobuf is asked for. */
  forceJson?: boolean;
  tls?: { key: string; cert: string };
  /** When set, every request must carry "Authorization: Bearer <token>". */
  token?: string;
}

interface Watcher {
  kind: KindName;
  labelSelector: string;
  fieldSelector: string;
  protobuf: boolean;
  res: http.ServerResponse;
  pendingFault: Fault | undefined;
  bookmarks: boolean;
  /** Bytes held for a reader that stopped reading (slow-reader fault). */
  backlog: number;
  closed: boolean;
}

interface HistoryEvent {
  rv: number;
  type: 'ADDED' | 'MODIFIED' | 'DELETED';
  kind: KindName;
  obj: Obj;
  prev: Obj | undefined;
}

export interface RequestRecord {
  kind: KindName;
  verb: 'list' | 'watch';
  query: Record<string, string>;
  accept: string;
}

const BY_PATH = new Map(Object.values(KINDS).map((k) => [k.path, k.kind]));

export class TestApiServer {
  private readonly options: ServerOptions;
  private readonly server: http.Server;
  private readonly objects = new Map<KindName, Map<string, Obj>>();
  private history: HistoryEvent[] = [];
  private rv = 100;
  private compactedRv = 0;
  private readonly watchers = new Set<Watcher>();
  private readonly faults: FaultRule[] = [];
  private readonly snapshots = new Map<string, { items: Obj[]; rv: number }>();
  private bookmarkTimer: NodeJS.Timeout | undefined;
  readonly requests: RequestRecord[] = [];
  url = '';

  constructor(options: ServerOptions = {}) {
    this.options = options;
    for (const k of Object.keys(KINDS) as KindName[]) this.objects.set(k, new Map());
    const handler = (req: http.IncomingMessage, res: http.ServerResponse): void => this.handle(req, res);
    this.server = options.tls ? https.createServer(options.tls, handler) : http.createServer(handler);
  }

  async start(): Promise<void> {
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    const { port } = this.server.address() as AddressInfo;
    this.url = `${this.options.tls ? 'https' : 'http'}://127.0.0.1:${port}`;
    if (this.options.bookmarkIntervalMs) this.bookmarkTimer = setInterval(() => this.bookmarks(), this.options.bookmarkIntervalMs);
  }

  async stop(): Promise<void> {
    clearInterval(this.bookmarkTimer);
    for (const w of this.watchers) w.res.destroy();
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  // ---- state -------------------------------------------------------------------------------

  get resourceVersion(): number {
    return this.rv;
  }

  /** Creates or replaces an object; its resourceVersion is assigned here. */
  put(kind: KindName, input: object): void {
    const obj = input as Obj;
    const store = this.objects.get(kind)!;
    const key = objectKey(obj);
    const prev = store.get(key);
    const stored: Obj = { ...structuredClone(obj), apiVersion: KINDS[kind].apiVersion, kind, metadata: { ...obj.metadata, resourceVersion: String(++this.rv) } };
    store.set(key, stored);
    this.emit({ rv: this.rv, type: prev === undefined ? 'ADDED' : 'MODIFIED', kind, obj: stored, prev });
  }

  remove(kind: KindName, key: string): void {
    const store = this.objects.get(kind)!;
    const prev = store.get(key);
    if (prev === undefined) return;
    store.delete(key);
    const gone: Obj = { ...prev, metadata: { ...prev.metadata, resourceVersion: String(++this.rv) } };
    this.emit({ rv: this.rv, type: 'DELETED', kind, obj: gone, prev });
  }

  /** Objects as the server holds them now. */
  list(kind: KindName): Obj[] {
    return [...this.objects.get(kind)!.values()];
  }

  /** Forgets all history: watches and list continuations from before now get 410. */
  compact(): void {
    this.compactedRv = this.rv;
    this.history = [];
    this.snapshots.clear();
  }

  /** Changes state without any watcher seeing it (as if missed during an outage), then compacts. */
  putSilently(kind: KindName, input: object): void {
    const obj = input as Obj;
    const stored: Obj = { ...structuredClone(obj), apiVersion: KINDS[kind].apiVersion, kind, metadata: { ...obj.metadata, resourceVersion: String(++this.rv) } };
    this.objects.get(kind)!.set(objectKey(obj), stored);
    this.compact();
  }

  removeSilently(kind: KindName, key: string): void {
    this.objects.get(kind)!.delete(key);
    this.rv++;
    this.compact();
  }

  /** Ends every open watch cleanly (a server restart). */
  closeWatches(): void {
    for (const w of this.watchers) this.endWatcher(w);
  }

  /** Accept only this bearer token from now on (a rotated service-account token). */
  setToken(token: string): void {
    this.options.token = token;
  }

  inject(fault: Fault, match: { kind?: KindName; verb?: 'list' | 'watch' } = {}, times = 1): void {
    this.faults.push({ fault, ...match, remaining: times });
  }

  get openWatches(): number {
    return this.watchers.size;
  }

  // ---- protocol ----------------------------------------------------------------------------

  private takeFault(kind: KindName, verb: 'list' | 'watch'): Fault | undefined {
    const rule = this.faults.find((r) => r.remaining > 0 && (r.kind === undefined || r.kind === kind) && (r.verb === undefined || r.verb === verb));
    if (rule === undefined) return undefined;
    rule.remaining--;
    return rule.fault;
  }

  private handle(req: http.IncomingMessage, res: http.ServerResponse): void {
    const url = new URL(req.url ?? '/', 'http://x');
    const kind = BY_PATH.get(url.pathname);
    const accept = String(req.headers.accept ?? '');
    const protobuf = !this.options.forceJson && accept.includes('application/vnd.kubernetes.protobuf');
    if (this.options.token !== undefined && req.headers.authorization !== `Bearer ${this.options.token}`) {
      return this.sendStatus(res, protobuf, { code: 401, reason: 'Unauthorized', message: 'Unauthorized' });
    }
    if (kind === undefined || req.method !== 'GET') return this.sendStatus(res, protobuf, { code: 404, reason: 'NotFound', message: url.pathname });
    const q = Object.fromEntries(url.searchParams.entries());
    const verb = q.watch === '1' || q.watch === 'true' ? 'watch' : 'list';
    this.requests.push({ kind, verb, query: q, accept });
    const fault = this.takeFault(kind, verb);
    if (fault?.type === 'status') {
      if (fault.retryAfterSeconds !== undefined) res.setHeader('Retry-After', String(fault.retryAfterSeconds));
      return this.sendStatus(res, protobuf, { code: fault.code, reason: fault.code === 429 ? 'TooManyRequests' : 'InternalError', message: 'injected', retryAfterSeconds: fault.retryAfterSeconds });
    }
    if (fault?.type === 'gone') return this.sendStatus(res, protobuf, { code: 410, reason: 'Expired', message: 'injected: resource version too old' });
    if (fault?.type === 'hang' && verb === 'list') return; // never answered
    if (verb === 'list') return this.handleList(kind, q, protobuf, res, fault);
    return this.handleWatch(kind, q, protobuf, res, fault);
  }

  private sendStatus(res: http.ServerResponse, protobuf: boolean, status: KubeStatus): void {
    res.statusCode = status.code;
    if (protobuf) {
      res.setHeader('Content-Type', 'application/vnd.kubernetes.protobuf');
      res.end(encodeStatus(status));
    } else {
      res.setHeader('Content-Type', 'application/json');
      res.end(JSON.stringify({ kind: 'Status', apiVersion: 'v1', status: 'Failure', ...status, details: status.retryAfterSeconds === undefined ? undefined : { retryAfterSeconds: status.retryAfterSeconds } }));
    }
  }

  private matches(kind: KindName, obj: Obj, labelSelector: string, fieldSelector: string): boolean {
    return matchesLabels(labelSelector, obj.metadata?.labels) && matchesFields(fieldSelector, obj.metadata) && KINDS[kind] !== undefined;
  }

  private handleList(kind: KindName, q: Record<string, string>, protobuf: boolean, res: http.ServerResponse, fault: Fault | undefined): void {
    const limit = q.limit === undefined ? Infinity : Number(q.limit);
    let snapshot: { items: Obj[]; rv: number };
    let offset = 0;
    if (q.continue) {
      const token = JSON.parse(Buffer.from(q.continue, 'base64url').toString()) as { id: string; offset: number };
      const found = this.snapshots.get(token.id);
      if (found === undefined) return this.sendStatus(res, protobuf, { code: 410, reason: 'Expired', message: 'continue token expired' });
      snapshot = found;
      offset = token.offset;
    } else {
      const items = [...this.objects.get(kind)!.values()]
        .filter((o) => this.matches(kind, o, q.labelSelector ?? '', q.fieldSelector ?? ''))
        .sort((a, b) => (objectKey(a) < objectKey(b) ? -1 : 1));
      snapshot = { items: structuredClone(items), rv: this.rv };
    }
    const page = snapshot.items.slice(offset, offset + limit);
    let continueToken = '';
    if (offset + page.length < snapshot.items.length) {
      const id = `${snapshot.rv}-${Math.random().toString(36).slice(2)}`;
      this.snapshots.set(id, snapshot);
      continueToken = Buffer.from(JSON.stringify({ id, offset: offset + page.length })).toString('base64url');
    }
    const rv = String(snapshot.rv);
    let body: Buffer;
    if (protobuf) {
      res.setHeader('Content-Type', 'application/vnd.kubernetes.protobuf');
      body = encodeList(kind, page, rv, continueToken);
    } else {
      res.setHeader('Content-Type', 'application/json');
      body = Buffer.from(JSON.stringify({ kind: `${kind}List`, apiVersion: KINDS[kind].apiVersion, metadata: { resourceVersion: rv, continue: continueToken || undefined }, items: page }));
    }
    this.write(res, body, fault, () => res.end());
  }

  /** Writes a body, byte by byte with pauses when the fault says so. */
  private write(res: http.ServerResponse, body: Buffer, fault: Fault | undefined, then: () => void): void {
    if (fault?.type !== 'trickle') {
      res.write(body);
      then();
      return;
    }
    let i = 0;
    const step = (): void => {
      if (res.destroyed) return;
      if (i >= body.length) return then();
      res.write(body.subarray(i, i + 1));
      i++;
      setTimeout(step, fault.delayMs ?? 1);
    };
    step();
  }

  private handleWatch(kind: KindName, q: Record<string, string>, protobuf: boolean, res: http.ServerResponse, fault: Fault | undefined): void {
    res.statusCode = 200;
    res.setHeader('Content-Type', protobuf ? 'application/vnd.kubernetes.protobuf;stream=watch' : 'application/json');
    res.setHeader('Transfer-Encoding', 'chunked');
    res.flushHeaders();
    if (fault?.type === 'hang') return; // headers, then silence
    const watcher: Watcher = {
      kind,
      labelSelector: q.labelSelector ?? '',
      fieldSelector: q.fieldSelector ?? '',
      protobuf,
      res,
      pendingFault: fault?.type === 'drop-mid-frame' || fault?.type === 'trickle' || fault?.type === 'slow-reader' ? fault : undefined,
      bookmarks: q.allowWatchBookmarks === 'true',
      backlog: 0,
      closed: false,
    };
    this.watchers.add(watcher);
    res.on('close', () => {
      watcher.closed = true;
      this.watchers.delete(watcher);
    });
    if (q.timeoutSeconds !== undefined) {
      const timer = setTimeout(() => this.endWatcher(watcher), Number(q.timeoutSeconds) * 1000);
      res.on('close', () => clearTimeout(timer));
    }
    if (fault?.type === 'gone-event') return this.sendError(watcher, { code: 410, reason: 'Expired', message: 'injected: too old resource version' });
    if (fault?.type === 'garbage-frame') {
      res.write(protobuf ? Buffer.from([0, 0, 0, 5, 0xff, 0xff, 0xff, 0xff, 0xff]) : 'this is not json\n');
      return;
    }
    const from = q.resourceVersion === undefined || q.resourceVersion === '' || q.resourceVersion === '0' ? undefined : Number(q.resourceVersion);
    if (from !== undefined && from < this.compactedRv) {
      return this.sendError(watcher, { code: 410, reason: 'Expired', message: `too old resource version: ${from} (${this.compactedRv})` });
    }
    if (from === undefined) {
      for (const obj of this.objects.get(kind)!.values()) this.send(watcher, 'ADDED', obj);
    } else {
      for (const ev of this.history) if (ev.rv > from && ev.kind === kind) this.deliver(watcher, ev);
    }
  }

  private endWatcher(w: Watcher): void {
    if (w.closed) return;
    w.closed = true;
    this.watchers.delete(w);
    w.res.end();
  }

  private sendError(w: Watcher, status: KubeStatus): void {
    if (w.protobuf) w.res.write(encodeWatchFrame('ERROR', encodeStatus(status)));
    else w.res.write(`${JSON.stringify({ type: 'ERROR', object: { kind: 'Status', apiVersion: 'v1', status: 'Failure', ...status } })}\n`);
    this.endWatcher(w);
  }

  private emit(ev: HistoryEvent): void {
    this.history.push(ev);
    for (const w of this.watchers) if (w.kind === ev.kind) this.deliver(w, ev);
  }

  /** Sends an event as this watcher sees it through its selectors. */
  private deliver(w: Watcher, ev: HistoryEvent): void {
    const now = ev.type !== 'DELETED' && this.matches(ev.kind, ev.obj, w.labelSelector, w.fieldSelector);
    const before = ev.prev !== undefined && this.matches(ev.kind, ev.prev, w.labelSelector, w.fieldSelector);
    if (ev.type === 'DELETED') {
      if (before) this.send(w, 'DELETED', ev.obj);
    } else if (now) {
      this.send(w, before ? 'MODIFIED' : 'ADDED', ev.obj);
    } else if (before) {
      // No longer selected: the watcher sees it deleted.
      this.send(w, 'DELETED', ev.obj);
    }
  }

  private send(w: Watcher, type: string, obj: Obj): void {
    if (w.closed || w.res.writableEnded || w.res.destroyed) return;
    const bytes = w.protobuf ? encodeWatchFrame(type, encodeObject(w.kind, obj)) : Buffer.from(`${JSON.stringify({ type, object: obj })}\n`);
    const fault = w.pendingFault;
    if (fault?.type === 'drop-mid-frame') {
      w.pendingFault = undefined;
      w.res.write(bytes.subarray(0, Math.max(1, bytes.length >> 1)), () => w.res.destroy());
      w.closed = true;
      return;
    }
    if (fault?.type === 'trickle') {
      this.write(w.res, bytes, fault, () => undefined);
      return;
    }
    if (fault?.type === 'slow-reader') {
      w.backlog += bytes.length;
      if (w.backlog > fault.limitBytes) {
        // The reader does not keep up: cut it off, as the watch cache does.
        w.closed = true;
        w.res.destroy();
      }
      return;
    }
    w.res.write(bytes);
  }

  private bookmarks(): void {
    for (const w of this.watchers) {
      if (!w.bookmarks || w.pendingFault?.type === 'slow-reader') continue;
      const obj: Obj = { apiVersion: KINDS[w.kind].apiVersion, kind: w.kind, metadata: { resourceVersion: String(this.rv) } };
      this.send(w, 'BOOKMARK', obj);
    }
  }
}
