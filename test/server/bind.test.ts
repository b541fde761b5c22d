// Binding the agent's servers as kube-proxy does: a busy port is fatal (another proxy still
// runs); any other failure is fatal with --bind-address-hard-fail, else logged and retried until
// it binds. And the counters that must be counters.
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:net';
import { describe, it } from 'node:test';
import pino from 'pino';
import { ProxyMetrics } from '../../control/server/metrics.ts';
import { ProxyServers, type ServerOptions } from '../../control/server/servers.ts';
import { countRequests } from '../../control/server/request-metrics.ts';
import type { ApiResponse } from '../../control/sources/kube/transport.ts';
import { until } from '../wait.ts';

function servers(o: Partial<ServerOptions>, errors: string[] = []): ProxyServers {
  const logger = pino({ level: 'error' }, { write: (line: string) => void errors.push((JSON.parse(line) as { msg: string }).msg) });
  return new ProxyServers({ snapshot: () => ({ now: 0, healthTimeoutMs: 1, nodeDeleting: false, nodeToBeDeleted: false, families: [4] }) as never, metrics: new ProxyMetrics(() => new Map(), () => undefined), proxyMode: 'ebpf', configz: () => ({}), logger, ...o });
}

async function listening(): Promise<{ server: Server; port: number }> {
  const server = createServer();
  await new Promise<void>((r) => server.listen({ host: '127.0.0.1', port: 0 }, r));
  return { server, port: (server.address() as { port: number }).port };
}

describe('server binding', () => {
  it('a port in use is fatal, naming the address', async () => {
    const busy = await listening();
    const s = servers({ healthzBindAddress: `127.0.0.1:${busy.port}` });
    try {
      await assert.rejects(s.listen(), { message: `serving health checks on 127.0.0.1:${busy.port}: address already in use (is kube-proxy or another agent still running?)` });
    } finally {
      await s.close();
      busy.server.close();
    }
  });

  it('without --bind-address-hard-fail another failure is logged and retried until the port binds', async () => {
    const busy = await listening();
    const errors: string[] = [];
    const s = servers({ metricsBindAddress: `127.0.0.1:${busy.port}`, retryMs: 20 }, errors);
    try {
      // The first bind fails with EADDRNOTAVAIL (injected: as root, a free local port cannot be
      // made to refuse otherwise, and a busy one is fatal by design); the retry then binds it.
      const inner = s.metricsServer;
      const original = inner.listen.bind(inner);
      let first = true;
      (inner as unknown as { listen: (o: unknown) => Promise<string> }).listen = (o: unknown) => {
        if (first) {
          first = false;
          return Promise.reject(Object.assign(new Error('listen EADDRNOTAVAIL'), { code: 'EADDRNOTAVAIL' }));
        }
        return original(o as never);
      };
      busy.server.close();
      const at = await s.listen();
      assert.equal(at.metrics, '', 'not bound yet');
      assert.match(errors[0]!, /^serving metrics on 127\.0\.0\.1:\d+ failed: no such local address; retrying$/);
      await until('the retry to bind', async () => (await fetch(`http://127.0.0.1:${busy.port}/proxyMode`).then((r) => r.text()).catch(() => '')) === 'ebpf');
    } finally {
      await s.close();
    }
  });

  it('with --bind-address-hard-fail any failure is fatal', async () => {
    const s = servers({ healthzBindAddress: '192.0.2.1:10256', bindAddressHardFail: true });
    try {
      await assert.rejects(s.listen(), { message: 'serving health checks on 192.0.2.1:10256: no such local address' });
    } finally {
      await s.close();
    }
  });

  it('switchyard_rejected_objects_total is a counter; API connectivity and last sync per kind are exported', async () => {
    const counts = new Map([['invalid-ip', 2]]);
    const m = new ProxyMetrics(() => counts, () => undefined);
    m.apiserverUp.set(0);
    m.watchEvents.inc({ kind: 'Service', event: 'error' });
    m.lastSourceSync.set({ kind: 'Service' }, 1700000000);
    let text = await m.registry.metrics();
    assert.match(text, /^# TYPE switchyard_rejected_objects_total counter$/m);
    assert.match(text, /^switchyard_rejected_objects_total\{reason="invalid-ip"\} 2$/m);
    assert.match(text, /^switchyard_apiserver_up 0$/m);
    assert.match(text, /^switchyard_watch_events_total\{kind="Service",event="error"\} 1$/m);
    assert.match(text, /^switchyard_source_last_sync_timestamp_seconds\{kind="Service"\} 1700000000$/m);
    counts.set('invalid-ip', 5);
    text = await m.registry.metrics();
    assert.match(text, /^switchyard_rejected_objects_total\{reason="invalid-ip"\} 5$/m);
  });

  it('rest_client_requests_total counts every API request by code, and "<error>" when none came back', async () => {
    const m = new ProxyMetrics(() => new Map(), () => undefined);
    let fail = false;
    const transport = countRequests(
      {
        server: 'https://10.0.0.1:6443',
        get: async () => {
          if (fail) throw new Error('connect ECONNREFUSED');
          return { status: 200, headers: {}, body: undefined } as unknown as ApiResponse;
        },
      },
      m.restClientRequests,
    );
    const signal = new AbortController().signal;
    await transport.get('/api/v1/services', new URLSearchParams(), 'application/json', signal);
    await transport.get('/api/v1/services', new URLSearchParams(), 'application/json', signal);
    fail = true;
    await assert.rejects(transport.get('/api/v1/services', new URLSearchParams(), 'application/json', signal), /ECONNREFUSED/);
    const text = await m.registry.metrics();
    assert.match(text, /^# TYPE rest_client_requests_total counter$/m);
    assert.match(text, /^rest_client_requests_total\{code="200",host="10\.0\.0\.1:6443",method="GET"\} 2$/m);
    assert.match(text, /^rest_client_requests_total\{code="<error>",host="10\.0\.0\.1:6443",method="GET"\} 1$/m);
  });
});
