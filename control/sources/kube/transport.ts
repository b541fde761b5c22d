// The HTTP side of talking to the API server: client-node's KubeConfig supplies TLS and auth
// (in-cluster service account with token rotation, kubeconfig files, --master), Node's http(s)
// carries the streaming requests. client-node's own informer is not used: it has no watch
// bookmarks, stops on non-410 errors and can stall silently; reflector.ts replaces it.
import http from 'node:http';
import https from 'node:https';
import type { IncomingMessage } from 'node:http';
import type { KubeConfig } from '@kubernetes/client-node';
import { kubeConfigClass } from './kubeconfig-class.ts';

export interface ApiResponse {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: IncomingMessage;
}

/** One GET against the API server; the caller consumes (or destroys) the body. */
export interface ApiTransport {
  readonly server: string;
  get(path: string, query: URLSearchParams, accept: string, signal: AbortSignal): Promise<ApiResponse>;
}

export interface KubeConfigOptions {
  /** --kubeconfig; else KUBECONFIG, ~/.kube/config, or the in-cluster service account. */
  kubeconfig?: string;
  /** --master: overrides the server address of the kubeconfig. */
  master?: string;
}

/** Loads a KubeConfig the way kube-proxy does with --kubeconfig / --master. */
export function loadKubeConfig(options: KubeConfigOptions): KubeConfig {
  const kc = new (kubeConfigClass())();
  if (options.kubeconfig !== undefined && options.kubeconfig !== '') {
    kc.loadFromFile(options.kubeconfig);
  } else if (options.master !== undefined && options.master !== '' && process.env.KUBERNETES_SERVICE_HOST === undefined && process.env.KUBECONFIG === undefined) {
    // client-node refuses plain HTTP unless TLS verification is off; there is no TLS to verify.
    kc.loadFromClusterAndUser({ name: 'master', server: options.master, skipTLSVerify: options.master.startsWith('http:') }, { name: 'anonymous' });
  } else {
    kc.loadFromDefault();
  }
  if (options.master !== undefined && options.master !== '') {
    const current = kc.getCurrentCluster();
    if (current !== null) {
      const master = options.master;
      const clusters = kc.clusters.map((c) => (c.name === current.name ? { ...c, server: master, skipTLSVerify: c.skipTLSVerify || master.startsWith('http:') } : c));
      kc.loadFromOptions({ clusters, users: kc.users, contexts: kc.contexts, currentContext: kc.currentContext });
    }
  }
  return kc;
}

/** client-go's token bucket: `qps` requests per second on average, bursts of up to `burst`. */
export class RateLimiter {
  private tokens: number;
  private last = Date.now();
  readonly qps: number;
  readonly burst: number;

  constructor(qps: number, burst: number) {
    this.qps = qps;
    this.burst = Math.max(1, burst);
    this.tokens = this.burst;
  }

  /** Resolves when a request may go out. */
  async take(): Promise<void> {
    if (this.qps <= 0) return;
    for (;;) {
      const now = Date.now();
      this.tokens = Math.min(this.burst, this.tokens + ((now - this.last) / 1000) * this.qps);
      this.last = now;
      if (this.tokens >= 1) {
        this.tokens -= 1;
        return;
      }
      await new Promise((r) => setTimeout(r, ((1 - this.tokens) / this.qps) * 1000));
    }
  }
}

export class KubeConfigTransport implements ApiTransport {
  readonly server: string;
  private readonly kc: KubeConfig;
  private readonly limiter: RateLimiter | undefined;

  /** `limit`: kube-proxy's --kube-api-qps / --kube-api-burst (client-go's defaults are 5 and 10). */
  constructor(kc: KubeConfig, limit?: { qps: number; burst: number }) {
    const cluster = kc.getCurrentCluster();
    if (cluster === null) throw new Error('kubeconfig has no current cluster');
    this.kc = kc;
    this.limiter = limit === undefined ? undefined : new RateLimiter(limit.qps, limit.burst);
    this.server = cluster.server.replace(/\/+$/, '');
  }

  async get(path: string, query: URLSearchParams, accept: string, signal: AbortSignal): Promise<ApiResponse> {
    await this.limiter?.take();
    const url = new URL(`${this.server}${path}?${query.toString()}`);
    const options: https.RequestOptions = { method: 'GET', headers: { Accept: accept, 'User-Agent': 'switchyard' }, signal };
    // Applied per request so rotated tokens and refreshed credentials are picked up; it also
    // sets the (cached) agent carrying the cluster's CA and client certificate.
    await this.kc.applyToHTTPSOptions(options);
    const lib = url.protocol === 'https:' ? https : http;
    return new Promise((resolve, reject) => {
      const req = lib.request(url, options, (res) => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: res }));
      req.on('error', reject);
      req.end();
    });
  }

  close(): void {
    // The agents belong to client-node's KubeConfig cache; idle sockets close on their own.
  }
}
