// healthCheckNodePort listeners: one per externalTrafficPolicy=Local LoadBalancer service and IP
// family, so the cloud load balancer sends traffic only to nodes with a ready local endpoint. As
// kube-proxy (one health server per family's proxier): the IPv4 listener binds 0.0.0.0 and answers
// with the service's IPv4 endpoints, the IPv6 one binds :: (IPV6_V6ONLY) with the IPv6 endpoints.
// The count is kube-proxy's LocalReadyEndpoints: ready local endpoints summed over the service's
// ports. A listen that fails (port taken, no IPv6) is reported and retried until it succeeds or
// the service goes. The body and headers are kube-proxy's.
import http from 'node:http';
import type { Family } from '../model/ip.ts';
import type { DesiredState } from '../model/types.ts';

export interface HealthTarget {
  family: Family;
  port: number;
  namespace: string;
  name: string;
  localEndpoints: number;
}

/** Pure: one target per (family, healthCheckNodePort), keyed "4/32000". */
export function healthCheckTargets(state: DesiredState): Map<string, HealthTarget> {
  const out = new Map<string, HealthTarget>();
  for (const [family, fs] of state.families) {
    for (const sp of fs.servicePorts.values()) {
      if (sp.healthCheckNodePort === 0) continue;
      const key = `${family}/${sp.healthCheckNodePort}`;
      const t = out.get(key) ?? { family, port: sp.healthCheckNodePort, namespace: sp.namespace, name: sp.name, localEndpoints: 0 };
      t.localEndpoints += sp.localEndpoints.filter((e) => e.ready).length;
      out.set(key, t);
    }
  }
  return out;
}

export interface ListenFailure {
  family: Family;
  port: number;
  error: Error;
  /** Failed attempts in a row, this one included. */
  attempts: number;
  /** When the next attempt is due, in ms from now. */
  retryInMs: number;
}

interface Listener {
  target: HealthTarget;
  server: http.Server;
  listening: boolean;
  attempts: number;
  retry: NodeJS.Timeout | undefined;
}

export interface ServiceHealthOptions {
  proxyHealthy: () => boolean;
  /** Called on every failed listen; the listener is retried after `retryInMs`. */
  onError: (failure: ListenFailure) => void;
  /** Called when a listener that had failed listens at last. */
  onRecovered?: (family: Family, port: number) => void;
  /** Bind addresses per family; default 0.0.0.0 and ::. */
  bindHosts?: Partial<Record<Family, string>>;
  /** First retry delay, doubling up to maxRetryMs. */
  retryMs?: number;
  maxRetryMs?: number;
}

export class ServiceHealthServers {
  private readonly listeners = new Map<string, Listener>();
  private readonly o: ServiceHealthOptions;
  private readonly hosts: Record<Family, string>;

  constructor(options: ServiceHealthOptions) {
    this.o = options;
    this.hosts = { 4: options.bindHosts?.[4] ?? '0.0.0.0', 6: options.bindHosts?.[6] ?? '::' };
  }

  /** Opens, updates and closes listeners to match the desired state. */
  update(state: DesiredState): void {
    const targets = healthCheckTargets(state);
    for (const [key, l] of this.listeners) {
      if (!targets.has(key)) {
        this.drop(l);
        this.listeners.delete(key);
      }
    }
    for (const [key, target] of targets) {
      const existing = this.listeners.get(key);
      if (existing !== undefined) {
        existing.target = target;
        continue;
      }
      const l: Listener = { target, server: http.createServer((_req, res) => this.answer(l.target, res)), listening: false, attempts: 0, retry: undefined };
      l.server.on('error', (e) => this.failed(key, l, e));
      l.server.on('listening', () => {
        if (l.attempts > 0) this.o.onRecovered?.(l.target.family, l.target.port);
        l.listening = true;
        l.attempts = 0;
      });
      this.listeners.set(key, l);
      this.listen(l);
    }
  }

  private listen(l: Listener): void {
    l.retry = undefined;
    l.server.listen({ port: l.target.port, host: this.hosts[l.target.family], ipv6Only: l.target.family === 6 });
  }

  private failed(key: string, l: Listener, error: Error): void {
    if (this.listeners.get(key) !== l) return; // dropped meanwhile
    l.listening = false;
    l.attempts++;
    const base = this.o.retryMs ?? 1000;
    const retryInMs = Math.min(this.o.maxRetryMs ?? 30_000, base * 2 ** (l.attempts - 1));
    this.o.onError({ family: l.target.family, port: l.target.port, error, attempts: l.attempts, retryInMs });
    l.retry = setTimeout(() => {
      if (this.listeners.get(key) === l) this.listen(l);
    }, retryInMs);
    l.retry.unref();
  }

  private drop(l: Listener): void {
    clearTimeout(l.retry);
    l.server.close();
  }

  private answer(target: HealthTarget, res: http.ServerResponse): void {
    const body = {
      service: { namespace: target.namespace, name: target.name },
      localEndpoints: target.localEndpoints,
      serviceProxyHealthy: this.o.proxyHealthy(),
    };
    res.statusCode = target.localEndpoints > 0 && body.serviceProxyHealthy ? 200 : 503;
    res.setHeader('Content-Type', 'application/json');
    res.setHeader('X-Content-Type-Options', 'nosniff');
    res.setHeader('X-Load-Balancing-Endpoint-Weight', String(target.localEndpoints));
    res.end(JSON.stringify(body));
  }

  /** Listeners by state, as "4/32000": for logs and tests. */
  status(): { listening: string[]; failing: string[] } {
    const listening: string[] = [];
    const failing: string[] = [];
    for (const [key, l] of this.listeners) (l.listening ? listening : failing).push(key);
    return { listening, failing };
  }

  close(): void {
    for (const l of this.listeners.values()) this.drop(l);
    this.listeners.clear();
  }
}
