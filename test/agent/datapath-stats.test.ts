// A scrape of /metrics never walks the datapath's maps: a timer refreshes a snapshot, scrapes
// read it. Measured with a source that counts its walks, at 100k service ports.
import assert from 'node:assert/strict';
import { describe, it, mock } from 'node:test';
import { CachedDatapathStats } from '../../control/agent/datapath-stats.ts';
import { ProxyMetrics, type DatapathStats } from '../../control/server/metrics.ts';

function countingSource(ports: number): { source: DatapathStats; walks: { services: number; conntrack: number } } {
  const walks = { services: 0, conntrack: 0 };
  const rows = Array.from({ length: ports }, (_, i) => ({ servicePort: `ns/s${i}:http/TCP/v4`, protocol: 'TCP', family: 'IPv4', packets: BigInt(i), bytes: BigInt(i * 60) }));
  return {
    walks,
    source: {
      services: () => (walks.services++, rows),
      maps: () => [{ name: 'sy_frontends', entries: ports, maxEntries: 1 << 20 }],
      conntrackEntries: () => (walks.conntrack++, 42),
      drops: () => ({ 'no-backend': 3n }),
    },
  };
}

describe('datapath statistics for /metrics', () => {
  it('scrapes read the snapshot; only the timer walks the maps', async () => {
    mock.timers.enable({ apis: ['setInterval', 'Date'], now: 1_000_000 });
    try {
      const { source, walks } = countingSource(100_000);
      const stats = new CachedDatapathStats(source);
      stats.start(10_000);
      const metrics = new ProxyMetrics(() => new Map(), () => stats);
      assert.deepEqual(walks, { services: 1, conntrack: 1 }, 'one snapshot at start');
      for (let i = 0; i < 3; i++) {
        const text = await metrics.text();
        assert.match(text, /^switchyard_service_packets_total\{service_port="ns\/s99999:http\/TCP\/v4",protocol="TCP",family="IPv4"\} 99999$/m);
        assert.match(text, /^switchyard_service_bytes_total\{service_port="ns\/s7:http\/TCP\/v4",protocol="TCP",family="IPv4"\} 420$/m);
        assert.match(text, /^switchyard_conntrack_entries 42$/m);
        assert.match(text, /^switchyard_datapath_drops_total\{reason="no-backend"\} 3$/m);
      }
      assert.deepEqual(walks, { services: 1, conntrack: 1 }, 'three scrapes walked nothing');
      mock.timers.tick(10_000);
      assert.deepEqual(walks, { services: 2, conntrack: 2 }, 'the timer refreshed');
      stats.stop();
    } finally {
      mock.timers.reset();
    }
  });
});
