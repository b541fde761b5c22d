// The eBPF backend's sync path with real maps (pinned under a per-run name in bpffs, no program
// attached): the time from one EndpointSlice change to its map entries written (tracker flush,
// compile, apply), at 10k and 100k services x 10 endpoints, and how long the event loop is
// blocked during a full resync (its longest turn and p99 delay, sampled every millisecond).
//   npm run bench:sync   (root)
import { EbpfProxyBackend } from '../control/backends/ebpf/proxy-backend.ts';
import { nodeFacts } from '../control/model/node.ts';
import { ChangeTracker } from '../control/model/tracker.ts';
import { DEFAULT_MODEL_CONFIG } from '../control/model/types.ts';
import { service, slice } from '../test/cases/objects.ts';
import { datapathObjectPath } from '../control/backends/ebpf/object-path.ts';
import { runPrefix } from '../test/lab/names.ts';
import { teardownNamesSync } from '../test/lab/sweep.ts';
import { writeReport } from './report.ts';

const ENDPOINTS = 10;
const EVENTS = Number(process.env.BENCH_SYNC_EVENTS ?? 500);
/** Fewer events at 100k when one takes seconds (the full-sync path). */
const EVENTS_100K = Number(process.env.BENCH_SYNC_EVENTS_100K ?? EVENTS);
const SIZES = (process.env.BENCH_SYNC_SIZES ?? '10000,100000').split(',').map(Number);
const prefix = `${runPrefix()}-bsync`;

function ip(i: number, base: number): string {
  return `${base}.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`;
}

function endpointsFor(i: number, salt: number): Array<{ ip: string; node: string }> {
  return Array.from({ length: ENDPOINTS }, (_, e) => ({ ip: ip(i * ENDPOINTS + e + salt, 11), node: `node-${(i + e) % 100}` }));
}

function quantile(sorted: readonly number[], q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
}

/**
 * Runs fn while a 1 ms timer chain samples the event loop: the longest gap between two timer
 * turns (less the 1 ms asked for) is the longest turn fn took, p99 is over every gap.
 */
async function blocking(fn: () => Promise<unknown>): Promise<{ ms: number; maxTurnMs: number; p99DelayMs: number }> {
  const gaps: number[] = [];
  let last = performance.now();
  let stop = false;
  const tick = (): void => {
    const now = performance.now();
    gaps.push(Math.max(0, now - last - 1));
    last = now;
    if (!stop) setTimeout(tick, 1);
  };
  setTimeout(tick, 1);
  const t0 = performance.now();
  await fn();
  const ms = performance.now() - t0;
  stop = true;
  await new Promise((r) => setTimeout(r, 5));
  gaps.sort((a, b) => a - b);
  return { ms, maxTurnMs: gaps[gaps.length - 1] ?? ms, p99DelayMs: gaps.length > 0 ? quantile(gaps, 0.99) : ms };
}

const log = (): void => undefined;
const rows: Array<Record<string, number | string>> = [];
try {
  for (const n of SIZES) {
    const tracker = new ChangeTracker({ ...DEFAULT_MODEL_CONFIG, families: [4] }, nodeFacts('node-1', undefined));
    for (let i = 0; i < n; i++) {
      tracker.upsertService(service({ ns: 'bench', name: `svc-${i}`, clusterIPs: [ip(i, 10)], ports: [{ name: 'http', port: 80 }] }));
      tracker.upsertSlice(slice({ ns: 'bench', name: `svc-${i}-a`, service: `svc-${i}`, ports: [{ name: 'http', port: 8080 }], endpoints: endpointsFor(i, 0) }));
    }
    const initial = tracker.flush();
    const sizes = { frontends: n + 4096, backends: n * ENDPOINTS + 4096, slots: n * ENDPOINTS + 4096 };
    const backend = new EbpfProxyBackend({
      object: datapathObjectPath(),
      pinDir: `/sys/fs/bpf/${prefix}-${n}`,
      maxEntries: { sy_frontends: sizes.frontends, sy_backends: sizes.backends, sy_slots: sizes.slots, sy_revnat: sizes.frontends, sy_stats: sizes.frontends, sy_ct: 65536 },
      conntrack: { min: 65536, maxPerCore: 0 },
      podDevicePrefixes: [],
      externalDevices: [],
      log,
    }, 0);
    // The sync path as the agent calls it (proxy-backend.ts): state, changes, full.
    const sync = (changes: typeof initial, full: boolean, first = false): Promise<unknown> => backend.sync(tracker.state(), changes, full, first);
    const first = await blocking(() => sync(initial, true, true));
    // One event: a random service gets one endpoint replaced, then flush and sync.
    let seed = 11;
    const next = (): number => (seed = (seed * 1103515245 + 12345) % 2 ** 31);
    const times: number[] = [];
    const events = n >= 100_000 ? EVENTS_100K : EVENTS;
    for (let k = 0; k < events; k++) {
      const i = next() % n;
      const ev = slice({ ns: 'bench', name: `svc-${i}-a`, service: `svc-${i}`, ports: [{ name: 'http', port: 8080 }], endpoints: endpointsFor(i, (k + 1) * 7919) });
      const t0 = performance.now();
      tracker.upsertSlice(ev);
      const changes = tracker.flush();
      await sync(changes, false);
      times.push(performance.now() - t0);
    }
    times.sort((a, b) => a - b);
    // A periodic resync: the maps re-read and everything compared.
    const resync = await blocking(() => sync(tracker.flush(), true));
    rows.push({
      services: n,
      events,
      endpoints: n * ENDPOINTS,
      firstSyncMs: Math.round(first.ms),
      firstSyncMaxTurnMs: +first.maxTurnMs.toFixed(1),
      oneChangeP50Ms: +quantile(times, 0.5).toFixed(3),
      oneChangeP99Ms: +quantile(times, 0.99).toFixed(3),
      oneChangeMaxMs: +times[times.length - 1]!.toFixed(3),
      resyncMs: Math.round(resync.ms),
      resyncMaxTurnMs: +resync.maxTurnMs.toFixed(1),
      resyncP99DelayMs: +resync.p99DelayMs.toFixed(1),
    });
    backend.close();
    teardownNamesSync(`${prefix}-${n}`);
  }
} finally {
  teardownNamesSync(prefix);
}
console.table(rows);
console.log(`written ${writeReport('sync', { rows, events: EVENTS, note: 'one change = one EndpointSlice update (one endpoint replaced): tracker flush + compile + map writes; resync = readopt + full sync; turns sampled with monitorEventLoopDelay(1 ms)' })}`);
