// healthCheckNodePort listeners: one per externalTrafficPolicy=Local LoadBalancer service, so
// the cloud load balancer sends traffic only to nodes with a ready local endpoint. The body and
// headers are kube-proxy's.
import http from 'node:http';
import type { DesiredState } from '../model/types.ts';

interface Target {
  namespace: string;
  name: string;
  localEndpoints: number;
}

/** Pure: healthCheckNodePort -> the service behind it and its ready local endpoints. */
export function healthCheckTargets(state: DesiredState): Map<number, Target> {
  const out = new Map<number, Target>();
  for (const fs of state.families.values()) {
    for (const sp of fs.servicePorts.values()) {
      if (sp.healthCheckNodePort === 0) continue;
      const ready = new Set(sp.localEndpoints.filter((e) => e.ready).map((e) => e.ip));
      const t = out.get(sp.healthCheckNodePort) ?? { namespace: sp.namespace, name: sp.name, localEndpoints: 0 };
      t.localEndpoints = Math.max(t.localEndpoints, ready.size);
      out.set(sp.healthCheckNodePort, t);
    }
  }
  return out;
}

export class ServiceHealthServers {
  private readonly servers = new Map<number, { server: http.Server; target: Target }>();
  private readonly proxyHealthy: () => boolean;
  private readonly bindHost: string;
  private readonly onError: (port: number, error: Error) => void;

  constructor(options: { proxyHealthy: () => boolean; bindHost?: string; onError: (port: number, error: Error) => void }) {
    this.proxyHealthy = options.proxyHealthy;
    this.bindHost = options.bindHost ?? '0.0.0.0';
    this.onError = options.onError;
  }

  /** Opens, updates and closes listeners to match the desired state. */
  update(state: DesiredState): void {
    const targets = healthCheckTargets(state);
    for (const [port, entry] of this.servers) {
      if (!targets.has(port)) {
        entry.server.close();
        this.servers.delete(port);
      }
    }
    for (const [port, target] of targets) {
      const existing = this.servers.get(port);
      if (existing !== undefined) {
        existing.target = target;
        continue;
      }
      const entry = { server: http.createServer((_req, res) => this.answer(entry.target, res)), target };
      entry.server.on('error', (e) => this.onError(port, e));
      entry.server.listen(port, this.bindHost);
      this.servers.set(port, entry);
    }
  }

  private answer(target: Target, res: http.ServerResponse): void {
    const body = {
      service: { namespace: target.namespace, name: target.name },
      localEndpoints: target.localEndpoints,
      serviceProxyHealthy: this.proxyHealthy(),
    };
    res.statusCode = target.localEndpoints > 0 && body.serviceProxyHealthy ? 200 : 503;
    res.setHeader('Content-Type', 'application/json');
    res.setHeader('X-Content-Type-Options', 'nosniff');
    res.setHeader('X-Load-Balancing-Endpoint-Weight', String(target.localEndpoints));
    res.end(JSON.stringify(body));
  }

  get ports(): number[] {
    return [...this.servers.keys()];
  }

  close(): void {
    for (const { server } of this.servers.values()) server.close();
    this.servers.clear();
  }
}
