// The eBPF backend's apply step: adoption of pinned state after a restart (a diff, not a
// rebuild), make-before-break set replacement, and a full map failing one service, not others.
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { u32 } from '../../control/bpf/codec.ts';
import { frontendKey, frontendValue, LAYOUT_VERSION, meta, slotKey } from '../../control/bpf/layout.ts';
import { compileDatapath } from '../../control/backends/ebpf/compile.ts';
import { EbpfDatapath, LayoutMismatchError } from '../../control/backends/ebpf/datapath.ts';
import { BpfMap } from '../../control/bpf/map.ts';
import { nodeFacts } from '../../control/model/node.ts';
import { ChangeTracker } from '../../control/model/tracker.ts';
import { service, slice } from '../cases/objects.ts';
import { config, node, services, slices } from '../cases/semantics.ts';
import { runPrefix } from '../lab/names.ts';
import { teardownNamesSync } from '../lab/sweep.ts';
import { datapathObject } from './ebpf-lab.ts';

const prefix = `${runPrefix()}-sync`;

function model(): ChangeTracker {
  const t = new ChangeTracker(config, nodeFacts('n0', node));
  for (const s of services) t.upsertService(s);
  for (const s of slices) t.upsertSlice(s);
  t.flush();
  return t;
}

describe('eBPF backend sync', () => {
  after(() => teardownNamesSync(prefix));

  it('a restarted agent adopts the pinned maps: the same state writes nothing, nothing is flushed', () => {
    const pinDir = `/sys/fs/bpf/${prefix}-adopt`;
    const compiled = compileDatapath(model().state());
    const first = EbpfDatapath.open({ object: datapathObject, pinDir });
    const r1 = first.sync(compiled);
    assert.ok(r1.frontendsWritten > 40 && r1.backendsWritten > 10);
    const count = first.frontendCount;
    first.close();
    const second = EbpfDatapath.open({ object: datapathObject, pinDir });
    try {
      assert.equal(second.frontendCount, count, 'everything pinned was adopted');
      const r2 = second.sync(compiled);
      assert.deepEqual(r2, { frontendsWritten: 0, frontendsRemoved: 0, backendsWritten: 0, backendsRemoved: 0, failed: [], unsupported: [] });
    } finally {
      second.close();
    }
  });

  it('a full resync re-reads the maps and repairs what changed behind the agent\'s back', () => {
    const pinDir = `/sys/fs/bpf/${prefix}-drift`;
    const compiled = compileDatapath(model().state());
    const dp = EbpfDatapath.open({ object: datapathObject, pinDir });
    try {
      dp.sync(compiled);
      const fe = dp.object.map('sy_frontends', frontendKey, frontendValue);
      const key = { addr: '10.96.0.10', port: 80, proto: 6, family: 4, scope: 0 };
      const value = fe.get(key)!;
      fe.delete(key); // someone else's doing
      assert.equal(dp.sync(compiled).frontendsWritten, 0, 'an incremental sync trusts its own record');
      dp.readopt();
      const report = dp.sync(compiled);
      assert.equal(report.frontendsWritten, 1, 'the resync put back exactly the missing frontend');
      assert.deepEqual(fe.get(key), value);
    } finally {
      dp.close();
    }
  });

  it('SCTP: a port equal to its target port is programmed (addresses only); others, and NodePorts to another port, are reported with why', () => {
    const t = model();
    t.upsertService(service({ name: 'sctp', type: 'NodePort', clusterIPs: ['10.96.8.1'], ports: [{ name: 's', port: 9000, protocol: 'SCTP', nodePort: 30900 }, { name: 'u', port: 9002, targetPort: 9003, protocol: 'SCTP' }, { name: 't', port: 9001 }] }));
    t.upsertSlice(slice({ name: 'sctp-x', service: 'sctp', ports: [{ name: 's', port: 9000, protocol: 'SCTP' }, { name: 'u', port: 9003, protocol: 'SCTP' }, { name: 't', port: 9001 }], endpoints: [{ ip: '10.244.1.30', node: 'n1' }] }));
    t.flush();
    const compiled = compileDatapath(t.state());
    const reasons = new Map(compiled.unsupported.map((u) => [u.servicePort, u.reason]));
    assert.deepEqual([...reasons.keys()].sort(), ['demo/sctp:s/SCTP/v4', 'demo/sctp:u/SCTP/v4']);
    assert.match(reasons.get('demo/sctp:u/SCTP/v4')!, /^SCTP port 9002 -> target 9003: the eBPF datapath translates SCTP addresses only/);
    assert.match(reasons.get('demo/sctp:s/SCTP/v4')!, /^SCTP NodePort 30900 -> target 9000: /);
    const sctp = [...compiled.frontends.values()].filter((f) => f.proto === 132);
    assert.deepEqual([...new Set(sctp.map((f) => `${f.addr}:${f.port}`))], ['10.96.8.1:9000'], 'the ClusterIP whose port is the target port, nothing else');
    assert.ok([...compiled.frontends.values()].some((f) => f.servicePort === 'demo/sctp:t/TCP/v4'), 'the service\'s other ports are programmed');
    assert.ok(![...compiled.backends.values()].some((b) => b.servicePort === 'demo/sctp:u/SCTP/v4'), 'a port with no frontend left has no backends');
  });

  it('pins of another layout version are refused with a clear message, and left untouched', () => {
    const pinDir = `/sys/fs/bpf/${prefix}-layout`;
    const dp = EbpfDatapath.open({ object: datapathObject, pinDir });
    dp.sync(compileDatapath(model().state()));
    dp.object.map('sy_meta', u32, meta).set(0, { layoutVersion: 999 }); // as an older or newer agent left it
    const count = dp.frontendCount;
    dp.close();
    assert.throws(() => EbpfDatapath.open({ object: datapathObject, pinDir }), (e: unknown) => e instanceof LayoutMismatchError && new RegExp(`layout version 999, this agent uses version ${LAYOUT_VERSION}`).test(e.message) && /switchyard cleanup/.test(e.message));
    const m = BpfMap.fromPin(`${pinDir}/sy_frontends`, frontendKey, frontendValue);
    assert.equal(m.entries().length, count, 'nothing was flushed');
    m.close();
  });

  it('a changed backend set is written under a new set id before the frontend flips to it', () => {
    const pinDir = `/sys/fs/bpf/${prefix}-mbb`;
    const t = model();
    const dp = EbpfDatapath.open({ object: datapathObject, pinDir });
    try {
      dp.sync(compileDatapath(t.state()));
      const fe = dp.object.map('sy_frontends', frontendKey, frontendValue);
      const slots = dp.object.map('sy_slots', slotKey, u32);
      const key = { addr: '10.96.0.10', port: 80, proto: 6, family: 4, scope: 0 };
      const before = fe.get(key)!;
      t.upsertSlice(slice({ name: 'web-v4', service: 'web', ports: [{ name: 'http', port: 8080 }, { name: 'dns', port: 8080, protocol: 'UDP' }], endpoints: [{ ip: '10.244.1.11', node: 'n1' }] }));
      t.flush();
      const report = dp.sync(compileDatapath(t.state()));
      const after = fe.get(key)!;
      assert.notEqual(after.setId, before.setId, 'a new set');
      assert.equal(after.count, 1);
      const programmed = fe.entries();
      assert.equal(slots.entries().length, programmed.reduce((n, [, v]) => n + v.count, 0), 'no slot of an old set is left behind');
      assert.equal(slots.get({ setId: after.setId, slot: 1 }), slots.entries().find(([k]) => k.setId === after.setId)?.[1]);
      assert.ok(report.backendsRemoved >= 1, 'the endpoint that left is removed from the backends');
    } finally {
      dp.close();
    }
  });

  it('when a map is full, the service that does not fit is not half-programmed and the others work', () => {
    const pinDir = `/sys/fs/bpf/${prefix}-full`;
    // One frontend per service (no local detection, so no separate pod-scope entry).
    const t = new ChangeTracker({ ...config, detectLocalMode: 'None' }, nodeFacts('n0', node));
    for (let i = 0; i < 6; i++) {
      t.upsertService(service({ name: `s${i}`, clusterIPs: [`10.96.7.${i}`], ports: [{ port: 80 }] }));
      t.upsertSlice(slice({ name: `s${i}-x`, service: `s${i}`, ports: [{ port: 8080 }], endpoints: [0, 1, 2].map((j) => ({ ip: `10.244.${i}.${10 + j}`, node: 'n1' })) }));
    }
    t.flush();
    // Room for 5 sets of 3 slots: the sixth service must fail whole.
    const dp = EbpfDatapath.open({ object: datapathObject, pinDir, maxEntries: { sy_slots: 15 } });
    try {
      const report = dp.sync(compileDatapath(t.state()));
      assert.equal(report.failed.length, 1, JSON.stringify(report.failed));
      assert.match(report.failed[0]!.error, /full|E2BIG|No space/i);
      const fe = dp.object.map('sy_frontends', frontendKey, frontendValue);
      const slots = dp.object.map('sy_slots', slotKey, u32);
      assert.equal(fe.entries().length, 5, 'five frontends programmed');
      for (const [, v] of fe.entries()) {
        assert.equal(v.count, 3);
        for (let s = 1; s <= 3; s++) assert.ok(slots.get({ setId: v.setId, slot: s }) !== undefined);
      }
      assert.equal(slots.entries().length, 15, 'no slot of the failed service was left behind');
    } finally {
      dp.close();
    }
  });
});
