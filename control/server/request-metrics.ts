// client-go's rest_client_requests_total for the agent's API requests: every list and watch the
// reflectors make, by status code ("<error>" when no answer came), host and method, as kube-proxy
// exports it. A decorator over the transport, so the sources stay unaware of metrics.
import type { Counter } from 'prom-client';
import type { ApiResponse, ApiTransport } from '../sources/kube/transport.ts';

export function countRequests(inner: ApiTransport, requests: Counter<'code' | 'host' | 'method'>): ApiTransport {
  const host = (() => {
    try {
      return new URL(inner.server).host;
    } catch {
      return inner.server;
    }
  })();
  return {
    server: inner.server,
    async get(path: string, query: URLSearchParams, accept: string, signal: AbortSignal): Promise<ApiResponse> {
      try {
        const response = await inner.get(path, query, accept, signal);
        requests.inc({ code: String(response.status), host, method: 'GET' });
        return response;
      } catch (e) {
        requests.inc({ code: '<error>', host, method: 'GET' });
        throw e;
      }
    },
  };
}
