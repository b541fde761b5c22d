// The agent's HTTP servers, as kube-proxy has them: health on 0.0.0.0:10256 (/healthz,
// /livez), metrics on 127.0.0.1:10249 (/metrics, /proxyMode, /configz, /healthz), and ours:
// /switchyard/frontends (the API's view for `switchyard services`).
import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import { healthz, livez, type HealthAnswer, type HealthSnapshot } from './health.ts';
import type { ProxyMetrics } from './metrics.ts';

export interface ServerOptions {
  /** undefined or "": that server is off (kube-proxy's empty --metrics-bind-address). */
  healthzBindAddress?: string;
  metricsBindAddress?: string;
  /** kube-proxy's --bind-address-hard-fail: any bind failure is fatal. */
  bindAddressHardFail?: boolean;
  /** How long a non-fatal bind failure waits before the next try (kube-proxy: 5 s). */
  retryMs?: number;
  snapshot: () => HealthSnapshot;
  metrics: ProxyMetrics;
  proxyMode: string;
  configz: () => unknown;
  /** What the agent compiled from the API, for `switchyard services` (eBPF mode only). */
  frontends?: () => unknown;
  logger: Logger;
}

/** "host:port" (IPv6 as [::]:port); port 0 picks a free one. */
export function splitAddress(address: string): { host: string; port: number } {
  const m = /^\[([^\]]*)\]:(\d+)$/.exec(address) ?? /^([^:]*):(\d+)$/.exec(address);
  if (m === null) throw new Error(`bind address "${address}" is not host:port`);
  return { host: m[1] === '' ? '0.0.0.0' : m[1]!, port: Number(m[2]) };
}

function send(reply: { code: (c: number) => { header: (k: string, v: string) => { send: (b: unknown) => unknown } } }, a: HealthAnswer): unknown {
  return reply.code(a.code).header('X-Content-Type-Options', 'nosniff').send(a.body);
}

export class ProxyServers {
  readonly health: FastifyInstance;
  readonly metricsServer: FastifyInstance;
  private readonly o: ServerOptions;

  constructor(o: ServerOptions) {
    this.o = o;
    // pino's Logger is fastify's logger; only their generic parameters differ.
    // Probes and scrapes are frequent: no log line per request.
    this.health = Fastify({ loggerInstance: o.logger.child({ server: 'healthz' }) as FastifyBaseLogger, logController: new LogController({ disableRequestLogging: true }) });
    this.metricsServer = Fastify({ loggerInstance: o.logger.child({ server: 'metrics' }) as FastifyBaseLogger, logController: new LogController({ disableRequestLogging: true }) });
    const hz = (reply: Parameters<typeof send>[0]): unknown => {
      const a = healthz(o.snapshot());
      o.metrics.healthzTotal.inc({ code: String(a.code) });
      return send(reply, a);
    };
    this.health.get('/healthz', (_req, reply) => hz(reply));
    this.health.get('/livez', (_req, reply) => {
      const a = livez(o.snapshot());
      o.metrics.livezTotal.inc({ code: String(a.code) });
      return send(reply, a);
    });
    this.metricsServer.get('/metrics', async (_req, reply) => reply.header('Content-Type', o.metrics.registry.contentType).send(await o.metrics.text()));
    this.metricsServer.get('/proxyMode', (_req, reply) => reply.type('text/plain').send(o.proxyMode));
    this.metricsServer.get('/configz', (_req, reply) => reply.send(o.configz()));
    this.metricsServer.get('/healthz', (_req, reply) => hz(reply));
    // On the metrics address (loopback by default), like /configz: service addresses and pod IPs.
    this.metricsServer.get('/switchyard/frontends', (_req, reply) =>
      o.frontends === undefined ? reply.code(404).send({ error: `the ${o.proxyMode} mode has no datapath frontends` }) : reply.send(o.frontends()),
    );
  }

  private readonly retries = new Set<NodeJS.Timeout>();

  /**
   * Binds one server. A port another process holds (kube-proxy still running, the usual case in a
   * migration) is fatal: two proxies on one node would both answer the probes. Any other failure
   * is fatal with --bind-address-hard-fail, else logged and retried, as kube-proxy does.
   */
  private async bind(server: FastifyInstance, what: string, address: string): Promise<string> {
    const { host, port } = splitAddress(address);
    try {
      await server.listen({ host, port });
      // Where it listens, from the socket (fastify names interface addresses, none when only lo is down).
      const bound = server.server.address();
      const at = typeof bound === 'object' && bound !== null ? bound : { address: host, port };
      return `http://${at.address.includes(':') ? `[${at.address}]` : at.address}:${at.port}`;
    } catch (e) {
      const err = e as NodeJS.ErrnoException;
      const reason = err.code === 'EADDRINUSE' ? 'address already in use (is kube-proxy or another agent still running?)' : err.code === 'EADDRNOTAVAIL' ? 'no such local address' : err.code === 'EACCES' ? 'permission denied' : err.message;
      if (err.code === 'EADDRINUSE' || this.o.bindAddressHardFail === true) throw new Error(`serving ${what} on ${address}: ${reason}`);
      this.o.logger.error({ address, err }, `serving ${what} on ${address} failed: ${reason}; retrying`);
      const retry = setTimeout(() => {
        this.retries.delete(retry);
        void this.bind(server, what, address).catch((again: Error) => this.o.logger.error({ address, err: again }, again.message));
      }, this.o.retryMs ?? 5000);
      this.retries.add(retry);
      return '';
    }
  }

  /** Starts the servers configured; returns where they listen ("" for off or not yet bound). */
  async listen(): Promise<{ healthz: string; metrics: string }> {
    const h = this.o.healthzBindAddress;
    const m = this.o.metricsBindAddress;
    const healthzAt = h === undefined || h === '' ? '' : await this.bind(this.health, 'health checks', h);
    const metricsAt = m === undefined || m === '' ? '' : await this.bind(this.metricsServer, 'metrics', m);
    return { healthz: healthzAt, metrics: metricsAt };
  }

  async close(): Promise<void> {
    for (const t of this.retries) clearTimeout(t);
    this.retries.clear();
    await this.health.close();
    await this.metricsServer.close();
  }
}
