// The eBPF datapath's per-packet cost with BPF_PROG_TEST_RUN (the kernel times the runs): new
// flows (frontend lookup, selection, two CT inserts, DNAT), established flows (CT hit, DNAT) and
// their answers (CT hit, reverse NAT), at 10, 1k, 10k and 100k services of 10 backends each;
// flatness is the ratio of the 100k figure to the 10 one, measured in the same run.
//
// A test run repeats a program on one skb without resetting it, so the programs measured here
// (bench/bpf/datapath-bench.c) first write the original headers back; the cost of a program that
// only does that, measured in the same run, is subtracted. "+ floor" adds what an empty tc program
// costs per run here (the harness itself), for comparison with figures quoted that way.
//
// The CT maps have the sizes the agent gives them on this machine (conntrackEntries). A new TCP
// flow waits in sy_ct_syn until its handshake completes, and then leaves it: an agent's table of
// handshakes has room. A test run's flows never complete, so the table is emptied (untimed)
// before each round of new flows, and a round opens only an eighth of its size in flows (two
// entries each). The same table kept full, where every new flow evicts an older one (a SYN
// flood), is measured as well (newFlowFloodNs). Services of new flows are drawn at random among
// all of them: at 100k services the frontend, slot, backend and statistics entries a new flow
// reads are then out of the caches, while the established and reply figures time one flow.
//   npm run bench:datapath   (root)
import { progTestRun } from '../control/bpf/attach.ts';
import { bytes, u32 } from '../control/bpf/codec.ts';
import { native } from '../control/bpf/native.ts';
import { ctKey, ctValue } from '../control/bpf/layout.ts';
import { LoadedObject } from '../control/bpf/object.ts';
import { compileDatapath } from '../control/backends/ebpf/compile.ts';
import { conntrackEntries, handshakeEntries } from '../control/backends/ebpf/conntrack.ts';
import { EbpfDatapath } from '../control/backends/ebpf/datapath.ts';
import { datapathObjectPath, loadableBuilds, type DatapathBuild } from '../control/backends/ebpf/object-path.ts';
import { nodeFacts } from '../control/model/node.ts';
import { ChangeTracker } from '../control/model/tracker.ts';
import { DEFAULT_MODEL_CONFIG } from '../control/model/types.ts';
import { service, slice } from '../test/cases/objects.ts';
import { buildPacket, parsePacket } from '../test/packet.ts';
import { runPrefix } from '../test/lab/names.ts';
import { teardownNamesSync } from '../test/lab/sweep.ts';
import { buildDir } from '../test/bpf/objects.ts';
import { sizes, writeReport } from './report.ts';

const BACKENDS = 10;
const REPEAT = 200_000;
const ROUNDS = 5;
const VIP_BASE = 0x0a600000; // service i: 10.96.0.0 + i
const CLIENT = '10.244.0.1';
const EXTERNAL_CLIENT = '10.254.0.200';
const EXTERNAL_VIP = '10.253.0.1';
const prefix = `${runPrefix()}-bench`;
// BENCH_QUICK=1 stops at 10k services; BENCH_SIZES=10,1000 picks others.
// BENCH_STEPS=1 also times a new flow's path cut after each of its steps (bench/bpf/datapath-steps.c).
const STEPS = process.env.BENCH_STEPS === '1';
/** The step programs in path order; each one's cost is its time less the one before it. */
const STEP_PROGRAMS = [['restore', 'sy_bench_restore_new'], ['parse', 'sy_step_parse'], ['ctMiss', 'sy_step_ct_miss'], ['select', 'sy_step_select'], ['clash', 'sy_step_clash'], ['insert', 'sy_step_insert'], ['translate', 'sy_bench_new']] as const;
const SIZES = sizes([10, 1000, 10_000, 100_000], [10, 1000, 10_000]);

function vip(i: number): string {
  const a = VIP_BASE + i;
  return `${a >>> 24}.${(a >>> 16) & 255}.${(a >>> 8) & 255}.${a & 255}`;
}

function backendIp(i: number): string {
  return `10.${128 + (i >> 16)}.${(i >> 8) & 255}.${i & 255}`;
}

/** bench_packet: the IPv4 + TCP headers of a frame, then services and vip_base. */
const benchPacket = {
  size: 48,
  align: 4,
  encodeInto(v: { frame: Buffer; services: number }, b: Buffer, o: number): void {
    v.frame.copy(b, o, 14, 54);
    b.writeUInt32LE(v.services, o + 40);
    b.writeUInt32LE(VIP_BASE, o + 44);
  },
  decodeFrom(b: Buffer, o: number): { frame: Buffer; services: number } {
    return { frame: Buffer.concat([Buffer.alloc(14), b.subarray(o, o + 40)]), services: b.readUInt32LE(o + 40) };
  },
};

const BUILDS = loadableBuilds();
/** The agent's CT sizes here (EbpfBackend.open): established flows, and handshakes in progress. */
const CT_ENTRIES = conntrackEntries({}, native().numPossibleCpus());
const SYN_ENTRIES = handshakeEntries(CT_ENTRIES);
/** Flows per round of new flows: two entries each, a quarter of sy_ct_syn. */
const NEW_REPEAT = SYN_ENTRIES >> 3;

function open(n: number, build: DatapathBuild): EbpfDatapath {
  const size = Math.max(1024, n * BACKENDS * 2);
  return EbpfDatapath.open({
    object: datapathObjectPath(build, `${buildDir}bench/`, STEPS ? 'datapath-steps' : 'datapath-bench'),
    pinDir: `/sys/fs/bpf/${prefix}-${n}`,
    maxEntries: { sy_frontends: Math.max(1024, n * 2), sy_service_addrs: Math.max(1024, n * 2), sy_slots: size, sy_backends: size, sy_revnat: Math.max(1024, n * 2), sy_stats: Math.max(1024, n * 2), sy_ct: CT_ENTRIES, sy_ct_any: CT_ENTRIES, sy_ct_syn: SYN_ENTRIES },
  });
}

/** The first build syncs into empty maps; the others adopt its pins (nothing left to write). */
function setup(n: number, build: DatapathBuild): { dp: EbpfDatapath; syncMs: number } {
  const t = new ChangeTracker({ ...DEFAULT_MODEL_CONFIG, families: [4] }, nodeFacts('n0', undefined));
  for (let i = 0; i < n; i++) {
    t.upsertService(service({ ns: 'bench', name: `s${i}`, clusterIPs: [vip(i)], ports: [{ port: 80 }] }));
    t.upsertSlice(slice({ ns: 'bench', name: `s${i}-x`, service: `s${i}`, ports: [{ port: 8080 }], endpoints: Array.from({ length: BACKENDS }, (_, e) => ({ ip: backendIp(i * BACKENDS + e), node: 'n1' })) }));
  }
  // An eTP Local load-balancer IP with local backends: the flows XDP translates on its own.
  t.upsertService(service({ ns: 'bench', name: 'ext', type: 'LoadBalancer', eTP: 'Local', clusterIPs: ['10.95.255.1'], lbIPs: [EXTERNAL_VIP], ports: [{ port: 80 }] }));
  t.upsertSlice(slice({ ns: 'bench', name: 'ext-x', service: 'ext', ports: [{ port: 8080 }], endpoints: Array.from({ length: BACKENDS }, (_, e) => ({ ip: `10.127.0.${e + 1}`, node: 'n0' })) }));
  t.flush();
  const dp = open(n, build);
  dp.configure({ nodeIp4: '10.254.0.11', nodeIp6: 'fd00:254::b', snatPortMin: 61000, snatPortMax: 65535, flags: 0, ctTimeoutTcpNs: 3_600_000_000_000n, ctTimeoutUdpNs: 60_000_000_000n, hostNetnsCookie: 0n });
  const t0 = performance.now();
  const report = dp.sync(compileDatapath(t.state()));
  if (report.failed.length > 0) throw new Error(JSON.stringify(report.failed.slice(0, 3)));
  return { dp, syncMs: performance.now() - t0 };
}

/** Median over rounds of one program's ns per run on `packet`; before() runs untimed before each. */
function measure(fd: number, packet: Buffer, rounds = ROUNDS, repeat = REPEAT, before = (): void => {}): number {
  const runs: number[] = [];
  for (let r = 0; r < rounds; r++) {
    before();
    runs.push(progTestRun(fd, packet, { repeat }).durationNs);
  }
  return runs.sort((a, b) => a - b)[runs.length >> 1]!;
}

/** Empties sy_ct_syn, as completed handshakes leave it in an agent (see the top). */
function emptyHandshakes(dp: EbpfDatapath): void {
  const syn = dp.object.map('sy_ct_syn', bytes(ctKey.size), bytes(ctValue.size));
  syn.deleteMany(syn.entries().map(([k]) => k));
}

/**
 * ns of each step of a new flow (STEP_PROGRAMS), the programs taken in turn within each round so
 * that load on the machine falls on all of them alike; sy_ct_syn emptied before each run.
 */
function measureSteps(dp: EbpfDatapath, packet: Buffer): Record<string, number> {
  const runs = STEP_PROGRAMS.map((): number[] => []);
  for (let r = 0; r < ROUNDS; r++) {
    STEP_PROGRAMS.forEach(([, name], i) => {
      emptyHandshakes(dp);
      const run = progTestRun(dp.programFd(name), packet, { repeat: NEW_REPEAT });
      if (run.retval !== 0) throw new Error(`${name}: the step did not run to its end (${run.retval})`);
      runs[i]!.push(run.durationNs);
    });
  }
  const medians = runs.map((a) => a.sort((x, y) => x - y)[a.length >> 1]!);
  return Object.fromEntries(STEP_PROGRAMS.map(([step], i) => [step, i === 0 ? medians[0]! : medians[i]! - medians[i - 1]!]));
}

const rows: Array<Record<string, number | string>> = [];
const stepRows: Array<Record<string, number | string>> = [];
const probe = buildPacket({ src: CLIENT, dst: vip(0), proto: 'tcp', sport: 1, dport: 80 });
// The floor: a tc program that does nothing at all (the cleanup tests' foreign program).
const empty = LoadedObject.load(`${buildDir}fixtures/foreign.o`);
const floorNs = measure(empty.programFd('other_tc'), probe);
empty.close();
let helperCallNs = 0;
try {
  for (const n of SIZES) for (const build of BUILDS) {
    const { dp, syncMs } = setup(n, build);
    const packets = dp.object.map('bench_packets', u32, benchPacket);
    const fd = (name: string): number => dp.programFd(name);
    const established = buildPacket({ src: CLIENT, dst: vip(n >> 1), proto: 'tcp', sport: 12345, dport: 80, tcpFlags: 0x10 });
    // The first run opens the flow; its output names the backend that answers.
    const opened = parsePacket(progTestRun(fd('sy_from_pod'), buildPacket({ src: CLIENT, dst: vip(n >> 1), proto: 'tcp', sport: 12345, dport: 80, tcpFlags: 0x02 })).data);
    if (!opened.dst.startsWith('10.1')) throw new Error(`the first packet was not translated: ${opened.dst}`);
    const reply = buildPacket({ src: opened.dst, dst: CLIENT, proto: 'tcp', sport: 8080, dport: 12345, tcpFlags: 0x10 });
    packets.set(0, { frame: established, services: 0 });
    packets.set(1, { frame: buildPacket({ src: CLIENT, dst: vip(0), proto: 'tcp', sport: 1, dport: 80, tcpFlags: 0x02 }), services: n });
    packets.set(2, { frame: reply, services: 0 });
    // External client -> eTP Local LB IP: opened through XDP, then timed in XDP and in tc.
    const xdpOpened = parsePacket(progTestRun(fd('sy_xdp_external'), buildPacket({ src: EXTERNAL_CLIENT, dst: EXTERNAL_VIP, proto: 'tcp', sport: 23456, dport: 80, tcpFlags: 0x02 })).data);
    if (!xdpOpened.dst.startsWith('10.127.0.')) throw new Error(`XDP did not translate the external flow: ${xdpOpened.dst}`);
    packets.set(3, { frame: buildPacket({ src: EXTERNAL_CLIENT, dst: EXTERNAL_VIP, proto: 'tcp', sport: 23456, dport: 80, tcpFlags: 0x10 }), services: 0 });
    // Sanity: the bench programs translate as the datapath does.
    const est = parsePacket(progTestRun(fd('sy_bench_established'), probe).data);
    const back = parsePacket(progTestRun(fd('sy_bench_reply'), probe).data);
    if (est.dst !== opened.dst || !est.l4ChecksumOk || !est.ipChecksumOk) throw new Error(`established flow not translated: ${JSON.stringify(est)}`);
    if (back.src !== vip(n >> 1) || back.sport !== 80 || !back.l4ChecksumOk) throw new Error(`answer not translated back: ${JSON.stringify(back)}`);
    for (const prog of ['sy_bench_xdp', 'sy_bench_external']) {
      const x = parsePacket(progTestRun(fd(prog), probe).data);
      if (x.dst !== xdpOpened.dst || !x.l4ChecksumOk || !x.ipChecksumOk) throw new Error(`${prog}: external flow not translated: ${JSON.stringify(x)}`);
    }
    if (n === SIZES[0]) helperCallNs = +((measure(fd('sy_bench_helper_calls'), probe) - floorNs) / 8).toFixed(1);
    const restoreNs = measure(fd('sy_bench_restore'), probe);
    const restoreNewNs = measure(fd('sy_bench_restore_new'), probe);
    const newFlowNs = measure(fd('sy_bench_new'), probe, ROUNDS, NEW_REPEAT, () => emptyHandshakes(dp)) - restoreNewNs;
    // A SYN flood: the table full (filled by as many flows as it has entries), every insert evicting.
    progTestRun(fd('sy_bench_new'), probe, { repeat: SYN_ENTRIES });
    const newFlowFloodNs = measure(fd('sy_bench_new'), probe, ROUNDS, NEW_REPEAT) - restoreNewNs;
    emptyHandshakes(dp);
    if (STEPS) stepRows.push({ build, services: n, ...measureSteps(dp, probe) });
    const establishedNs = measure(fd('sy_bench_established'), probe) - restoreNs;
    const replyNs = measure(fd('sy_bench_reply'), probe) - restoreNs;
    const xdpExternalNs = measure(fd('sy_bench_xdp'), probe) - measure(fd('sy_bench_xdp_restore'), probe);
    const tcExternalNs = measure(fd('sy_bench_external'), probe) - measure(fd('sy_bench_restore_external'), probe);
    rows.push({ build, services: n, backends: n * BACKENDS, syncMs: Math.round(syncMs), newFlowNs, newFlowFloodNs, establishedNs, replyNs, xdpExternalNs, tcExternalNs, establishedPlusFloorNs: establishedNs + floorNs, restoreNs });
    dp.close();
    if (build === BUILDS[BUILDS.length - 1]) teardownNamesSync(`${prefix}-${n}`);
  }
} finally {
  teardownNamesSync(prefix);
}
console.log(`floor (empty tc program, per test run): ${floorNs} ns; one helper call: ${helperCallNs} ns`);
console.table(rows);
if (STEPS) console.table(stepRows);
const flatness: Record<string, Record<string, number>> = {};
for (const build of BUILDS) {
  const of = (services: number) => rows.find((r) => r.build === build && r.services === services)!;
  const flat = (k: string): number => +(Number(of(SIZES.at(-1)!)[k]) / Number(of(SIZES[0]!)[k])).toFixed(3);
  flatness[build] = { newFlow: flat('newFlowNs'), newFlowFlood: flat('newFlowFloodNs'), established: flat('establishedNs'), reply: flat('replyNs') };
  console.log(`${build}: ${SIZES.at(-1)} / ${SIZES[0]} services: new flow ${flatness[build]!.newFlow}x, established ${flatness[build]!.established}x, reply ${flatness[build]!.reply}x`);
}
console.log(`written ${writeReport('datapath', { sizes: SIZES, builds: BUILDS, ctEntries: CT_ENTRIES, synEntries: SYN_ENTRIES, floorNs, helperCallNs, rows, ...(STEPS ? { newFlowSteps: stepRows } : {}), flatness: { of: `${SIZES.at(-1)} / ${SIZES[0]} services`, ...flatness }, note: 'BPF_PROG_TEST_RUN, IPv4 TCP pod -> ClusterIP via sy_from_pod (answers via sy_to_pod); external client -> eTP Local LB IP, established, in XDP (sy_xdp_external) and in tc (sy_from_external); ns per packet above a program that only restores the headers; new flows: sy_ct_syn emptied before each round (completed handshakes leave it), newFlowFlood: sy_ct_syn full (a SYN flood, every insert evicts); new flows go to services drawn at random (cold caches at 100k)' })}`);
