// The health and metrics servers: every endpoint's status codes and bodies, the 503 cases
// included, over real HTTP.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import pino from 'pino';
import type { HealthSnapshot } from '../../control/server/health.ts';
import { ProxyMetrics } from '../../control/server/metrics.ts';
import { ProxyServers } from '../../control/server/servers.ts';

describe('health and metrics servers', () => {
  const now = Date.parse('2026-11-22T12:00:00Z');
  let snapshot: HealthSnapshot;
  let servers: ProxyServers;
  let at: { healthz: string; metrics: string };
  const metrics = new ProxyMetrics(() => new Map([['invalid-ip', 2]]), () => undefined);

  before(async () => {
    servers = new ProxyServers({
      healthzBindAddress: '127.0.0.1:0',
      metricsBindAddress: '127.0.0.1:0',
      snapshot: () => snapshot,
      metrics,
      proxyMode: 'ebpf',
      configz: () => ({ proxyMode: 'ebpf' }),
      logger: pino({ level: 'silent' }),
    });
    at = await servers.listen();
  });
  after(() => servers?.close());

  const get = async (base: string, path: string): Promise<{ status: number; json: Record<string, unknown> | undefined; text: string; headers: Headers }> => {
    const r = await fetch(`${base}${path}`);
    const text = await r.text();
    let json: Record<string, unknown> | undefined;
    try {
      json = JSON.parse(text) as Record<string, unknown>;
    } catch {
      json = undefined;
    }
    return { status: r.status, json, text, headers: r.headers };
  };
  const base: HealthSnapshot = { now, lastUpdated: now - 5000, lastQueued: undefined, healthTimeoutMs: 60_000, nodeDeleting: false, nodeToBeDeleted: false, families: [4, 6] };

  it('healthy: 200 with kube-proxy\'s body', async () => {
    snapshot = base;
    const r = await get(at.healthz, '/healthz');
    assert.equal(r.status, 200);
    assert.equal(r.headers.get('x-content-type-options'), 'nosniff');
    assert.deepEqual(r.json, {
      lastUpdated: '2026-11-22T11:59:55.000Z',
      currentTime: '2026-11-22T12:00:00.000Z',
      nodeEligible: true,
      healthy: true,
      status: { IPv4: { lastUpdated: '2026-11-22T11:59:55.000Z', healthy: true }, IPv6: { lastUpdated: '2026-11-22T11:59:55.000Z', healthy: true } },
    });
    const l = await get(at.healthz, '/livez');
    assert.equal(l.status, 200);
    assert.equal(l.json?.nodeEligible, undefined, 'livez does not judge the node');
  });

  it('a change queued for less than 2 x syncPeriod is still healthy; longer is 503 on both', async () => {
    snapshot = { ...base, lastQueued: now - 59_000 };
    assert.equal((await get(at.healthz, '/healthz')).status, 200);
    snapshot = { ...base, lastQueued: now - 61_000 };
    const h = await get(at.healthz, '/healthz');
    assert.equal(h.status, 503);
    assert.equal(h.json?.healthy, false);
    assert.equal((await get(at.healthz, '/livez')).status, 503);
    assert.equal((await get(at.metrics, '/healthz')).status, 503, 'the metrics server answers /healthz too');
  });

  it('a node being deleted or tainted ToBeDeletedByClusterAutoscaler: healthz 503, livez 200', async () => {
    for (const flag of ['nodeDeleting', 'nodeToBeDeleted'] as const) {
      snapshot = { ...base, [flag]: true };
      const h = await get(at.healthz, '/healthz');
      assert.equal(h.status, 503, flag);
      assert.equal(h.json?.nodeEligible, false);
      assert.equal(h.json?.healthy, true);
      assert.equal((await get(at.healthz, '/livez')).status, 200, flag);
    }
  });

  it('/metrics carries kube-proxy\'s names and counts the health answers; /proxyMode and /configz', async () => {
    const m = await get(at.metrics, '/metrics');
    assert.equal(m.status, 200);
    for (const name of [
      'kubeproxy_sync_proxy_rules_duration_seconds_bucket{le="0.001"}',
      'kubeproxy_sync_proxy_rules_last_timestamp_seconds',
      'kubeproxy_sync_proxy_rules_last_queued_timestamp_seconds',
      'kubeproxy_sync_proxy_rules_service_changes_pending',
      'kubeproxy_sync_proxy_rules_endpoint_changes_total',
      'kubeproxy_network_programming_duration_seconds_bucket{le="0.25"}',
      'kubeproxy_proxy_healthz_total{code="503"}',
      'kubeproxy_proxy_livez_total{code="200"}',
      'switchyard_rejected_objects_total{reason="invalid-ip"} 2',
      'process_resident_memory_bytes',
    ]) {
      assert.ok(m.text.includes(name), `missing ${name}`);
    }
    assert.match(m.text, /# TYPE kubeproxy_sync_proxy_rules_duration_seconds histogram/);
    assert.equal((await get(at.metrics, '/proxyMode')).text, 'ebpf');
    assert.deepEqual((await get(at.metrics, '/configz')).json, { proxyMode: 'ebpf' });
  });
});
