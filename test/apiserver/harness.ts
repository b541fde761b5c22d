// Helpers for tests that run reflectors against the test API server.
import { KubeConfig } from '@kubernetes/client-node';
import type { KindName, KubeObject } from '../../control/sources/kube/kinds.ts';
import { objectKey } from '../../control/sources/kube/kinds.ts';
import type { ReflectorClock, ReflectorHandler } from '../../control/sources/kube/reflector.ts';
import { KubeConfigTransport } from '../../control/sources/kube/transport.ts';
import type { TestApiServer } from './server.ts';

/** A transport through client-node's KubeConfig, pointed at the test server. */
export function transportFor(server: TestApiServer, user: { token?: string } = {}, caData?: string): KubeConfigTransport {
  const kc = new KubeConfig();
  kc.loadFromOptions({
    clusters: [{ name: 'test', server: server.url, caData, skipTLSVerify: server.url.startsWith('http:') }],
    users: [{ name: 'test', token: user.token }],
    contexts: [{ name: 'test', cluster: 'test', user: 'test' }],
    currentContext: 'test',
  });
  return new KubeConfigTransport(kc);
}

/** Records what a reflector delivers: the local view of each kind. */
export class Mirror implements ReflectorHandler {
  readonly objects = new Map<KindName, Map<string, KubeObject>>();
  readonly syncedKinds = new Set<KindName>();
  upserts = 0;
  deletes = 0;

  of(kind: KindName): Map<string, KubeObject> {
    let m = this.objects.get(kind);
    if (m === undefined) this.objects.set(kind, (m = new Map()));
    return m;
  }

  upsert(kind: KindName, obj: KubeObject): void {
    this.upserts++;
    this.of(kind).set(objectKey(obj), obj);
  }

  delete(kind: KindName, key: string): void {
    this.deletes++;
    this.of(kind).delete(key);
  }

  synced(kind: KindName): void {
    this.syncedKinds.add(kind);
  }

  /** "key@resourceVersion" of everything held, sorted: comparable with the server's view. */
  fingerprint(kind: KindName): string[] {
    return [...this.of(kind).values()].map((o) => `${objectKey(o)}@${o.metadata?.resourceVersion}`).sort();
  }
}

export function serverFingerprint(server: TestApiServer, kind: KindName, filter: (o: { metadata?: { labels?: Record<string, string> } }) => boolean = () => true): string[] {
  return server
    .list(kind)
    .filter(filter)
    .map((o) => `${objectKey(o)}@${o.metadata?.resourceVersion}`)
    .sort();
}

// The bound is generous: a loaded 2-core machine may take seconds; only a condition that never
// comes should fail.
export async function waitFor(what: string, condition: () => boolean, timeoutMs = 30_000): Promise<number> {
  const start = Date.now();
  while (!condition()) {
    if (Date.now() - start > timeoutMs) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
  return Date.now() - start;
}

/**
 * A clock for the reflector's waits that moves only when the test says: a wait of Retry-After or
 * backoff is seen with its exact length, and nothing it holds back can happen before advance().
 */
export class FakeClock implements ReflectorClock {
  private t = 0;
  private readonly waits: Array<{ ms: number; due: number; fn: () => void; done: boolean }> = [];

  now(): number {
    return this.t;
  }

  after(ms: number, fn: () => void): () => void {
    const w = { ms, due: this.t + ms, fn, done: false };
    this.waits.push(w);
    return () => {
      w.done = true;
    };
  }

  /** The lengths of the waits not yet over, oldest first. */
  get pending(): number[] {
    return this.waits.filter((w) => !w.done).map((w) => w.ms);
  }

  advance(ms: number): void {
    this.t += ms;
    for (const w of this.waits) {
      if (!w.done && w.due <= this.t) {
        w.done = true;
        w.fn();
      }
    }
  }
}
