// The Kubernetes source: four reflectors (Services and EndpointSlices with kube-proxy's label
// selector, this proxy's own Node by name, and the cluster's ServiceCIDRs, which an API server
// before 1.33 does not have) delivering into one sink.
import type { ObjectSink } from '../sink.ts';
import type { BackoffOptions } from './backoff.ts';
import { PROXY_LABEL_SELECTOR, type KindName } from './kinds.ts';
import { Reflector, type ReflectorEvents } from './reflector.ts';
import type { ApiTransport } from './transport.ts';

export interface KubeSourceOptions {
  transport: ApiTransport;
  nodeName: string;
  sink: ObjectSink;
  contentType?: 'protobuf' | 'json';
  events?: ReflectorEvents;
  inactivityTimeoutMs?: number;
  backoff?: BackoffOptions;
  pageSize?: number;
  /** How often a kind the server does not have (ServiceCIDR on an older one) is asked for again. */
  missingRetryMs?: number;
}

export class KubeSource {
  readonly reflectors: Reflector[];

  constructor(o: KubeSourceOptions) {
    const handler = {
      upsert: o.sink.upsert.bind(o.sink),
      delete: (kind: KindName, key: string) => o.sink.delete(kind, key),
      synced: o.sink.synced.bind(o.sink),
    };
    const events: ReflectorEvents = {
      ...o.events,
      decodeError: (kind, detail) => {
        o.sink.decodeError(kind, 'watch stream', detail);
        o.events?.decodeError?.(kind, detail);
      },
    };
    const common = { transport: o.transport, handler, events, contentType: o.contentType, inactivityTimeoutMs: o.inactivityTimeoutMs, backoff: o.backoff, pageSize: o.pageSize };
    const defined = <T extends object>(x: T): T => Object.fromEntries(Object.entries(x).filter(([, v]) => v !== undefined)) as T;
    this.reflectors = [
      new Reflector(defined({ ...common, kind: 'Service' as const, labelSelector: PROXY_LABEL_SELECTOR })),
      new Reflector(defined({ ...common, kind: 'EndpointSlice' as const, labelSelector: PROXY_LABEL_SELECTOR })),
      new Reflector(defined({ ...common, kind: 'Node' as const, fieldSelector: `metadata.name=${o.nodeName}` })),
      new Reflector(defined({ ...common, kind: 'ServiceCIDR' as const, optional: true, missingRetryMs: o.missingRetryMs })),
    ];
  }

  start(): void {
    for (const r of this.reflectors) r.start();
  }

  get synced(): boolean {
    return this.reflectors.every((r) => r.synced);
  }

  async stop(): Promise<void> {
    await Promise.all(this.reflectors.map((r) => r.stop()));
  }
}
