// Soak: a million endpoint changes at 10k services through the eBPF backend's sync path, as the
// agent drives it (tracker flush, incremental compile, map writes), with new flows pushed through
// the real programs (BPF_PROG_TEST_RUN) between changes and conntrack garbage collection on the
// agent's cadence. It checks what a long-running node needs: RSS does not drift (<= 5 % between
// the end of the warm-up and the end), open file descriptors do not change, the maps hold exactly
// what the model says (no leaked backend or slot), and the CT and affinity maps stay bounded.
// Outside the default suite: minutes of CPU.
//   npm run bench:soak   (root; node --expose-gc, so samples see the live heap)   BENCH_SOAK_CHANGES=1000000 BENCH_SOAK_SERVICES=10000
import { readdirSync } from 'node:fs';
import { progTestRun } from '../control/bpf/attach.ts';
import { affinityKey, affinityValue, backend as backendCodec, ctKey, ctValue } from '../control/bpf/layout.ts';
import { u32 } from '../control/bpf/codec.ts';
import { EbpfProxyBackend } from '../control/backends/ebpf/proxy-backend.ts';
import { datapathObjectPath } from '../control/backends/ebpf/object-path.ts';
import { nodeFacts } from '../control/model/node.ts';
import { ChangeTracker } from '../control/model/tracker.ts';
import { DEFAULT_MODEL_CONFIG } from '../control/model/types.ts';
import { service, slice } from '../test/cases/objects.ts';
import { buildPacket, TCP_FLAGS } from '../test/packet.ts';
import { runPrefix } from '../test/lab/names.ts';
import { teardownNamesSync } from '../test/lab/sweep.ts';
import { writeReport } from './report.ts';

const SERVICES = Number(process.env.BENCH_SOAK_SERVICES ?? 10_000);
const CHANGES = Number(process.env.BENCH_SOAK_CHANGES ?? 1_000_000);
const ENDPOINTS = 10;
/** Every this many changes: a burst of new flows, and a sample. */
const FLOW_EVERY = 2_000;
const FLOWS_PER_BURST = 400;
const SAMPLE_EVERY = 50_000;
/** Changes before the RSS baseline is taken: the heap, maps and JIT settle first. */
const WARMUP = Math.min(100_000, Math.floor(CHANGES / 10));
const CT_SIZE = 65_536;
const prefix = `${runPrefix()}-bsoak`;

const ip = (i: number, base: number): string => `${base}.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`;
/** Each endpoint slot's generation: a change replaces one slot's address with a fresh one. */
const generation = new Uint32Array(SERVICES * ENDPOINTS);
const endpoints = (i: number): Array<{ ip: string; node: string }> =>
  Array.from({ length: ENDPOINTS }, (_, e) => {
    const slot = i * ENDPOINTS + e;
    return { ip: ip((generation[slot]! * SERVICES * ENDPOINTS + slot) % 2 ** 22, 11), node: `node-${(i + e) % 100}` };
  });
const openFds = (): number => readdirSync('/proc/self/fd').length;
const mib = (b: number): number => +(b / 2 ** 20).toFixed(1);

let seed = 7;
const rand = (n: number): number => (seed = (seed * 1103515245 + 12345) % 2 ** 31) % n;

const tracker = new ChangeTracker({ ...DEFAULT_MODEL_CONFIG, families: [4] }, nodeFacts('node-1', undefined));
for (let i = 0; i < SERVICES; i++) {
  // Every tenth service has ClientIP affinity, so the affinity map sees traffic too.
  tracker.upsertService(service({ ns: 'soak', name: `svc-${i}`, clusterIPs: [ip(i, 10)], ports: [{ name: 'http', port: 80 }, { name: 'dns', port: 53, protocol: 'UDP' }], ...(i % 10 === 0 ? { affinity: 10800 } : {}) }));
  tracker.upsertSlice(slice({ ns: 'soak', name: `svc-${i}-a`, service: `svc-${i}`, ports: [{ name: 'http', port: 8080 }, { name: 'dns', port: 8053, protocol: 'UDP' }], endpoints: endpoints(i) }));
}
const sizes = { frontends: 2 * SERVICES + 4096, backends: 2 * SERVICES * ENDPOINTS * 2 + 4096 };
const backend = new EbpfProxyBackend({
  object: datapathObjectPath(),
  pinDir: `/sys/fs/bpf/${prefix}`,
  maxEntries: { sy_frontends: sizes.frontends, sy_backends: sizes.backends, sy_slots: sizes.backends, sy_revnat: sizes.frontends, sy_stats: sizes.frontends, sy_ct: CT_SIZE, sy_affinity: CT_SIZE },
  conntrack: { min: CT_SIZE, maxPerCore: 0 },
  podDevicePrefixes: [],
  externalDevices: [],
  log: () => undefined,
}, 0);

const samples: Array<Record<string, number>> = [];
let baseline: { rss: number; fds: number } | undefined;
try {
  await backend.sync(tracker.state(), tracker.flush(), true, true);
  const dp = backend.ebpf.datapath;
  const fromPod = dp.programFd('sy_from_pod');
  const ct = dp.object.map('sy_ct', ctKey, ctValue);
  const ctAny = dp.object.map('sy_ct_any', ctKey, ctValue);
  const ctSyn = dp.object.map('sy_ct_syn', ctKey, ctValue);
  const affinity = dp.object.map('sy_affinity', affinityKey, affinityValue);
  const backends = dp.object.map('sy_backends', u32, backendCodec);
  const count = (m: { keys(): Iterable<unknown> }): number => {
    let n = 0;
    for (const _ of m.keys()) n++;
    return n;
  };
  // sy_backends is an array: a free slot is zeroed, a used one has a port.
  const usedBackends = (): number => backends.entries().filter(([, v]) => v.port !== 0).length;
  const t0 = performance.now();
  let flows = 0;
  for (let k = 1; k <= CHANGES; k++) {
    // One endpoint of a random service replaced: one EndpointSlice event, one sync.
    const i = rand(SERVICES);
    generation[i * ENDPOINTS + rand(ENDPOINTS)]! += 1;
    tracker.upsertSlice(slice({ ns: 'soak', name: `svc-${i}-a`, service: `svc-${i}`, ports: [{ name: 'http', port: 8080 }, { name: 'dns', port: 8053, protocol: 'UDP' }], endpoints: endpoints(i) }));
    await backend.sync(tracker.state(), tracker.flush(), false, false);
    if (k % FLOW_EVERY === 0) {
      for (let f = 0; f < FLOWS_PER_BURST; f++, flows++) {
        const src = `10.244.${((flows % 60_000) >> 8) & 255}.${flows & 255}`;
        const svc = rand(SERVICES);
        const udp = f % 2 === 1;
        progTestRun(fromPod, buildPacket({ src, dst: ip(svc, 10), proto: udp ? 'udp' : 'tcp', sport: 1024 + (flows % 60_000), dport: udp ? 53 : 80, ...(udp ? {} : { tcpFlags: TCP_FLAGS.SYN }) }));
      }
      await backend.ebpf.gcOnce();
    }
    if (k === WARMUP) {
      (globalThis as { gc?: () => void }).gc?.();
      baseline = { rss: process.memoryUsage().rss, fds: openFds() };
    }
    if (k % SAMPLE_EVERY === 0 || k === CHANGES) {
      // The live heap, not garbage a later collection would take (run with --expose-gc).
      (globalThis as { gc?: () => void }).gc?.();
      const m = process.memoryUsage();
      samples.push({ changes: k, seconds: +((performance.now() - t0) / 1000).toFixed(1), rssMiB: mib(m.rss), heapUsedMiB: mib(m.heapUsed), fds: openFds(), ct: count(ct), ctAny: count(ctAny), ctSyn: count(ctSyn), affinity: count(affinity), backends: usedBackends(), flows });
      console.log(JSON.stringify(samples.at(-1)));
    }
  }
  const last = samples.at(-1)!;
  const driftPct = baseline === undefined ? 0 : +(((last.rssMiB! * 2 ** 20 - baseline.rss) / baseline.rss) * 100).toFixed(2);
  // The maps hold what the model holds: ten backends per service port, nothing leaked by churn.
  const backendsExpected = 2 * SERVICES * ENDPOINTS;
  const verdict = {
    rssDriftPct: driftPct,
    rssDriftOk: driftPct <= 5,
    fdsBaseline: baseline?.fds ?? 0,
    fdsEnd: last.fds!,
    fdsOk: last.fds === baseline?.fds,
    backendsInMap: last.backends!,
    backendsExpected,
    backendsOk: last.backends === backendsExpected,
    ctBounded: last.ct! <= CT_SIZE && last.ctAny! <= CT_SIZE && last.ctSyn! <= CT_SIZE,
    affinityBounded: last.affinity! <= CT_SIZE,
  };
  console.table(samples);
  console.log(verdict);
  console.log(`written ${writeReport('soak', { services: SERVICES, changes: CHANGES, endpointsPerService: ENDPOINTS, ctSize: CT_SIZE, flowsPerBurst: FLOWS_PER_BURST, flowEvery: FLOW_EVERY, warmup: WARMUP, baselineRssMiB: baseline ? mib(baseline.rss) : 0, samples, verdict, note: 'one change = one EndpointSlice update with one endpoint replaced, then one incremental sync; bursts of new TCP SYN and UDP flows through sy_from_pod with PROG_TEST_RUN; conntrack GC after each burst' })}`);
  if (!verdict.rssDriftOk || !verdict.fdsOk || !verdict.backendsOk || !verdict.ctBounded || !verdict.affinityBounded) process.exitCode = 1;
} finally {
  backend.close();
  teardownNamesSync(prefix);
}
