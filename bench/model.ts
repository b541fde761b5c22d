// Model cost: memory and build time for N services x 10 endpoints, and the cost of one event
// (an EndpointSlice update, then flush) at that size — at 10k and 100k services in one run, so
// flatness is read as the ratio between them.
//   npm run bench:model   (node --expose-gc)
import { ChangeTracker } from '../control/model/tracker.ts';
import { nodeFacts } from '../control/model/node.ts';
import { DEFAULT_MODEL_CONFIG } from '../control/model/types.ts';
import { service, slice } from '../test/cases/objects.ts';
import { writeReport } from './report.ts';

const ENDPOINTS = 10;
const EVENTS = 2000;
const gc = (globalThis as { gc?: () => void }).gc ?? (() => undefined);

function ip(i: number, base: number): string {
  return `${base}.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`;
}

function endpointsFor(i: number, salt: number): Array<{ ip: string; node: string }> {
  return Array.from({ length: ENDPOINTS }, (_, e) => ({ ip: ip(i * ENDPOINTS + e + salt, 11), node: `node-${(i + e) % 100}` }));
}

const rows: Array<Record<string, number>> = [];
for (const n of [10_000, 100_000]) {
  gc();
  const heapBefore = process.memoryUsage().heapUsed;
  const t0 = performance.now();
  const tracker = new ChangeTracker({ ...DEFAULT_MODEL_CONFIG, families: [4] }, nodeFacts('node-1', undefined));
  for (let i = 0; i < n; i++) {
    tracker.upsertService(service({ ns: 'bench', name: `svc-${i}`, clusterIPs: [ip(i, 10)], ports: [{ name: 'http', port: 80 }] }));
    tracker.upsertSlice(slice({ ns: 'bench', name: `svc-${i}-a`, service: `svc-${i}`, ports: [{ name: 'http', port: 8080 }], endpoints: endpointsFor(i, 0) }));
  }
  const initial = tracker.flush();
  const buildMs = performance.now() - t0;
  gc();
  const heapMB = (process.memoryUsage().heapUsed - heapBefore) / 2 ** 20;

  // One event: a slice of a random service gets one endpoint replaced; then flush.
  let seed = 7;
  const next = (): number => (seed = (seed * 1103515245 + 12345) % 2 ** 31);
  const events = Array.from({ length: EVENTS }, (_, k) => {
    const i = next() % n;
    return slice({ ns: 'bench', name: `svc-${i}-a`, service: `svc-${i}`, ports: [{ name: 'http', port: 8080 }], endpoints: endpointsFor(i, (k + 1) * 7919) });
  });
  const t1 = performance.now();
  for (const ev of events) {
    tracker.upsertSlice(ev);
    const c = tracker.flush();
    if (c.upserted.length !== 1) throw new Error('expected exactly one changed service port');
  }
  const perEventUs = ((performance.now() - t1) / EVENTS) * 1000;
  rows.push({ services: n, endpointsPerService: ENDPOINTS, servicePorts: initial.upserted.length, buildMs: Math.round(buildMs), heapMB: Math.round(heapMB), heapBytesPerService: Math.round((heapMB * 2 ** 20) / n), perEventUs: +perEventUs.toFixed(1) });
}
console.table(rows);
const flatness = rows[1]!.perEventUs! / rows[0]!.perEventUs!;
console.log(`per-event cost at 100k / at 10k: ${flatness.toFixed(2)}x`);
console.log(`written ${writeReport('model', { rows, perEventRatio100kTo10k: +flatness.toFixed(3) })}`);
