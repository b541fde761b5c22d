// A reflector: keeps a local copy of one kind in step with the API server, as client-go's
// reflector and pager do. The first list asks resourceVersion=0, which the watch cache answers
// in one response (no quorum read of etcd, no pages, on every agent start of a rollout); later
// lists ask for data at least as fresh as what was seen; a list whose resourceVersion the server
// no longer has (410) or has not reached ("Too large resource version") is asked again with no
// resourceVersion (a consistent read). Pages carry the continue token only; a continuation that
// expired (410) falls back to one full list. Watch from the list's resourceVersion with
// bookmarks, relist on 410 with a diff that deletes what vanished, exponential backoff with
// jitter on errors, forgotten after a healthy period; a Retry-After is waited for exactly; an
// inactivity timeout replaces a silent (half-open) stream; a clean stop.
import type { IncomingMessage } from 'node:http';
import { Backoff, DEFAULT_BACKOFF, type BackoffOptions } from './backoff.ts';
import { KINDS, objectKey, type KindName, type KubeObject } from './kinds.ts';
import type { ApiTransport } from './transport.ts';
import {
  FrameSplitter,
  JSON_TYPE,
  LineSplitter,
  PROTOBUF,
  StatusError,
  WireError,
  decodeJsonList,
  decodeJsonWatchEvent,
  decodeProtoList,
  decodeProtoStatus,
  decodeEnvelope,
  decodeProtoWatchEvent,
  isExpired,
  isTooLargeResourceVersion,
  jsonStatus,
  type KubeStatus,
  type WatchEvent,
} from './wire.ts';

export interface ReflectorHandler {
  upsert(kind: KindName, obj: KubeObject): void;
  delete(kind: KindName, key: string, last: KubeObject): void;
  /** The first complete list has been delivered (called once). */
  synced(kind: KindName): void;
}

export interface ReflectorEvents {
  /** Something failed; the reflector retries after `delayMs`. */
  error?(kind: KindName, error: Error, delayMs: number): void;
  /** A full list replaced the local copy (first sync, 410, or an unrecoverable watch). */
  relist?(kind: KindName, reason: string): void;
  /** A watch ended and a new one was opened from the last resourceVersion. */
  reconnect?(kind: KindName, reason: string): void;
  /** A frame or list could not be decoded. */
  decodeError?(kind: KindName, detail: string): void;
  /** An optional kind the server does not have (404) or does not let us read (403): said once, until it is served. */
  missing?(kind: KindName, error: Error): void;
}

export interface ReflectorOptions {
  kind: KindName;
  transport: ApiTransport;
  handler: ReflectorHandler;
  events?: ReflectorEvents;
  contentType?: 'protobuf' | 'json';
  labelSelector?: string;
  fieldSelector?: string;
  pageSize?: number;
  /** A watch (or list) that sends no byte for this long is abandoned and reopened. */
  inactivityTimeoutMs?: number;
  /** Server-side watch timeout; randomised in [min, 2*min) like client-go. */
  minWatchTimeoutSeconds?: number;
  backoff?: BackoffOptions;
  /**
   * The kind may be missing from the server (ServiceCIDR before Kubernetes 1.33), or not granted (an
   * agent upgraded before its ClusterRole): a 404 or 403 counts as an empty, synced list, said
   * once (events.missing), and the list is asked again every missingRetryMs (default 5 minutes)
   * in case the server or the role is upgraded meanwhile. The other kinds never wait for it.
   */
  optional?: boolean;
  missingRetryMs?: number;
  /** The reflector's own waits (backoff, Retry-After) and its sense of time; tests pass a fake. */
  clock?: ReflectorClock;
}

export interface ReflectorClock {
  now(): number;
  /** Calls `fn` after `ms`; returns what cancels it. */
  after(ms: number, fn: () => void): () => void;
}

export const REAL_CLOCK: ReflectorClock = {
  now: () => Date.now(),
  after: (ms, fn) => {
    const timer = setTimeout(fn, ms);
    return () => clearTimeout(timer);
  },
};

class InactivityError extends Error {
  constructor(ms: number) {
    super(`no data for ${ms} ms`);
    this.name = 'InactivityError';
  }
}

class StoppedError extends Error {}

interface Stored {
  rv: string;
  obj: KubeObject;
}

interface ListResult {
  items: Map<string, Stored>;
  resourceVersion: string;
  /** Some page carried a continue token. */
  paginated: boolean;
}

interface DecodedPage {
  items: KubeObject[];
  continue: string;
  resourceVersion: string;
}

/**
 * The wait a server asked for: a Retry-After of N seconds (header, or details.retryAfterSeconds
 * of the Status) is waited for exactly, as client-go's request retry does. 0 or none: undefined,
 * and the backoff decides (a server saying 0 forever must not make a hot loop).
 */
function retryAfterMs(error: Error): number | undefined {
  if (!(error instanceof StatusError)) return undefined;
  const s = error.status.retryAfterSeconds;
  return s !== undefined && s > 0 ? s * 1000 : undefined;
}

export class Reflector {
  readonly kind: KindName;
  private readonly options: Required<Omit<ReflectorOptions, 'labelSelector' | 'fieldSelector' | 'events' | 'clock' | 'optional' | 'missingRetryMs'>> &
    Pick<ReflectorOptions, 'labelSelector' | 'fieldSelector'>;
  private readonly events: ReflectorEvents;
  private readonly store = new Map<string, Stored>();
  private readonly backoff: Backoff;
  private readonly clock: ReflectorClock;
  private resourceVersion = '';
  /** The last list or watch said the server cannot serve `resourceVersion` (410, too large). */
  private resourceVersionUnavailable = false;
  /** A list at resourceVersion=0 came in pages: no watch cache, so later lists page too. */
  private paginatedResult = false;
  private hasSynced = false;
  /** An optional kind answered 404 and that was said (cleared once it is served). */
  private missingSaid = false;
  private stopped = false;
  private abort: AbortController | undefined;
  private sleeping: { cancel: () => void; resolve: () => void } | undefined;
  private loop: Promise<void> | undefined;
  readonly stats = { lists: 0, relists: 0, reconnects: 0, errors: 0, events: 0, bookmarks: 0, fullListFallbacks: 0 };

  private readonly optional: boolean;
  private readonly missingRetryMs: number;

  constructor(options: ReflectorOptions) {
    this.optional = options.optional === true;
    this.missingRetryMs = options.missingRetryMs ?? 5 * 60_000;
    this.kind = options.kind;
    this.events = options.events ?? {};
    this.options = {
      contentType: 'protobuf',
      pageSize: 500,
      inactivityTimeoutMs: 5 * 60_000,
      minWatchTimeoutSeconds: 300,
      backoff: DEFAULT_BACKOFF,
      ...options,
    };
    this.clock = options.clock ?? REAL_CLOCK;
    this.backoff = new Backoff(this.options.backoff, Math.random, () => this.clock.now());
  }

  get synced(): boolean {
    return this.hasSynced;
  }

  get lastResourceVersion(): string {
    return this.resourceVersion;
  }

  /** The local copy, by "ns/name". */
  items(): KubeObject[] {
    return [...this.store.values()].map((s) => s.obj);
  }

  start(): void {
    if (this.loop === undefined) this.loop = this.run();
  }

  /** Stops watching; resolves once no request is left open. */
  async stop(): Promise<void> {
    this.stopped = true;
    this.abort?.abort();
    if (this.sleeping !== undefined) {
      this.sleeping.cancel();
      this.sleeping.resolve();
    }
    await this.loop;
  }

  private get accept(): string {
    return this.options.contentType === 'protobuf' ? `${PROTOBUF}, ${JSON_TYPE}` : JSON_TYPE;
  }

  private async run(): Promise<void> {
    let needList = true;
    let listReason = 'initial sync';
    while (!this.stopped) {
      try {
        if (needList) {
          await this.list(listReason);
          needList = false;
          this.missingSaid = false;
        }
        const started = this.clock.now();
        const eventsBefore = this.stats.events + this.stats.bookmarks;
        const outcome = await this.watch();
        if (outcome === 'gone') {
          // As client-go: the next list asks for data at least as fresh as the last seen
          // resourceVersion, which the watch cache can serve; only a list that fails falls back.
          needList = true;
          listReason = 'watch resourceVersion expired (410)';
          continue;
        }
        this.events.reconnect?.(this.kind, outcome);
        this.stats.reconnects++;
        // A stream that closes at once without delivering anything must not turn into a busy loop.
        if (this.clock.now() - started < 1000 && this.stats.events + this.stats.bookmarks === eventsBefore) {
          await this.sleep(this.backoff.next());
        }
      } catch (e) {
        if (this.stopped || e instanceof StoppedError) break;
        const error = e as Error;
        if (error instanceof StatusError && isExpired(error.status)) {
          // A watch refused with 410 (a list's own 410s are handled inside list()).
          needList = true;
          listReason = 'watch resourceVersion expired (410)';
          continue;
        }
        if (error instanceof StatusError && isTooLargeResourceVersion(error.status)) {
          // The server has not reached the resourceVersion the watch asked for (a restored etcd,
          // a lagging cache): waiting on it may never end, so list again as a consistent read.
          this.resourceVersionUnavailable = true;
          needList = true;
          listReason = 'watch resourceVersion too large';
          this.stats.errors++;
          const delay = retryAfterMs(error) ?? this.backoff.next();
          this.events.error?.(this.kind, error, delay);
          await this.sleep(delay);
          continue;
        }
        if (this.optional && error instanceof StatusError && (error.status.code === 404 || error.status.code === 403)) {
          this.missing(error);
          needList = true;
          listReason = 'the resource appeared';
          await this.sleep(this.missingRetryMs);
          continue;
        }
        if (error instanceof InactivityError && this.hasSynced && !needList) {
          // A silent (half-open) stream: reopen from the last resourceVersion at once.
          this.stats.reconnects++;
          this.events.reconnect?.(this.kind, error.message);
          continue;
        }
        if (error instanceof WireError) this.events.decodeError?.(this.kind, error.message);
        this.stats.errors++;
        const delay = retryAfterMs(error) ?? this.backoff.next();
        this.events.error?.(this.kind, error, delay);
        await this.sleep(delay);
      }
    }
  }

  /** The resource cannot be read: nothing of it is known (what was is deleted), and that is a synced state. */
  private missing(error: Error): void {
    for (const [key, prev] of this.store) {
      this.store.delete(key);
      this.options.handler.delete(this.kind, key, prev.obj);
    }
    this.resourceVersion = '';
    if (!this.missingSaid) {
      this.missingSaid = true;
      this.events.missing?.(this.kind, error);
    }
    if (!this.hasSynced) {
      this.hasSynced = true;
      this.options.handler.synced(this.kind);
    }
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const cancel = this.clock.after(ms, () => {
        this.sleeping = undefined;
        resolve();
      });
      this.sleeping = { cancel, resolve };
    });
  }

  private query(extra: Record<string, string>): URLSearchParams {
    const q = new URLSearchParams();
    if (this.options.labelSelector) q.set('labelSelector', this.options.labelSelector);
    if (this.options.fieldSelector) q.set('fieldSelector', this.options.fieldSelector);
    for (const [k, v] of Object.entries(extra)) q.set(k, v);
    return q;
  }

  /** Opens a request whose body must keep flowing: no byte for inactivityTimeoutMs aborts it. */
  private async open(query: URLSearchParams): Promise<{ res: IncomingMessage; contentType: string; guard: () => void; done: () => void }> {
    if (this.stopped) throw new StoppedError();
    const abort = new AbortController();
    this.abort = abort;
    let timer: NodeJS.Timeout | undefined;
    let inactive = false;
    const guard = (): void => {
      clearTimeout(timer);
      timer = setTimeout(() => {
        inactive = true;
        abort.abort();
      }, this.options.inactivityTimeoutMs);
    };
    const done = (): void => clearTimeout(timer);
    guard();
    try {
      const r = await this.options.transport.get(KINDS[this.kind].path, query, this.accept, abort.signal);
      const contentType = String(r.headers['content-type'] ?? '');
      if (r.status !== 200) {
        const body = await readAll(r.body, guard);
        done();
        throw new StatusError(statusOf(r.status, contentType, body, r.headers['retry-after']));
      }
      return { res: r.body, contentType, guard, done };
    } catch (e) {
      done();
      if (this.stopped) throw new StoppedError();
      if (inactive) throw new InactivityError(this.options.inactivityTimeoutMs);
      throw e;
    }
  }

  /** client-go's relistResourceVersion: "0" first, the last seen one later, "" once that failed. */
  private relistResourceVersion(): string {
    if (this.resourceVersionUnavailable) return '';
    return this.resourceVersion === '' ? '0' : this.resourceVersion;
  }

  private async list(reason: string): Promise<void> {
    this.stats.lists++;
    const asked = this.relistResourceVersion();
    let result: ListResult;
    try {
      result = await this.pagedList(asked);
    } catch (e) {
      if (!(e instanceof StatusError) || !(isExpired(e.status) || isTooLargeResourceVersion(e.status)) || asked === '') throw e;
      // The server cannot serve that resourceVersion: a consistent read gets the reflector going.
      this.resourceVersionUnavailable = true;
      result = await this.pagedList(this.relistResourceVersion());
    }
    // Only a list at "0" tells whether a watch cache answers: pages from it mean there is none.
    if (asked === '0' && result.paginated) this.paginatedResult = true;
    this.resourceVersionUnavailable = false;
    const seen = result.items;

    // Replace the local copy: deliver what is new or changed, delete what vanished.
    for (const [key, prev] of this.store) {
      if (!seen.has(key)) {
        this.store.delete(key);
        this.options.handler.delete(this.kind, key, prev.obj);
      }
    }
    for (const [key, item] of seen) {
      const prev = this.store.get(key);
      if (prev === undefined || prev.rv !== item.rv || item.rv === '') {
        this.store.set(key, item);
        this.options.handler.upsert(this.kind, item.obj);
      }
    }
    this.resourceVersion = result.resourceVersion;
    if (this.stats.lists > 1) {
      this.stats.relists++;
      this.events.relist?.(this.kind, reason);
    }
    if (!this.hasSynced) {
      this.hasSynced = true;
      this.options.handler.synced(this.kind);
    }
  }

  /**
   * client-go's pager: pages of pageSize, the resourceVersion on the first request only (the
   * server refuses it beside a continue token), and a continuation that expired (410) answered
   * by one full list at the resourceVersion first asked. A relist at a given resourceVersion is
   * not paged unless the first list was: without a limit the watch cache serves it.
   */
  private async pagedList(resourceVersion: string): Promise<ListResult> {
    const unpaged = !this.paginatedResult && resourceVersion !== '' && resourceVersion !== '0';
    const limit = unpaged ? 0 : this.options.pageSize;
    const items = new Map<string, Stored>();
    let continueToken = '';
    let paginated = false;
    for (;;) {
      const extra: Record<string, string> = {};
      if (limit > 0) extra.limit = String(limit);
      if (continueToken !== '') extra.continue = continueToken;
      else if (resourceVersion !== '') extra.resourceVersion = resourceVersion;
      let page: DecodedPage;
      try {
        page = await this.listPage(extra);
      } catch (e) {
        if (continueToken === '' || !(e instanceof StatusError) || !isExpired(e.status)) throw e;
        this.stats.fullListFallbacks++;
        items.clear();
        page = await this.listPage(resourceVersion === '' ? {} : { resourceVersion });
        for (const obj of page.items) items.set(objectKey(obj), { rv: obj.metadata?.resourceVersion ?? '', obj });
        return { items, resourceVersion: page.resourceVersion, paginated };
      }
      for (const obj of page.items) items.set(objectKey(obj), { rv: obj.metadata?.resourceVersion ?? '', obj });
      if (page.continue === '') return { items, resourceVersion: page.resourceVersion, paginated };
      paginated = true;
      continueToken = page.continue;
    }
  }

  private async listPage(extra: Record<string, string>): Promise<DecodedPage> {
    const { res, contentType, guard, done } = await this.open(this.query(extra));
    let body: Buffer;
    try {
      body = await readAll(res, guard);
    } catch (e) {
      if (this.stopped) throw new StoppedError();
      throw this.abort?.signal.aborted ? new InactivityError(this.options.inactivityTimeoutMs) : e;
    } finally {
      done();
    }
    try {
      const page = contentType.startsWith(PROTOBUF) ? decodeProtoList(this.kind, body) : decodeJsonList(this.kind, body.toString('utf8'));
      return { items: page.items as KubeObject[], continue: page.continue, resourceVersion: page.resourceVersion };
    } catch (e) {
      if (e instanceof StatusError) throw e;
      throw new WireError(`${this.kind} list: ${(e as Error).message}`);
    }
  }

  /** Watches from the last resourceVersion until the stream ends; returns why it ended. */
  private async watch(): Promise<string> {
    const timeout = this.options.minWatchTimeoutSeconds * (1 + Math.random());
    const { res, contentType, guard, done } = await this.open(
      this.query({ watch: '1', resourceVersion: this.resourceVersion, allowWatchBookmarks: 'true', timeoutSeconds: String(Math.floor(timeout)) }),
    );
    const protobuf = contentType.startsWith(PROTOBUF);
    const frames = new FrameSplitter();
    const lines = new LineSplitter();
    let gone = false;
    try {
      for await (const chunk of res as AsyncIterable<Buffer>) {
        guard();
        const events: WatchEvent[] = [];
        try {
          if (protobuf) for (const f of frames.push(chunk)) events.push(decodeProtoWatchEvent(this.kind, f));
          else for (const l of lines.push(chunk)) events.push(decodeJsonWatchEvent(this.kind, l));
        } catch (e) {
          throw e instanceof WireError || e instanceof StatusError ? e : new WireError(`${this.kind} watch frame: ${(e as Error).message}`);
        }
        for (const ev of events) {
          if (this.apply(ev) === 'gone') {
            gone = true;
            break;
          }
        }
        if (gone) break;
      }
    } catch (e) {
      if (this.stopped) throw new StoppedError();
      if (this.abort?.signal.aborted) throw new InactivityError(this.options.inactivityTimeoutMs);
      throw e;
    } finally {
      done();
      res.destroy();
    }
    if (gone) return 'gone';
    if (frames.buffered > 0 || lines.buffered > 0) return 'stream ended mid-frame';
    return 'watch ended';
  }

  private apply(ev: WatchEvent): 'gone' | undefined {
    if (ev.type === 'ERROR') {
      if (ev.status.code === 410) return 'gone';
      throw new StatusError(ev.status);
    }
    const rv = ev.object.metadata?.resourceVersion ?? '';
    if (ev.type === 'BOOKMARK') {
      this.stats.bookmarks++;
      if (rv !== '') this.resourceVersion = rv;
      return undefined;
    }
    this.stats.events++;
    const key = objectKey(ev.object);
    if (ev.type === 'DELETED') {
      const prev = this.store.get(key);
      this.store.delete(key);
      this.options.handler.delete(this.kind, key, prev?.obj ?? ev.object);
    } else {
      this.store.set(key, { rv, obj: ev.object });
      this.options.handler.upsert(this.kind, ev.object);
    }
    if (rv !== '') this.resourceVersion = rv;
    return undefined;
  }
}

async function readAll(body: IncomingMessage, onData: () => void): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of body as AsyncIterable<Buffer>) {
    onData();
    chunks.push(chunk);
  }
  return Buffer.concat(chunks);
}

function statusOf(httpStatus: number, contentType: string, body: Buffer, retryAfter: string | string[] | undefined): KubeStatus {
  let status: KubeStatus = { code: httpStatus, reason: '', message: body.toString('utf8').slice(0, 200) };
  try {
    if (contentType.startsWith(PROTOBUF)) {
      const u = decodeEnvelope(body);
      if (u.kind === 'Status') status = decodeProtoStatus(u.raw);
    } else if (contentType.startsWith(JSON_TYPE)) {
      status = jsonStatus(JSON.parse(body.toString('utf8')));
    }
  } catch {
    // Keep the plain-text status.
  }
  if (status.code === 0) status.code = httpStatus;
  const header = Array.isArray(retryAfter) ? retryAfter[0] : retryAfter;
  // The header is what client-go reads (and all that a 429 from priority and fairness carries,
  // with a plain-text body); it wins over details.retryAfterSeconds.
  if (header !== undefined && /^\d+$/.test(header.trim())) status.retryAfterSeconds = Number(header.trim());
  return status;
}
