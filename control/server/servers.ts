// The agent's HTTP servers, as kube-proxy has them: health on 0.0.0.0:10256 (/healthz,
// /livez), metrics on 127.0.0.1:10249 (/metrics, /proxyMode, /configz, /healthz), and ours:
// /switchyard/frontends (the API's view for `switchyard services`).
import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import { healthz, livez, type HealthAnswer, type HealthSnapshot } from './health.ts';
import type { ProxyMetrics } from './metrics.ts';

export interface ServerOptions {
  healthzBindAddress: string;
  metricsBindAddress: string;
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
    this.metricsServer.get('/metrics', async (_req, reply) => reply.header('Content-Type', o.metrics.registry.contentType).send(await o.metrics.registry.metrics()));
    this.metricsServer.get('/proxyMode', (_req, reply) => reply.type('text/plain').send(o.proxyMode));
    this.metricsServer.get('/configz', (_req, reply) => reply.send(o.configz()));
    this.metricsServer.get('/healthz', (_req, reply) => hz(reply));
    // On the metrics address (loopback by default), like /configz: service addresses and pod IPs.
    this.metricsServer.get('/switchyard/frontends', (_req, reply) =>
      o.frontends === undefined ? reply.code(404).send({ error: `the ${o.proxyMode} mode has no datapath frontends` }) : reply.send(o.frontends()),
    );
  }

  /** Starts both; returns the addresses they listen on. */
  async listen(): Promise<{ healthz: string; metrics: string }> {
    const h = splitAddress(this.o.healthzBindAddress);
    const m = splitAddress(this.o.metricsBindAddress);
    const healthzAt = await this.health.listen({ host: h.host, port: h.port });
    const metricsAt = await this.metricsServer.listen({ host: m.host, port: m.port });
    return { healthz: healthzAt, metrics: metricsAt };
  }

  async close(): Promise<void> {
    await this.health.close();
    await this.metricsServer.close();
  }
}
