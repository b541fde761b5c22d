// The eBPF datapath's per-packet cost with BPF_PROG_TEST_RUN (the kernel times the program
// alone): new flows (frontend lookup, selection, two CT inserts, DNAT) and established flows (CT
// hit, DNAT), at 10, 1k, 10k and 100k services of 10 backends each — flatness is the ratio of the
// 100k figure to the 10 one, measured in the same run.
//   npm run bench:datapath   (root)
import { progTestRun } from '../control/bpf/attach.ts';
import { LoadedObject } from '../control/bpf/object.ts';
import { compileDatapath } from '../control/backends/ebpf/compile.ts';
import { EbpfDatapath } from '../control/backends/ebpf/datapath.ts';
import { nodeFacts } from '../control/model/node.ts';
import { ChangeTracker } from '../control/model/tracker.ts';
import { DEFAULT_MODEL_CONFIG } from '../control/model/types.ts';
import { service, slice } from '../test/cases/objects.ts';
import { buildPacket } from '../test/packet.ts';
import { runPrefix } from '../test/lab/names.ts';
import { teardownNamesSync } from '../test/lab/sweep.ts';
import { buildDir } from '../test/bpf/objects.ts';
import { writeReport } from './report.ts';

const BACKENDS = 10;
const NEW_FLOWS = 5000;
const REPEAT = 200_000;
const prefix = `${runPrefix()}-bench`;

function vip(i: number): string {
  return `10.${96 + (i >> 16)}.${(i >> 8) & 255}.${i & 255}`;
}

function setup(n: number): { dp: EbpfDatapath; syncMs: number } {
  const t = new ChangeTracker({ ...DEFAULT_MODEL_CONFIG, families: [4] }, nodeFacts('n0', undefined));
  for (let i = 0; i < n; i++) {
    t.upsertService(service({ ns: 'bench', name: `s${i}`, clusterIPs: [vip(i)], ports: [{ port: 80 }] }));
    t.upsertSlice(slice({ ns: 'bench', name: `s${i}-x`, service: `s${i}`, ports: [{ port: 8080 }], endpoints: Array.from({ length: BACKENDS }, (_, e) => ({ ip: `10.${128 + ((i * BACKENDS + e) >> 16)}.${((i * BACKENDS + e) >> 8) & 255}.${(i * BACKENDS + e) & 255}`, node: 'n1' })) }));
  }
  t.flush();
  const size = Math.max(1024, n * BACKENDS * 2);
  const dp = EbpfDatapath.open({
    object: `${buildDir}datapath.o`,
    pinDir: `/sys/fs/bpf/${prefix}-${n}`,
    maxEntries: { sy_frontends: Math.max(1024, n * 2), sy_slots: size, sy_backends: size, sy_revnat: Math.max(1024, n * 2), sy_stats: Math.max(1024, n * 2), sy_ct: 1 << 20 },
  });
  dp.configure({ nodeIp4: '10.254.0.11', nodeIp6: 'fd00:254::b', snatPortMin: 61000, snatPortMax: 65535, flags: 0, ctTimeoutTcpNs: 3_600_000_000_000n, ctTimeoutUdpNs: 60_000_000_000n, hostNetnsCookie: 0n });
  const t0 = performance.now();
  const report = dp.sync(compileDatapath(t.state()));
  if (report.failed.length > 0) throw new Error(JSON.stringify(report.failed.slice(0, 3)));
  return { dp, syncMs: performance.now() - t0 };
}

const rows: Array<Record<string, number>> = [];
// Baseline in the same run: the skeleton's tc program on a packet it does not translate
// (parse + one map miss) — what any tc program costs here before doing work.
const skeleton = LoadedObject.load(`${buildDir}skeleton.o`);
const baselineNs = progTestRun(skeleton.programFd('sy_skel_tc_ingress'), buildPacket({ src: '10.244.0.1', dst: '10.96.0.1', proto: 'tcp', sport: 1, dport: 80 }), { repeat: REPEAT }).durationNs;
skeleton.close();
// The floor: a tc program that does nothing at all (the cleanup tests' foreign program).
const empty = LoadedObject.load(`${buildDir}fixtures/foreign.o`);
const floorNs = progTestRun(empty.programFd('other_tc'), buildPacket({ src: '10.244.0.1', dst: '10.96.0.1', proto: 'tcp', sport: 1, dport: 80 }), { repeat: REPEAT }).durationNs;
empty.close();
try {
  for (const n of [10, 1000, 10_000, 100_000]) {
    const { dp, syncMs } = setup(n);
    const fd = dp.programFd('sy_from_pod');
    let total = 0;
    for (let k = 0; k < NEW_FLOWS; k++) {
      const pkt = buildPacket({ src: `10.244.${(k >> 8) & 255}.${k & 255}`, dst: vip((k * 7919) % n), proto: 'tcp', sport: 10000 + (k % 50000), dport: 80 });
      total += progTestRun(fd, pkt).durationNs;
    }
    const established = buildPacket({ src: '10.244.0.1', dst: vip(n >> 1), proto: 'tcp', sport: 12345, dport: 80, tcpFlags: 0x10 });
    progTestRun(fd, established); // the first packet opens the flow
    const est = progTestRun(fd, established, { repeat: REPEAT }).durationNs;
    rows.push({ services: n, backends: n * BACKENDS, syncMs: Math.round(syncMs), newFlowNs: Math.round(total / NEW_FLOWS), establishedNs: est, establishedOverBaseline: +(est / baselineNs).toFixed(2), establishedAboveFloorNs: est - floorNs });
    dp.close();
    teardownNamesSync(`${prefix}-${n}`);
  }
} finally {
  teardownNamesSync(prefix);
}
console.log(`baseline (skeleton tc program, no translation): ${baselineNs} ns/packet; floor (empty tc program): ${floorNs} ns/packet`);
console.table(rows);
const flat = { newFlow: +(rows[3]!.newFlowNs! / rows[0]!.newFlowNs!).toFixed(3), established: +(rows[3]!.establishedNs! / rows[0]!.establishedNs!).toFixed(3) };
console.log(`100k / 10 services: new flow ${flat.newFlow}x, established ${flat.established}x`);
console.log(`written ${writeReport('datapath', { baselineNs, floorNs, rows, flatness100kTo10: flat, note: 'BPF_PROG_TEST_RUN durations (kernel-timed program runs) for sy_from_pod, IPv4 TCP' })}`);
