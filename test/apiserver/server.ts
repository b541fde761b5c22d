// A test API server that speaks kube-apiserver's protocol for Services, EndpointSlices and Nodes,
// with its list/watch semantics (resourceVersion and resourceVersionMatch as documented in "API
// concepts"; the watch cache, on by default, answers resourceVersion=0 lists whole whatever the
// limit), chunked lists with etcd-style continue tokens (expired after a compaction: 410),
// "Too large resource version" (504 Timeout, cause ResourceVersionTooLarge), query parameters
// parsed as the real server does (watch through strconv.ParseBool, 400 BadRequest for what does
// not parse), label and field selectors on every path, bookmarks, list items without
// apiVersion/kind, JSON and protobuf (framed; encoded from the fuller schemas of ./proto, so
// fields the agent's trimmed schemas skip reach it), namespaced paths, single-object GETs and
// discovery for kubectl; and fault injection: dropped streams mid-frame, 410s, hangs without
// bytes, 429 (as priority and fairness sends it)/500, garbage frames, trickled bytes and slow
// readers cut off as the real watch cache does.
import http from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { KINDS, objectKey, type KindName } from '../../control/sources/kube/kinds.ts';
import type { KubeStatus } from '../../control/sources/kube/wire.ts';
import { discovery, groupVersionPath, NAMESPACED, plural } from './discovery.ts';
import { encodeList, encodeObject, encodeStatus, encodeWatchFrame } from './encode.ts';
import { fieldSelector, labelSelector, SelectorError } from './selectors.ts';

// Objects are kept in their JSON shape; only metadata is looked at.
type Obj = { metadata?: { name?: string; namespace?: string; resourceVersion?: string; labels?: Record<string, string>; [field: string]: unknown }; [field: string]: unknown };

export type Fault =
  /** An error status; a 429 comes as priority and fairness sends it: Retry-After header, plain-text body. */
  | { type: 'status'; code: number; retryAfterSeconds?: number }
  /** 504 "Too large resource version", as a lagging watch cache answers. */
  | { type: 'too-large' }
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
  /**
   * The watch cache (default on): a list at resourceVersion=0, or at a resourceVersion without a
   * limit, is answered whole from it. Off: every limited list is paged (as with
   * --watch-cache=false, or a kind the cache does not hold).
   */
  watchCache?: boolean;
  /** Add what the real API server adds to every object: uid, creationTimestamp, managedFields. */
  serverFields?: boolean;
  /** Kinds this server does not have (an older API server: ServiceCIDR before 1.33 answers 404). */
  absentKinds?: readonly KindName[];
}

interface Watcher {
  kind: KindName;
  matches: (obj: Obj) => boolean;
  protobuf: boolean;
  res: http.ServerResponse;
  pendingFault: Fault | undefined;
  bookmarks: boolean;
  /** Bytes held for a reader that stopped reading (slow-reader fault). */
  backlog: number;
  /** Trickle fault: bytes still to write one at a time, in order across events. */
  trickle: Buffer[];
  closed: boolean;
}

interface HistoryEvent {
  rv: number;
  type: 'ADDED' | 'MODIFIED' | 'DELETED';
  kind: KindName;
  key: string;
  obj: Obj;
  prev: Obj | undefined;
}

export interface RequestRecord {
  kind: KindName;
  verb: 'list' | 'watch' | 'get';
  path: string;
  query: Record<string, string>;
  accept: string;
  userAgent: string;
}

/** A request's answer when it is not a stream: status code and a Status. */
class ApiError extends Error {
  readonly status: KubeStatus;
  constructor(status: KubeStatus) {
    super(status.message);
    this.status = status;
  }
}

const badRequest = (message: string): ApiError => new ApiError({ code: 400, reason: 'BadRequest', message });

/** Go's strconv.ParseBool, which the server's query-parameter conversion uses. */
function parseBool(name: string, value: string | undefined): boolean {
  if (value === undefined || value === '') return false;
  if (['1', 't', 'T', 'TRUE', 'true', 'True'].includes(value)) return true;
  if (['0', 'f', 'F', 'FALSE', 'false', 'False'].includes(value)) return false;
  throw badRequest(`${name}: strconv.ParseBool: parsing "${value}": invalid syntax`);
}

function parseInt64(name: string, value: string | undefined): number | undefined {
  if (value === undefined || value === '') return undefined;
  if (!/^[+-]?\d+$/.test(value)) throw badRequest(`${name}: strconv.ParseInt: parsing "${value}": invalid syntax`);
  return Number(value);
}

function parseResourceVersion(value: string): number {
  if (!/^\d+$/.test(value)) throw badRequest(`invalid resource version: ${value}`);
  return Number(value);
}

/** etcd3's continue token: base64 of {"v":"meta.k8s.io/v1","rv":N,"start":"key\0"}. */
function encodeContinue(rv: number, lastKey: string): string {
  return Buffer.from(JSON.stringify({ v: 'meta.k8s.io/v1', rv, start: `${lastKey}\u0000` })).toString('base64');
}

function decodeContinue(token: string): { rv: number; start: string } {
  let parsed: unknown;
  try {
    parsed = JSON.parse(Buffer.from(token, 'base64').toString('utf8'));
  } catch {
    throw badRequest('invalid continue token: continue key is not valid: illegal base64 data or JSON');
  }
  const c = parsed as { v?: unknown; rv?: unknown; start?: unknown };
  if (c === null || typeof c !== 'object' || c.v !== 'meta.k8s.io/v1') throw badRequest('invalid continue token: continue key is not valid: server does not recognize this encoded version');
  if (typeof c.rv !== 'number' || !Number.isInteger(c.rv) || c.rv < 0 || typeof c.start !== 'string' || c.start === '') {
    throw badRequest('invalid continue token: continue key is not valid: incorrect encoded start resourceVersion or key');
  }
  return { rv: c.rv, start: c.start };
}

interface Route {
  kind: KindName;
  namespace?: string;
  name?: string;
}

/** The collection (cluster-wide or one namespace's) or object a path names. */
function route(pathname: string): Route | undefined {
  for (const kind of Object.keys(KINDS) as KindName[]) {
    const gv = groupVersionPath(kind);
    if (!pathname.startsWith(`${gv}/`)) continue;
    const rest = pathname.slice(gv.length + 1).split('/').map(decodeURIComponent);
    if (NAMESPACED[kind] && rest[0] === 'namespaces' && rest.length >= 3 && rest[2] === plural(kind)) {
      if (rest.length === 3) return { kind, namespace: rest[1]! };
      if (rest.length === 4) return { kind, namespace: rest[1]!, name: rest[3]! };
    }
    if (rest[0] === plural(kind)) {
      if (rest.length === 1) return { kind };
      if (rest.length === 2 && !NAMESPACED[kind]) return { kind, name: rest[1]! };
    }
  }
  return undefined;
}

/** Lists carry items without apiVersion/kind: the real server strips them (the list has them). */
function listItem(obj: Obj): Obj {
  const { apiVersion: _a, kind: _k, ...rest } = obj;
  return rest;
}

export class TestApiServer {
  private readonly options: ServerOptions;
  private readonly server: http.Server;
  private readonly objects = new Map<KindName, Map<string, Obj>>();
  private history: HistoryEvent[] = [];
  private rv = 100;
  private compactedRv = 0;
  private uids = 0;
  private readonly watchers = new Set<Watcher>();
  private readonly faults: FaultRule[] = [];
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

  /** What the server stores for `input`: its resourceVersion, and what the real server adds. */
  private stored(kind: KindName, input: object, prev: Obj | undefined): Obj {
    const obj = structuredClone(input) as Obj;
    const meta: NonNullable<Obj['metadata']> = { ...obj.metadata, resourceVersion: String(++this.rv) };
    if (this.options.serverFields !== false) {
      meta.uid ??= (prev?.metadata?.uid as string | undefined) ?? `00000000-0000-4000-8000-${String(++this.uids).padStart(12, '0')}`;
      meta.creationTimestamp ??= (prev?.metadata?.creationTimestamp as string | undefined) ?? new Date(Date.UTC(2026, 0, 1)).toISOString().replace('.000', '');
      meta.generation ??= 1;
      meta.managedFields ??= [
        {
          manager: 'kubectl-client-side-apply',
          operation: 'Update',
          apiVersion: KINDS[kind].apiVersion,
          time: '2026-01-01T00:00:00Z',
          fieldsType: 'FieldsV1',
          fieldsV1: { 'f:metadata': { 'f:labels': {} } },
        },
      ];
      fillStatusFields(kind, obj);
      const service = obj.metadata?.labels?.['kubernetes.io/service-name'];
      if (kind === 'EndpointSlice' && service !== undefined) {
        // The EndpointSlice controller owns the slices it makes.
        meta.ownerReferences ??= [{ apiVersion: 'v1', kind: 'Service', name: service, uid: '00000000-0000-4000-8000-00000000ffff', controller: true, blockOwnerDeletion: true }];
      }
    }
    return { ...obj, apiVersion: KINDS[kind].apiVersion, kind, metadata: meta };
  }

  /** Creates or replaces an object; its resourceVersion is assigned here. */
  put(kind: KindName, input: object): void {
    const store = this.objects.get(kind)!;
    const key = objectKey(input as Obj);
    const prev = store.get(key);
    const stored = this.stored(kind, input, prev);
    store.set(key, stored);
    this.emit({ rv: this.rv, type: prev === undefined ? 'ADDED' : 'MODIFIED', kind, key, obj: stored, prev });
  }

  remove(kind: KindName, key: string): void {
    const store = this.objects.get(kind)!;
    const prev = store.get(key);
    if (prev === undefined) return;
    store.delete(key);
    const gone: Obj = { ...prev, metadata: { ...prev.metadata, resourceVersion: String(++this.rv) } };
    this.emit({ rv: this.rv, type: 'DELETED', kind, key, obj: gone, prev });
  }

  /** Objects as the server holds them now. */
  list(kind: KindName): Obj[] {
    return [...this.objects.get(kind)!.values()];
  }

  /** Forgets all history: watches, list continuations and exact lists from before now get 410. */
  compact(): void {
    this.compactedRv = this.rv;
    this.history = [];
  }

  /** Changes state without any watcher seeing it (as if missed during an outage), then compacts. */
  putSilently(kind: KindName, input: object): void {
    const store = this.objects.get(kind)!;
    const key = objectKey(input as Obj);
    store.set(key, this.stored(kind, input, store.get(key)));
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

  /** The kind's objects as they were at `rv` (history walked back); 410 once compacted away. */
  private stateAt(kind: KindName, rv: number): Map<string, Obj> {
    const state = new Map(this.objects.get(kind)!);
    if (rv >= this.rv) return state;
    if (rv < this.compactedRv) throw new ApiError({ code: 410, reason: 'Expired', message: `The resourceVersion for the provided list is too old.` });
    for (let i = this.history.length - 1; i >= 0 && this.history[i]!.rv > rv; i--) {
      const ev = this.history[i]!;
      if (ev.kind !== kind) continue;
      if (ev.type === 'ADDED') state.delete(ev.key);
      else state.set(ev.key, ev.prev!);
    }
    return state;
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
    const accept = String(req.headers.accept ?? '');
    const protobuf = !this.options.forceJson && accept.includes('application/vnd.kubernetes.protobuf');
    if (this.options.token !== undefined && req.headers.authorization !== `Bearer ${this.options.token}`) {
      return this.sendStatus(res, protobuf, { code: 401, reason: 'Unauthorized', message: 'Unauthorized' });
    }
    const absent = new Set(this.options.absentKinds ?? []);
    const doc = req.method === 'GET' ? discovery(url.pathname, absent) : undefined;
    if (doc !== undefined) {
      res.setHeader('Content-Type', 'application/json');
      res.end(JSON.stringify(doc));
      return;
    }
    const ns = /^\/api\/v1\/namespaces\/([^/]+)$/.exec(url.pathname);
    if (ns !== null && req.method === 'GET') return this.handleNamespace(decodeURIComponent(ns[1]!), protobuf, res);
    const where = route(url.pathname);
    if (where === undefined || absent.has(where.kind) || req.method !== 'GET') {
      return this.sendStatus(res, protobuf, { code: 404, reason: 'NotFound', message: 'the server could not find the requested resource' });
    }
    const kind = where.kind;
    const q = Object.fromEntries(url.searchParams.entries());
    try {
      const watch = parseBool('watch', q.watch);
      const verb = where.name !== undefined && !watch ? 'get' : watch ? 'watch' : 'list';
      this.requests.push({ kind, verb, path: url.pathname, query: q, accept, userAgent: String(req.headers['user-agent'] ?? '') });
      if (verb === 'get') return this.handleGet(where, protobuf, res);
      const fault = this.takeFault(kind, verb);
      if (fault?.type === 'status') return this.sendFaultStatus(res, protobuf, fault);
      if (fault?.type === 'gone') return this.sendStatus(res, protobuf, { code: 410, reason: 'Expired', message: 'injected: resource version too old' });
      if (fault?.type === 'too-large') throw tooLarge(this.rv + 1, this.rv);
      if (fault?.type === 'hang' && verb === 'list') return; // never answered
      const matches = this.selection(where, q);
      if (verb === 'list') return this.handleList(kind, q, matches, protobuf, res, fault);
      return this.handleWatch(kind, q, matches, protobuf, res, fault);
    } catch (e) {
      if (e instanceof ApiError) return this.sendStatus(res, protobuf, e.status);
      throw e;
    }
  }

  /** The namespace of the path, the name of the path (a watch of one object) and the selectors. */
  private selection(where: Route, q: Record<string, string>): (obj: Obj) => boolean {
    let labels: ReturnType<typeof labelSelector>;
    let fields: ReturnType<typeof fieldSelector>;
    try {
      labels = labelSelector(q.labelSelector ?? '');
      fields = fieldSelector(where.kind, q.fieldSelector ?? '');
    } catch (e) {
      if (e instanceof SelectorError) throw badRequest(e.message);
      throw e;
    }
    return (obj) =>
      (where.namespace === undefined || obj.metadata?.namespace === where.namespace) &&
      (where.name === undefined || obj.metadata?.name === where.name) &&
      labels(obj.metadata?.labels) &&
      fields(obj);
  }

  private handleGet(where: Route, protobuf: boolean, res: http.ServerResponse): void {
    const key = where.namespace === undefined ? where.name! : `${where.namespace}/${where.name}`;
    const obj = this.objects.get(where.kind)!.get(key);
    if (obj === undefined) {
      return this.sendStatus(res, protobuf, { code: 404, reason: 'NotFound', message: `${plural(where.kind)} "${where.name}" not found`, details: { name: where.name!, kind: plural(where.kind) } });
    }
    res.statusCode = 200;
    if (protobuf) {
      res.setHeader('Content-Type', 'application/vnd.kubernetes.protobuf');
      res.end(encodeObject(where.kind, obj));
    } else {
      res.setHeader('Content-Type', 'application/json');
      res.end(JSON.stringify(obj));
    }
  }

  /** A namespace exists while something lives in it (kubectl asks after a NotFound). */
  private handleNamespace(name: string, protobuf: boolean, res: http.ServerResponse): void {
    const exists = [...this.objects.values()].some((m) => [...m.values()].some((o) => o.metadata?.namespace === name));
    if (!exists) return this.sendStatus(res, protobuf, { code: 404, reason: 'NotFound', message: `namespaces "${name}" not found`, details: { name, kind: 'namespaces' } });
    res.setHeader('Content-Type', 'application/json');
    res.end(JSON.stringify({ kind: 'Namespace', apiVersion: 'v1', metadata: { name }, spec: { finalizers: ['kubernetes'] }, status: { phase: 'Active' } }));
  }

  private sendFaultStatus(res: http.ServerResponse, protobuf: boolean, fault: { code: number; retryAfterSeconds?: number }): void {
    if (fault.code === 429) {
      // As the max-in-flight and priority-and-fairness filters answer: the header and a line of text.
      res.statusCode = 429;
      if (fault.retryAfterSeconds !== undefined) res.setHeader('Retry-After', String(fault.retryAfterSeconds));
      res.setHeader('Content-Type', 'text/plain; charset=utf-8');
      res.end('Too many requests, please try again later.\n');
      return;
    }
    this.sendStatus(res, protobuf, { code: fault.code, reason: 'InternalError', message: 'injected', retryAfterSeconds: fault.retryAfterSeconds });
  }

  private sendStatus(res: http.ServerResponse, protobuf: boolean, status: KubeStatus & { details?: { name: string; kind: string } }): void {
    res.statusCode = status.code;
    // As responsewriters.ErrorNegotiated: 429 and 5xx with details.retryAfterSeconds carry the header.
    if ((status.code === 429 || status.code >= 500) && (status.retryAfterSeconds ?? 0) > 0) res.setHeader('Retry-After', String(status.retryAfterSeconds));
    if (protobuf) {
      res.setHeader('Content-Type', 'application/vnd.kubernetes.protobuf');
      res.end(encodeStatus(status));
    } else {
      res.setHeader('Content-Type', 'application/json');
      res.end(JSON.stringify(jsonStatusBody(status)));
    }
  }

  private handleList(kind: KindName, q: Record<string, string>, matches: (o: Obj) => boolean, protobuf: boolean, res: http.ServerResponse, fault: Fault | undefined): void {
    // limit <= 0 is no limit (the storage pages only when limit > 0).
    const limitParam = parseInt64('limit', q.limit) ?? 0;
    const rvParam = q.resourceVersion ?? '';
    const match = q.resourceVersionMatch ?? '';
    if (match !== '' && match !== 'NotOlderThan' && match !== 'Exact') throw badRequest(`resourceVersionMatch: Unsupported value: "${match}"`);
    if (match !== '' && rvParam === '') throw badRequest('resourceVersionMatch: Forbidden: resourceVersionMatch is forbidden unless resourceVersion is provided');
    if (match === 'Exact' && rvParam === '0') throw badRequest('resourceVersionMatch: Forbidden: resourceVersionMatch "exact" is forbidden for resourceVersion "0"');
    const watchCache = this.options.watchCache !== false;
    let limit = limitParam > 0 ? limitParam : Infinity;
    let listRv: number;
    let start = '';
    let state: Map<string, Obj>;
    if (q.continue) {
      const token = decodeContinue(q.continue);
      if (rvParam !== '' && rvParam !== '0') throw badRequest('specifying resource version is not allowed when using continue');
      if (token.rv < this.compactedRv) {
        throw new ApiError({
          code: 410,
          reason: 'Expired',
          message:
            'The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter, or use the continue token in this response to retrieve the remainder of the results. Continuing with the provided token results in an inconsistent list - objects that were created, modified, or deleted between the time the first chunk was returned and now may show up in the list.',
        });
      }
      listRv = token.rv;
      start = token.start;
      state = this.stateAt(kind, listRv);
    } else if (rvParam === '') {
      // Most recent: a consistent read (etcd), paged.
      listRv = this.rv;
      state = this.stateAt(kind, listRv);
    } else {
      const n = parseResourceVersion(rvParam);
      if (n > this.rv) throw tooLarge(n, this.rv);
      const exact = match === 'Exact' || (match === '' && n !== 0 && limit !== Infinity);
      if (exact) {
        // Exact (also a limited list at a resourceVersion without a match: etcd at that revision).
        listRv = n;
        state = this.stateAt(kind, n);
      } else {
        // Any (0) or not older than n: the watch cache's current state, whole.
        if (watchCache) limit = Infinity;
        listRv = this.rv;
        state = this.stateAt(kind, listRv);
      }
    }
    const all = [...state.entries()].filter(([key, o]) => key >= start && matches(o)).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    const page = all.slice(0, limit);
    const more = page.length < all.length;
    const continueToken = more ? encodeContinue(listRv, page[page.length - 1]![0]) : '';
    // Only an unfiltered list knows how many items remain.
    const remaining = more && !q.labelSelector && !q.fieldSelector ? all.length - page.length : undefined;
    const items = page.map(([, o]) => listItem(o));
    const rv = String(listRv);
    let body: Buffer;
    res.statusCode = 200;
    if (protobuf) {
      res.setHeader('Content-Type', 'application/vnd.kubernetes.protobuf');
      body = encodeList(kind, items, rv, continueToken, remaining);
    } else {
      res.setHeader('Content-Type', 'application/json');
      const metadata = { resourceVersion: rv, ...(continueToken ? { continue: continueToken } : {}), ...(remaining !== undefined ? { remainingItemCount: remaining } : {}) };
      body = Buffer.from(JSON.stringify({ kind: `${kind}List`, apiVersion: KINDS[kind].apiVersion, metadata, items }));
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

  private handleWatch(kind: KindName, q: Record<string, string>, matches: (o: Obj) => boolean, protobuf: boolean, res: http.ServerResponse, fault: Fault | undefined): void {
    const rvParam = q.resourceVersion ?? '';
    const from = rvParam === '' || rvParam === '0' ? undefined : parseResourceVersion(rvParam);
    const timeoutSeconds = parseInt64('timeoutSeconds', q.timeoutSeconds);
    const bookmarks = parseBool('allowWatchBookmarks', q.allowWatchBookmarks);
    res.statusCode = 200;
    res.setHeader('Content-Type', protobuf ? 'application/vnd.kubernetes.protobuf;stream=watch' : 'application/json');
    res.setHeader('Transfer-Encoding', 'chunked');
    res.flushHeaders();
    if (fault?.type === 'hang') return; // headers, then silence
    const watcher: Watcher = {
      kind,
      matches,
      protobuf,
      res,
      pendingFault: fault?.type === 'drop-mid-frame' || fault?.type === 'trickle' || fault?.type === 'slow-reader' ? fault : undefined,
      bookmarks,
      backlog: 0,
      trickle: [],
      closed: false,
    };
    this.watchers.add(watcher);
    res.on('close', () => {
      watcher.closed = true;
      this.watchers.delete(watcher);
    });
    if (timeoutSeconds !== undefined && timeoutSeconds > 0) {
      const timer = setTimeout(() => this.endWatcher(watcher), timeoutSeconds * 1000);
      res.on('close', () => clearTimeout(timer));
    }
    if (fault?.type === 'gone-event') return this.sendError(watcher, { code: 410, reason: 'Expired', message: 'injected: too old resource version' });
    if (fault?.type === 'garbage-frame') {
      res.write(protobuf ? Buffer.from([0, 0, 0, 5, 0xff, 0xff, 0xff, 0xff, 0xff]) : 'this is not json\n');
      return;
    }
    if (from !== undefined && from < this.compactedRv) {
      return this.sendError(watcher, { code: 410, reason: 'Expired', message: `too old resource version: ${from} (${this.compactedRv})` });
    }
    if (from === undefined) {
      // No resourceVersion, or 0: the current state as ADDED events, through the selectors.
      for (const obj of this.objects.get(kind)!.values()) if (matches(obj)) this.send(watcher, 'ADDED', obj);
    } else {
      // From a resourceVersion (also one not reached yet, as the watch cache: events after it).
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
    else w.res.write(`${JSON.stringify({ type: 'ERROR', object: jsonStatusBody(status) })}\n`);
    this.endWatcher(w);
  }

  private emit(ev: HistoryEvent): void {
    this.history.push(ev);
    for (const w of this.watchers) if (w.kind === ev.kind) this.deliver(w, ev);
  }

  /** Sends an event as this watcher sees it through its selectors. */
  private deliver(w: Watcher, ev: HistoryEvent): void {
    const now = ev.type !== 'DELETED' && w.matches(ev.obj);
    const before = ev.prev !== undefined && w.matches(ev.prev);
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
      // One byte per write, with a pause, events kept in order (a second event waits for the first).
      w.trickle.push(bytes);
      if (w.trickle.length === 1) this.pumpTrickle(w, fault.delayMs ?? 1);
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

  private pumpTrickle(w: Watcher, delayMs: number): void {
    const head = w.trickle[0];
    if (head === undefined || w.closed || w.res.destroyed) return;
    this.write(w.res, head, { type: 'trickle', delayMs }, () => {
      w.trickle.shift();
      this.pumpTrickle(w, delayMs);
    });
  }

  private bookmarks(): void {
    for (const w of this.watchers) {
      if (!w.bookmarks || w.pendingFault?.type === 'slow-reader') continue;
      const obj: Obj = { apiVersion: KINDS[w.kind].apiVersion, kind: w.kind, metadata: { resourceVersion: String(this.rv) } };
      this.send(w, 'BOOKMARK', obj);
    }
  }
}

/**
 * What the controllers and the kubelet fill in and a proxy never reads: endpoints' targetRef,
 * the node's status (conditions, capacity, daemon endpoints, node info, images).
 */
function fillStatusFields(kind: KindName, obj: Obj): void {
  if (kind === 'EndpointSlice' && Array.isArray(obj.endpoints)) {
    for (const e of obj.endpoints as Array<{ addresses?: string[]; targetRef?: unknown }>) {
      const address = e.addresses?.[0] ?? 'x';
      e.targetRef ??= { kind: 'Pod', namespace: obj.metadata?.namespace, name: `pod-${address.replace(/[.:]/g, '-')}`, uid: `00000000-0000-4000-9000-${address.replace(/[^0-9a-f]/g, '').padStart(12, '0').slice(-12)}` };
    }
  }
  if (kind === 'Node') {
    const status = ((obj.status as Record<string, unknown> | undefined) ??= {}) as Record<string, unknown>;
    status.capacity ??= { cpu: '2', memory: '4012412Ki', pods: '110' };
    status.allocatable ??= { cpu: '2', memory: '3910012Ki', pods: '110' };
    status.phase ??= 'Running';
    status.conditions ??= [{ type: 'Ready', status: 'True', lastHeartbeatTime: '2026-01-01T00:00:00Z', lastTransitionTime: '2026-01-01T00:00:00Z', reason: 'KubeletReady', message: 'kubelet is posting ready status' }];
    status.daemonEndpoints ??= { kubeletEndpoint: { Port: 10250 } };
    status.nodeInfo ??= { machineID: 'm', systemUUID: 's', bootID: 'b', kernelVersion: '6.18.0', osImage: 'Debian GNU/Linux 12 (bookworm)', containerRuntimeVersion: 'containerd://1.7.0', kubeletVersion: 'v1.32.0', kubeProxyVersion: '', operatingSystem: 'linux', architecture: 'amd64' };
    status.images ??= [{ names: ['registry.k8s.io/pause:3.10'], sizeBytes: 320368 }];
  }
}

/**
 * storage.NewTooLargeResourceVersionError: a Timeout (504) whose cause says
 * ResourceVersionTooLarge, with a retry after 1 s, as the watch cache answers a list at a
 * resourceVersion it has not reached.
 */
function tooLarge(asked: number, current: number): ApiError {
  return new ApiError({
    code: 504,
    reason: 'Timeout',
    message: `Timeout: Too large resource version: ${asked}, current: ${current}`,
    retryAfterSeconds: 1,
    causes: [{ reason: 'ResourceVersionTooLarge', message: 'Too large resource version' }],
  });
}

function jsonStatusBody(status: KubeStatus & { details?: { name: string; kind: string } }): object {
  const details = {
    ...status.details,
    ...(status.causes ? { causes: status.causes } : {}),
    ...(status.retryAfterSeconds !== undefined ? { retryAfterSeconds: status.retryAfterSeconds } : {}),
  };
  return {
    kind: 'Status',
    apiVersion: 'v1',
    metadata: {},
    status: 'Failure',
    message: status.message,
    reason: status.reason,
    ...(Object.keys(details).length > 0 ? { details } : {}),
    code: status.code,
  };
}
