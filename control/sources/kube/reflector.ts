// A reflector: keeps a local copy of one kind in step with the API server. Paginated list,
// watch from the list's resourceVersion with bookmarks, relist on 410 Gone with a diff that
// deletes what vanished, exponential backoff with jitter on errors (honouring Retry-After on
// 429), an inactivity timeout that replaces a silent (half-open) stream, and a clean stop.
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
}

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

export class Reflector {
  readonly kind: KindName;
  private readonly options: Required<Omit<ReflectorOptions, 'labelSelector' | 'fieldSelector' | 'events'>> &
    Pick<ReflectorOptions, 'labelSelector' | 'fieldSelector'>;
  private readonly events: ReflectorEvents;
  private readonly store = new Map<string, Stored>();
  private readonly backoff: Backoff;
  private resourceVersion = '';
  private hasSynced = false;
  private stopped = false;
  private abort: AbortController | undefined;
  private sleeping: { timer: NodeJS.Timeout; resolve: () => void } | undefined;
  private loop: Promise<void> | undefined;
  readonly stats = { lists: 0, relists: 0, reconnects: 0, errors: 0, events: 0, bookmarks: 0 };

  constructor(options: ReflectorOptions) {
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
    this.backoff = new Backoff(this.options.backoff);
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
      clearTimeout(this.sleeping.timer);
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
        }
        const started = Date.now();
        const eventsBefore = this.stats.events + this.stats.bookmarks;
        const outcome = await this.watch();
        if (outcome === 'gone') {
          needList = true;
          listReason = 'watch resourceVersion expired (410)';
          continue;
        }
        this.events.reconnect?.(this.kind, outcome);
        this.stats.reconnects++;
        // A stream that closes at once without delivering anything must not turn into a busy loop.
        if (Date.now() - started < 1000 && this.stats.events + this.stats.bookmarks === eventsBefore) {
          await this.sleep(this.backoff.next());
        }
      } catch (e) {
        if (this.stopped || e instanceof StoppedError) break;
        const error = e as Error;
        if (error instanceof StatusError && error.status.code === 410) {
          needList = true;
          listReason = 'list continuation expired (410)';
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
        const retryAfter = error instanceof StatusError && error.status.retryAfterSeconds !== undefined ? error.status.retryAfterSeconds * 1000 : 0;
        const delay = this.backoff.next(retryAfter);
        this.events.error?.(this.kind, error, delay);
        await this.sleep(delay);
      }
    }
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.sleeping = undefined;
        resolve();
      }, ms);
      this.sleeping = { timer, resolve };
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

  private async list(reason: string): Promise<void> {
    const seen = new Map<string, Stored>();
    let continueToken = '';
    let rv = '';
    this.stats.lists++;
    do {
      const extra: Record<string, string> = { limit: String(this.options.pageSize) };
      if (continueToken !== '') extra.continue = continueToken;
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
      let page;
      try {
        page = contentType.startsWith(PROTOBUF) ? decodeProtoList(this.kind, body) : decodeJsonList(this.kind, body.toString('utf8'));
      } catch (e) {
        if (e instanceof StatusError) throw e;
        throw new WireError(`${this.kind} list: ${(e as Error).message}`);
      }
      for (const item of page.items) {
        const obj = item as KubeObject;
        seen.set(objectKey(obj), { rv: obj.metadata?.resourceVersion ?? '', obj });
      }
      continueToken = page.continue;
      rv = page.resourceVersion;
    } while (continueToken !== '');

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
    this.resourceVersion = rv;
    if (this.stats.lists > 1) {
      this.stats.relists++;
      this.events.relist?.(this.kind, reason);
    }
    if (!this.hasSynced) {
      this.hasSynced = true;
      this.options.handler.synced(this.kind);
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
    // A healthy stream: the next failure starts its backoff from the beginning.
    this.backoff.reset();
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
  if (status.retryAfterSeconds === undefined && header !== undefined && /^\d+$/.test(header)) status.retryAfterSeconds = Number(header);
  return status;
}
