// BPF_PROG_TEST_RUN: traffic to an unallocated ClusterIP (inside the service CIDRs, held by no
// Service) is dropped and counted under its reason, as trace says for eBPF mode; a ClusterIP that
// exists keeps its verdicts on every port, and everything outside the ranges passes as before.
// Also what the check costs traffic that misses every frontend (printed, not asserted: timings of
// a loaded 2-core machine are no pass/fail criterion).
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { progTestRun } from '../../control/bpf/attach.ts';
import { EbpfBackend } from '../../control/backends/ebpf/backend.ts';
import { compileDatapath } from '../../control/backends/ebpf/compile.ts';
import { EbpfDatapath } from '../../control/backends/ebpf/datapath.ts';
import { datapathObjectPath, loadableBuilds } from '../../control/backends/ebpf/object-path.ts';
import { main } from '../../control/cli/main.ts';
import { nodeFacts } from '../../control/model/node.ts';
import { ChangeTracker } from '../../control/model/tracker.ts';
import { ProxyMetrics } from '../../control/server/metrics.ts';
import { trace } from '../../control/trace/trace.ts';
import { config, node, podOf, SECONDARY_RANGE_V4, SECONDARY_RANGE_V6, serviceCIDRs, services, slices, UNALLOCATED_IP, UNALLOCATED_IP6 } from '../cases/semantics.ts';
import { runPrefix } from '../lab/names.ts';
import { teardownNamesSync } from '../lab/sweep.ts';
import { buildPacket, parsePacket, type PacketSpec } from '../packet.ts';

const TC_ACT_OK = 0;
const TC_ACT_UNSPEC = 0xffffffff;
const TC_ACT_SHOT = 2;
const prefix = `${runPrefix()}-cidr`;
const CLIENT = '10.244.0.10';
const CLIENT6 = 'fd00:10:244::a';

for (const build of loadableBuilds()) describe(`unallocated ClusterIPs, ${build} build (BPF_PROG_TEST_RUN)`, () => {
  let dp: EbpfDatapath;
  let tracker: ChangeTracker;
  const pinDir = `/sys/fs/bpf/${prefix}-${build}`;
  const run = (prog: string, spec: PacketSpec): { retval: number; out: Buffer; packet: Buffer } => {
    const packet = buildPacket(spec);
    const r = progTestRun(dp.programFd(prog), packet);
    return { retval: r.retval, out: r.data, packet };
  };
  const dropped = (): bigint => dp.drops()['unallocated-cluster-ip'];

  before(() => {
    tracker = new ChangeTracker(config, nodeFacts('n0', node, ['10.244.0.1']));
    for (const s of services) tracker.upsertService(s);
    for (const s of slices) tracker.upsertSlice(s);
    for (const c of serviceCIDRs) tracker.upsertServiceCIDR(c);
    tracker.flush();
    dp = EbpfDatapath.open({ object: datapathObjectPath(build), pinDir });
    dp.configure({ nodeIp4: '10.254.0.11', nodeIp6: 'fd00:254::b', snatPortMin: 61000, snatPortMax: 65535, flags: 0, ctTimeoutTcpNs: 3_600_000_000_000n, ctTimeoutUdpNs: 60_000_000_000n, hostNetnsCookie: 0n });
    assert.deepEqual(dp.sync(compileDatapath(tracker.state())).failed, []);
  });

  after(() => {
    dp?.close();
    teardownNamesSync(`${prefix}-${build}`);
  });

  it('the sync writes the plan\'s service CIDRs into sy_service_cidrs', () => {
    assert.deepEqual(dp.serviceCidrList(), [SECONDARY_RANGE_V4, SECONDARY_RANGE_V6].sort());
  });

  it('from a pod and from outside, TCP and UDP, IPv4 and IPv6: dropped and counted, as trace says', () => {
    const packets: Array<[string, PacketSpec]> = [
      ['sy_from_pod', { src: CLIENT, dst: UNALLOCATED_IP, proto: 'tcp', sport: 41000, dport: 80 }],
      ['sy_from_pod', { src: CLIENT, dst: UNALLOCATED_IP, proto: 'udp', sport: 41001, dport: 53 }],
      ['sy_from_pod', { src: CLIENT6, dst: UNALLOCATED_IP6, proto: 'tcp', sport: 41002, dport: 80 }],
      ['sy_from_external', { src: '10.254.0.200', dst: UNALLOCATED_IP, proto: 'tcp', sport: 41003, dport: 443 }],
      ['sy_from_pod', { src: CLIENT, dst: '10.97.255.254', proto: 'tcp', sport: 41004, dport: 8080 }], // the range's last address
    ];
    for (const [prog, spec] of packets) {
      const protocol = spec.proto === 'tcp' ? 'TCP' : 'UDP';
      assert.equal(trace(tracker.state(), { src: spec.src, dst: spec.dst, port: spec.dport, protocol }, { mode: 'ebpf' }).verdict, 'DROP', `trace: ${spec.dst}`);
      const before = dropped();
      assert.equal(run(prog, spec).retval, TC_ACT_SHOT, `${prog} ${spec.dst}:${spec.dport}`);
      assert.equal(dropped(), before + 1n, 'counted as unallocated-cluster-ip');
    }
  });

  it('only the address counts: the range\'s ClusterIP is served on its port and passed on any other; outside the range nothing changes', () => {
    const served = run('sy_from_pod', { src: CLIENT, dst: '10.97.0.10', proto: 'tcp', sport: 41100, dport: 80 });
    assert.equal(served.retval, TC_ACT_OK);
    assert.equal(podOf(parsePacket(served.out).dst), 'n1p0');
    const before = dropped();
    const passed: Array<[string, PacketSpec]> = [
      ['sy_from_pod', { src: CLIENT, dst: '10.97.0.10', proto: 'tcp', sport: 41101, dport: 81 }], // the ClusterIP, an unserved port
      ['sy_from_pod', { src: CLIENT, dst: '10.98.0.1', proto: 'tcp', sport: 41102, dport: 80 }], // outside the ranges
      ['sy_from_pod', { src: CLIENT, dst: '10.96.0.99', proto: 'tcp', sport: 41103, dport: 80 }], // the primary range has no ServiceCIDR here
      ['sy_from_pod', { src: CLIENT, dst: '10.244.1.10', proto: 'tcp', sport: 41104, dport: 8080 }], // pod to pod
      ['sy_to_external', { src: CLIENT, dst: UNALLOCATED_IP, proto: 'tcp', sport: 41105, dport: 80 }], // egress programs look up no service
    ];
    for (const [prog, spec] of passed) {
      const r = run(prog, spec);
      assert.equal(r.retval, TC_ACT_UNSPEC, `${prog} ${spec.dst}:${spec.dport}`);
      assert.deepEqual(r.out, r.packet, 'untouched');
    }
    assert.equal(dropped(), before, 'none of them counted');
  });

  it('switchyard drops and switchyard_datapath_drops_total show the reason', async () => {
    const n = dropped();
    assert.ok(n > 0n);
    let out = '';
    const code = await main(['drops', '--bpffs-dir', pinDir, '-o', 'json'], { stdout: (t) => (out += t), stderr: () => undefined });
    assert.equal(code, 0);
    assert.deepEqual((JSON.parse(out) as Array<{ reason: string; packets: string }>).find((r) => r.reason === 'unallocated-cluster-ip'), { reason: 'unallocated-cluster-ip', packets: String(n) });
    const metrics = new ProxyMetrics(() => new Map(), () => ({ services: () => [], maps: () => [], conntrackEntries: () => 0, drops: () => dp.drops() }));
    assert.match(await metrics.text(), new RegExp(`^switchyard_datapath_drops_total\\{reason="unallocated-cluster-ip"\\} ${n}$`, 'm'));
  });

  it('a ServiceCIDR deleted: its range passes again once synced; the configured range then stands in', () => {
    tracker.deleteServiceCIDR('secondary');
    tracker.flush();
    dp.sync(compileDatapath(tracker.state()));
    assert.deepEqual(dp.serviceCidrList(), []);
    assert.equal(run('sy_from_pod', { src: CLIENT, dst: UNALLOCATED_IP, proto: 'tcp', sport: 41200, dport: 80 }).retval, TC_ACT_UNSPEC);
    const configured = new ChangeTracker({ ...config, serviceCIDRs: ['10.97.0.0/24'] }, nodeFacts('n0', node, ['10.244.0.1']));
    for (const s of services) configured.upsertService(s);
    for (const s of slices) configured.upsertSlice(s);
    configured.flush();
    dp.sync(compileDatapath(configured.state()));
    assert.deepEqual(dp.serviceCidrList(), ['10.97.0.0/24']);
    assert.equal(run('sy_from_pod', { src: CLIENT, dst: UNALLOCATED_IP, proto: 'tcp', sport: 41201, dport: 80 }).retval, TC_ACT_SHOT);
    assert.equal(run('sy_from_pod', { src: CLIENT, dst: '10.97.1.1', proto: 'tcp', sport: 41202, dport: 80 }).retval, TC_ACT_UNSPEC, 'outside the configured /24');
  });

  it('cost on the frontend miss path (pod to pod), with and without service CIDRs', () => {
    const packet = buildPacket({ src: CLIENT, dst: '10.244.1.10', proto: 'tcp', sport: 41300, dport: 8080 });
    const fd = dp.programFd('sy_from_pod');
    const measure = (): number => {
      const runs: number[] = [];
      for (let i = 0; i < 7; i++) runs.push(progTestRun(fd, packet, { repeat: 200_000 }).durationNs);
      return runs.sort((a, b) => a - b)[3]!;
    };
    dp.setServiceCidrs([]);
    const without = measure();
    dp.setServiceCidrs([SECONDARY_RANGE_V4, SECONDARY_RANGE_V6, '10.96.0.0/12', '10.100.0.0/16']);
    const withRanges = measure();
    dp.setServiceCidrs([]);
    const unallocated = buildPacket({ src: CLIENT, dst: UNALLOCATED_IP, proto: 'tcp', sport: 41301, dport: 80 });
    console.log(`# ${build}: pod-to-pod packet, median of 7 x 200k runs: ${without} ns without service CIDRs, ${withRanges} ns with 4 (${withRanges - without >= 0 ? '+' : ''}${withRanges - without} ns)`);
    assert.equal(progTestRun(fd, unallocated).retval, TC_ACT_UNSPEC, 'no ranges: nothing dropped');
  });
});

describe('unallocated ClusterIPs through the eBPF backend\'s syncs', () => {
  const pinDir = `/sys/fs/bpf/${prefix}-backend`;
  after(() => teardownNamesSync(`${prefix}-backend`));

  it('a ServiceCIDR change alone (no service port changed) reaches the map on the next incremental sync', async () => {
    const b = EbpfBackend.open({ object: datapathObjectPath(), pinDir, podDevicePrefixes: [], externalDevices: [], conntrack: { min: 16384, maxPerCore: 0 }, log: () => undefined });
    try {
      const t = new ChangeTracker(config, nodeFacts('n0', node, ['10.244.0.1']));
      for (const s of services) t.upsertService(s);
      for (const s of slices) t.upsertSlice(s);
      await b.syncChanges(t.state(), t.flush(), true);
      assert.deepEqual(b.datapath.serviceCidrList(), [], 'no ranges known: none written');
      for (const c of serviceCIDRs) t.upsertServiceCIDR(c);
      let changes = t.flush();
      assert.deepEqual([changes.upserted.length, changes.removed.length, changes.serviceCIDRsChanged], [0, 0, true]);
      const report = await b.syncChanges(t.state(), changes, false);
      assert.equal(report.frontendsWritten, 0, 'an incremental sync');
      assert.deepEqual(b.datapath.serviceCidrList(), [SECONDARY_RANGE_V4, SECONDARY_RANGE_V6].sort());
      t.upsertServiceCIDR({ ...serviceCIDRs[0]!, spec: { cidrs: [SECONDARY_RANGE_V4] } });
      changes = t.flush();
      await b.syncChanges(t.state(), changes, false);
      assert.deepEqual(b.datapath.serviceCidrList(), [SECONDARY_RANGE_V4]);
    } finally {
      b.close();
    }
  });
});
